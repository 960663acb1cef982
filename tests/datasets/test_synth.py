"""janus.datasets.synth: determinism, counts, CSV format, ground truth against the pcap, the CLI."""

from __future__ import annotations

import datetime as dt
import ipaddress
import itertools
import json
import re
import struct
import time
from collections import defaultdict

import dpkt
import pytest

from janus.datasets.synth import CSV_NAME, META_NAME, PCAP_NAME, SITES, generate_site, main
from janus.datasets.synth.context import SiteContext
from janus.datasets.synth.csvout import CSV_COLUMNS, cic_timestamp
from janus.datasets.synth.generator import site_seed
from janus.datasets.synth.tcp import REUSE_GAP_S

TINY = 0.1
START = dt.datetime(2026, 1, 5, 9, 0, 0)
TS_RE = re.compile(r"^(\d{2})/(\d{2})/(\d{4}) (\d{1,2}):(\d{2}):(\d{2})$")
#: Attack classes each site must contain (a site need not have every family).
EXPECTED = {
    "office": {"PortScan", "SSH-Patator", "FTP-Patator", "Bot", "DoS slowloris", "DoS Slowhttptest",
               "Web Attack \u2013 Sql Injection", "Web Attack \u2013 XSS", "Web Attack \u2013 Brute Force"},
    "datacenter": {"DoS SYN Flood", "DoS UDP Flood", "DoS Hulk", "DrDoS_DNS", "DoS slowloris", "PortScan",
                   "Exfiltration", "Web Attack \u2013 Sql Injection"},
    "iot": {"PortScan", "Bot", "DoS SYN Flood", "DoS UDP Flood"},
    "tunnel": {"Bot", "Exfiltration"},
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    t = time.perf_counter()
    metas = {name: generate_site(name, out, seed=0, scale=TINY, start_local=START) for name in SITES}
    return out, metas, time.perf_counter() - t


def read_csv(path):
    lines = path.read_text(encoding="utf-8").splitlines()
    return lines[0], [line.split(",") for line in lines[1:]]


def read_pcap(path):
    """(ts, wire_len, 5-tuple or None) per record: record headers read with struct, the
    captured bytes parsed with dpkt. Checks that each wire length is the IP packet's own
    length + 14 (whole, although only 96 bytes are captured)."""
    raw = path.read_bytes()
    assert struct.unpack("<IHHiIII", raw[:24]) == (0xA1B2C3D4, 2, 4, 0, 0, 96, 1)
    out, off = [], 24
    while off < len(raw):
        sec, usec, incl, orig = struct.unpack_from("<IIII", raw, off)
        buf = raw[off + 16:off + 16 + incl]
        off += 16 + incl
        assert incl == min(96, orig)
        ip = dpkt.ethernet.Ethernet(buf).data
        key = None
        if isinstance(ip, dpkt.ip.IP):
            assert orig == 14 + ip.len
        else:
            assert orig == 14 + 40 + ip.plen
        if isinstance(ip, dpkt.ip.IP) and ip.offset == 0 or isinstance(ip, dpkt.ip6.IP6):
            proto = ip.p if isinstance(ip, dpkt.ip.IP) else ip.nxt
            l4 = ip.data
            sp, dp = (l4.sport, l4.dport) if proto in (6, 17) else (0, 0)
            key = (str(ipaddress.ip_address(ip.src)), sp, str(ipaddress.ip_address(ip.dst)), dp, proto)
        out.append((sec + usec * 1e-6, orig, key))
    assert off == len(raw)
    return out


def test_tiny_is_fast_and_counts_add_up(tiny):
    out, metas, seconds = tiny
    assert seconds < 20.0  # ~1-2 s on one free core; generous for a shared machine
    for name, meta in metas.items():
        counts = meta["counts"]
        _, rows = read_csv(out / name / CSV_NAME)
        assert sum(counts.values()) == meta["n_flows"] == len(rows)
        assert meta["n_benign_flows"] == counts["BENIGN"] >= 400
        assert meta["n_attack_flows"] >= 150
        assert EXPECTED[name] <= set(counts) - {"BENIGN"}
        by_label = defaultdict(int)
        for r in rows:
            by_label[r[7]] += 1
        assert dict(by_label) == counts
        assert json.loads((out / name / META_NAME).read_text()) == meta
        assert meta["pcap_bytes"] == (out / name / PCAP_NAME).stat().st_size


def test_csv_format_and_local_time(tiny):
    out, metas, _ = tiny
    for name, spec in SITES.items():
        header, rows = read_csv(out / name / CSV_NAME)
        assert header == ", ".join(CSV_COLUMNS)  # CIC's ", " separated header
        first = None
        for r in rows:
            assert len(r) == 8 and r[0] == f"{r[1]}-{r[3]}-{r[2]}-{r[4]}-{r[5]}"
            m = TS_RE.match(r[6])
            assert m, r[6]
            local = dt.datetime(int(m[3]), int(m[2]), int(m[1]), int(m[4]), int(m[5]), int(m[6]))
            first = first or local
        # The capture starts at 09:00 site-local time, whatever the site's UTC offset.
        assert START <= first < START + dt.timedelta(minutes=2)
        assert metas[name]["utc_offset_hours"] == spec.utc_offset_hours


def test_cic_timestamp_closed_form():
    t = dt.datetime(2026, 1, 5, 12, 3, 7, tzinfo=dt.timezone.utc).timestamp() + 0.9
    assert cic_timestamp(t, -3.0) == "05/01/2026 9:03:07"  # seconds truncated, hour unpadded
    assert cic_timestamp(t, 9.0) == "05/01/2026 21:03:07"
    assert cic_timestamp(t, -13.0) == "04/01/2026 23:03:07"


@pytest.mark.parametrize("name", list(SITES))
def test_every_row_is_in_the_pcap(tiny, name):
    """Each CSV row's 5-tuple has packets, the first of them sent by the row's source at the
    row's (local) second; timestamps never go backwards; wire lengths are whole."""
    out, metas, _ = tiny
    records = read_pcap(out / name / PCAP_NAME)
    assert len(records) == metas[name]["n_frames"]
    ts = [r[0] for r in records]
    assert all(a <= b for a, b in itertools.pairwise(ts))
    offset = SITES[name].utc_offset_hours
    first_seen, stamps = {}, defaultdict(set)
    for t, _, key in records:
        if key is not None:
            first_seen.setdefault(key, t)
            stamps[key].add(int(t))
    _, rows = read_csv(out / name / CSV_NAME)
    first_rows = {}
    for r in rows:
        key = (r[1], int(r[2]), r[3], int(r[4]), int(r[5]))
        first_rows.setdefault(key, r[6])
        # The row's source sent a packet on this 5-tuple in the row's (local) second.
        assert r[6] in {cic_timestamp(t, offset) for t in stamps[key]}, r
    for key, stamp in first_rows.items():  # and the first row of a 5-tuple is its first packet
        assert cic_timestamp(first_seen[key], offset) == stamp


@pytest.mark.parametrize("name", list(SITES))
def test_five_tuples_are_unambiguous(tiny, name):
    """Flows sharing a 5-tuple are TCP reuses after a close (>= 2 s apart) or far apart."""
    out, _, _ = tiny
    _, rows = read_csv(out / name / CSV_NAME)
    seen = defaultdict(list)
    for r in rows:
        a, b = (r[1], r[2]), (r[3], r[4])
        m = TS_RE.match(r[6])
        secs = int(m[4]) * 3600 + int(m[5]) * 60 + int(m[6])
        seen[(min(a, b), max(a, b), r[5])].append(secs)
    for key, starts in seen.items():
        starts.sort()
        for s0, s1 in itertools.pairwise(starts):
            assert s1 - s0 >= (2 if key[2] == "6" else REUSE_GAP_S), key


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = generate_site("iot", tmp_path / "a", seed=3, scale=0.05)
    b = generate_site("iot", tmp_path / "b", seed=3, scale=0.05)
    generate_site("iot", tmp_path / "c", seed=4, scale=0.05)
    for f in (PCAP_NAME, CSV_NAME):
        assert (tmp_path / "a/iot" / f).read_bytes() == (tmp_path / "b/iot" / f).read_bytes()
        assert (tmp_path / "a/iot" / f).read_bytes() != (tmp_path / "c/iot" / f).read_bytes()
    a.pop("generation_seconds"), b.pop("generation_seconds")
    assert a == b


def test_attack_packets_differ_from_benign():
    """Sanity of the models' packet-level signatures: SYN-flood flows are a SYN and SYN-ACKs
    only; slowloris flows send tiny header lines ~15 s apart."""
    ctx = SiteContext("office", site_seed(0, "office"), 1.7e9, 720.0, TINY)
    SITES["office"].build(ctx)
    slow = [f for f in ctx.trace.flows if f.label == "DoS slowloris"]
    assert slow
    for f in slow:
        data = [p for p in f.packets if p[1] == 0 and p[4] > 0]
        gaps = [b[0] - a[0] for a, b in itertools.pairwise(data[1:])]
        assert data[0][4] >= 180 and all(8 <= p[4] <= 20 for p in data[1:])
        assert all(13.0 < g < 17.0 for g in gaps)
    ctx = SiteContext("datacenter", site_seed(0, "datacenter"), 1.7e9, 720.0, TINY)
    SITES["datacenter"].build(ctx)
    for f in (f for f in ctx.trace.flows if f.variant.startswith("spoofed")):
        assert [p[2] for p in f.packets] == [0x02, 0x12, 0x12, 0x12]


@pytest.mark.slow
def test_full_scale_counts():
    """--scale 1.0: >= 5000 benign and >= 2000 attack flows per site (models only, no pcap)."""
    for name, spec in SITES.items():
        ctx = SiteContext(name, site_seed(0, name), 1.7e9, 7200.0, 1.0, mtu=spec.mtu)
        spec.build(ctx)
        labels = [f.label for f in ctx.trace.flows]
        assert labels.count("BENIGN") >= 5000 and len(labels) - labels.count("BENIGN") >= 2000, name


def test_cli(tmp_path, capsys):
    assert main(["--out", str(tmp_path), "--sites", "iot", "--scale", "0.02", "--seed", "1"]) == 0
    assert sorted(p.name for p in (tmp_path / "iot").iterdir()) == sorted([PCAP_NAME, CSV_NAME, META_NAME])
    assert main(["--out", str(tmp_path), "--sites", "office,moon"]) == 2
    assert "unknown site(s) ['moon']" in capsys.readouterr().err
    assert main(["--out", str(tmp_path), "--scale", "0"]) == 2
    assert main(["--out", str(tmp_path), "--start", "yesterday"]) == 2


def test_extract_and_label_join_match_every_row(tiny, tmp_path):
    """With the extractor and the CIC label join: every CSV row matches one flow, after the
    join's automatic time-offset detection finds the site's UTC offset."""
    extract = pytest.importorskip("janus.capture.extract").extract
    label_dataset = pytest.importorskip("janus.datasets.labels").label_dataset
    out, metas, _ = tiny
    for name in ("office", "datacenter"):
        extract([out / name / PCAP_NAME], tmp_path / name)
        report = label_dataset(tmp_path / name, csv=[out / name / CSV_NAME], time_offset="auto")
        assert report["csv"]["rows_matched"] == report["csv"]["rows"] == metas[name]["n_flows"]
        assert report["csv"]["time_offset"]["applied_hours"] == SITES[name].utc_offset_hours
        assert report["labels"]["attack"] == metas[name]["n_attack_flows"]
