"""Flow assembly on hand-built packet batches (janus/capture/flows.py)."""

from __future__ import annotations

import numpy as np
import pytest

from janus.capture import flows as flows_mod
from janus.capture.batch import PacketBatch, ip_text_from_words, ip_words_from_text
from janus.capture.flows import FlowAssembler, assemble_flows
from janus.contract import ACK, DIRECTION, FIN, IAT, PSH, RST, SIZE, SYN, WIN
from janus.errors import ConfigError

S, A, F, R, P = 0x02, 0x10, 0x01, 0x04, 0x08  # TCP flag bits
C, SV = ("10.0.0.1", 40000), ("10.0.0.2", 80)  # client, server


def make_batch(rows, file_index: int = 0) -> PacketBatch:
    """rows: (ts, (src, sport), (dst, dport), proto, flags, size[, win])."""
    n = len(rows)
    return PacketBatch(
        ts=np.array([r[0] for r in rows], np.float64),
        wire_len=np.array([r[5] for r in rows], np.uint32),
        src_ip=ip_words_from_text([r[1][0] for r in rows]).reshape(n, 2),
        dst_ip=ip_words_from_text([r[2][0] for r in rows]).reshape(n, 2),
        src_port=np.array([r[1][1] for r in rows], np.uint16),
        dst_port=np.array([r[2][1] for r in rows], np.uint16),
        proto=np.array([r[3] for r in rows], np.uint8),
        tcp_flags=np.array([r[4] for r in rows], np.uint8),
        tcp_win=np.array([r[6] if len(r) > 6 else 0 for r in rows], np.uint16),
        file_index=np.full(n, file_index, np.int32),
    )


def tcp(ts, src, dst, flags, size=60, win=1000):
    return (ts, src, dst, 6, flags, size, win)


def handshake_and_teardown(t0=0.0, c=C, s=SV):
    return [
        tcp(t0 + 0.0, c, s, S, 74, 64240),
        tcp(t0 + 0.1, s, c, S | A, 74, 65160),
        tcp(t0 + 0.2, c, s, A, 66, 502),
        tcp(t0 + 0.3, c, s, P | A, 200, 502),
        tcp(t0 + 0.4, s, c, P | A, 1500, 509),
        tcp(t0 + 0.5, c, s, F | A, 66, 502),
        tcp(t0 + 0.6, s, c, F | A, 66, 509),
        tcp(t0 + 0.7, c, s, A, 66, 502),
    ]


def reasons(res):
    return res.end_reason_text()


def test_handshake_and_teardown_one_flow_with_exact_channels():
    res = assemble_flows([make_batch(handshake_and_teardown(100.0))])
    assert len(res) == 1 and reasons(res) == ["fin"]
    assert res.lengths.tolist() == [8] and res.n_packets.tolist() == [8]
    assert res.n_bytes.tolist() == [74 + 74 + 66 + 200 + 1500 + 66 + 66 + 66]
    assert ip_text_from_words(res.src_ip) == ["10.0.0.1"] and res.src_port.tolist() == [40000]
    assert ip_text_from_words(res.dst_ip) == ["10.0.0.2"] and res.dst_port.tolist() == [80]
    assert res.proto.tolist() == [6]
    assert res.start_time[0] == 100.0 and res.end_time[0] == pytest.approx(100.7)
    p = res.packets[0, :8]
    assert p[:, SIZE].tolist() == [74, 74, 66, 200, 1500, 66, 66, 66]
    np.testing.assert_allclose(p[:, IAT], [0] + [0.1] * 7, atol=1e-6)
    assert p[:, DIRECTION].tolist() == [0, 1, 0, 0, 1, 0, 1, 0]
    assert p[:, SYN].tolist() == [1, 1, 0, 0, 0, 0, 0, 0]
    assert p[:, ACK].tolist() == [0, 1, 1, 1, 1, 1, 1, 1]
    assert p[:, PSH].tolist() == [0, 0, 0, 1, 1, 0, 0, 0]
    assert p[:, FIN].tolist() == [0, 0, 0, 0, 0, 1, 1, 0]
    assert p[:, RST].sum() == 0
    assert p[:, WIN].tolist() == [64240, 65160, 502, 502, 509, 502, 509, 502]
    assert res.packets.shape == (1, 64, 9) and not res.packets[0, 8:].any()


def test_first_backward_fin_does_not_end_flow():
    rows = handshake_and_teardown()[:3] + [
        tcp(0.3, SV, C, F | A),  # server closes first (half-close)
        tcp(0.4, C, SV, P | A, 300),  # client still sends data
        tcp(0.5, SV, C, A),
        tcp(0.6, C, SV, F | A),
        tcp(0.7, SV, C, A),  # the last ACK belongs to the closed flow
    ]
    res = assemble_flows([make_batch(rows)])
    assert len(res) == 1 and reasons(res) == ["fin"] and res.n_packets.tolist() == [8]


def test_two_fins_from_same_side_do_not_close():
    rows = handshake_and_teardown()[:3] + [tcp(0.3, C, SV, F | A), tcp(0.4, C, SV, F | A)]
    res = assemble_flows([make_batch(rows)])
    assert reasons(res) == ["eof"]


def test_rst_closes_and_late_packets_stay():
    rows = handshake_and_teardown()[:3] + [tcp(0.3, SV, C, R | A), tcp(0.4, C, SV, R), tcp(0.5, C, SV, A)]
    res = assemble_flows([make_batch(rows)])
    assert reasons(res) == ["rst"] and res.n_packets.tolist() == [6]


def test_new_syn_after_close_starts_new_flow():
    rows = handshake_and_teardown(0.0) + handshake_and_teardown(5.0)
    res = assemble_flows([make_batch(rows)])
    assert reasons(res) == ["fin", "fin"]
    assert res.start_time.tolist() == [0.0, 5.0] and res.n_packets.tolist() == [8, 8]


def test_syn_retransmission_stays_but_syn_after_established_splits():
    retrans = [tcp(0.0, C, SV, S), tcp(1.0, C, SV, S), tcp(3.0, C, SV, S), tcp(3.1, SV, C, S | A)]
    res = assemble_flows([make_batch(retrans)])
    assert len(res) == 1 and res.n_packets.tolist() == [4]
    reused = handshake_and_teardown(0.0)[:5] + [tcp(2.0, C, SV, S), tcp(2.1, SV, C, S | A)]
    res = assemble_flows([make_batch(reused)])
    assert reasons(res) == ["new_syn", "eof"] and res.n_packets.tolist() == [5, 2]


def test_syn_ack_first_flips_initiator():
    rows = [tcp(0.0, SV, C, S | A), tcp(0.1, C, SV, A), tcp(0.2, SV, C, P | A, 500)]
    res = assemble_flows([make_batch(rows)])
    assert ip_text_from_words(res.src_ip) == ["10.0.0.1"] and res.src_port.tolist() == [40000]
    assert res.packets[0, :3, DIRECTION].tolist() == [1, 0, 1]


def test_out_of_order_packets_never_swap_direction():
    # The responder's packet is first in the capture, with a later timestamp than the next.
    rows = [tcp(1.0, SV, C, A, 100), tcp(0.9, C, SV, A, 200), tcp(1.2, C, SV, A, 300)]
    res = assemble_flows([make_batch(rows)])
    assert ip_text_from_words(res.src_ip) == ["10.0.0.2"]  # first sender stays the initiator
    assert res.packets[0, :3, DIRECTION].tolist() == [0, 1, 1]
    np.testing.assert_allclose(res.packets[0, :3, IAT], [0.0, 0.0, 0.2], atol=1e-6)  # clamped
    assert res.start_time[0] == 1.0 and res.end_time[0] == 1.2


def test_idle_timeout_splits_and_active_timeout_splits():
    u = [(t, C, SV, 17, 0, 100) for t in (0.0, 1.0, 12.5, 13.0)]
    res = assemble_flows([make_batch(u)], idle_timeout=10.0)
    assert reasons(res) == ["idle", "eof"] and res.n_packets.tolist() == [2, 2]
    u = [(float(t), C, SV, 17, 0, 100) for t in range(10)]  # one packet a second
    res = assemble_flows([make_batch(u)], idle_timeout=10.0, active_timeout=3.5)
    assert reasons(res) == ["active", "active", "eof"]
    assert res.n_packets.tolist() == [4, 4, 2] and res.start_time.tolist() == [0, 4, 8]


def test_eof_flow_already_idle_ends_idle():
    rows = [(0.0, C, SV, 17, 0, 100), (50.0, ("10.0.0.3", 1), ("10.0.0.4", 2), 17, 0, 100)]
    res = assemble_flows([make_batch(rows)], idle_timeout=10.0)
    assert reasons(res) == ["idle", "eof"]


def test_truncation_keeps_whole_flow_totals():
    rows = [(0.01 * i, C if i % 2 == 0 else SV, SV if i % 2 == 0 else C, 17, 0, 100 + i) for i in range(10)]
    res = assemble_flows([make_batch(rows)], max_packets=4)
    assert res.packets.shape == (1, 4, 9) and res.lengths.tolist() == [4]
    assert res.n_packets.tolist() == [10] and res.n_bytes.tolist() == [sum(100 + i for i in range(10))]
    assert res.packets[0, :, SIZE].tolist() == [100, 101, 102, 103]
    assert res.end_time[0] == pytest.approx(0.09)


def test_udp_and_icmp_flows_and_v6_addresses():
    rows = [
        (0.0, ("10.0.0.1", 5353), ("10.0.0.9", 53), 17, 0, 80),
        (0.1, ("10.0.0.9", 53), ("10.0.0.1", 5353), 17, 0, 120),
        (0.2, ("10.0.0.1", 0), ("10.0.0.9", 0), 1, 0, 98),
        (0.3, ("10.0.0.9", 0), ("10.0.0.1", 0), 1, 0, 98),
        (0.4, ("2001:db8::1", 1000), ("2001:db8::2", 443), 17, 0, 1280),
    ]
    res = assemble_flows([make_batch(rows)])
    assert res.proto.tolist() == [17, 1, 17] and res.n_packets.tolist() == [2, 2, 1]
    assert ip_text_from_words(res.src_ip) == ["10.0.0.1", "10.0.0.1", "2001:db8::1"]
    assert res.packets[:, :2, DIRECTION].tolist() == [[0, 1], [0, 1], [0, 0]]
    assert not res.packets[:, :, SYN:].any()  # flags and window are 0 off TCP
    assert reasons(res) == ["eof"] * 3


def _random_stream(n_flows=300, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(n_flows):
        c = (f"10.1.{k // 200}.{k % 200 + 1}", 30000 + int(rng.integers(0, 40)))
        t0 = float(rng.uniform(0, 400))
        if rng.random() < 0.6:
            rows += handshake_and_teardown(t0, c, SV)[: int(rng.integers(1, 9))]
        else:
            rows += [(t0 + 0.3 * j, c, ("10.9.9.9", 53), 17, 0, 90) for j in range(int(rng.integers(1, 5)))]
    rows.sort(key=lambda r: r[0])
    return rows


def _same(a, b):
    for name in ("packets", "lengths", "src_ip", "dst_ip", "src_port", "dst_port", "proto",
                 "start_time", "end_time", "n_packets", "n_bytes", "end_reason", "file_index"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def test_chunked_input_gives_identical_result():
    batch = make_batch(_random_stream())
    one = assemble_flows([batch], max_packets=6, idle_timeout=30.0, active_timeout=60.0)
    cuts = np.sort(np.random.default_rng(1).choice(np.arange(1, len(batch)), 6, replace=False))
    parts = [batch.take(idx) for idx in np.split(np.arange(len(batch)), cuts)]
    assert len(parts) == 7
    seven = assemble_flows(parts, max_packets=6, idle_timeout=30.0, active_timeout=60.0)
    _same(one, seven)
    assert len(one) > 250 and set(reasons(one)) >= {"fin", "idle", "eof"}


def test_expiry_while_streaming_bounds_active_flows():
    asm = FlowAssembler(max_packets=4, idle_timeout=5.0)
    for k in range(50):  # one short UDP flow per 10 s: each is idle by the next batch's end
        asm.add(make_batch([(10.0 * k, (f"10.2.0.{k + 1}", 1), ("10.9.9.9", 53), 17, 0, 90)]))
        assert asm.n_active == 1
    res = asm.finish()
    assert len(res) == 50 and reasons(res) == ["idle"] * 49 + ["eof"]


def test_slot_growth_and_hash_collisions_are_exact(monkeypatch):
    real = flows_mod.hash_keys
    # Salt 0 maps every key to one of 4 hashes; the assembler must detect it and re-salt.
    monkeypatch.setattr(flows_mod, "hash_keys", lambda k, seed: real(k, seed) & 3 if seed == 0 else real(k, seed))
    # Tiny reservations: the slot state and the kept-rows buffer both grow several times.
    monkeypatch.setattr(flows_mod, "_RESERVED_SLOT_BYTES", 0)
    monkeypatch.setattr(flows_mod, "_MIN_SLOTS", 4)
    monkeypatch.setattr(flows_mod, "_RESERVED_ROWS", 8)
    batch = make_batch(_random_stream(200, seed=3))
    got = assemble_flows([batch.take(slice(0, 300)), batch.take(slice(300, None))], max_packets=6)
    monkeypatch.undo()
    want = assemble_flows([batch], max_packets=6)
    _same(got, want)


def test_ordering_by_start_time_then_first_packet():
    rows = [(1.0, C, SV, 17, 0, 10), (0.5, ("10.0.0.5", 1), SV, 17, 0, 20), (1.0, ("10.0.0.6", 1), SV, 17, 0, 30)]
    res = assemble_flows([make_batch(rows)])
    assert res.start_time.tolist() == [0.5, 1.0, 1.0]
    assert res.n_bytes.tolist() == [20, 10, 30]


def test_empty_input():
    res = assemble_flows([PacketBatch.empty()])
    assert len(res) == 0 and res.packets.shape == (0, 64, 9)


def test_hash_collision_across_batches_is_detected(monkeypatch):
    real = flows_mod.hash_keys
    # Salt 0 hashes every key to 0: two one-key batches collide only through the key table.
    monkeypatch.setattr(flows_mod, "hash_keys", lambda k, seed: real(k, seed) & 0 if seed == 0 else real(k, seed))
    first = make_batch([(0.0, C, SV, 17, 0, 100)])
    second = make_batch([(0.5, ("10.0.0.7", 9), SV, 17, 0, 200)])
    third = make_batch([(0.6, SV, C, 17, 0, 300)])
    res = assemble_flows([first, second, third])
    assert res.n_packets.tolist() == [2, 1] and res.n_bytes.tolist() == [400, 200]


def test_compact_rows_and_padded_blocks_agree_with_the_tensor():
    res = assemble_flows([make_batch(_random_stream(200, seed=5))], max_packets=6)
    T = res.max_packets
    assert res.rows.shape == (int(res.lengths.sum()), 9)
    for i in range(len(res)):
        np.testing.assert_array_equal(res.rows[res.row_start[i]: res.row_start[i] + res.lengths[i]],
                                      res.packets[i, : res.lengths[i]])
    # A reused, dirty buffer: padding rows must come out zero again.
    buf = np.full((7, T, 9), np.nan, np.float32)
    for lo in range(0, len(res), 7):
        hi = min(len(res), lo + 7)
        assert res.padded_block(lo, hi, out=buf).tobytes() == res.packets[lo:hi].tobytes()


# --------------------------------------------------------------------------- timestamp guard
FAR = 3_978_000_000.0  # 2096-01-21: a corrupt far-future record
B = ("10.0.0.3", 5000), ("10.0.0.4", 53)


def _conversation(times, c=C, s=SV):
    """UDP packets alternating direction at ``times``."""
    return [(t, c if k % 2 == 0 else s, s if k % 2 == 0 else c, 17, 0, 100 + k)
            for k, t in enumerate(times)]


def _all_splits_equal(rows, **kw):
    """The result of every two-batch split of ``rows`` equals the one-batch result."""
    batch = make_batch(rows)
    whole = assemble_flows([batch], **kw)
    for cut in range(1, len(rows)):
        _same(assemble_flows([batch.take(slice(0, cut)), batch.take(slice(cut, None))], **kw), whole)
    return whole


@pytest.mark.parametrize("n_bad", [1, 3, 7])
def test_far_future_records_do_not_shatter_flows(n_bad, caplog):
    t0 = 1_500_000_000.0
    times = [t0 + k for k in range(20)]
    for k in range(5, 5 + n_bad):
        times[k] = FAR + k
    rows = _conversation(times) + _conversation([t0 + 0.5 + k for k in range(20)], *B)
    rows.sort(key=lambda r: min(r[0], FAR - 1) if r[0] < FAR else t0 + (r[0] - FAR))
    asm = FlowAssembler(idle_timeout=10.0)
    asm.add(make_batch(rows))
    with caplog.at_level("WARNING", logger="janus.capture.flows"):
        res = asm.finish()
    assert res.n_packets.tolist() == [20, 20] and reasons(res) == ["eof", "eof"]
    assert res.start_time.tolist() == [t0, t0 + 0.5]
    assert res.end_time.tolist() == [t0 + 19, t0 + 19.5]
    # Each outlier took the clock's time: that of B's packet just before it (t0 + k - 0.5).
    iat = res.packets[0, :20, IAT]
    np.testing.assert_allclose(iat[5:6 + n_bad], [0.5] + [1.0] * (n_bad - 1) + [1.5], atol=1e-6)
    st = asm.timestamp_stats
    assert st["clamped_ahead"] == n_bad and st["clamped_behind"] == st["steps_back"] == 0
    assert st["first"]["clamped_ahead"] == {"packet": 10, "ts": FAR + 5, "file_index": 0}
    assert f"{n_bad} packet(s) dated more than 10 s after the capture clock" in caplog.text
    assert "packet 10 of the stream, in file 0, dated 2096-01-21" in caplog.text


def test_far_future_outlier_result_does_not_depend_on_batches():
    times = [100.0 + k for k in range(30)]
    times[12] = FAR
    res = _all_splits_equal(_conversation(times), idle_timeout=10.0)
    assert res.n_packets.tolist() == [30]


def test_a_real_silence_still_ends_flows():
    # 10 packets, 1000 s of silence, 10 more on the same key: two flows, nothing clamped.
    times = [100.0 + k for k in range(10)] + [1100.0 + k for k in range(10)]
    res = _all_splits_equal(_conversation(times), idle_timeout=10.0)
    assert res.n_packets.tolist() == [10, 10] and reasons(res) == ["idle", "eof"]
    assert res.start_time.tolist() == [100.0, 1100.0]
    asm = FlowAssembler(idle_timeout=10.0)
    asm.add(make_batch(_conversation(times)))
    asm.finish()
    st = asm.timestamp_stats
    assert st["clamped_ahead"] == st["clamped_behind"] == st["steps_back"] == 0 and not st["first"]


def test_clock_stepped_back_keeps_flows_whole(caplog):
    # A's clock steps back 600 s after its 10th packet (NTP); B starts after the step.
    a = [1000.0 + k for k in range(10)] + [1000.0 + k - 600 for k in range(10, 20)]
    rows = _conversation(a) + _conversation([1000.0 + k - 600 + 0.5 for k in range(10, 20)], *B)
    rows.sort(key=lambda r: r[0] + (600 if r[0] < 1000 else 0))
    asm = FlowAssembler(idle_timeout=10.0)
    asm.add(make_batch(rows))
    with caplog.at_level("WARNING", logger="janus.capture.flows"):
        res = asm.finish()
    # B's first packet sorts first: it starts at capture time 410.5, A at 1000.
    assert res.n_packets.tolist() == [10, 20] and reasons(res) == ["eof", "eof"]
    assert res.start_time.tolist() == [410.5, 1000.0] and res.end_time.tolist() == [419.5, 1009.0]
    np.testing.assert_allclose(res.packets[1, 9:12, IAT], [1.0, 0.0, 1.0], atol=1e-6)
    st = asm.timestamp_stats
    assert st["steps_back"] == 1 and st["steps_back_s"] == 599.0 and st["clamped_behind"] == 0
    assert "stepped back" in caplog.text
    _all_splits_equal(rows, idle_timeout=10.0)


def test_lone_records_from_the_past_are_clamped():
    # Records dated 1970 inside A and as the first packet of B: B still starts one flow, at
    # the clock's time (A's packet just before), instead of a 1970 flow that is idle at once.
    t0 = 1_500_000_000.0
    a = [t0 + k for k in range(20)]
    a[7] = 86400.0
    b = [t0 + 10.5 + k for k in range(10)]
    b[0] = 86400.0
    rows = _conversation(a) + _conversation(b, *B)
    rows.sort(key=lambda r: (t0 + 10.5) if r[0] == 86400.0 and r[1] == B[0] else
              (t0 + 7) if r[0] == 86400.0 else r[0])
    asm = FlowAssembler(idle_timeout=10.0)
    asm.add(make_batch(rows))
    res = asm.finish()
    assert res.n_packets.tolist() == [20, 10] and res.start_time.tolist() == [t0, t0 + 10]
    assert asm.timestamp_stats["clamped_behind"] == 2
    assert asm.timestamp_stats["first"]["clamped_behind"]["packet"] == 7
    np.testing.assert_allclose(res.packets[0, 7:9, IAT], [0.0, 2.0], atol=1e-6)
    _all_splits_equal(rows, idle_timeout=10.0)


def test_jumps_within_max_clock_jump_are_left_alone():
    times = [100.0, 101.0, 109.0, 102.0, 103.0]  # 8 s ahead, then back: under 10 s
    asm = FlowAssembler(idle_timeout=10.0)
    asm.add(make_batch(_conversation(times)))
    res = asm.finish()
    assert res.end_time.tolist() == [109.0] and not any(
        asm.timestamp_stats[k] for k in ("clamped_ahead", "clamped_behind", "steps_back"))
    with pytest.raises(ConfigError, match="max_clock_jump"):
        FlowAssembler(max_clock_jump=0)
