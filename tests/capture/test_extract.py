"""The extract step end to end (janus/capture/extract.py)."""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pyarrow.parquet as pq
import pytest

from janus.capture.extract import extract, main
from janus.capture.features import compute_flow_features
from janus.capture.pcapwrite import ACK, FIN, PSH, SYN, tcp_frame, udp_frame, write_pcap
from janus.contract import (
    FEATURES_FILE,
    FLOW_COLUMNS,
    FLOW_FEATURES,
    FLOWS_FILE,
    PACKETS_FILE,
    STATS_FILE,
)

C, S = "10.0.0.1", "10.0.0.2"


def _tcp_session(t0, cport):
    """A 10-packet TCP connection: handshake, one request/response, FIN teardown."""
    fr = [
        (0.00, tcp_frame(C, S, cport, 80, flags=SYN, win=64240)),
        (0.01, tcp_frame(S, C, 80, cport, flags=SYN | ACK, win=65160)),
        (0.02, tcp_frame(C, S, cport, 80, flags=ACK)),
        (0.03, tcp_frame(C, S, cport, 80, flags=PSH | ACK, payload=300)),
        (0.04, tcp_frame(S, C, 80, cport, flags=ACK, payload=1460)),
        (0.05, tcp_frame(S, C, 80, cport, flags=PSH | ACK, payload=500)),
        (0.06, tcp_frame(C, S, cport, 80, flags=ACK)),
        (0.07, tcp_frame(C, S, cport, 80, flags=FIN | ACK)),
        (0.08, tcp_frame(S, C, 80, cport, flags=FIN | ACK)),
        (0.09, tcp_frame(C, S, cport, 80, flags=ACK)),
    ]
    return [(t0 + dt, f) for dt, f in fr]


@pytest.fixture()
def split_capture(tmp_path):
    """Two pcap files; the second TCP connection starts in file 1 and ends in file 2."""
    pk = _tcp_session(1_600_000_000.0, 40001) + _tcp_session(1_600_000_001.0, 40002)
    pk += [(1_600_000_001.5, udp_frame(C, "10.0.0.53", 5353, 53, payload=40)),
           (1_600_000_001.6, udp_frame("10.0.0.53", C, 53, 5353, payload=120))]
    pk.sort(key=lambda x: x[0])
    a, b = pk[:14], pk[14:]
    paths = [tmp_path / "part1.pcap", tmp_path / "part2.pcap"]
    for path, part in zip(paths, (a, b)):
        write_pcap(path, [t for t, _ in part], [f for _, f in part])
    return paths


def test_end_to_end_row_aligned_triple(split_capture, tmp_path):
    out = tmp_path / "ds"
    summary = extract(split_capture, out, max_packets=8)
    assert sorted(p.name for p in out.iterdir()) == sorted([PACKETS_FILE, FLOWS_FILE, FEATURES_FILE, STATS_FILE])
    with np.load(out / PACKETS_FILE) as npz:
        packets, lengths = npz["packets"], npz["lengths"]
    flows = pq.read_table(out / FLOWS_FILE)
    feats = pq.read_table(out / FEATURES_FILE)
    assert packets.shape == (3, 8, 9) and packets.dtype == np.float32 and lengths.dtype == np.int32
    assert flows.column_names == list(FLOW_COLUMNS)
    assert [str(flows.schema.field(c).type) for c in FLOW_COLUMNS] == [
        {"string": "string", "float64": "double"}.get(t, t) for t in FLOW_COLUMNS.values()]
    assert flows.column("flow_id").to_pylist() == [0, 1, 2] == feats.column("flow_id").to_pylist()
    assert feats.column_names == ["flow_id", *FLOW_FEATURES]
    rows = flows.to_pylist()
    assert [r["src_ip"] for r in rows] == [C, C, C] and [r["dst_port"] for r in rows] == [80, 80, 53]
    assert [r["n_packets"] for r in rows] == [10, 10, 2] and lengths.tolist() == [8, 8, 2]
    assert [r["end_reason"] for r in rows] == ["fin", "fin", "eof"]
    # The spanning flow belongs to the file of its first packet; the UDP flow to part2.
    assert [r["source_file"] for r in rows] == [str(split_capture[0])] * 2 + [str(split_capture[1])]
    assert rows[0]["n_bytes"] == 10 * 54 + 300 + 1460 + 500
    assert rows[1]["start_time"] == pytest.approx(1_600_000_001.0)
    feat = np.stack([feats.column(c).to_numpy() for c in FLOW_FEATURES], axis=1)
    np.testing.assert_array_equal(feat, compute_flow_features(packets, lengths))
    stats = json.loads((out / STATS_FILE).read_text())
    assert stats == summary
    assert [f["packets_kept"] for f in stats["files"]] == [14, 8]
    assert stats["totals"]["flows"] == 3 and stats["totals"]["packets_kept"] == 22
    assert stats["end_reasons"]["fin"] == 2 and stats["parameters"]["max_packets"] == 8


def test_cli_writes_atomically_and_replaces(split_capture, tmp_path):
    out = tmp_path / "ds"
    assert main([*map(str, split_capture), "--out", str(out), "--max-packets", "4", "--chunk-mb", "1"]) == 0
    with np.load(out / PACKETS_FILE) as npz:
        assert npz["packets"].shape == (3, 4, 9)
    assert main([*map(str, split_capture), "--out", str(out), "--idle-timeout", "0.5"]) == 0
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left
    with np.load(out / PACKETS_FILE) as npz:
        assert npz["packets"].shape == (3, 64, 9)
    reasons = pq.read_table(out / FLOWS_FILE).column("end_reason").to_pylist()
    assert reasons == ["fin", "fin", "eof"]  # 0.5 s idle never reached inside a session


def test_captures_from_a_list_file_equals_arguments(split_capture, tmp_path, capsys):
    listing = tmp_path / "captures.txt"
    listing.write_text("# written by janus download\n" + "\n".join(map(str, split_capture)) + "\n\n")
    assert main(["--captures-from", str(listing), "--out", str(tmp_path / "a")]) == 0
    assert main([*map(str, split_capture), "--out", str(tmp_path / "b")]) == 0
    for name in ("flows.parquet", "flow_features.parquet", "packets.npz"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    listing.write_text("\n")
    assert main(["--captures-from", str(listing), "--out", str(tmp_path / "c")]) == 2
    assert "names no file" in capsys.readouterr().err
    assert main(["--out", str(tmp_path / "d")]) == 2


def test_capture_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "notes.pcap"
    bad.write_bytes(b"this is not a capture file at all" * 4)
    assert main([str(bad), "--out", str(tmp_path / "ds")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err and "Traceback" not in err
    assert main([str(tmp_path / "missing.pcap"), "--out", str(tmp_path / "ds")]) == 2
    assert "missing.pcap: capture file not found" in capsys.readouterr().err
    assert main([str(bad), "--out", str(tmp_path / "ds"), "--max-packets", "0"]) == 2
    assert not (tmp_path / "ds").exists()


def test_labels_step_is_called_lazily(split_capture, tmp_path, monkeypatch):
    calls = []
    fake = types.ModuleType("janus.datasets.labels")
    fake.label_dataset = lambda out_dir, csv: calls.append((out_dir, csv))
    monkeypatch.setitem(sys.modules, "janus.datasets.labels", fake)
    extract(split_capture, tmp_path / "ds", labels=[tmp_path / "a.csv", tmp_path / "b.csv"])
    assert calls == [(tmp_path / "ds", [str(tmp_path / "a.csv"), str(tmp_path / "b.csv")])]


@pytest.mark.real
def test_real_synflood_initiator_is_the_attacker(real_data_dir, tmp_path):
    summary = extract([real_data_dir / "cicddos2019-synflood.pcap"], tmp_path / "ds")
    flows = pq.read_table(tmp_path / "ds" / FLOWS_FILE)
    assert summary["totals"]["packets_kept"] == 26_316 and summary["totals"]["packets_skipped"] == 0
    ts = summary["timestamps"]
    assert ts["clamped_ahead"] == ts["clamped_behind"] == ts["steps_back"] == 0 and not ts["first"]
    assert flows.num_rows == 9_381
    assert set(flows.column("src_ip").to_pylist()) == {"172.16.0.5"}
    assert set(flows.column("dst_ip").to_pylist()) == {"192.168.50.4"}
    with np.load(tmp_path / "ds" / PACKETS_FILE) as npz:
        first = npz["packets"][:, 0]
    assert (first[:, 3] == 1).all() and (first[:, 2] == 0).all()  # every flow opens with its SYN


@pytest.mark.real
def test_real_pcapng_read_whole(real_data_dir, tmp_path):
    summary = extract([real_data_dir / "cicids2017-monday-benign.pcapng"], tmp_path / "ds")
    assert summary["totals"]["packets_kept"] + summary["totals"]["packets_skipped"] == 6_000
    assert not summary["timestamps"]["first"] and not summary["skipped"].get("damaged_regions")
    flows = pq.read_table(tmp_path / "ds" / FLOWS_FILE)
    assert flows.num_rows == summary["totals"]["flows"] > 150
    assert sum(flows.column("n_packets").to_pylist()) == summary["totals"]["packets_kept"]
    assert "192.168.10.5" in set(flows.column("src_ip").to_pylist())


def test_pcap_then_pcapng_stream_with_skips(tmp_path):
    from capture_builders import (
        ETH_ARP,
        PROTO_UDP,
        Record,
        epb,
        ethernet,
        idb,
        ipv4,
        pcap_bytes,
        pcapng_bytes,
        raw_block,
        shb,
        udp,
    )

    arp = ethernet(b"\x00" * 28, ETH_ARP)
    req = ethernet(ipv4(udp(5353, 53, b"q" * 30), "10.0.0.1", "10.0.0.53", PROTO_UDP))
    resp = ethernet(ipv4(udp(53, 5353, b"r" * 90), "10.0.0.53", "10.0.0.1", PROTO_UDP))
    first, second = tmp_path / "a.pcap", tmp_path / "b.pcapng"
    first.write_bytes(pcap_bytes([Record(100.0, arp), Record(100.5, req), Record(100.6, arp)]))
    # An unknown block and a cut final record: counted, but as a block and as bytes, not packets.
    cut = epb(resp, 100.9)
    second.write_bytes(pcapng_bytes([shb(), idb(), raw_block(0x12345, b"\0" * 8), epb(resp, 100.75),
                                     cut[:-10]]))
    summary = extract([first, second], tmp_path / "ds")
    assert summary["skipped"] == {"non_ip": 2, "pcapng_unknown_block": 1,
                                  "truncated_tail_bytes": len(cut) - 10}
    assert summary["totals"]["packets_skipped"] == 2 and summary["totals"]["packets_kept"] == 2
    rows = pq.read_table(tmp_path / "ds" / FLOWS_FILE).to_pylist()
    assert len(rows) == 1 and rows[0]["n_packets"] == 2 and rows[0]["source_file"] == str(first)
    assert rows[0]["n_bytes"] == len(req) + len(resp)
    with np.load(tmp_path / "ds" / PACKETS_FILE) as npz:
        np.testing.assert_allclose(npz["packets"][0, :2, 1], [0.0, 0.25], atol=1e-6)


def test_only_skipped_packets_gives_empty_triple(tmp_path):
    from capture_builders import ETH_ARP, Record, ethernet, pcap_bytes

    cap = tmp_path / "arp.pcap"
    cap.write_bytes(pcap_bytes([Record(1.0, ethernet(b"\x00" * 28, ETH_ARP))]))
    summary = extract([cap], tmp_path / "ds", max_packets=5)
    assert summary["totals"]["flows"] == 0 and summary["skipped"] == {"non_ip": 1}
    with np.load(tmp_path / "ds" / PACKETS_FILE) as npz:
        assert npz["packets"].shape == (0, 5, 9)
    assert pq.read_table(tmp_path / "ds" / FLOWS_FILE).num_rows == 0
    assert pq.read_table(tmp_path / "ds" / FEATURES_FILE).num_rows == 0


@pytest.mark.parametrize("n_v6", [0, 2])
def test_ip_strings_match_the_reference_formatter(n_v6):
    from janus.capture.batch import ip_text_from_words, ip_words_from_text
    from janus.capture.extract import _ip_strings

    rng = np.random.default_rng(5)
    edges = [0, 1, 9, 10, 11, 99, 100, 101, 199, 200, 255]  # 1-, 2- and 3-digit octets
    v4 = [".".join(map(str, q)) for q in rng.choice(edges, (300, 4))]
    text = v4[:150] + ["2001:db8::1", "::1"][:n_v6] + v4[150:]
    words = ip_words_from_text(text)
    assert _ip_strings(words).to_pylist() == ip_text_from_words(words) == text
    assert _ip_strings(words[:0]).to_pylist() == []


def test_choice_strings_gather_utf8():
    from janus.capture.extract import _choice_strings

    choices = ["fin", "", "caf\u00e9/x.pcap"]
    index = np.array([2, 0, 1, 2, 2, 0])
    assert _choice_strings(choices, index).to_pylist() == [choices[i] for i in index]
    assert _choice_strings(choices, index[:0]).to_pylist() == []


_KERNEL_SIGNATURES = r"""
import json, sys
import numba
from janus.capture import features
from janus.capture import flows
from janus.capture import pcap
from janus.capture.extract import extract, load_runtime

def signatures():
    return {f"{m.__name__}.{name}": [str(s) for s in obj.signatures]
            for m in (pcap, flows, features) for name, obj in vars(m).items()
            if isinstance(obj, numba.core.registry.CPUDispatcher)}

load_runtime()
loaded = signatures()
summary = extract(sys.argv[1:-1], sys.argv[-1])
print(json.dumps({"loaded": loaded, "after": signatures(), "phases": summary["phase_time_s"]}))
"""


def test_load_runtime_loads_what_extraction_calls(split_capture, tmp_path):
    """load_runtime() loads each kernel with the argument types extraction passes: a kernel
    that extraction calls with other types would compile or load again inside the timed
    phases (and the startup phase would no longer hold the one-time cost)."""
    import subprocess

    from capture_builders import PROTO_UDP, epb, ethernet, idb, ipv4, pcapng_bytes, shb, udp

    ng = tmp_path / "c.pcapng"
    frame = ethernet(ipv4(udp(5353, 53, b"q" * 30), "10.0.0.1", "10.0.0.53", PROTO_UDP))
    ng.write_bytes(pcapng_bytes([shb(), idb(), epb(frame, 1_600_000_002.0)]))
    out = subprocess.run([sys.executable, "-c", _KERNEL_SIGNATURES, *map(str, split_capture), str(ng),
                          str(tmp_path / "ds")], capture_output=True, text=True, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["after"] == got["loaded"]
    # The two walkers, the four assembler kernels, padding, features.
    assert sum(len(s) for s in got["loaded"].values()) >= 8
    assert list(got["phases"]) == ["startup", "read", "flows", "features", "write"]


def test_out_naming_an_existing_file_is_one_line(split_capture, tmp_path, capsys):
    taken = tmp_path / "taken.txt"
    taken.write_text("keep me\n")
    for out in (taken, taken / "ds"):
        assert main([*map(str, split_capture), "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err
        assert f"{taken} is an existing file" in err
    assert taken.read_text() == "keep me\n"


def _damaged_capture(tmp_path):
    """Two 10-packet TCP sessions; one record dated 2096 inside the first, a corrupt record
    length (and its record lost) inside the second."""
    import struct

    pk = _tcp_session(1_600_000_000.0, 40001) + _tcp_session(1_600_000_000.5, 40002)
    pk.sort(key=lambda x: x[0])
    ts = [t for t, _ in pk]
    ts[3] = 3_978_000_000.0  # 2096
    path = tmp_path / "damaged.pcap"
    write_pcap(path, ts, [f for _, f in pk])
    data = bytearray(path.read_bytes())
    # The 16th record is the second session's 6th packet (PSH/ACK from the server).
    off = 24 + sum(16 + len(f) for _, f in pk[:15])
    data[off + 8: off + 12] = struct.pack("<I", 0xFFFFFF)
    path.write_bytes(bytes(data))
    return path, off, 16 + len(pk[15][1])


def test_damaged_capture_keeps_flows_and_counts(tmp_path, caplog):
    path, off, lost = _damaged_capture(tmp_path)
    with caplog.at_level("WARNING"):
        summary = extract([path], tmp_path / "ds")
    assert summary["skipped"] == {"damaged_bytes_skipped": lost, "damaged_regions": 1}
    assert summary["totals"]["packets_skipped"] == 0 and summary["totals"]["packets_kept"] == 19
    ts = summary["timestamps"]
    assert ts["clamped_ahead"] == 1 and ts["clamped_behind"] == ts["steps_back"] == 0
    assert ts["first"]["clamped_ahead"]["file"] == str(path)
    assert summary["parameters"]["strict"] is False
    flows = pq.read_table(tmp_path / "ds" / FLOWS_FILE).to_pylist()
    assert [f["n_packets"] for f in flows] == [10, 9] and [f["end_reason"] for f in flows] == ["fin", "fin"]
    assert max(f["end_time"] for f in flows) < 1_600_000_002
    assert f"record at byte {off} claims 16777215" in caplog.text and f"skipped {lost} bytes" in caplog.text


def test_strict_stops_at_the_damage_in_one_line(tmp_path, capsys):
    path, off, _ = _damaged_capture(tmp_path)
    assert main([str(path), "--out", str(tmp_path / "ds"), "--strict"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"record at byte {off} claims 16777215" in err
    assert not (tmp_path / "ds" / STATS_FILE).exists()


def test_slow_kernel_load_says_numba_is_compiling(monkeypatch, capsys):
    """A cold numba cache makes the first extraction compile for ~20 s: load_runtime says so
    on stderr once loading has used COMPILE_NOTICE_AFTER_S of CPU; a warm load prints nothing,
    and neither does a slow load that waits without computing (a busy machine)."""
    import time

    from janus.capture import extract as extract_mod
    from janus.capture import pcap
    from janus.capture.extract import load_runtime

    load_runtime()  # warm: the kernels of this process are loaded
    monkeypatch.setattr(extract_mod, "COMPILE_NOTICE_AFTER_S", 30.0)
    load_runtime()
    assert "compiling" not in capsys.readouterr().err
    real = pcap.load_kernels
    monkeypatch.setattr(extract_mod, "COMPILE_NOTICE_AFTER_S", 0.2)
    monkeypatch.setattr(pcap, "load_kernels", lambda: (time.sleep(0.6), real())[1])
    load_runtime()  # slow, but idle: no CPU spent
    assert "compiling" not in capsys.readouterr().err

    def compiling() -> None:  # burns CPU as numba's compiler does
        t0 = time.process_time()
        while time.process_time() - t0 < 0.6:
            pass
        real()

    monkeypatch.setattr(pcap, "load_kernels", compiling)
    load_runtime()
    err = capsys.readouterr().err
    assert err.count("janus extract: compiling the capture kernels with numba") == 1
    time.sleep(0.3)  # the watcher ended with the loading: nothing more comes
    assert capsys.readouterr().err == ""
