"""janus.datasets.merge: per-file extraction + merge against one-stream extraction."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest
from capture_builders import (
    ACK,
    FIN,
    PROTO_UDP,
    PSH,
    RST,
    SYN,
    Record,
    ethernet,
    ipv4,
    pcap_bytes,
    tcp,
    udp,
)

from janus.capture.extract import extract
from janus.contract import FEATURES_FILE, FLOWS_FILE, PACKETS_FILE, PACKETS_STORE_DIR, STATS_FILE
from janus.datasets import merge as merge_mod
from janus.datasets.merge import merge
from janus.datasets.store import open_packets
from janus.errors import JanusError

#: Packets per flow: the conversations below have 6..10 packets, so lengths are 6..8.
T = 8


def _tcp_conversation(t0: float, client: str, server: str, cport: int, n_data: int,
                      close: int = FIN, gap: float = 0.01) -> list[Record]:
    """A whole TCP conversation: handshake, n_data segments of growing size (alternating
    sides), then FIN from each side and the last ACK, or an RST from the client."""
    def c2s(flags, size=0):
        return ethernet(ipv4(tcp(cport, 80, flags=flags, window=1000, payload=b"x" * size),
                             client, server))

    def s2c(flags, size=0):
        return ethernet(ipv4(tcp(80, cport, flags=flags, window=2000, payload=b"y" * size),
                             server, client))

    frames = [c2s(SYN), s2c(SYN | ACK), c2s(ACK)]
    for i in range(n_data):
        frames.append((c2s if i % 2 == 0 else s2c)(PSH | ACK, 10 * (i + 1) + cport % 7))
    frames += [c2s(FIN | ACK), s2c(FIN | ACK), c2s(ACK)] if close == FIN else [c2s(RST)]
    return [Record(t0 + gap * (k + 1) * (1 + 0.1 * (cport % 3)), f) for k, f in enumerate(frames)]


def _closed_file(t0: float, base_port: int, n: int) -> list[Record]:
    """n closed conversations of various lengths (some past T packets), interleaved in time."""
    recs = []
    for j in range(n):
        close = RST if j % 4 == 3 else FIN
        recs += _tcp_conversation(t0 + 0.37 * j, f"10.0.{j % 3}.{j + 1}", "192.168.1.10",
                                  base_port + j, n_data=j % 5, close=close)
    return sorted(recs, key=lambda r: r.ts)


@pytest.fixture
def three_files(tmp_path):
    """Three capture files in time order whose flows are all closed inside their own file."""
    paths = []
    for k, (t0, n) in enumerate([(100.0, 7), (400.0, 5), (402.0, 9)]):
        p = tmp_path / f"cap{k}.pcap"
        p.write_bytes(pcap_bytes(_closed_file(t0, 40000 + 100 * k, n)))
        paths.append(p)
    return paths


def _extract_parts(paths, root, store="npz", shard_rows=32768):
    parts = []
    for k, p in enumerate(paths):
        extract([p], root / f"part{k}", max_packets=T, store=store, shard_rows=shard_rows)
        parts.append(root / f"part{k}")
    return parts


def _triple(folder):
    store = open_packets(folder)
    return (pq.read_table(folder / FLOWS_FILE), pq.read_table(folder / FEATURES_FILE),
            store.packets(), store.lengths(), store.kind)


@pytest.mark.parametrize("part_store,out_store,shard_rows", [
    ("npz", "npz", 32768),
    ("sharded", "sharded", 3),   # linked shards: 3, 3, 1 | 3, 2 | 3, 3, 3 rows
    ("npz", "sharded", 4),       # re-encoded shard by shard
    ("sharded", "npz", 2),       # streamed out of the parts' shards
])
def test_merge_equals_one_stream_when_no_flow_spans_files(tmp_path, three_files, part_store,
                                                          out_store, shard_rows):
    one = tmp_path / "one"
    stream = extract(three_files, one, max_packets=T)
    parts = _extract_parts(three_files, tmp_path, part_store, shard_rows)
    summary = merge(parts, tmp_path / "merged", store=out_store, shard_rows=shard_rows)

    fa, xa, pa_, la, _ = _triple(one)
    fb, xb, pb, lb, kind = _triple(tmp_path / "merged")
    assert kind == out_store
    assert fa.num_rows == 21 and fb.num_rows == 21
    assert set(la.tolist()) == {6, 7, 8}  # flows of several lengths, some cut at T
    # Value-identical rows, ids renumbered across parts (part k's ids restart at 0).
    assert fb.column("flow_id").to_pylist() == list(range(21))
    assert fb.equals(fa) and xb.equals(xa)
    np.testing.assert_array_equal(pb, pa_)
    np.testing.assert_array_equal(lb, la)
    assert set(fb.column("source_file").to_pylist()) == {str(p) for p in three_files}
    # Stats: the counts of one stream, every part's own stats beside them.
    for key in ("totals", "end_reasons", "skipped"):
        assert summary[key] == stream[key], key
    assert [f["path"] for f in summary["files"]] == [str(p) for p in three_files]
    assert [p["path"] for p in summary["parts"]] == [str(p) for p in parts]
    assert [p["totals"]["flows"] for p in summary["parts"]] == [7, 5, 9]
    assert summary["parameters"]["store"] == out_store
    written = json.loads((tmp_path / "merged" / STATS_FILE).read_text())
    assert written["totals"] == stream["totals"]
    assert not [p.name for p in (tmp_path / "merged").iterdir() if p.name.startswith(".")]


def test_sharded_parts_are_linked_not_rewritten(tmp_path, three_files):
    parts = _extract_parts(three_files, tmp_path, "sharded", 3)
    merge(parts, tmp_path / "merged", store="sharded")
    manifest = json.loads((tmp_path / "merged" / PACKETS_STORE_DIR / "manifest.json").read_text())
    assert [s["rows"] for s in manifest["shards"]] == [3, 3, 1, 3, 2, 3, 3, 3]
    # Shard 3 of the merge is shard 0 of part 1: the same file (hard link), renumbered.
    a = os.stat(tmp_path / "merged" / PACKETS_STORE_DIR / "shard-00003.npy")
    b = os.stat(parts[1] / PACKETS_STORE_DIR / "shard-00000.npy")
    assert (a.st_ino, a.st_dev) == (b.st_ino, b.st_dev)


def _udp(t, a, b, sport, dport, size):
    return Record(t, ethernet(ipv4(udp(sport, dport, b"u" * size), a, b, PROTO_UDP)))


def test_flow_spanning_two_files_is_cut_in_two(tmp_path):
    """The documented boundary semantics: each file on its own, like CICFlowMeter."""
    c, s = "10.0.0.1", "10.0.0.2"
    # A UDP exchange 500.0..500.5 in file 0 and 500.6..501.1 in file 1 (gaps << idle timeout),
    # and a TCP conversation whose server answers first in file 1.
    first = [_udp(500.0 + 0.1 * i, c, s, 5000, 53, 10 + i) for i in range(3)]
    first += [_udp(500.3 + 0.1 * i, s, c, 53, 5000, 50 + i) for i in range(3)]
    conv = _tcp_conversation(500.25, c, s, 41001, n_data=4, gap=0.1)  # 10 packets, 0.1 s apart
    first += conv[:2]  # SYN from the client at 500.35, SYN-ACK at 500.45
    second = [_udp(500.6 + 0.1 * i, s, c, 53, 5000, 80 + i) for i in range(6)]
    second += conv[2:]
    paths = [tmp_path / "a.pcap", tmp_path / "b.pcap"]
    for p, recs in zip(paths, (first, second)):
        p.write_bytes(pcap_bytes(sorted(recs, key=lambda r: r.ts)))
    one = tmp_path / "one"
    extract(paths, one, max_packets=T)
    merge(_extract_parts(paths, tmp_path), tmp_path / "merged")

    a = pq.read_table(one / FLOWS_FILE).to_pylist()
    b = pq.read_table(tmp_path / "merged" / FLOWS_FILE).to_pylist()
    assert [(r["proto"], r["n_packets"], r["end_reason"]) for r in a] == [(17, 12, "eof"), (6, 10, "fin")]
    # Per file: four flows. The UDP flow's and the TCP flow's first parts end "eof" at the end
    # of file 0; their continuations are new flows of file 1.
    assert [(r["proto"], r["n_packets"], r["end_reason"], r["source_file"]) for r in b] == [
        (17, 6, "eof", str(paths[0])), (6, 2, "eof", str(paths[0])),
        (6, 8, "fin", str(paths[1])), (17, 6, "eof", str(paths[1]))]
    assert [r["flow_id"] for r in b] == [0, 1, 2, 3]
    # The UDP continuation's initiator is the sender of its first packet (the server); the
    # TCP continuation starts with the client's ACK, so it keeps the client.
    assert (b[3]["src_ip"], b[3]["src_port"]) == (s, 53)
    assert (b[2]["src_ip"], b[2]["src_port"]) == (c, 41001)
    assert b[3]["start_time"] == pytest.approx(500.6) and b[0]["end_time"] == pytest.approx(500.5)
    assert b[2]["start_time"] == pytest.approx(500.55) and b[1]["end_time"] == pytest.approx(500.45)
    assert sum(r["n_packets"] for r in b) == sum(r["n_packets"] for r in a)
    store = open_packets(tmp_path / "merged")
    # A cut flow's first packet in the next file has iat 0 (it starts a flow there), and the
    # UDP continuation's directions are against its own initiator (the server): 0, 0, ...
    cont = store.packets(np.array([3]))[0]
    np.testing.assert_allclose(cont[:6, 1], [0.0, 0.1, 0.1, 0.1, 0.1, 0.1], atol=1e-5)
    np.testing.assert_array_equal(cont[:6, 2], [0, 0, 0, 0, 0, 0])
    one_stream = open_packets(one).packets(np.array([0]))[0]
    np.testing.assert_array_equal(one_stream[:, 2], [0, 0, 0, 1, 1, 1, 1, 1])


def _make_parts(tmp_path, three_files, opts=None):
    """Parts extracted with T = 4, part k with ``opts[k]`` on top."""
    parts = []
    for k, p in enumerate(three_files):
        extract([p], tmp_path / f"part{k}", **({"max_packets": T} | (opts or {}).get(k, {})))
        parts.append(tmp_path / f"part{k}")
    return parts


@pytest.mark.parametrize("option,value,key", [
    ("max_packets", 16, "max_packets"),
    ("idle_timeout", 60.0, "idle_timeout_s"),
    ("active_timeout", 900.0, "active_timeout_s"),
])
def test_parts_with_other_options_are_refused(tmp_path, three_files, option, value, key):
    parts = _make_parts(tmp_path, three_files, {2: {option: value}})
    with pytest.raises(JanusError, match=rf"^{parts[2]}: extracted with {key} = "):
        merge(parts, tmp_path / "merged")
    assert not (tmp_path / "merged").exists()


def test_incomplete_and_broken_parts_are_refused(tmp_path, three_files):
    parts = _make_parts(tmp_path, three_files)
    (parts[1] / STATS_FILE).unlink()
    with pytest.raises(JanusError, match=rf"^{parts[1]}: no {STATS_FILE}"):
        merge(parts, tmp_path / "merged")
    parts = _make_parts(tmp_path, three_files)
    # A part whose flow ids are not arange(N) (rows taken from elsewhere).
    table = pq.read_table(parts[2] / FLOWS_FILE)
    ids = np.arange(table.num_rows)
    ids[4] = 7
    import pyarrow as pa

    pq.write_table(table.set_column(0, "flow_id", pa.array(ids)), parts[2] / FLOWS_FILE)
    with pytest.raises(JanusError, match=rf"^{parts[2] / FLOWS_FILE}: row 4 has flow_id 7"):
        merge(parts, tmp_path / "merged")
    # A part whose tables do not count the same flows as its stats.
    parts = _make_parts(tmp_path, three_files)
    pq.write_table(pq.read_table(parts[0] / FEATURES_FILE).slice(0, 3), parts[0] / FEATURES_FILE)
    with pytest.raises(JanusError, match=rf"^{parts[0] / FEATURES_FILE}: 3 rows"):
        merge(parts, tmp_path / "merged")


def test_cli_one_line_error_and_step_registered(tmp_path, three_files, capsys):
    from janus.cli import STEPS
    from janus.merge import main

    assert STEPS["merge"][0] == "janus.merge"
    parts = _make_parts(tmp_path, three_files, {1: {"max_packets": 6}})
    assert main([*map(str, parts), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"janus merge: error: {parts[1]}: extracted with")
    listing = tmp_path / "parts.txt"
    good = _make_parts(tmp_path, three_files)
    listing.write_text("# parts\n" + "\n".join(map(str, good[1:])) + "\n\n")
    assert main([str(good[0]), "--parts-from", str(listing), "--out", str(tmp_path / "m")]) == 0
    assert pq.read_table(tmp_path / "m" / FLOWS_FILE).num_rows == 21


@pytest.mark.parametrize("where", ["_write_sharded", "_write_npz", f"rename of {FLOWS_FILE}",
                                   f"rename of {STATS_FILE}"])
def test_interrupted_merge_leaves_nothing_readable(tmp_path, three_files, monkeypatch, where):
    parts = _extract_parts(three_files, tmp_path, "sharded", 3)
    out = tmp_path / "merged"
    merge(parts, out, store="npz")  # an earlier, complete merge
    assert (out / STATS_FILE).is_file()
    if where.startswith("rename of "):
        # Killed while the files are moved into place (the stats must come last).
        replace, name = os.replace, where.split()[-1]

        def killed(src, dst):
            if os.path.basename(dst) == name and os.path.dirname(dst) == str(out):
                raise KeyboardInterrupt
            replace(src, dst)

        monkeypatch.setattr(os, "replace", killed)
    else:
        real = getattr(merge_mod, where)

        def boom(*args, **kwargs):
            real(*args, **kwargs)  # the work is done (files in the temporary folder) ...
            raise KeyboardInterrupt  # ... and then the job is killed

        monkeypatch.setattr(merge_mod, where, boom)
    store = "sharded" if where == "_write_sharded" else "npz"
    with pytest.raises(KeyboardInterrupt):
        merge(parts, out, store=store)
    # The old triple no longer says it is whole, and no half-written new one is left.
    assert not (out / STATS_FILE).exists()
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]
    if store == "sharded":
        assert not (out / PACKETS_STORE_DIR).exists()


def test_merge_of_one_part_is_the_part(tmp_path, three_files):
    parts = _extract_parts(three_files[:1], tmp_path)
    merge(parts, tmp_path / "merged")
    a, b = _triple(parts[0]), _triple(tmp_path / "merged")
    assert a[0].equals(b[0]) and a[1].equals(b[1])
    np.testing.assert_array_equal(a[2], b[2])
    assert (tmp_path / "merged" / PACKETS_FILE).is_file()
