"""Tests of janus.datasets.labels: spellings, CIC CSV quirks, the time-offset diagnostic, the join,
rule labels and the CLI, on hand-made flows tables and CSVs."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from janus import contract
from janus.datasets.labels import (
    CLASS_TABLE,
    LABELS_REPORT_FILE,
    main,
    normalise_label,
)
from janus.datasets.labels import label_dataset as streamed_label_dataset
from janus.datasets.labels.cic_csv import parse_timestamps, read_label_csv
from janus.datasets.labels.rules import parse_attacker
from janus.errors import ConfigError, JanusError

UTC = timezone.utc
T0 = datetime(2017, 7, 6, 12, 0, 0, tzinfo=UTC)  # 09:00 in the CICIDS2017 site's clock (UTC-3)
HEADER = ("Flow ID, Source IP, Source Port, Destination IP, Destination Port, Protocol, "
          "Timestamp, Flow Duration, Fwd Header Length, Fwd Header Length, Label")


# --------------------------------------------------------------------------- helpers
def label_dataset(data_dir, **kwargs):
    """The streamed labeller, in chunks of 2 flows, checked against the in-memory one of
    0.3.0 (tests/labels_reference.py) run on a copy of ``data_dir``: the same labels.parquet,
    the same report, or the same error."""
    import shutil

    import labels_reference

    data_dir = Path(data_dir)
    ref_dir = data_dir.with_name(data_dir.name + "_reference")
    shutil.rmtree(ref_dir, ignore_errors=True)
    if data_dir.exists():
        shutil.copytree(data_dir, ref_dir)
    try:
        ref = labels_reference.label_dataset(ref_dir, **kwargs)
    except JanusError as exc:
        with pytest.raises(type(exc)) as got:
            streamed_label_dataset(data_dir, chunk=2, **kwargs)
        assert str(got.value) == str(exc).replace(str(ref_dir), str(data_dir))
        raise got.value from None
    rep = streamed_label_dataset(data_dir, chunk=2, **kwargs)
    assert rep == {**ref, "data": str(data_dir)}
    assert read_labels(data_dir).equals(read_labels(ref_dir))
    assert pq.ParquetFile(data_dir / contract.LABELS_FILE).metadata.num_row_groups == max(
        1, -(-rep["n_flows"] // 2))
    return rep


def write_flows(data_dir: Path, flows: list[dict]) -> None:
    """flows: dicts with src, dst, sport, dport, proto, start (datetime), dur (s), file."""
    data_dir.mkdir(parents=True, exist_ok=True)
    n = len(flows)
    start = [f["start"].timestamp() for f in flows]
    cols = {
        "flow_id": pa.array(np.arange(n), pa.int64()),
        "src_ip": pa.array([f["src"] for f in flows], pa.string()),
        "dst_ip": pa.array([f["dst"] for f in flows], pa.string()),
        "src_port": pa.array([f.get("sport", 0) for f in flows], pa.int32()),
        "dst_port": pa.array([f.get("dport", 0) for f in flows], pa.int32()),
        "proto": pa.array([f.get("proto", 6) for f in flows], pa.int16()),
        "start_time": pa.array(start, pa.float64()),
        "end_time": pa.array([s + f.get("dur", 1.0) for s, f in zip(start, flows)], pa.float64()),
        "n_packets": pa.array([3] * n, pa.int64()),
        "n_bytes": pa.array([180] * n, pa.int64()),
        "end_reason": pa.array(["fin"] * n, pa.string()),
        "source_file": pa.array([f.get("file", "/cap/a.pcap") for f in flows], pa.string()),
    }
    table = pa.table(cols)
    assert table.column_names == list(contract.FLOW_COLUMNS)
    pq.write_table(table, data_dir / contract.FLOWS_FILE)


def local(when: datetime, hours: float = -3.0, fmt: str = "dmy_s") -> str:
    """``when`` (UTC) on a clock ``hours`` from UTC, in one of the CIC timestamp formats."""
    t = when + timedelta(hours=hours)
    if fmt == "dmy_s":
        return f"{t.day}/{t.month}/{t.year} {t.hour}:{t.minute:02d}:{t.second:02d}"
    if fmt == "dmy_m":  # minute resolution: CIC truncates the seconds
        return f"{t.day}/{t.month}/{t.year} {t.hour}:{t.minute:02d}"
    if fmt == "dmy_12":  # 12-hour clock, no marker (some CICIDS2017 days)
        return f"{t.day}/{t.month}/{t.year} {(t.hour - 1) % 12 + 1}:{t.minute:02d}"
    if fmt == "ampm":
        return t.strftime("%d/%m/%Y %I:%M:%S %p")
    if fmt == "iso":
        return t.strftime("%Y-%m-%d %H:%M:%S.%f")
    raise ValueError(fmt)


def write_csv(path: Path, rows: list[tuple], *, encoding: str = "utf-8", bom: bool = False,
              blank_rows: int = 0) -> Path:
    """rows: (src, sport, dst, dport, proto, timestamp text, label) in CIC column order."""
    lines = [HEADER]
    for i, (src, sport, dst, dport, proto, ts, label) in enumerate(rows):
        lines.append(f"{src}-{dst}-{sport}-{dport}-{proto},{src},{sport},{dst},{dport},{proto},"
                     f"{ts},{1000 + i},20,20,{label}")
    lines += [",,,,,,,,,,"] * blank_rows
    data = ("\r\n".join(lines) + "\r\n").encode(encoding)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)
    return path


def read_labels(data_dir: Path) -> pl.DataFrame:
    return pl.read_parquet(data_dir / contract.LABELS_FILE)


def flow(i: int, start: datetime, **kw) -> dict:
    """Flow i: 192.168.10.{i} -> 10.0.0.1:80 from port 40000+i."""
    return {"src": f"192.168.10.{i}", "dst": "10.0.0.1", "sport": 40000 + i, "dport": 80,
            "proto": 6, "start": start, **kw}


def row(f: dict, ts: str, label: str, swap: bool = False) -> tuple:
    if swap:
        return (f["dst"], f["dport"], f["src"], f["sport"], f["proto"], ts, label)
    return (f["src"], f["sport"], f["dst"], f["dport"], f["proto"], ts, label)


# --------------------------------------------------------------------------- normalisation
@pytest.mark.parametrize("raw,expected", [
    ("BENIGN", (0, "benign")), ("Benign", (0, "benign")), ("benign", (0, "benign")),
    ("BenignTraffic", (0, "benign")), ("Benign_Final", (0, "benign")), ("NonTor", (0, "benign")),
    ("nonTOR", (0, "benign")), (" BENIGN\r", (0, "benign")),
    ("Web Attack \ufffd Brute Force", (1, "web_attack_brute_force")),
    ("Web Attack \x96 Brute Force", (1, "web_attack_brute_force")),
    ("Web Attack \u2013 Brute Force", (1, "web_attack_brute_force")),
    ("Web Attack \u00e2\u20ac\u201c Brute Force", (1, "web_attack_brute_force")),
    ("Web Attack \u2013 XSS", (1, "web_attack_xss")),
    ("Web Attack \ufffd XSS", (1, "web_attack_xss")),
    ("Web Attack - Sql Injection", (1, "web_attack_sql_injection")),
    ("Web Attack \x96 Sql Injection", (1, "web_attack_sql_injection")),
    ("DoS Hulk", (1, "dos_hulk")), ("DoS slowloris", (1, "dos_slowloris")),
    ("DoS Slowhttptest", (1, "dos_slowhttptest")), ("DoS GoldenEye", (1, "dos_goldeneye")),
    ("Heartbleed", (1, "heartbleed")), ("Infiltration", (1, "infiltration")),
    ("Bot", (1, "bot")), ("PortScan", (1, "portscan")), ("FTP-Patator", (1, "ftp_patator")),
    ("SSH-Patator", (1, "ssh_patator")), ("DDoS", (1, "ddos")),
    ("DrDoS_DNS", (1, "drdos_dns")), ("DrDoS_NTP", (1, "drdos_ntp")),
    ("DrDoS_LDAP", (1, "drdos_ldap")), ("DrDoS_NetBIOS", (1, "drdos_netbios")),
    ("Syn", (1, "syn")), ("UDP-lag", (1, "udp_lag")), ("UDPLag", (1, "udp_lag")),
    ("TFTP", (1, "tftp")), ("WebDDoS", (1, "webddos")), ("LDAP", (1, "ldap")),
    ("MSSQL", (1, "mssql")), ("NetBIOS", (1, "netbios")), ("Portmap", (1, "portmap")),
    ("DDoS-ICMP_Flood", (1, "ddos_icmp_flood")), ("DDOS-ICMP_FLOOD", (1, "ddos_icmp_flood")),
    ("Mirai-greeth_flood", (1, "mirai_greeth_flood")),
    ("DictionaryBruteForce", (1, "dictionary_brute_force")),
    ("Recon-PortScan", (1, "recon_port_scan")), ("DDoS-RSTFINFlood", (1, "ddos_rstfin_flood")),
    ("MITM-ArpSpoofing", (1, "mitm_arp_spoofing")), ("SqlInjection", (1, "sql_injection")),
    ("Tor", (1, "tor")), ("TOR", (1, "tor")),
    ("Some New-Attack!", (1, "some_new_attack")), ("unknown", (-1, "unknown")),
])
def test_normalise_label(raw, expected):
    assert normalise_label(raw) == expected


def test_normalise_rejects_empty_and_table_is_snake_case():
    with pytest.raises(JanusError, match="empty label"):
        normalise_label(" - ")
    assert all(c == c.lower() and " " not in c and "-" not in c for c in CLASS_TABLE.values())


# --------------------------------------------------------------------------- CSV reading
@pytest.mark.parametrize("fmt", ["dmy_s", "dmy_m", "ampm", "iso"])
def test_parse_timestamps_formats(fmt):
    when = datetime(2017, 7, 7, 15, 56, 12, 250000, tzinfo=UTC)
    got = parse_timestamps(pl.Series([local(when, 0.0, fmt)]))[0]["time"][0]
    exact = {"dmy_s": when.replace(microsecond=0), "dmy_m": when.replace(second=0, microsecond=0),
             "ampm": when.replace(microsecond=0), "iso": when}[fmt]
    assert got == pytest.approx(exact.timestamp(), abs=1e-6)


def test_parse_timestamps_12h_marker_and_suspect():
    frame, fmt, suspect = parse_timestamps(pl.Series(["3/7/2017 12:05:00 AM", "3/7/2017 12:05 PM",
                                                      "junk", None]))
    t = frame["time"].to_list()
    assert t[0] == datetime(2017, 7, 3, 0, 5, tzinfo=UTC).timestamp()
    assert t[1] == datetime(2017, 7, 3, 12, 5, tzinfo=UTC).timestamp()
    assert t[2] is None and t[3] is None and fmt == "dmy" and not suspect
    frame, _, suspect = parse_timestamps(pl.Series(["7/7/2017 9:01", "7/7/2017 3:56"]))
    assert suspect and frame["ampm_free"].to_list() == [True, True]
    assert not parse_timestamps(pl.Series(["7/7/2017 9:01", "7/7/2017 15:56"]))[2]


@pytest.mark.parametrize("encoding,label", [
    ("cp1252", "Web Attack \u2013 Brute Force"),  # byte 0x96 in the file
    ("utf-8", "Web Attack \ufffd Brute Force"),  # U+FFFD written out
])
def test_read_csv_broken_bytes_bom_blank_rows(tmp_path, encoding, label):
    f = flow(1, T0)
    path = write_csv(tmp_path / "x.csv", [row(f, local(T0), label), row(f, local(T0), "BENIGN")],
                     encoding=encoding, bom=True, blank_rows=3)
    lc = read_label_csv(path)
    assert (lc.rows_total, lc.rows_blank, lc.timestamp_format) == (5, 3, "dmy")
    assert [normalise_label(x) for x in lc.table["raw_label"]] == [
        (1, "web_attack_brute_force"), (0, "benign")]
    assert lc.table["src_ip"][0] == "192.168.10.1" and lc.table["dst_port"][0] == 80


def test_read_csv_missing_columns_names_file(tmp_path):
    path = tmp_path / "mlcve.csv"
    path.write_text(" Destination Port, Flow Duration, Label\n80,1,BENIGN\n")
    with pytest.raises(JanusError, match="mlcve.csv: label CSV lacks column.*Source Ip"):
        read_label_csv(path)


# --------------------------------------------------------------------------- the join
def test_offset_detected_applied_with_swaps_and_minutes(tmp_path):
    data = tmp_path / "ds"
    flows = [flow(i, T0 + timedelta(seconds=37 * i + 0.4)) for i in range(8)]
    write_flows(data, flows)
    rows = [row(f, local(f["start"], -3, "dmy_m" if i % 2 else "dmy_s"),
                "DoS Hulk" if i < 3 else "BENIGN", swap=i % 3 == 0)
            for i, f in enumerate(flows)]
    csv = write_csv(tmp_path / "day.csv", rows)
    rep = label_dataset(data, csv=[csv])
    off = rep["csv"]["time_offset"]
    assert (off["detected_hours"], off["share"], off["applied_hours"]) == (-3.0, 1.0, -3.0)
    assert off["rows_matched"] == 8
    lab = read_labels(data)
    assert lab["label"].to_list() == [1, 1, 1, 0, 0, 0, 0, 0]
    assert lab["attack"].to_list()[:4] == ["dos_hulk"] * 3 + ["benign"]
    assert set(lab["label_source"]) == {"csv"}
    assert rep["csv"]["rows_matched"] == 8 and rep["flows_unlabelled"] == 0

    rep = label_dataset(data, csv=[csv], time_offset="none")  # detected, not applied
    assert rep["csv"]["time_offset"]["applied_hours"] == 0.0
    assert rep["csv"]["unmatched_reasons"] == {"no_flow_near_time": 8}
    assert read_labels(data)["label"].to_list() == [-1] * 8

    rep = label_dataset(data, csv=[csv], utc_offset_hours=-3)  # converted: nothing left over
    assert rep["csv"]["time_offset"]["detected_hours"] == 0.0
    assert rep["csv"]["rows_matched"] == 8
    rep = label_dataset(data, csv=[csv], time_offset=-3)
    assert rep["csv"]["rows_matched"] == 8 and rep["csv"]["time_offset"]["mode"] == "fixed"


def test_port_reuse_conflict_and_unmatched_counts(tmp_path):
    data = tmp_path / "ds"
    a = flow(1, T0)
    b = flow(1, T0 + timedelta(seconds=600))  # same 5-tuple, ten minutes later
    c = flow(2, T0 + timedelta(seconds=5))
    d = flow(3, T0 + timedelta(seconds=9))  # no CSV row: default
    write_flows(data, [a, b, c, d])
    rows = [row(a, local(a["start"], 0), "BENIGN"),
            row(b, local(b["start"], 0), "SSH-Patator", swap=True),
            row(c, local(c["start"], 0), "BENIGN"),
            row(c, local(c["start"] + timedelta(seconds=1), 0), "PortScan"),  # conflict
            row(flow(9, T0), local(T0, 0), "BENIGN"),  # 5-tuple no flow has
            row(a, local(T0 + timedelta(hours=2), 0), "BENIGN"),  # 5-tuple known, time far
            row(a, "not a time", "BENIGN")]
    rep = label_dataset(data, csv=[write_csv(tmp_path / "x.csv", rows)], time_offset="none")
    lab = read_labels(data)
    assert lab["label"].to_list() == [0, 1, 1, -1]
    assert lab["attack"].to_list() == ["benign", "ssh_patator", "portscan", "unknown"]
    assert lab["label_source"].to_list() == ["csv", "csv", "csv", "none"]
    csv = rep["csv"]
    assert csv["conflicts"] == {"benign_vs_attack": 1, "attack_vs_attack": 0}
    assert csv["unmatched_reasons"] == {"no_flow_with_5tuple": 1, "no_flow_near_time": 1,
                                        "bad_timestamp": 1}
    assert (csv["rows"], csv["rows_matched"], csv["rows_unmatched"]) == (7, 4, 3)
    assert rep["flows_unlabelled"] == 1 and rep["labels"] == {"benign": 1, "attack": 2,
                                                              "unknown": 1}
    label_dataset(data, csv=[tmp_path / "x.csv"], time_offset="none", default="benign")
    lab = read_labels(data)
    assert lab.row(3) == (3, 0, "benign", "default")


def test_twelve_hour_day_and_span_match(tmp_path):
    data = tmp_path / "ds"
    pm = flow(1, datetime(2017, 7, 7, 18, 56, 3, tzinfo=UTC))  # 15:56 local: "3:56" in the CSV
    am = flow(2, datetime(2017, 7, 7, 12, 30, 0, tzinfo=UTC))  # 09:30 local
    long = flow(3, datetime(2017, 7, 7, 13, 0, 0, tzinfo=UTC), dur=900.0)
    write_flows(data, [pm, am, long])
    rows = [row(pm, local(pm["start"], -3, "dmy_12"), "DDoS"),
            row(am, local(am["start"], -3, "dmy_12"), "BENIGN"),
            # CICFlowMeter's continuation of the long flow, 5 minutes in
            row(long, local(long["start"] + timedelta(seconds=300), -3, "dmy_12"), "Bot")]
    rep = label_dataset(data, csv=[write_csv(tmp_path / "fri.csv", rows)],
                        utc_offset_hours=-3)
    assert rep["csv"]["files"][0]["twelve_hour_suspect"] is True
    assert rep["csv"]["match_kinds"] == {"start_12h": 1, "start": 1, "span": 1}
    assert read_labels(data)["attack"].to_list() == ["ddos", "benign", "bot"]


def test_ipv6_spelling_bad_endpoint_and_untrusted_offset(tmp_path):
    data = tmp_path / "ds"
    v6 = {"src": "2001:db8::1", "dst": "fe80::2", "sport": 5353, "dport": 53, "proto": 17,
          "start": T0}
    others = [flow(i, T0 + timedelta(seconds=10 * i)) for i in range(1, 6)]
    write_flows(data, [v6, *others])
    rows = [("2001:DB8:0:0::1", 5353, "FE80::2", 53, 17, local(T0, 0), "DrDoS_DNS"),
            ("999.1.1.1", 1, "10.0.0.1", 80, 6, local(T0, 0), "BENIGN")]
    # Five rows each off by a different whole number of hours: no offset explains most.
    rows += [row(f, local(f["start"], i + 1), "BENIGN") for i, f in enumerate(others)]
    rep = label_dataset(data, csv=[write_csv(tmp_path / "x.csv", rows)])
    off = rep["csv"]["time_offset"]
    assert off["rows_matched"] == 6 and off["share"] == pytest.approx(1 / 6)
    assert off["applied_hours"] == 0.0
    assert rep["csv"]["unmatched_reasons"] == {"no_flow_near_time": 5, "bad_endpoint": 1}
    assert read_labels(data)["attack"].to_list() == ["drdos_dns"] + ["unknown"] * 5


# --------------------------------------------------------------------------- rules
def test_attacker_rule_window_and_precedence(tmp_path):
    data = tmp_path / "ds"
    flows = [
        {"src": "172.16.0.5", "dst": "192.168.50.1", "start": T0, "dur": 10},  # in window
        {"src": "192.168.50.1", "dst": "172.16.0.5", "start": T0 + timedelta(hours=1)},  # after
        {"src": "172.16.0.9", "dst": "192.168.50.1", "start": T0},  # other host
        {"src": "192.168.50.4", "dst": "10.1.1.1", "start": T0 - timedelta(seconds=5), "dur": 10},
    ]
    write_flows(data, flows)
    win = "@2017-07-06T12:00:03Z,2017-07-06T12:30:00"
    rep = label_dataset(data, attackers=[f"172.16.0.5=DrDoS_DNS{win}", "192.168.50.0/30" + win],
                        default="benign")
    lab = read_labels(data)
    assert lab["attack"].to_list() == ["drdos_dns", "benign", "benign", "benign"]
    assert lab["label_source"].to_list() == ["ip_rule", "default", "default", "default"]
    assert list(rep["ip_rules"].values()) == [1, 0]

    flows[3]["dst"] = "192.168.50.2"  # now inside the /30 and overlapping the window (ends at +5s)
    write_flows(data, flows)
    csv = write_csv(tmp_path / "x.csv", [row({**flows[0], "sport": 0, "dport": 0, "proto": 6}, local(T0, 0),
                                             "BENIGN")])
    rep = label_dataset(data, csv=[csv], attackers=["192.168.50.0/30@2017-07-06T12:00:03,"])
    assert read_labels(data)["attack"].to_list() == ["attack", "attack", "unknown", "attack"]
    assert rep["overridden"] == {"csv_overridden_by_ip_rule": 1}
    rep = label_dataset(data, csv=[csv], attackers=["192.168.50.0/30@2017-07-06T12:00:03,"],
                        precedence=("csv", "ip_rule", "file"))
    assert read_labels(data)["label_source"].to_list() == ["csv", "ip_rule", "none", "ip_rule"]


@pytest.mark.parametrize("spec,message", [
    ("not-an-ip", "not an IP"), ("1.2.3.4@2017-07-06", "START,END"),
    ("1.2.3.4@yesterday,", "ISO-8601"), ("1.2.3.4=BENIGN", "not an attack class"),
    ("1.2.3.4@2017-07-06T12:00,2017-07-06T11:00", "ends before"),
])
def test_attacker_spec_errors(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_attacker(spec)


def test_by_folder_and_file_class(tmp_path):
    data = tmp_path / "ds"
    files = ["/d/CICIoT2023/DDoS-ICMP_Flood/DDoS-ICMP_Flood1.pcap",
             "/d/CICIoT2023/Benign_Final/BenignTraffic.pcap",
             "/d/CICIoT2023/Recon-PortScan/Recon-PortScan.pcap",
             "/d/Tor/NonTor-browsing.pcap", "/d/Tor/Tor-audio.pcap"]
    write_flows(data, [flow(i, T0, file=f) for i, f in enumerate(files)])
    rep = label_dataset(data, by_folder=True)
    lab = read_labels(data)
    assert lab["attack"].to_list() == ["ddos_icmp_flood", "benign", "recon_port_scan", "tor", "tor"]
    assert lab["label"].to_list() == [1, 0, 1, 1, 1]
    assert rep["file_rules"]["Benign_Final"] == "benign"

    label_dataset(data, file_classes=["*NonTor*=benign", "*Tor*=tor"], by_folder=True)
    lab = read_labels(data)
    assert lab["attack"].to_list()[3:] == ["benign", "tor"]
    assert lab["attack"].to_list()[0] == "ddos_icmp_flood" and set(lab["label_source"]) == {"file"}
    label_dataset(data, file_classes={"NonTor-*.pcap": "NonTor"})  # matches the file name
    assert read_labels(data)["label"].to_list() == [-1, -1, -1, 0, -1]


# --------------------------------------------------------------------------- CLI
def test_cli_round_trip(tmp_path, capsys):
    data = tmp_path / "ds"
    flows = [flow(i, T0 + timedelta(seconds=i)) for i in range(6)]
    write_flows(data, flows)
    csv_dir = tmp_path / "TrafficLabelling"
    csv_dir.mkdir()
    write_csv(csv_dir / "a.csv", [row(f, local(f["start"]), "Bot") for f in flows[:3]])
    write_csv(csv_dir / "b.CSV", [row(f, local(f["start"]), "BENIGN") for f in flows[3:5]])
    status = main(["--data", str(data), "--csv", str(csv_dir), "--time-offset", "auto",
                   "--attacker", "192.168.10.5=Infiltration", "--tolerance", "60"])
    assert status == 0
    table = pq.read_table(data / contract.LABELS_FILE)
    assert dict(zip(table.column_names, map(str, table.schema.types))) == {
        k: ("int8" if v == "int8" else v) for k, v in contract.LABEL_COLUMNS.items()}
    assert table.column("attack").to_pylist() == ["bot"] * 3 + ["benign", "benign", "infiltration"]
    assert table.column("flow_id").to_pylist() == list(range(6))
    report = json.loads((data / LABELS_REPORT_FILE).read_text())
    assert report["csv"]["time_offset"]["applied_hours"] == -3.0
    assert report["label_source"] == {"csv": 5, "ip_rule": 1}
    assert [f["rows_matched"] for f in report["csv"]["files"]] == [3, 2]

    assert main(["--data", str(tmp_path / "nope")]) == 2
    assert "flows.parquet: not found" in capsys.readouterr().err
    assert main(["--data", str(data), "--time-offset", "soon"]) == 2
    assert main(["--data", str(data), "--precedence", "csv,file"]) == 2


# --------------------------------------------------------------------------- hostile CSVs
def _cic_rows(n: int = 3) -> list[tuple]:
    return [row(flow(i, T0), local(T0), "DoS Hulk" if i % 2 else "BENIGN") for i in range(n)]


def _csv_bytes(rows: list[tuple], newline: str = "\r\n") -> bytes:
    """The bytes :func:`write_csv` writes, with another line ending."""
    lines = [HEADER] + [f"{s}-{d}-{sp}-{dp}-{p},{s},{sp},{d},{dp},{p},{ts},{1000 + i},20,20,{lab}"
                        for i, (s, sp, d, dp, p, ts, lab) in enumerate(rows)]
    return (newline.join(lines) + newline).encode()


GOOD = _csv_bytes(_cic_rows())
BENIGN_CR = GOOD.index(b"BENIGN\r\n") + 6  # the CR ending line 2
HULK = GOOD.index(b"DoS Hulk")  # on line 3


def _label_error(tmp_path: Path, data: bytes, capsys) -> str:
    """Run ``janus labels`` on a CSV of ``data``: the one-line error it prints."""
    ds = tmp_path / "ds"
    write_flows(ds, [flow(i, T0) for i in range(3)])
    csv = tmp_path / "bad.csv"
    csv.write_bytes(data)
    with pytest.raises(JanusError) as info:
        label_dataset(ds, csv=[csv])
    capsys.readouterr()
    assert main(["--data", str(ds), "--csv", str(csv)]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and "\n" not in err and str(csv) in err, err
    assert not (ds / contract.LABELS_FILE).exists()
    return str(info.value)


@pytest.mark.parametrize("data,expected", [
    # CR-only line endings: csv.Error "new-line character seen in unquoted field" before.
    (_csv_bytes(_cic_rows(), "\r"), f"line 1 (byte {len(HEADER)}): lines end in a bare CR"),
    # One stray CR would glue rows 2 and 3 into one "BENIGN\r..." label.
    (GOOD[:BENIGN_CR + 1] + GOOD[BENIGN_CR + 2:],
     f"line 2 (byte {BENIGN_CR}): a carriage return without a line feed"),
    (GOOD[:-1], f"line 4 (byte {len(GOOD) - 2}): a carriage return without"),  # at the end
    (GOOD.replace(b"DoS", b"D\0S"), f"line 3 (byte {HULK + 1}): binary content (a NUL byte)"),
    (bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8)),
     "binary content (a NUL byte)"),
    (GOOD.decode().encode("utf-16"), "is UTF-16 text"),
    (GOOD.replace(b"DoS Hulk", b'"DoS Hulk', 1), "line 3: unbalanced quote"),
    (b"", "empty label CSV (no header line)"),
    (b"\r\n\r\n", "empty label CSV (no header line)"),
    (b"A" * (1 << 20) + b"\n", "line 1 is longer than 1048576 bytes"),
], ids=["cr_only", "stray_cr", "cr_at_end", "nul", "random_bytes", "utf16", "quote",
        "empty", "blank_lines", "long_header"])
def test_hostile_csv_bytes_are_one_line_errors(tmp_path, capsys, data, expected):
    assert expected in _label_error(tmp_path, data, capsys)


def test_stray_cr_across_a_scan_block_is_found(tmp_path, monkeypatch):
    from janus.datasets.labels import cic_csv

    monkeypatch.setattr(cic_csv, "_SCAN_CHUNK", BENIGN_CR + 1)  # the CR ends block 1
    path = tmp_path / "x.csv"
    path.write_bytes(GOOD[:BENIGN_CR + 1] + GOOD[BENIGN_CR + 2:])
    with pytest.raises(JanusError, match=f"line 2 \\(byte {BENIGN_CR}\\): a carriage return"):
        read_label_csv(path)
    path.write_bytes(GOOD)  # CRLF split across two blocks is fine
    assert read_label_csv(path).table.height == 3


def test_header_without_rows_and_all_blank_rows_warn(tmp_path, caplog):
    ds = tmp_path / "ds"
    write_flows(ds, [flow(i, T0) for i in range(3)])
    empty = tmp_path / "empty.csv"
    empty.write_bytes((HEADER + "\r\n").encode())
    blank = write_csv(tmp_path / "blank.csv", [], blank_rows=4)
    good = write_csv(tmp_path / "good.csv", [row(flow(1, T0), local(T0, 0.0), "DoS Hulk")])
    with caplog.at_level("WARNING", logger="janus.datasets.labels"):
        rep = label_dataset(ds, csv=[empty, blank, good])
    assert f"{empty}: a header and no rows; it labels no flow" in caplog.text
    assert f"{blank}: all 4 rows are blank (no label); it labels no flow" in caplog.text
    assert [f["rows"] for f in rep["csv"]["files"]] == [0, 4, 1]
    assert read_labels(ds)["attack"].to_list() == ["unknown", "dos_hulk", "unknown"]
    with caplog.at_level("WARNING", logger="janus.datasets.labels"):
        rep = label_dataset(ds, csv=[empty])  # only empty files: a result, every flow default
    assert rep["labels"]["unknown"] == 3 and rep["csv"]["rows"] == 0


def test_label_without_letters_is_counted_and_named_not_a_traceback(tmp_path, caplog):
    ds = tmp_path / "ds"
    write_flows(ds, [flow(i, T0) for i in range(3)])
    csv = write_csv(tmp_path / "x.csv", [row(flow(0, T0), local(T0, 0.0), "BENIGN"),
                                          row(flow(1, T0), local(T0, 0.0), "--?--"),
                                          row(flow(2, T0), local(T0, 0.0), "DoS Hulk")])
    with caplog.at_level("WARNING", logger="janus.datasets.labels"):
        rep = label_dataset(ds, csv=[csv])
    assert f"{csv}: line 3: label '--?--' is not a class name; 1 such rows" in caplog.text
    assert rep["csv"]["unmatched_reasons"] == {"bad_label": 1}
    assert read_labels(ds)["attack"].to_list() == ["benign", "unknown", "dos_hulk"]


def test_cicddos2019_attacker_rule_keeps_the_csv_classes(tmp_path):
    """The registry's CICDDoS2019 rule (attacker 172.16.0.5, no class) on a CIC-layout CSV:
    the CSV's classes survive; the rule labels what the CSV does not, and overrides BENIGN."""
    from janus.datasets.registry import CICDDOS2019

    att, victim = "172.16.0.5", "192.168.50.1"
    t = datetime(2018, 12, 1, 11, 0, 0, tzinfo=UTC)
    flows = [
        {"src": att, "dst": victim, "sport": 1000, "dport": 53, "proto": 17, "start": t},
        {"src": att, "dst": victim, "sport": 1001, "dport": 389, "proto": 17, "start": t},
        {"src": victim, "dst": att, "sport": 80, "dport": 1002, "proto": 6, "start": t},  # reply
        {"src": att, "dst": victim, "sport": 1003, "dport": 80, "proto": 6, "start": t},  # BENIGN
        {"src": att, "dst": victim, "sport": 1004, "dport": 80, "proto": 6, "start": t},  # no row
        {"src": "192.168.50.6", "dst": "8.8.8.8", "sport": 1005, "dport": 53, "proto": 17,
         "start": t},
    ]
    ds = tmp_path / "ds"
    write_flows(ds, flows)
    labels = ["DrDoS_DNS", "DrDoS_LDAP", "Syn", "BENIGN", None, "BENIGN"]
    rows = [row(f, local(t, 0.0, "iso"), lab, swap=(k == 2))
            for k, (f, lab) in enumerate(zip(flows, labels)) if lab]
    csv = write_csv(tmp_path / "DrDoS_DNS.csv", rows)
    assert HEADER.split(",")[1] == " Source IP" and HEADER.split(",")[-1] == " Label"
    rule_args = CICDDOS2019.label_rule.to_cli_args()
    assert rule_args[rule_args.index("--attacker") + 1] == att  # the rule names no class
    attackers = [rule_args[i + 1] for i, a in enumerate(rule_args) if a == "--attacker"]
    assert main(["--data", str(ds), "--csv", str(csv), "--time-offset", "none",
                 *(x for a in attackers for x in ("--attacker", a))]) == 0
    lab = read_labels(ds)
    assert lab["attack"].to_list() == ["drdos_dns", "drdos_ldap", "syn", "attack", "attack",
                                       "benign"]
    assert lab["label"].to_list() == [1, 1, 1, 1, 1, 0]
    assert lab["label_source"].to_list() == ["csv", "csv", "csv", "ip_rule", "ip_rule", "csv"]
    rep = json.loads((ds / LABELS_REPORT_FILE).read_text())
    assert rep["overridden"] == {"csv_overridden_by_ip_rule": 1}  # only the BENIGN row
    assert rep["unnamed_attack_class_from"] == {"csv": 3}
    assert rep["classes"] == {"attack": 2, "benign": 1, "drdos_dns": 1, "drdos_ldap": 1, "syn": 1}

    # A rule that names its class still overrides the CSV's classes.
    label_dataset(ds, csv=[csv], attackers=[f"{att}=Syn"], time_offset="none")
    assert read_labels(ds)["attack"].to_list() == ["syn"] * 5 + ["benign"]
    # With the CSV first, the rule only fills the flows the CSV leaves out.
    rep = label_dataset(ds, csv=[csv], attackers=[att], time_offset="none",
                        precedence=("csv", "ip_rule", "file"))
    assert read_labels(ds)["attack"].to_list() == ["drdos_dns", "drdos_ldap", "syn", "benign",
                                                   "attack", "benign"]
    assert rep["overridden"] == {"ip_rule_overridden_by_csv": 1}


@pytest.mark.parametrize("kwargs,message", [
    ({"time_offset": "nan"}, "expected a finite number of hours"),
    ({"time_offset": "inf"}, "expected a finite number of hours"),
    ({"tolerance_s": float("inf")}, "expected seconds >= 0"),
    ({"tolerance_s": float("nan")}, "expected seconds >= 0"),
    ({"utc_offset_hours": float("nan")}, "UTC offset nan"),
    ({"attackers": ["10.0.0.1=---"]}, "class '---' is not a class name"),
    ({"file_classes": ["*a.pcap=???"]}, "'???' is not a class name"),
])
def test_non_finite_options_and_classless_names_are_config_errors(tmp_path, kwargs, message):
    ds = tmp_path / "ds"
    write_flows(ds, [flow(0, T0)])
    csv = write_csv(tmp_path / "x.csv", [row(flow(0, T0), local(T0, 0.0), "BENIGN")])
    with pytest.raises(ConfigError, match=re.escape(message)):
        label_dataset(ds, csv=[csv], **kwargs)


def test_huge_fields_are_cut_and_counted_not_carried(tmp_path, caplog):
    """A megabyte field (a damaged file) is cut to MAX_FIELD_CHARS: its row is unmatched
    for a named reason, the others are labelled, and no message carries the megabyte."""
    from janus.datasets.labels.cic_csv import MAX_FIELD_CHARS

    ds = tmp_path / "ds"
    write_flows(ds, [flow(i, T0) for i in range(4)])
    huge = "A" * 2_000_000
    rows = [row(flow(0, T0), local(T0, 0.0), huge), row(flow(1, T0), local(T0, 0.0), "DoS Hulk"),
            (f"192.168.10.{'2' * 2_000_000}", 40002, "10.0.0.1", 80, 6, local(T0, 0.0), "Bot"),
            row(flow(3, T0), "9" * 2_000_000, "Bot")]
    csv = write_csv(tmp_path / "x.csv", rows)
    assert read_label_csv(csv).table["raw_label"].str.len_chars().max() == MAX_FIELD_CHARS
    with caplog.at_level("WARNING", logger="janus.datasets.labels"):
        rep = label_dataset(ds, csv=[csv], time_offset="none")
    assert rep["csv"]["unmatched_reasons"] == {"bad_label": 1, "bad_endpoint": 1,
                                               "bad_timestamp": 1}
    assert read_labels(ds)["attack"].to_list() == ["unknown", "dos_hulk", "unknown", "unknown"]
    assert max(len(r.getMessage()) for r in caplog.records) < 1000
    assert f"'{'A' * 60}'... ({MAX_FIELD_CHARS} characters) is not a class name" in caplog.text
    assert len((ds / LABELS_REPORT_FILE).read_text()) < 20_000
    # Every timestamp unparseable: the one-line error shows the value clipped.
    write_csv(csv, [row(flow(3, T0), "9" * 2_000_000, "Bot")])
    with pytest.raises(JanusError, match=r"line 2: no Timestamp could be parsed") as info:
        label_dataset(ds, csv=[csv])
    assert len(str(info.value)) < 400
