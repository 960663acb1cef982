"""The 20 flow features, computed from the packet tensor alone.

Definitions are :data:`janus.contract.FLOW_FEATURE_DOCS`, in :data:`janus.contract.FLOW_FEATURES`
order. Because they read only ``packets.npz``, ``flow_features.parquet`` is row-aligned with
the tensor by construction, and ``python -m janus.features DIR`` can recompute it at any time.

Conventions: "fwd" = direction 0 (from the initiator), "bwd" = direction 1; standard
deviations are population (``ddof=0``); a statistic over an empty set (no bwd packets, a
single packet) is 0; inter-arrival statistics run over packets 2..n (the first packet's
``iat`` is 0 by definition and is not a gap).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from .cli import run_main
from .contract import (
    ACTIVITY_GAP_S,
    DIRECTION,
    FEATURES_FILE,
    FIN,
    FLOW_FEATURES,
    IAT,
    N_CHANNELS,
    N_FLOW_FEATURES,
    PACKETS_FILE,
    PSH,
    RST,
    SIZE,
    SYN,
)
from .errors import JanusError

_CHUNK_FLOWS = 65536  # bounds the per-row float64 temporaries (<= chunk * T rows)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` with 0 where ``den == 0``."""
    out = np.zeros_like(num, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _segment_stats(
    x: np.ndarray, member: np.ndarray, flow: np.ndarray, starts: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-flow count, mean, max and population std of ``x`` over rows with ``member`` set.

    ``x`` float64 (K,) and ``member`` bool (K,) over the kept rows of all flows, ``flow``
    int (K,) the row's flow, ``starts`` (N,) each flow's first row -> four (N,) arrays,
    0 where a flow has no member row. Two-pass std (deviations from the flow mean), so a
    constant series gives exactly 0.
    """
    w = member.astype(np.float64)
    count = np.bincount(flow, weights=w, minlength=n)
    mean = _safe_div(np.bincount(flow, weights=x * w, minlength=n), count)
    dev = (x - mean[flow]) * w
    std = np.sqrt(_safe_div(np.bincount(flow, weights=dev * dev, minlength=n), count))
    mx = np.maximum.reduceat(np.where(member, x, -np.inf), starts) if n else np.zeros(0)
    mx[count == 0] = 0.0
    return count, mean, mx, std


def _features_chunk(packets: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Features of one chunk of flows, computed over its kept rows only (no padding)."""
    n, t_max, _ = packets.shape
    out = np.zeros((n, N_FLOW_FEATURES), np.float64)
    col = {name: j for j, name in enumerate(FLOW_FEATURES)}
    valid = np.arange(t_max)[None, :] < lengths[:, None]  # (N, T)
    rows = packets[valid]  # (K, 9), flows in order, packets in order
    flow = np.repeat(np.arange(n), lengths)  # (K,)
    starts = np.zeros(n, np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    gap = np.ones(rows.shape[0], bool)  # packets 2..n of each flow carry a gap
    gap[starts] = False
    size = rows[:, SIZE].astype(np.float64)
    iat = np.where(gap, rows[:, IAT].astype(np.float64), 0.0)
    fwd = rows[:, DIRECTION] == 0

    def total(weights: np.ndarray) -> np.ndarray:
        return np.bincount(flow, weights=weights, minlength=n)

    n_pk = lengths.astype(np.float64)
    duration = total(iat)
    out[:, col["duration"]] = duration
    out[:, col["n_packets"]] = n_pk
    n_fwd, fwd_mean, fwd_max, fwd_std = _segment_stats(size, fwd, flow, starts, n)
    out[:, col["fwd_ratio"]] = _safe_div(n_fwd, n_pk)
    out[:, col["fwd_size_mean"]], out[:, col["fwd_size_max"]], out[:, col["fwd_size_std"]] = fwd_mean, fwd_max, fwd_std
    _, bwd_mean, bwd_max, bwd_std = _segment_stats(size, ~fwd, flow, starts, n)
    out[:, col["bwd_size_mean"]], out[:, col["bwd_size_max"]], out[:, col["bwd_size_std"]] = bwd_mean, bwd_max, bwd_std
    _, iat_mean, iat_max, iat_std = _segment_stats(iat, gap, flow, starts, n)
    out[:, col["iat_mean"]], out[:, col["iat_std"]], out[:, col["iat_max"]] = iat_mean, iat_std, iat_max

    # Activity periods: a gap > ACTIVITY_GAP_S separates two periods, so there are
    # 1 + (#long gaps) periods and their lengths add up to the sum of the short gaps.
    long_gap = gap & (iat > ACTIVITY_GAP_S)
    n_long = total(long_gap.astype(np.float64))
    long_total = total(np.where(long_gap, iat, 0.0))
    out[:, col["active_mean"]] = (duration - long_total) / (1.0 + n_long)
    out[:, col["idle_mean"]] = _safe_div(long_total, n_long)

    out[:, col["bytes_per_s"]] = _safe_div(total(size), duration)
    out[:, col["packets_per_s"]] = _safe_div(n_pk, duration)
    for name, ch in (("syn_count", SYN), ("fin_count", FIN), ("rst_count", RST), ("psh_count", PSH)):
        out[:, col[name]] = total((rows[:, ch] != 0).astype(np.float64))
    return out


def compute_flow_features(packets: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The 20 flow features of each flow.

    ``packets`` float32 ``(N, T, 9)``, ``lengths`` int ``(N,)`` (valid rows, 1..T) ->
    float32 ``(N, 20)`` in :data:`janus.contract.FLOW_FEATURES` order. Padding rows are never
    read. Computed in float64 over the kept rows (segment sums with ``np.bincount``), in
    chunks of flows, so memory stays bounded for any ``N``.
    """
    packets = np.asarray(packets)
    lengths = np.asarray(lengths)
    if packets.ndim != 3 or packets.shape[2] != N_CHANNELS or lengths.shape != packets.shape[:1]:
        raise ValueError(f"expected packets (N, T, {N_CHANNELS}) and lengths (N,), got "
                         f"{packets.shape} and {lengths.shape}")
    if lengths.size and (lengths.min() < 1 or lengths.max() > packets.shape[1]):
        bad = int(np.flatnonzero((lengths < 1) | (lengths > packets.shape[1]))[0])
        raise ValueError(f"flow {bad} has length {int(lengths[bad])}; lengths must be in 1..{packets.shape[1]}")
    out = np.zeros((packets.shape[0], N_FLOW_FEATURES), np.float32)
    for lo in range(0, packets.shape[0], _CHUNK_FLOWS):
        hi = lo + _CHUNK_FLOWS
        out[lo:hi] = _features_chunk(packets[lo:hi], lengths[lo:hi])
    return out


def arrow_column(values: np.ndarray, dtype: str):
    """A 1-D NumPy array -> pyarrow array of ``dtype`` (``"int64"``, ``"float32"``, ...).

    Built from the array's buffer: ``pa.array(ndarray)`` imports pandas on first use, which
    costs ~0.25 s per process (a large share of extracting a small capture).
    """
    import pyarrow as pa

    values = np.ascontiguousarray(values, dtype=np.dtype(dtype))
    return pa.Array.from_buffers(pa.type_for_alias(dtype), values.shape[0], [None, pa.py_buffer(values)])


def features_table(features: np.ndarray):
    """``(N, 20)`` features -> a pyarrow Table with ``flow_id`` (int64) + 20 float32 columns."""
    import pyarrow as pa

    cols = {"flow_id": arrow_column(np.arange(features.shape[0]), "int64")}
    for j, name in enumerate(FLOW_FEATURES):
        cols[name] = arrow_column(features[:, j], "float32")
    return pa.table(cols)


# --------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="janus features",
        description=f"Recompute DIR/{FEATURES_FILE} (flow_id + the 20 flow features) from "
        f"DIR/{PACKETS_FILE}.",
    )
    parser.add_argument("dataset_dir", metavar="DIR", type=Path,
                        help=f"an extracted dataset folder holding {PACKETS_FILE}")
    return parser


def run(args: argparse.Namespace) -> int:
    from .io import write_parquet

    src = args.dataset_dir / PACKETS_FILE
    if not src.is_file():
        raise JanusError(f"{src}: not found; run 'janus extract' for this dataset first")
    try:
        with np.load(src) as npz:
            packets, lengths = npz["packets"], npz["lengths"]
    except (KeyError, ValueError, OSError) as exc:
        raise JanusError(f"{src}: not a packets file with 'packets' and 'lengths' ({exc})") from exc
    write_parquet(args.dataset_dir / FEATURES_FILE, features_table(compute_flow_features(packets, lengths)))
    return 0


def main(argv=None) -> int:
    return run_main(build_parser, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
