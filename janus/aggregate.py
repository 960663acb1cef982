"""The aggregate step: a d-dimensional score vector per flow -> one anomaly scalar per flow.

Every aggregator is fitted on the scores of the **benign validation** flows only
(``val`` in the target's ``SPLITS.npz``) and never sees a label: this module takes no
labels argument and opens no labels file, which ``tests/test_evaluate.py`` checks.

Methods (all: higher = more anomalous):

* ``oas`` -- the paper's aggregator. The columns are first z-scored with the validation
  mean and standard deviation, then a covariance is fitted with the Oracle Approximating
  Shrinkage estimator (:class:`sklearn.covariance.OAS`) and the output is the Mahalanobis
  distance ``sqrt((z - mu)^T P (z - mu))`` under its precision ``P``. Standardising first
  matters: OAS shrinks towards ``trace(S)/d * I``, which only means "shrink towards
  independence" when the columns share a scale (an NLL in nats and a squared norm do not).
* ``ledoit_wolf`` -- the same with :class:`sklearn.covariance.LedoitWolf` shrinkage.
* ``mahalanobis`` -- the same with the unshrunk empirical covariance, inverted with a
  pseudo-inverse so that a rank-deficient validation set (a constant column, ``n <= d``)
  still gives a distance instead of an error.
* ``maxz`` -- ``max_j (x_j - mean_j) / std_j``: the largest *signed* z-score. Signed,
  because every score column is oriented "higher = more anomalous", so an unusually low
  score is not evidence of an attack.

A column that is constant on the validation flows gets a scale of 1 instead of 0 (with a
warning), so it contributes its raw deviation rather than an infinite one.

The outputs are distances (square roots), not the squared forms sklearn's
``mahalanobis`` returns; the two rank flows identically, so AUROC is unaffected.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import contract
from .cli import run_main
from .errors import JanusError
from .io import read_parquet, write_parquet
from .splits import load_splits

log = logging.getLogger(__name__)

#: Aggregation methods, in the column order of the output file.
METHODS: tuple[str, ...] = ("oas", "maxz", "mahalanobis", "ledoit_wolf")

#: Validation standard deviations below this are treated as a constant column.
_MIN_STD = 1e-12


@dataclass
class Aggregator:
    """A fitted aggregator: maps a score matrix ``(N, d)`` to scalars ``(N,)``.

    ``mean``/``std`` (``(d,)``) z-score the columns; ``precision`` (``(d, d)``, in z units)
    is ``None`` for ``maxz``. ``stats`` holds what the log reports (shrinkage, spectrum).
    """

    method: str
    columns: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    precision: np.ndarray | None = None
    location: np.ndarray | None = None  # (d,) covariance estimator's centre, z units
    stats: dict = field(default_factory=dict)

    def apply(self, scores: np.ndarray) -> np.ndarray:
        """Aggregate ``scores`` ``(N, d)`` (float) into ``(N,)`` float64 scalars."""
        x = np.asarray(scores, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.mean.shape[0]:
            raise JanusError(
                f"aggregator {self.method!r} was fitted on {self.mean.shape[0]} columns "
                f"{list(self.columns)}, got an array of shape {x.shape}"
            )
        z = (x - self.mean) / self.std  # (N, d)
        if self.method == "maxz":
            return z.max(axis=1)
        diff = z - self.location  # (N, d)
        d2 = np.einsum("nd,de,ne->n", diff, self.precision, diff)
        # A pseudo-inverse of a PSD matrix is PSD, but rounding can leave -1e-16.
        return np.sqrt(np.maximum(d2, 0.0))


def fit_aggregator(
    val_scores: np.ndarray, method: str, columns: Sequence[str] | None = None
) -> Aggregator:
    """Fit aggregator ``method`` (one of :data:`METHODS`) on benign validation scores ``(n, d)``."""
    from sklearn.covariance import OAS, EmpiricalCovariance, LedoitWolf

    if method not in METHODS:
        raise JanusError(f"unknown aggregation method {method!r}; choose from {list(METHODS)}")
    x = np.asarray(val_scores, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise JanusError(
            f"aggregation needs at least 2 benign validation flows with a 2-d score matrix, "
            f"got shape {x.shape}"
        )
    cols = tuple(columns) if columns is not None else tuple(f"s{j}" for j in range(x.shape[1]))
    if not np.isfinite(x).all():
        bad = [cols[j] for j in np.flatnonzero(~np.isfinite(x).all(axis=0))]
        raise JanusError(f"validation scores contain NaN/inf in columns {bad}")
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    constant = std < _MIN_STD * np.maximum(1.0, np.abs(mean))
    if constant.any():
        log.warning("columns constant on the validation flows (scale set to 1): %s",
                    [cols[j] for j in np.flatnonzero(constant)])
    std = np.where(constant, 1.0, std)
    agg = Aggregator(method=method, columns=cols, mean=mean, std=std)
    agg.stats = {"n_val": int(x.shape[0]), "d": int(x.shape[1])}
    if method == "maxz":
        return agg

    z = (x - mean) / std  # (n, d)
    if method == "oas":
        est = OAS(assume_centered=False).fit(z)
        agg.stats["shrinkage"] = float(est.shrinkage_)
    elif method == "ledoit_wolf":
        est = LedoitWolf(assume_centered=False).fit(z)
        agg.stats["shrinkage"] = float(est.shrinkage_)
    else:
        # store_precision=False: sklearn would use pinvh anyway; we want it explicit.
        est = EmpiricalCovariance(store_precision=False, assume_centered=False).fit(z)
    cov = est.covariance_
    agg.location = np.asarray(est.location_, dtype=np.float64)
    agg.precision = np.linalg.pinv(cov, hermitian=True)
    eig = np.linalg.eigvalsh(cov)
    agg.stats["cov_eig_min"] = float(eig[0])
    agg.stats["cov_eig_max"] = float(eig[-1])
    agg.stats["condition"] = float(eig[-1] / eig[0]) if eig[0] > 0 else float("inf")
    return agg


def aggregate_all(
    val_scores: np.ndarray, scores: np.ndarray, columns: Sequence[str],
    methods: Sequence[str] = METHODS,
) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
    """Fit every method on ``val_scores`` ``(n, d)`` and apply it to ``scores`` ``(N, d)``.

    Returns ``({method: (N,) scalars}, {method: fitted stats})``; the stats include the
    validation distribution of the aggregated scalar (percentiles 50/95/99).
    """
    out: dict[str, np.ndarray] = {}
    stats: dict[str, dict] = {}
    for method in methods:
        agg = fit_aggregator(val_scores, method, columns)
        out[method] = agg.apply(scores)
        v = agg.apply(val_scores)
        stats[method] = dict(agg.stats, val_p50=float(np.percentile(v, 50)),
                             val_p95=float(np.percentile(v, 95)),
                             val_p99=float(np.percentile(v, 99)))
    return out, stats


# --------------------------------------------------------------------------- file readers
def read_score_table(
    path: str | Path, columns: Sequence[str] | None = None
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Read a scores Parquet -> ``(flow_id (N,) int64, scores (N, d) float64, column names)``.

    ``columns=None`` takes every numeric column except ``flow_id``, in file order.
    """
    path = Path(path)
    table = read_parquet(path, "scores file")
    names = table.column_names
    if "flow_id" not in names:
        raise JanusError(f"{path}: no 'flow_id' column (columns: {names})")
    if columns is None:
        import pyarrow.types as pat

        columns = [n for n in names if n != "flow_id"
                   and (pat.is_floating(table.schema.field(n).type)
                        or pat.is_integer(table.schema.field(n).type))]
    missing = [c for c in columns if c not in names]
    if missing or not columns:
        raise JanusError(f"{path}: score columns {missing or '(none)'} not found (columns: {names})")
    flow_id = table.column("flow_id").to_numpy().astype(np.int64)
    mat = np.column_stack([table.column(c).to_numpy(zero_copy_only=False).astype(np.float64)
                           for c in columns])  # (N, d)
    return flow_id, mat, tuple(columns)


def rows_of(flow_id: np.ndarray, wanted: np.ndarray, what: str) -> np.ndarray:
    """Row indices of ids ``wanted`` in the (unique) id column ``flow_id``; error if any is absent."""
    order = np.argsort(flow_id, kind="stable")
    sorted_ids = flow_id[order]
    if len(sorted_ids) == 0:
        pos = np.zeros(len(wanted), np.int64)
        ok = np.zeros(len(wanted), bool)
    else:
        pos = np.minimum(np.searchsorted(sorted_ids, wanted), len(sorted_ids) - 1)
        ok = sorted_ids[pos] == wanted
    if not ok.all():
        first = int(wanted[np.flatnonzero(~ok)[0]])
        raise JanusError(f"{what}: {int((~ok).sum())} of {len(wanted)} flow ids are missing "
                         f"(first: flow_id {first}); were the scores and splits made from the "
                         "same dataset?")
    return order[pos]


# --------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="janus aggregate",
        description="Aggregate score vectors into scalars (oas, maxz, mahalanobis, ledoit_wolf) "
        "fitted on the benign validation flows only. Reads no labels.",
    )
    p.add_argument("--scores", required=True, type=Path,
                   help="SCORES.parquet: flow_id + score columns (higher = more anomalous)")
    p.add_argument("--splits", required=True, type=Path,
                   help="the TARGET dataset's SPLITS.npz; its 'val' ids (benign validation) "
                   "are the flows the aggregators are fitted on")
    p.add_argument("--out", required=True, type=Path,
                   help="AGG.parquet: flow_id, the method columns, then the input score columns")
    p.add_argument("--columns", nargs="+", default=None,
                   help="score columns to aggregate (default: janus.contract.SCORE_COLUMNS when "
                   "all are present, else every numeric column but flow_id)")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS,
                   help="aggregation methods to write (default: all)")
    return p


def declared_aggregate_columns(scores_path: str | Path) -> list[str] | None:
    """The score columns a scores file asks to be aggregated (schema metadata), or None."""
    import json

    import pyarrow.parquet as pq

    try:
        metadata = pq.read_schema(scores_path).metadata or {}
    except Exception:  # unreadable files get their precise error from read_score_table
        return None
    raw = metadata.get(contract.AGGREGATE_COLUMNS_KEY.encode())
    return None if raw is None else list(json.loads(raw))


def aggregate_file(
    scores_path: str | Path, splits_path: str | Path, out_path: str | Path,
    columns: Sequence[str] | None = None, methods: Sequence[str] = METHODS,
) -> dict[str, dict]:
    """Aggregate one scores file into ``out_path``, fitted on the ``val`` ids of ``splits_path``.

    Reads exactly two files -- the scores Parquet and the TARGET's ``SPLITS.npz`` -- and never
    a label (``janus evaluate --aggregate`` calls this before it opens any labels file).
    Writes ``flow_id``, the ``methods`` columns, then the input score columns. ``columns=None``
    takes the columns the scores file names under
    :data:`janus.contract.AGGREGATE_COLUMNS_KEY` (``janus score`` writes it), else
    :data:`janus.contract.SCORE_COLUMNS` when all are present, else every numeric column but
    ``flow_id``. Returns ``{method: fitted stats}``.
    """
    import pyarrow as pa

    if columns is None:
        columns = declared_aggregate_columns(scores_path)
    flow_id, scores, cols = read_score_table(scores_path, columns)
    if columns is None and all(c in cols for c in contract.SCORE_COLUMNS):
        keep = [cols.index(c) for c in contract.SCORE_COLUMNS]
        scores, cols = scores[:, keep], tuple(contract.SCORE_COLUMNS)
    clash = [c for c in cols if c in METHODS]
    if clash:
        raise JanusError(f"{scores_path}: score columns {clash} clash with method names; "
                         "pass --columns without them")
    splits = load_splits(splits_path)
    val_rows = rows_of(flow_id, splits["val"], f"{scores_path} vs 'val' of {splits_path}")
    val = scores[val_rows]  # (n_val, d)
    finite = np.isfinite(scores)
    if not finite.all():
        bad = [cols[j] for j in np.flatnonzero(~finite.all(axis=0))]
        raise JanusError(f"{scores_path}: NaN/inf scores in columns {bad} "
                         f"(first at flow_id {int(flow_id[np.flatnonzero(~finite.all(1))[0]])})")
    log.info("%s: fitting %s on %d benign validation flows x %d columns %s", scores_path,
             list(methods), len(val_rows), len(cols), list(cols))
    log.info("validation column mean: %s", np.array2string(val.mean(0), precision=4))
    log.info("validation column std:  %s", np.array2string(val.std(0), precision=4))
    out, stats = aggregate_all(val, scores, cols, methods)
    for method, st in stats.items():
        log.info("%s: %s", method, ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else
                                             f"{k}={v}" for k, v in st.items()))
    arrays = {"flow_id": pa.array(flow_id, pa.int64())}
    arrays.update({m: pa.array(out[m], pa.float64()) for m in methods})
    arrays.update({c: pa.array(scores[:, j], pa.float64()) for j, c in enumerate(cols)})
    write_parquet(out_path, pa.table(arrays))
    log.info("wrote %s (%d flows)", out_path, len(flow_id))
    return stats


def run(args: argparse.Namespace) -> int:
    aggregate_file(args.scores, args.splits, args.out, args.columns, args.methods)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(build_parser, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
