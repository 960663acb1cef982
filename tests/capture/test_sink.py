"""The extract step's streaming writer (janus/capture/sink.py): the same dataset triple as
writing every flow at the end, byte for byte, whatever the buffer (so however many sorted runs
spill), the store, the timeouts; spill and temporary files never left behind."""

from __future__ import annotations

import io
import os
import signal
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from janus.capture import sink
from janus.capture.extract import _terminate_as_interrupt, extract, flows_table
from janus.capture.features import compact_flow_features, features_table
from janus.capture.flows import FlowAssembler
from janus.capture.pcap import iter_capture
from janus.capture.pcapwrite import ACK, FIN, PSH, RST, SYN, tcp_frame, udp_frame, write_pcap
from janus.contract import (
    END_REASONS,
    FEATURES_FILE,
    FLOWS_FILE,
    PACKETS_FILE,
    PACKETS_STORE_DIR,
    STATS_FILE,
)
from janus.datasets.store import open_packets, write_store
from janus.errors import JanusError
from janus.io import write_npz

IDLE = 10.0
CHUNK = 1 << 16  # the smallest chunk: many batches, so many drains and bounds


def _flows(rng: np.random.Generator, n: int, t_end: float) -> list[tuple[float, bytes]]:
    """``n`` random flows over ``0..t_end`` s on few hosts (keys repeat: a key's flows end by
    idle timeout, FIN or RST and start again), plus the awkward cases: a flow that lives the
    whole capture (it holds the watermark down, so everything waits and spills), flows
    starting at the very same microsecond, and flows still open at the end."""
    pk: list[tuple[float, bytes]] = []
    base = 1_600_000_000.0
    for f in range(n):
        c, s = f"10.0.{rng.integers(0, 3)}.{rng.integers(1, 6)}", f"192.168.0.{rng.integers(1, 4)}"
        cp, sp = int(rng.integers(1024, 1040)), int(rng.choice([80, 443, 53]))
        t = round(float(rng.uniform(0, t_end)), 6)
        kind = rng.integers(0, 5)
        k = int(rng.integers(1, 14))
        gaps = rng.exponential(0.3, k)
        gaps[rng.random(k) < 0.05] += 1.5 * IDLE  # some flows end by idle timeout and restart
        times = t + np.concatenate([[0.0], np.cumsum(gaps[:-1])])
        for j, ts in enumerate(times):
            fwd = j % 2 == 0
            a, b, pa_, pb = (c, s, cp, sp) if fwd else (s, c, sp, cp)
            if kind == 4:
                frame = udp_frame(a, b, pa_, pb, payload=int(rng.integers(0, 200)))
            else:
                flags = SYN if j == 0 else (SYN | ACK if j == 1 else ACK | PSH)
                if kind == 1 and j >= k - 2:
                    flags = FIN | ACK
                elif kind == 2 and j == k - 1:
                    flags = RST
                frame = tcp_frame(a, b, pa_, pb, flags=flags, win=int(rng.integers(0, 65536)),
                                  payload=int(rng.integers(0, 300)))
            pk.append((round(base + float(ts), 6), frame))
    # A keep-alive flow from 0 to the end, one packet every IDLE / 2.
    for j, ts in enumerate(np.arange(0.0, t_end + 2 * IDLE, IDLE / 2)):
        pk.append((base + float(ts), udp_frame("10.9.9.9", "10.9.9.10", 7000, 7001, payload=j % 50)))
    # Five flows starting at the same microsecond (the tie goes by first-packet order); the
    # first-born lives longest, so the five finish in reverse order, in different chunks.
    for j in range(5):
        for k in range(2 * (5 - j)):
            pk.append((base + 3.0 + 0.8 * IDLE * k, udp_frame("10.7.7.7", "10.7.7.8", 5000 + j, 53, payload=j)))
    pk.sort(key=lambda x: x[0])  # stable: equal times keep their order
    return pk


def _write(path: Path, packets: list[tuple[float, bytes]]) -> Path:
    write_pcap(path, [t for t, _ in packets], [f for _, f in packets])
    return path


@pytest.fixture(scope="module")
def capture(tmp_path_factory) -> Path:
    rng = np.random.default_rng(7)
    return _write(tmp_path_factory.mktemp("cap") / "mixed.pcap", _flows(rng, 1500, 120.0))


def _reference(paths, out: Path, T: int = 8, active_timeout=None, store="npz", shard_rows=64):
    """The triple as the extract step wrote it before it streamed: every flow assembled
    first (``finish``), then each file from the whole result."""
    asm = FlowAssembler(T, IDLE, active_timeout)
    for index, p in enumerate(paths):
        for batch in iter_capture(str(p), file_index=index, chunk_bytes=CHUNK):
            asm.add(batch)
    res = asm.finish()
    out.mkdir(parents=True)
    flows = flows_table(res, [str(p) for p in paths])
    text = [f.name for f in flows.schema if str(f.type) == "string"]
    pq.write_table(flows, out / FLOWS_FILE, use_dictionary=text)
    feats = compact_flow_features(res.rows, res.row_start, res.lengths)
    pq.write_table(features_table(feats), out / FEATURES_FILE, use_dictionary=False)
    if store == "npz":
        write_npz(out / PACKETS_FILE, packets=res.packets, lengths=res.lengths)
    else:
        write_store(out / PACKETS_STORE_DIR, res.packets, res.lengths, shard_rows=shard_rows)
    return res


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != STATS_FILE}


def _assert_same(out: Path, ref: Path) -> None:
    got, want = _files(out), _files(ref)
    assert sorted(got) == sorted(want)
    for name in want:
        assert got[name] == want[name], f"{name} differs"


@pytest.mark.parametrize("buffer_flows", [1, 37, 10**6])
@pytest.mark.parametrize(("store", "active"), [("npz", None), ("sharded", None), ("npz", 4.0)])
def test_same_triple_as_writing_at_the_end(capture, tmp_path, monkeypatch, buffer_flows, store, active):
    # Runs read back in blocks of buffer_flows / runs flows (down to one): the merge's caps.
    monkeypatch.setattr(sink, "_MIN_BLOCK_FLOWS", 1)
    res = _reference([capture], tmp_path / "ref", active_timeout=active, store=store)
    summary = extract([capture], tmp_path / "out", max_packets=8, idle_timeout=IDLE,
                      active_timeout=active, chunk_bytes=CHUNK, store=store, shard_rows=64,
                      buffer_flows=buffer_flows)
    _assert_same(tmp_path / "out", tmp_path / "ref")
    reasons = summary["end_reasons"]
    # The fixture reaches every way a flow ends, and ties in start time.
    assert all(reasons[r] > 0 for r in ("fin", "rst", "idle", "eof")) and (reasons["active"] > 0) == bool(active)
    assert len(np.unique(res.start_time)) < len(res)
    assert summary["totals"]["flows"] == len(res)
    assert summary["spill"]["early_writes"] is True
    if buffer_flows < 100:
        # The keep-alive flow holds every later flow back (an active timeout cuts it every
        # 4 s instead): many runs spill and merge.
        assert summary["spill"]["runs"] > 3
        assert summary["spill"]["flows"] > (len(res) // 2 if active is None else len(res) // 10)
    else:
        assert summary["spill"] == {"flows": 0, "runs": 0, "bytes": 0, "early_writes": True}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        [FLOWS_FILE, FEATURES_FILE, STATS_FILE, PACKETS_FILE if store == "npz" else PACKETS_STORE_DIR])


@pytest.mark.parametrize("buffer_flows", [37, 10**6])
@pytest.mark.parametrize("active", [None, 1.0])
def test_timestamps_out_of_order(tmp_path, buffer_flows, active):
    """Packets dated up to 3 s before the clock (within max_clock_jump, so taken as they are):
    a flow may start before flows that already finished (with an active timeout shorter than
    that, a flow finishes while it is still young); the bound leaves room for it."""
    rng = np.random.default_rng(11)
    pk = [p for p in _flows(rng, 1200, 150.0) if b"\x0a\x09\x09\x09" not in p[1][26:30]]
    late = rng.random(len(pk)) < 0.1
    pk = [(round(t - 3.0 * rng.random(), 6) if lt else t, f) for (t, f), lt in zip(pk, late)]
    cap = _write(tmp_path / "late.pcap", pk)
    res = _reference([cap], tmp_path / "ref", active_timeout=active)
    assert (np.diff(res.seq) < 0).sum() > 20  # the output order is not the first-packet order
    summary = extract([cap], tmp_path / "out", max_packets=8, idle_timeout=IDLE, chunk_bytes=CHUNK,
                      active_timeout=active, buffer_flows=buffer_flows)
    assert summary["spill"]["early_writes"] is True
    _assert_same(tmp_path / "out", tmp_path / "ref")


def test_bound_leaves_room_for_a_backdated_flow(tmp_path):
    """Flow D (20.0 s) ends by the active timeout at 21.5 s while its key goes on; then, in a
    later batch, a packet dated 19.5 s (2.9 s before the clock: within max_clock_jump, so
    taken as it is) starts flow C, which sorts first. D may not be written before C is seen:
    the assembler's bound stays max_clock_jump behind the clock."""
    base = 1_600_000_000.0
    key = ("10.3.3.3", "10.3.3.4", 4000, 4001)
    pk = [(base + 20.0, udp_frame(*key)), (base + 21.5, udp_frame(*key))]
    # ~3 batches of D's successor on the same key: D is drained and the bound taken between.
    pk += [(base + 21.5 + 0.8 * j / 3000, udp_frame(*key, payload=j % 7)) for j in range(3000)]
    pk += [(base + 19.5, udp_frame("10.5.5.5", "10.5.5.6", 6000, 53)),
           (base + 22.4, udp_frame(*key))]
    cap = _write(tmp_path / "backdated.pcap", pk)
    res = _reference([cap], tmp_path / "ref", active_timeout=1.0)
    assert res.start_time[0] == base + 19.5 and res.end_reason[1] == END_REASONS.index("active")
    summary = extract([cap], tmp_path / "out", max_packets=8, idle_timeout=IDLE, active_timeout=1.0,
                      chunk_bytes=CHUNK, buffer_flows=10)
    assert summary["spill"]["early_writes"] is True  # no second pass was needed
    _assert_same(tmp_path / "out", tmp_path / "ref")


def test_flows_are_written_before_the_end(capture, tmp_path, monkeypatch):
    """Without a flow that lives the whole capture the watermark rises and flows go out as
    they become final: with a buffer of 50 flows nothing spills."""
    rng = np.random.default_rng(3)
    pk = [p for p in _flows(rng, 800, 200.0) if p[1][26:30] not in (b"\x0a\x09\x09\x09", b"\x0a\x07\x07\x07")]
    cap = _write(tmp_path / "short.pcap", pk)
    calls = []
    real = sink.DatasetWriter.write
    monkeypatch.setattr(sink.DatasetWriter, "write", lambda self, res: (calls.append(len(res)), real(self, res)))
    summary = extract([cap], tmp_path / "out", max_packets=8, idle_timeout=IDLE, chunk_bytes=CHUNK,
                      buffer_flows=50)
    _reference([cap], tmp_path / "ref")
    _assert_same(tmp_path / "out", tmp_path / "ref")
    assert summary["spill"]["runs"] == 0 and len(calls) > 5 and sum(calls) == summary["totals"]["flows"]


def test_many_row_groups_byte_identical(capture, tmp_path, monkeypatch):
    """Row groups of ROW_GROUP_ROWS rows, as pq.write_table cuts them."""
    monkeypatch.setattr(sink, "ROW_GROUP_ROWS", 100)
    res = _reference([capture], tmp_path / "ref")
    flows = flows_table(res, [str(capture)])
    text = [f.name for f in flows.schema if str(f.type) == "string"]
    buf = io.BytesIO()
    pq.write_table(flows, buf, use_dictionary=text, row_group_size=100)
    extract([capture], tmp_path / "out", max_packets=8, idle_timeout=IDLE, chunk_bytes=CHUNK,
            buffer_flows=20)
    assert pq.ParquetFile(tmp_path / "out" / FLOWS_FILE).metadata.num_row_groups == -(-len(res) // 100)
    assert (tmp_path / "out" / FLOWS_FILE).read_bytes() == buf.getvalue()


def test_clock_step_back_redoes_without_early_writes(tmp_path):
    """A confirmed backward clock step after flows were written: later flows start before
    them, so the extraction runs again, holding every flow to the end; same triple."""
    base = 1_600_000_000.0
    pk = []
    for f in range(40):  # short flows at base + 100 .. 140, each closed by FIN
        t = base + 100 + f
        c = f"10.0.0.{f + 1}"
        pk += [(t, tcp_frame(c, "192.168.0.1", 2000, 80, flags=SYN)),
               (t + 0.1, tcp_frame("192.168.0.1", c, 80, 2000, flags=SYN | ACK)),
               (t + 0.2, tcp_frame(c, "192.168.0.1", 2000, 80, flags=FIN | ACK)),
               (t + 0.3, tcp_frame("192.168.0.1", c, 80, 2000, flags=FIN | ACK))]
    pk += [(base + 400 + 0.01 * j, udp_frame("10.1.1.1", "10.1.1.2", 9, 9)) for j in range(3000)]
    # The clock steps back 350 s (> IDLE): the packets after it confirm the step.
    pk += [(base + 50 + 0.01 * j, udp_frame("10.2.2.2", "10.2.2.3", 8, 8 + j % 30)) for j in range(3000)]
    cap = _write(tmp_path / "stepback.pcap", pk)
    summary = extract([cap], tmp_path / "out", max_packets=8, idle_timeout=IDLE, chunk_bytes=CHUNK,
                      buffer_flows=10)
    assert summary["timestamps"]["steps_back"] == 1
    assert summary["spill"]["early_writes"] is False
    res = _reference([cap], tmp_path / "ref")
    assert res.start_time[0] < base + 100  # a flow after the step sorts first
    _assert_same(tmp_path / "out", tmp_path / "ref")
    assert not list((tmp_path / "out").glob(".*"))


@pytest.mark.parametrize("delta", [-1, 0, 1])
def test_store_auto_switches_at_the_threshold(capture, tmp_path, delta):
    """auto: packets held in memory until the threshold-th flow, then a sharded store; so
    sharded exactly when N >= store_min_flows, as when N was known in advance."""
    n = len(_reference([capture], tmp_path / "npz"))
    _reference([capture], tmp_path / "sharded", store="sharded")
    summary = extract([capture], tmp_path / "out", max_packets=8, idle_timeout=IDLE, chunk_bytes=CHUNK,
                      store="auto", store_min_flows=n + delta, shard_rows=64, buffer_flows=100)
    kind = "sharded" if delta <= 0 else "npz"
    assert summary["parameters"]["store"] == kind
    _assert_same(tmp_path / "out", tmp_path / kind)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


class Boom(Exception):
    pass


@pytest.mark.parametrize("exc", [Boom, KeyboardInterrupt])
@pytest.mark.parametrize("store", ["npz", "sharded"])
def test_failure_keeps_the_old_triple_and_leaves_nothing(capture, tmp_path, monkeypatch, exc, store):
    out = tmp_path / "out"
    extract([capture], out, max_packets=8, idle_timeout=IDLE, chunk_bytes=CHUNK, store=store, buffer_flows=37)
    before = {**_files(out), STATS_FILE: (out / STATS_FILE).read_bytes()}
    loads = []

    def load(self, flows):  # fails in the final merge, with runs and temporary files on disk
        loads.append(1)
        if len(loads) > 2:
            assert list(out.glob(sink.SPILL_PREFIX + "*")) and _leftovers(out)
            raise exc("stop")
        return real(self, flows)

    real = sink._Run.load
    monkeypatch.setattr(sink._Run, "load", load)
    with pytest.raises(exc):
        extract([capture], out, max_packets=8, idle_timeout=IDLE, chunk_bytes=CHUNK, store="npz"
                if store == "sharded" else "sharded", buffer_flows=37)
    assert _leftovers(out) == []
    assert {**_files(out), STATS_FILE: (out / STATS_FILE).read_bytes()} == before


def test_failure_in_a_new_folder_leaves_no_store(capture, tmp_path, monkeypatch):
    def fail(self, res):
        raise Boom("disk full")

    monkeypatch.setattr(sink.DatasetWriter, "write", fail)
    with pytest.raises(Boom):
        extract([capture], tmp_path / "new", max_packets=8, idle_timeout=IDLE, chunk_bytes=CHUNK,
                buffer_flows=37)
    assert not (tmp_path / "new").exists()
    (tmp_path / "kept").mkdir()
    with pytest.raises(Boom):
        extract([capture], tmp_path / "kept", max_packets=8, idle_timeout=IDLE, chunk_bytes=CHUNK,
                buffer_flows=37, store="sharded")
    assert list((tmp_path / "kept").iterdir()) == []
    with pytest.raises(JanusError, match="not found"):
        open_packets(tmp_path / "kept")


@pytest.mark.parametrize("store", ["npz", "sharded"])
def test_no_flows_same_empty_triple(tmp_path, store):
    from janus.capture.pcapwrite import ethernet_frame

    arp = ethernet_frame(b"\xff" * 6, b"\x02" * 6, 0x0806, b"\x00" * 28)
    cap = _write(tmp_path / "arp.pcap", [(1_600_000_000.0 + j, arp) for j in range(5)])
    _reference([cap], tmp_path / "ref", store=store)
    summary = extract([cap], tmp_path / "out", max_packets=8, idle_timeout=IDLE, store=store, shard_rows=64)
    assert summary["totals"]["flows"] == 0
    _assert_same(tmp_path / "out", tmp_path / "ref")


def test_stale_spill_of_a_killed_run_is_removed(capture, tmp_path):
    out = tmp_path / "out"
    (out / f"{sink.SPILL_PREFIX}abc" / "run-00000").mkdir(parents=True)
    (out / f"{sink.SPILL_PREFIX}abc" / "run-00000" / "rows.bin").write_bytes(b"x" * 100)
    extract([capture], out, max_packets=8, idle_timeout=IDLE, chunk_bytes=CHUNK)
    assert _leftovers(out) == []


def test_sigterm_raises_keyboard_interrupt_inside():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), _terminate_as_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(10**6):  # the handler runs between bytecodes
            pass
    assert signal.getsignal(signal.SIGTERM) is before


def test_buffer_flows_must_be_positive(capture, tmp_path):
    from janus.errors import ConfigError

    with pytest.raises(ConfigError, match="--buffer-flows"):
        extract([capture], tmp_path / "out", buffer_flows=0)


def _hold_everything(monkeypatch) -> None:
    """No flow may go out before the end: every flow passes through the buffer, and with a
    small buffer through spilled runs and the final merge."""
    monkeypatch.setattr(FlowAssembler, "emit_bound", lambda self: (-np.inf, 0))


def test_held_to_the_end_through_runs(capture, tmp_path, monkeypatch):
    _hold_everything(monkeypatch)
    monkeypatch.setattr(sink, "_MIN_BLOCK_FLOWS", 1)
    res = _reference([capture], tmp_path / "ref", store="sharded")
    summary = extract([capture], tmp_path / "out", max_packets=8, idle_timeout=IDLE, chunk_bytes=CHUNK,
                      store="sharded", shard_rows=64, buffer_flows=5)
    assert summary["spill"]["runs"] > 10 and summary["spill"]["flows"] > len(res) - 5
    _assert_same(tmp_path / "out", tmp_path / "ref")


@pytest.mark.real
@pytest.mark.parametrize("name", ["cicddos2019-synflood.pcap", "cicddos2019-webddos.pcap",
                                  "cicids2017-monday-benign.pcapng", "cicids2017-thursday-sqli.pcap",
                                  "nmap-synscan.pcap", "ssh-bruteforce.pcap"])
def test_real_slices_same_with_and_without_spilling(real_data_dir, tmp_path, monkeypatch, name):
    cap = real_data_dir / name
    T = 64
    for store in ("npz", "sharded"):
        res = _reference([cap], tmp_path / f"ref-{store}", T=T, store=store, shard_rows=500)
    # idle timeout IDLE as in _reference; T = 64
    kw = {"max_packets": T, "idle_timeout": IDLE, "chunk_bytes": CHUNK, "shard_rows": 500}
    streamed = extract([cap], tmp_path / "streamed", store="npz", buffer_flows=max(1, len(res) // 40), **kw)
    _hold_everything(monkeypatch)
    monkeypatch.setattr(sink, "_MIN_BLOCK_FLOWS", 1)  # each run read back in ~40 blocks
    spilled = extract([cap], tmp_path / "spilled", store="sharded", buffer_flows=max(1, len(res) // 40), **kw)
    assert spilled["spill"]["runs"] >= 1 and spilled["spill"]["flows"] > len(res) // 2
    assert streamed["totals"] == spilled["totals"] and streamed["totals"]["flows"] == len(res)
    _assert_same(tmp_path / "streamed", tmp_path / "ref-npz")
    _assert_same(tmp_path / "spilled", tmp_path / "ref-sharded")
