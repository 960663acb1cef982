"""The 20 flow features against values computed by hand (janus/capture/features.py)."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from janus.capture.features import compact_flow_features, compute_flow_features, main
from janus.contract import (
    ACK,
    DIRECTION,
    FEATURES_FILE,
    FIN,
    FLOW_FEATURES,
    IAT,
    PACKETS_FILE,
    PSH,
    RST,
    SIZE,
    SYN,
)
from janus.io import write_npz


def packet(size, iat, direction, syn=0, fin=0, rst=0, psh=0, ack=0):
    row = np.zeros(9, np.float32)
    row[[SIZE, IAT, DIRECTION, SYN, FIN, RST, PSH, ACK]] = size, iat, direction, syn, fin, rst, psh, ack
    return row


def tensor(flows, T=5):
    packets = np.full((len(flows), T, 9), 7.0, np.float32)  # garbage padding: must be masked
    for i, rows in enumerate(flows):
        packets[i, : len(rows)] = rows
    return packets, np.array([len(r) for r in flows], np.int32)


def as_dict(row):
    return dict(zip(FLOW_FEATURES, row.tolist()))


def test_three_packet_flow_by_hand():
    flow = [packet(100, 0.0, 0, syn=1), packet(200, 0.5, 1, syn=1, ack=1), packet(300, 2.0, 0, fin=1, psh=1, ack=1)]
    f = as_dict(compute_flow_features(*tensor([flow]))[0])
    want = {
        "duration": 2.5, "n_packets": 3, "fwd_ratio": 2 / 3,
        "fwd_size_mean": 200, "fwd_size_max": 300, "fwd_size_std": 100,
        "bwd_size_mean": 200, "bwd_size_max": 200, "bwd_size_std": 0,
        "iat_mean": 1.25, "iat_std": 0.75, "iat_max": 2.0,
        "active_mean": 0.25,  # periods [p1, p2] (0.5 s) and [p3] (0 s)
        "idle_mean": 2.0, "bytes_per_s": 600 / 2.5, "packets_per_s": 3 / 2.5,
        "syn_count": 2, "fin_count": 1, "rst_count": 0, "psh_count": 1,
    }
    assert list(f) == list(FLOW_FEATURES)
    for name, value in want.items():
        assert f[name] == pytest.approx(value, rel=1e-6), name


def test_single_packet_flow_statistics_over_empty_sets_are_zero():
    f = as_dict(compute_flow_features(*tensor([[packet(60, 0.0, 0, rst=1)]]))[0])
    assert f["n_packets"] == 1 and f["fwd_ratio"] == 1 and f["rst_count"] == 1
    assert f["fwd_size_mean"] == 60 and f["fwd_size_max"] == 60 and f["fwd_size_std"] == 0
    zero = set(FLOW_FEATURES) - {"n_packets", "fwd_ratio", "rst_count", "fwd_size_mean", "fwd_size_max"}
    assert all(f[name] == 0 for name in zero), {k: f[k] for k in zero if f[k] != 0}


def test_activity_periods_and_responder_only_sizes():
    # gaps 0.2, 3.0, 0.3, 5.0 -> periods [0.2, 0.3, 0.0], idle gaps [3, 5]
    iats = [0.0, 0.2, 3.0, 0.3, 5.0]
    flow = [packet(10 * (k + 1), g, 1 if k else 0) for k, g in enumerate(iats)]
    f = as_dict(compute_flow_features(*tensor([flow]))[0])
    assert f["duration"] == pytest.approx(8.5)
    assert f["active_mean"] == pytest.approx(0.5 / 3) and f["idle_mean"] == pytest.approx(4.0)
    assert f["fwd_ratio"] == pytest.approx(0.2)
    assert f["bwd_size_mean"] == pytest.approx(35) and f["bwd_size_max"] == 50
    assert f["bwd_size_std"] == pytest.approx(np.std([20, 30, 40, 50]))
    assert f["iat_mean"] == pytest.approx(8.5 / 4) and f["iat_std"] == pytest.approx(np.std(iats[1:]))


def test_rows_are_independent_and_dtype():
    a = [packet(100, 0.0, 0), packet(50, 0.1, 1)]
    b = [packet(1500, 0.0, 0)]
    both = compute_flow_features(*tensor([a, b]))
    assert both.dtype == np.float32 and both.shape == (2, 20)
    np.testing.assert_array_equal(both[0], compute_flow_features(*tensor([a]))[0])
    np.testing.assert_array_equal(both[1], compute_flow_features(*tensor([b]))[0])
    assert compute_flow_features(np.zeros((0, 4, 9), np.float32), np.zeros(0, np.int32)).shape == (0, 20)
    with pytest.raises(ValueError, match=r"\(N, T, 9\)"):
        compute_flow_features(np.zeros((2, 4, 8), np.float32), np.zeros(2, np.int32))


def test_cli_recomputes_parquet(tmp_path, capsys):
    packets, lengths = tensor([[packet(100, 0.0, 0), packet(50, 0.1, 1)], [packet(60, 0.0, 0)]])
    write_npz(tmp_path / PACKETS_FILE, packets=packets, lengths=lengths)
    assert main([str(tmp_path)]) == 0
    table = pq.read_table(tmp_path / FEATURES_FILE)
    assert table.column_names == ["flow_id", *FLOW_FEATURES]
    assert table.column("flow_id").to_pylist() == [0, 1]
    assert table.column("bwd_size_mean").to_pylist() == [50.0, 0.0]
    assert main([str(tmp_path / "missing")]) == 2
    assert "not found" in capsys.readouterr().err


def _reference(flow: np.ndarray) -> dict:
    """The FLOW_FEATURE_DOCS definitions, one flow at a time in plain Python."""
    size, iat, d = flow[:, SIZE].astype(float), flow[:, IAT].astype(float), flow[:, DIRECTION]
    gaps = iat[1:]
    dur = float(iat.sum())
    f, b = size[d == 0], size[d == 1]
    longs = gaps[gaps > 1.0]
    stat = lambda x, fn: float(fn(x)) if len(x) else 0.0
    return {
        "duration": dur, "n_packets": len(flow), "fwd_ratio": len(f) / len(flow),
        "fwd_size_mean": stat(f, np.mean), "fwd_size_max": stat(f, np.max), "fwd_size_std": stat(f, np.std),
        "bwd_size_mean": stat(b, np.mean), "bwd_size_max": stat(b, np.max), "bwd_size_std": stat(b, np.std),
        "iat_mean": stat(gaps, np.mean), "iat_std": stat(gaps, np.std), "iat_max": stat(gaps, np.max),
        "active_mean": (dur - longs.sum()) / (1 + len(longs)), "idle_mean": stat(longs, np.mean),
        "bytes_per_s": size.sum() / dur if dur else 0.0, "packets_per_s": len(flow) / dur if dur else 0.0,
        "syn_count": flow[:, SYN].sum(), "fin_count": flow[:, FIN].sum(), "rst_count": flow[:, RST].sum(),
        "psh_count": flow[:, PSH].sum(),
    }


def test_random_flows_match_plain_python_reference():
    rng = np.random.default_rng(7)
    flows = []
    for _ in range(60):
        n = int(rng.integers(1, 9))
        rows = np.zeros((n, 9), np.float32)
        rows[:, SIZE] = rng.integers(40, 1500, n)
        rows[1:, IAT] = rng.exponential(0.8, n - 1)
        rows[:, DIRECTION] = rng.integers(0, 2, n)
        rows[:, SYN:ACK + 1] = rng.integers(0, 2, (n, 5))
        flows.append(rows)
    got = compute_flow_features(*tensor(flows, T=8))
    for i, rows in enumerate(flows):
        want = _reference(rows)
        np.testing.assert_allclose([as_dict(got[i])[k] for k in FLOW_FEATURES], [want[k] for k in FLOW_FEATURES],
                                   rtol=2e-6, atol=1e-6, err_msg=f"flow {i}")


def test_lengths_out_of_range_rejected():
    packets, _ = tensor([[packet(1, 0, 0)]])
    with pytest.raises(ValueError, match="flow 0 has length 0"):
        compute_flow_features(packets, np.array([0], np.int32))
    with pytest.raises(ValueError, match="lengths must be in 1..5"):
        compute_flow_features(packets, np.array([6], np.int32))


def _vectorised_definition(packets, lengths):
    """The features as segment sums over all kept rows (np.bincount, float64, row order)."""
    n, t_max, _ = packets.shape
    rows = packets[np.arange(t_max)[None, :] < lengths[:, None]]
    flow = np.repeat(np.arange(n), lengths)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    gap = np.ones(len(rows), bool)
    gap[starts] = False
    size = rows[:, SIZE].astype(np.float64)
    iat = np.where(gap, rows[:, IAT].astype(np.float64), 0.0)
    fwd = rows[:, DIRECTION] == 0

    def div(a, b):
        return np.divide(a, b, out=np.zeros_like(a), where=b != 0)

    def total(w):
        return np.bincount(flow, weights=w, minlength=n)

    def stats(x, member):
        w = member.astype(np.float64)
        count = total(w)
        mean = div(total(x * w), count)
        dev = (x - mean[flow]) * w
        mx = np.maximum.reduceat(np.where(member, x, -np.inf), starts)
        mx[count == 0] = 0.0
        return count, mean, mx, np.sqrt(div(total(dev * dev), count))

    n_pk = lengths.astype(np.float64)
    dur = total(iat)
    n_fwd, *f = stats(size, fwd)
    _, *b = stats(size, ~fwd)
    _, im, ix, isd = stats(iat, gap)
    long_gap = gap & (iat > 1.0)
    n_long, long_total = total(long_gap.astype(np.float64)), total(np.where(long_gap, iat, 0.0))
    cols = {
        "duration": dur, "n_packets": n_pk, "fwd_ratio": div(n_fwd, n_pk),
        "fwd_size_mean": f[0], "fwd_size_max": f[1], "fwd_size_std": f[2],
        "bwd_size_mean": b[0], "bwd_size_max": b[1], "bwd_size_std": b[2],
        "iat_mean": im, "iat_std": isd, "iat_max": ix,
        "active_mean": (dur - long_total) / (1.0 + n_long), "idle_mean": div(long_total, n_long),
        "bytes_per_s": div(total(size), dur), "packets_per_s": div(n_pk, dur),
        "syn_count": total((rows[:, SYN] != 0) * 1.0), "fin_count": total((rows[:, FIN] != 0) * 1.0),
        "rst_count": total((rows[:, RST] != 0) * 1.0), "psh_count": total((rows[:, PSH] != 0) * 1.0),
    }
    return np.stack([cols[k] for k in FLOW_FEATURES], axis=1).astype(np.float32)


def test_compiled_kernel_is_bit_identical_to_segment_sums():
    rng = np.random.default_rng(11)
    n, t_max = 400, 16
    lengths = rng.integers(1, t_max + 1, n)
    packets = np.zeros((n, t_max, 9), np.float32)
    packets[..., SIZE] = rng.integers(40, 1500, (n, t_max))
    packets[:, 1:, IAT] = rng.lognormal(-3.0, 2.5, (n, t_max - 1))  # many gaps > 1 s too
    packets[..., DIRECTION] = rng.integers(0, 2, (n, t_max))
    packets[..., SYN:ACK + 1] = rng.integers(0, 2, (n, t_max, 5))
    got = compute_flow_features(packets, lengths)
    want = _vectorised_definition(packets, lengths)
    assert got.tobytes() == want.tobytes()


def test_compact_rows_give_the_same_bits_as_the_padded_tensor():
    rng = np.random.default_rng(12)
    n, t_max = 300, 16
    lengths = rng.integers(1, t_max + 1, n)
    packets = np.zeros((n, t_max, 9), np.float32)
    valid = np.arange(t_max) < lengths[:, None]
    packets[..., SIZE] = rng.integers(40, 1500, (n, t_max)) * valid
    packets[:, 1:, IAT] = rng.lognormal(-3.0, 2.5, (n, t_max - 1)) * valid[:, 1:]
    packets[..., DIRECTION] = rng.integers(0, 2, (n, t_max)) * valid
    # Compact rows in a shuffled flow order, as the assembler harvests them.
    perm = rng.permutation(n)
    rows = np.concatenate([packets[f, : lengths[f]] for f in perm])
    start_in_perm = np.cumsum(lengths[perm]) - lengths[perm]
    row_start = np.empty(n, np.int64)
    row_start[perm] = start_in_perm
    got = compact_flow_features(rows, row_start, lengths)
    assert got.dtype == np.float32 and got.tobytes() == compute_flow_features(packets, lengths).tobytes()
    with pytest.raises(ValueError, match="out of range"):
        compact_flow_features(rows, row_start + 5, lengths)
