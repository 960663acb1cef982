"""Tests of janus/capture/stream.py, FlowAssembler.drain and iter_capture(stream=)."""

from __future__ import annotations

import io

import numpy as np
import pytest

from janus.capture.flows import FlowAssembler
from janus.capture.pcap import iter_capture
from janus.capture.pcapwrite import ACK, FIN, PSH, SYN, tcp_frame, udp_frame, write_pcap
from janus.capture.stream import iter_flow_chunks
from janus.errors import CaptureError, ConfigError

FIELDS = ("src_ip", "dst_ip", "src_port", "dst_port", "proto", "start_time", "end_time",
          "n_packets", "n_bytes", "end_reason", "lengths")


def _capture(path, n_sessions: int = 40):
    """TCP sessions of many lengths that end (FIN) at different times, UDP chatter between
    them, and one long flow open throughout: flows finish at every point of the stream."""
    recs = []
    for k in range(n_sessions):
        t0, port = 10.0 * k, 40000 + k
        n_data = k % 7
        recs += [(t0, tcp_frame("10.0.0.1", "10.0.0.2", port, 80, flags=SYN)),
                 (t0 + 0.01, tcp_frame("10.0.0.2", "10.0.0.1", 80, port, flags=SYN | ACK))]
        recs += [(t0 + 0.02 + 0.01 * i, tcp_frame("10.0.0.1", "10.0.0.2", port, 80, flags=PSH | ACK,
                                                    payload=100 + i)) for i in range(n_data)]
        recs += [(t0 + 0.5, tcp_frame("10.0.0.1", "10.0.0.2", port, 80, flags=FIN | ACK)),
                 (t0 + 0.6, tcp_frame("10.0.0.2", "10.0.0.1", 80, port, flags=FIN | ACK))]
        recs.append((t0 + 3.0, udp_frame("10.0.0.3", "10.0.0.4", 5000 + k % 3, 53, payload=40)))
        recs.append((t0 + 5.0, udp_frame("10.0.0.8", "10.0.0.9", 7000, 7001, payload=10)))
    recs.sort(key=lambda r: r[0])
    write_pcap(path, [r[0] for r in recs], [r[1] for r in recs])
    return path


def _cat(chunks):
    return {f: np.concatenate([getattr(c, f) for c in chunks]) for f in FIELDS}


def _sorted(d):
    order = np.lexsort((d["src_port"], d["start_time"]))
    return {k: v[order] for k, v in d.items()}


@pytest.mark.parametrize("chunk_flows", [1, 3, 10_000])
def test_chunks_hold_exactly_the_flows_of_one_finish(tmp_path, chunk_flows) -> None:
    cap = _capture(tmp_path / "c.pcap")
    params = {"max_packets": 4, "idle_timeout": 2.0, "active_timeout": None}
    asm = FlowAssembler(4, 2.0, None)
    for b in iter_capture(cap, chunk_bytes=2048):
        asm.add(b)
    whole = asm.finish()
    chunks = list(iter_flow_chunks([cap], **params, chunk_flows=chunk_flows, chunk_bytes=2048))
    if chunk_flows == 10_000:
        assert len(chunks) == 1
    got, ref = _sorted(_cat(chunks)), _sorted(_cat([whole]))
    assert len(got["lengths"]) == len(whole) > 80
    for f in FIELDS:
        assert np.array_equal(got[f], ref[f]), f
    # Packet rows too: each chunk's compact rows belong to its own flows.
    rows = lambda r: [r.rows[s:s + n].tobytes() for s, n in zip(r.row_start, r.lengths)]
    key = lambda r: list(zip(r.start_time.tolist(), r.src_port.tolist()))
    got_rows = {k: r for c in chunks for k, r in zip(key(c), rows(c))}
    assert got_rows == dict(zip(key(whole), rows(whole)))


def test_drain_bounds_what_is_held(tmp_path) -> None:
    cap = _capture(tmp_path / "c.pcap", n_sessions=60)
    sizes = [len(c) for c in iter_flow_chunks([cap], max_packets=4, idle_timeout=2.0,
                                              active_timeout=None, chunk_flows=5, chunk_bytes=2048)]
    assert len(sizes) > 3 and sum(sizes) > 100


class _Pipe(io.RawIOBase):
    """A non-seekable stream that returns at most 7 bytes a read, as a pipe may."""

    def __init__(self, data: bytes) -> None:
        self._data, self._pos = data, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        k = min(7, len(buf), len(self._data) - self._pos)
        buf[:k] = self._data[self._pos:self._pos + k]
        self._pos += k
        return k


def test_a_stream_with_short_reads_gives_the_files_packets(tmp_path) -> None:
    cap = _capture(tmp_path / "c.pcap")
    ref = list(iter_capture(cap))
    got = list(iter_capture("-", stream=io.BufferedReader(_Pipe(cap.read_bytes()), 5)))
    assert sum(len(b) for b in got) == sum(len(b) for b in ref)
    for name in ("ts", "wire_len", "src_port", "tcp_flags"):
        assert np.array_equal(np.concatenate([getattr(b, name) for b in got]),
                              np.concatenate([getattr(b, name) for b in ref]))


def test_a_stream_that_is_not_a_capture_names_it() -> None:
    with pytest.raises(CaptureError, match="^-: not a pcap"):
        list(iter_capture("-", stream=io.BytesIO(b"hello, this is text\n")))
    with pytest.raises(CaptureError, match="empty"):
        list(iter_capture("-", stream=io.BytesIO(b"")))


def test_sources_are_checked(tmp_path) -> None:
    with pytest.raises(ConfigError, match="only once"):
        list(iter_flow_chunks(["-", "-"], max_packets=4, idle_timeout=1.0, active_timeout=None))
    with pytest.raises(Exception, match="not found"):
        list(iter_flow_chunks([tmp_path / "nope.pcap"], max_packets=4, idle_timeout=1.0,
                              active_timeout=None))
