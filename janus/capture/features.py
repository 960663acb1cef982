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
from numba import njit

from janus.cli import run_main
from janus.contract import (
    ACTIVITY_GAP_S,
    DIRECTION,
    FEATURES_FILE,
    FIN,
    FLOW_FEATURES,
    IAT,
    N_CHANNELS,
    N_FLOW_FEATURES,
    PACKETS_FILE,
    PACKETS_STORE_DIR,
    PSH,
    RST,
    SIZE,
    SYN,
)

# Kernel output columns, in the order the kernel writes them (mapped to FLOW_FEATURES below).
_KERNEL_COLUMNS = (
    "duration", "n_packets", "fwd_ratio",
    "fwd_size_mean", "fwd_size_max", "fwd_size_std",
    "bwd_size_mean", "bwd_size_max", "bwd_size_std",
    "iat_mean", "iat_std", "iat_max",
    "active_mean", "idle_mean", "bytes_per_s", "packets_per_s",
    "syn_count", "fin_count", "rst_count", "psh_count",
)
assert sorted(_KERNEL_COLUMNS) == sorted(FLOW_FEATURES)
_KERNEL_TO_FEATURE = np.array([FLOW_FEATURES.index(c) for c in _KERNEL_COLUMNS], np.int64)


@njit(cache=True)
def _div0(num, den):
    """``num / den``, 0 where ``den == 0``."""
    return num / den if den != 0 else 0.0


# Why numba: every feature is a per-flow reduction over that flow's kept rows. In NumPy that is
# ~40 passes over (K,) float64 temporaries (K = kept rows of all flows) plus bincount /
# reduceat calls, ~200 ns per kept row; one compiled pass per flow over its own rows (two for
# the standard deviations) reads each row once, ~10x faster, with no temporaries. Sums run in
# row order, one float64 accumulator per flow and statistic, which is what np.bincount does,
# so results are the same bits as the vectorised definition (tests/test_features.py).
@njit(cache=True)
def _features_kernel(packets, lengths, out):  # pragma: no cover - compiled
    """Fill ``out`` float64 (N, 20), columns in ``_KERNEL_COLUMNS`` order."""
    for f in range(lengths.shape[0]):
        _flow_features(packets[f], lengths[f], out[f])


@njit(cache=True)
def _compact_kernel(rows, row_start, lengths, to_feature, out):  # pragma: no cover - compiled
    """:func:`_features_kernel` over compact rows (flow ``f`` is ``rows[row_start[f]:][:lengths[f]]``),
    each flow's float64 results stored straight into ``out`` float32 (N, 20) in FLOW_FEATURES
    order (the same rounding as NumPy's float64 -> float32 cast)."""
    tmp = np.zeros(to_feature.shape[0], np.float64)
    for f in range(lengths.shape[0]):
        _flow_features(rows[row_start[f]:], lengths[f], tmp)
        o = out[f]
        for j in range(tmp.shape[0]):
            o[to_feature[j]] = tmp[j]


@njit(cache=True, inline="always")
def _flow_features(rows, n, o):  # pragma: no cover - compiled
    """The 20 features of one flow (its first ``n`` rows of ``rows``) into ``o`` float64 (20,)."""
    duration = 0.0
    total_size = 0.0
    n_fwd = s_fwd = n_bwd = s_bwd = n_gap = s_gap = 0.0
    mx_fwd = mx_bwd = mx_gap = -np.inf
    n_long = long_total = 0.0
    syn = fin = rst = psh = 0.0
    for r in range(n):
        size = np.float64(rows[r, SIZE])
        gap = r > 0  # packets 2..n carry a gap
        iat = np.float64(rows[r, IAT]) if gap else 0.0
        fwd = rows[r, DIRECTION] == 0
        w_fwd = 1.0 if fwd else 0.0
        w_bwd = 0.0 if fwd else 1.0
        w_gap = 1.0 if gap else 0.0
        duration += iat
        total_size += size
        n_fwd += w_fwd
        s_fwd += size * w_fwd
        n_bwd += w_bwd
        s_bwd += size * w_bwd
        n_gap += w_gap
        s_gap += iat * w_gap
        if fwd:
            mx_fwd = max(mx_fwd, size)
        else:
            mx_bwd = max(mx_bwd, size)
        if gap:
            mx_gap = max(mx_gap, iat)
        # A gap > ACTIVITY_GAP_S separates two activity periods, so there are
        # 1 + (#long gaps) periods and their lengths add up to the sum of the short gaps.
        long_gap = gap and iat > ACTIVITY_GAP_S
        n_long += 1.0 if long_gap else 0.0
        long_total += iat if long_gap else 0.0
        syn += 1.0 if rows[r, SYN] != 0 else 0.0
        fin += 1.0 if rows[r, FIN] != 0 else 0.0
        rst += 1.0 if rows[r, RST] != 0 else 0.0
        psh += 1.0 if rows[r, PSH] != 0 else 0.0
    m_fwd, m_bwd, m_gap = _div0(s_fwd, n_fwd), _div0(s_bwd, n_bwd), _div0(s_gap, n_gap)
    # Two-pass population std (deviations from the flow mean): a constant series gives 0.
    q_fwd = q_bwd = q_gap = 0.0
    for r in range(n):
        size = np.float64(rows[r, SIZE])
        gap = r > 0
        iat = np.float64(rows[r, IAT]) if gap else 0.0
        fwd = rows[r, DIRECTION] == 0
        d = (size - m_fwd) * (1.0 if fwd else 0.0)
        q_fwd += d * d
        d = (size - m_bwd) * (0.0 if fwd else 1.0)
        q_bwd += d * d
        d = (iat - m_gap) * (1.0 if gap else 0.0)
        q_gap += d * d
    n_pk = np.float64(n)
    o[0] = duration
    o[1] = n_pk
    o[2] = _div0(n_fwd, n_pk)
    o[3] = m_fwd
    o[4] = mx_fwd if n_fwd != 0 else 0.0
    o[5] = np.sqrt(_div0(q_fwd, n_fwd))
    o[6] = m_bwd
    o[7] = mx_bwd if n_bwd != 0 else 0.0
    o[8] = np.sqrt(_div0(q_bwd, n_bwd))
    o[9] = m_gap
    o[10] = np.sqrt(_div0(q_gap, n_gap))
    o[11] = mx_gap if n_gap != 0 else 0.0
    o[12] = (duration - long_total) / (1.0 + n_long)
    o[13] = _div0(long_total, n_long)
    o[14] = _div0(total_size, duration)
    o[15] = _div0(n_pk, duration)
    o[16] = syn
    o[17] = fin
    o[18] = rst
    o[19] = psh


def compute_flow_features(packets: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The 20 flow features of each flow.

    ``packets`` float32 ``(N, T, 9)``, ``lengths`` int ``(N,)`` (valid rows, 1..T) ->
    float32 ``(N, 20)`` in :data:`janus.contract.FLOW_FEATURES` order. Padding rows are never
    read. Computed in float64 (sums in row order), one compiled pass per flow, so memory
    beyond the result is O(1).
    """
    packets = np.asarray(packets)
    lengths = np.asarray(lengths)
    if packets.ndim != 3 or packets.shape[2] != N_CHANNELS or lengths.shape != packets.shape[:1]:
        raise ValueError(f"expected packets (N, T, {N_CHANNELS}) and lengths (N,), got "
                         f"{packets.shape} and {lengths.shape}")
    if lengths.size and (lengths.min() < 1 or lengths.max() > packets.shape[1]):
        bad = int(np.flatnonzero((lengths < 1) | (lengths > packets.shape[1]))[0])
        raise ValueError(f"flow {bad} has length {int(lengths[bad])}; lengths must be in 1..{packets.shape[1]}")
    kernel_out = np.zeros((packets.shape[0], N_FLOW_FEATURES), np.float64)
    _features_kernel(np.ascontiguousarray(packets, dtype=np.float32),
                     np.ascontiguousarray(lengths, dtype=np.int64), kernel_out)
    return _to_feature_order(kernel_out)


def compact_flow_features(rows: np.ndarray, row_start: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """:func:`compute_flow_features` from compact rows, bit for bit the same result.

    ``rows`` float32 ``(K, 9)``; flow ``f``'s rows are ``rows[row_start[f] : row_start[f] +
    lengths[f]]`` (a :class:`janus.capture.flows.FlowResult` holds them so) -> float32 ``(N, 20)``.
    Saves building the padded tensor just to read its valid rows.
    """
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    row_start = np.ascontiguousarray(row_start, dtype=np.int64)
    lengths = np.ascontiguousarray(lengths, dtype=np.int64)
    if rows.ndim != 2 or rows.shape[1] != N_CHANNELS or row_start.shape != lengths.shape:
        raise ValueError(f"expected rows (K, {N_CHANNELS}), row_start and lengths (N,), got "
                         f"{rows.shape}, {row_start.shape} and {lengths.shape}")
    if lengths.size and (lengths.min() < 1 or row_start.min() < 0
                         or (row_start + lengths).max() > rows.shape[0]):
        raise ValueError(f"flow rows out of range: lengths must be >= 1 and every flow must lie in "
                         f"the {rows.shape[0]} rows")
    out = np.empty((lengths.shape[0], N_FLOW_FEATURES), np.float32)
    _compact_kernel(rows, row_start, lengths, _KERNEL_TO_FEATURE, out)
    return out


def _to_feature_order(kernel_out: np.ndarray) -> np.ndarray:
    out = np.empty((kernel_out.shape[0], N_FLOW_FEATURES), np.float32)
    out[:, _KERNEL_TO_FEATURE] = kernel_out
    return out


def arrow_column(values: np.ndarray, dtype: str):
    """A 1-D NumPy array -> pyarrow array of ``dtype`` (``"int64"``, ``"float32"``, ...).

    Built from the array's buffer: ``pa.array(ndarray)`` imports pandas on first use, which
    costs ~0.25 s per process (a large share of extracting a small capture).
    """
    import pyarrow as pa

    values = np.ascontiguousarray(values, dtype=np.dtype(dtype))
    return pa.Array.from_buffers(pa.type_for_alias(dtype), values.shape[0], [None, pa.py_buffer(values)])


def features_table(features: np.ndarray, first_id: int = 0):
    """``(N, 20)`` features of flows ``first_id ..`` -> a pyarrow Table with ``flow_id``
    (int64) + 20 float32 columns."""
    import pyarrow as pa

    cols = {"flow_id": arrow_column(np.arange(first_id, first_id + features.shape[0]), "int64")}
    for j, name in enumerate(FLOW_FEATURES):
        cols[name] = arrow_column(features[:, j], "float32")
    return pa.table(cols)


# --------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="janus features",
        description=f"Recompute DIR/{FEATURES_FILE} (flow_id + the 20 flow features) from "
        f"DIR/{PACKETS_FILE} (or the sharded store DIR/{PACKETS_STORE_DIR}/).",
    )
    parser.add_argument("dataset_dir", metavar="DIR", type=Path,
                        help=f"an extracted dataset folder holding {PACKETS_FILE} or {PACKETS_STORE_DIR}/")
    return parser


def recompute_features(dataset_dir: Path) -> int:
    """Rewrite ``DIR/flow_features.parquet`` from the packet tensor (``packets.npz`` or the
    sharded store), one chunk of flows at a time: memory is one chunk, not the dataset.
    Returns the number of flows."""
    import pyarrow.parquet as pq

    from janus.datasets.store import open_packets
    from janus.io import atomic_path

    store = open_packets(dataset_dir)
    with atomic_path(dataset_dir / FEATURES_FILE) as tmp:
        writer = None
        try:
            for rows, packets, lengths in store.chunks():
                table = features_table(compute_flow_features(packets, lengths), first_id=int(rows[0]))
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema, use_dictionary=False)
                writer.write_table(table)
            if writer is None:  # no flows: an empty table with the schema
                pq.write_table(features_table(np.zeros((0, N_FLOW_FEATURES))), tmp, use_dictionary=False)
        finally:
            if writer is not None:
                writer.close()
    return store.n_flows


def run(args: argparse.Namespace) -> int:
    recompute_features(args.dataset_dir)
    return 0


def main(argv=None) -> int:
    return run_main(build_parser, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
