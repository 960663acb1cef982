"""The aggregate step: a d-dimensional score vector per flow -> one anomaly scalar per flow.

Every aggregator is fitted on the scores of the **benign calibration** flows only (``cal``
in the target's ``SPLITS.npz``, disjoint from the ``val`` flows that stopped the model's
training; ``val`` for a splits file older than ``cal``) and never sees a label: this module
takes no labels argument and opens no labels file, which ``tests/test_evaluate.py`` checks.

Cross-fitting. The evaluation sets the P95/P99 thresholds at percentiles of the aggregated
score of the same ``cal`` flows; the distance of a flow the covariance was fitted on is
smaller than that of a fresh flow, so in-sample percentiles give thresholds that flag more
than 5 % / 1 % of new benign flows. The value written for a ``cal`` flow is therefore the
out-of-fold one: ``cal`` is cut into :data:`CAL_FOLDS` folds (alternate flows in id order)
and each fold is scored by the aggregator fitted on the others. Every other flow (val, test)
gets the aggregator fitted on all of ``cal``. Fitted on fewer flows, the fold aggregators
spread a little wider, so the thresholds err on the conservative side.

Two more scalars are written here (``janus evaluate`` asks for them):

* ``oas_source`` (:data:`SOURCE_COLUMN`) -- the *uncalibrated* transfer: the OAS aggregator
  fitted on the **source** dataset's ``cal`` scores (the model's own training site), applied
  unchanged to the target; its thresholds are the source's cross-fitted ``cal`` percentiles,
  stored in the file's schema metadata (:data:`THRESHOLDS_KEY`) for the evaluation to use.
  No target flow informs it. ``oas`` (refitted on the target's benign ``cal``) is the
  *calibrated cross-domain transfer*; neither is zero-shot in the sense of "no target data"
  except ``oas_source``.
* the model-free control (:func:`feature_oas_file`): the same OAS Mahalanobis distance on the
  20 flow features themselves (the fixed log transform of the baselines, z-scored and fitted
  on the target's ``cal`` flows, two-sided): what target calibration achieves with no model.

Methods (all: higher = more anomalous):

* ``oas`` -- the default scalar: the Mahalanobis distance under the Oracle Approximating
  Shrinkage covariance (:class:`sklearn.covariance.OAS`) of the z-scored columns, shaped by
  :class:`AggregateOptions` (by default one-sided, without the exactly derived columns; see
  below).
* ``oas_paper`` -- the paper's aggregator, kept so that its choice stays reproducible: every
  input column (all 10 for JANUS), z-scored with the validation mean and standard deviation,
  OAS covariance, two-sided distance ``sqrt((z - mu)^T P (z - mu))``. It ignores the options.
* ``ledoit_wolf`` -- as ``oas`` with :class:`sklearn.covariance.LedoitWolf` shrinkage.
* ``mahalanobis`` -- as ``oas`` with the unshrunk empirical covariance, inverted with a
  pseudo-inverse so that a rank-deficient validation set (a constant column, ``n <= d``)
  still gives a distance instead of an error.
* ``maxz`` -- ``max_j (x_j - mean_j) / std_j`` over the columns ``oas`` uses: the largest
  *signed* z-score: it grows with every score and never with a deficit, so it is
  one-sided by construction and ``sided`` does not change it (a flow whose scores are all
  below the centre keeps its negative rank instead of a tie at 0).

Standardising first matters: OAS shrinks towards ``trace(S)/d * I``, which only means
"shrink towards independence" when the columns share a scale (an NLL in nats and a squared
norm do not).

The options (:class:`AggregateOptions`; ``aggregate.*`` in the workflow config) shape the
input and the form of every method but ``oas_paper``:

* ``sided`` -- ``one`` (default): only the excess over the benign centre counts. Every score
  is oriented "higher = more anomalous", so a flow whose scores are unusually *low* (a flow
  the model finds easier than the benign ones) is no evidence of an attack, yet the two-sided
  form ranks it as far out as one with equally high scores. The one-sided distance clips the
  centred z-scores at 0 from below, ``u = max(z - mu, 0)``, then takes ``sqrt(u^T P u)``. It
  clips in the columns' own coordinates, where "higher = more anomalous" holds, not in the
  whitened ones, where it has no meaning; ``P`` is PSD, so the form stays a norm of ``u``.
  ``two``: the paper's form.
* ``collinear`` -- ``exact`` (default): leave out every column that is an exact linear
  combination of the others (residual RMS below :data:`_COLLINEAR_TOL` of its standard
  deviation on the validation flows; columns tested in input order, so ``disc_nll_total``,
  the sum of the six ``disc_nll_c`` that follow it, is the one dropped). Such a column adds
  no information, only a null direction of the covariance and a second weight on its parts.
  ``terminal_norm`` is *not* exact: it is a per-flow, length-weighted mean of
  ``terminal_flow`` and ``terminal_packet``, and it is the best single score, so it stays.
  ``drop``: also drop the columns of :data:`DERIVED_COLUMNS` (``disc_nll_total``,
  ``terminal_norm``) whenever all their parts are inputs. ``keep``: use every input column.
* ``transform`` -- ``none`` (default), ``log1p`` or ``log``: a per-column transform applied
  before z-scoring, for nonnegative scores (squared norms, NLLs) with heavy right tails:
  ``log1p(x)``, or ``log(x + eps_j)`` with ``eps_j`` = 1 % of the column's validation median
  (so a score of 0 stays finite). A negative score is then an error.

The defaults were chosen by measurement (README, "How the default was chosen";
``benchmarks/ablate_method.py aggregators``): over the four default sites, within and across
sites, seeds 42-44, the one-sided form matches the paper's OAS on the 10 JANUS scores
(-0.006 ± 0.019 within, -0.007 ± 0.016 across, paired by seed) and lifts the 3 continuous
scores of ``janus_cont`` by +0.082 ± 0.043 within, where the two-sided form inverts an attack
class whose scores lie below the benign ones.

A column that is constant on the validation flows gets a scale of 1 instead of 0 (with a
warning), so it contributes its raw deviation rather than an infinite one.

The outputs are distances (square roots), not the squared forms sklearn's
``mahalanobis`` returns; the two rank flows identically, so AUROC is unaffected.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from janus import contract
from janus.cli import run_main
from janus.datasets.splits import calibration_ids, load_splits
from janus.errors import JanusError
from janus.io import read_parquet, write_parquet

log = logging.getLogger(__name__)

#: Aggregation methods, in the column order of the output file.
METHODS: tuple[str, ...] = ("oas", "oas_paper", "maxz", "mahalanobis", "ledoit_wolf")
#: Values of :attr:`AggregateOptions.sided`, :attr:`~AggregateOptions.collinear` and
#: :attr:`~AggregateOptions.transform`.
SIDES: tuple[str, ...] = ("one", "two")
COLLINEAR: tuple[str, ...] = ("drop", "exact", "keep")
TRANSFORMS: tuple[str, ...] = ("none", "log1p", "log")

#: Score columns that are exact functions of other columns: name -> its parts.
DERIVED_COLUMNS: dict[str, tuple[str, ...]] = {
    "disc_nll_total": tuple(c for c in contract.SCORE_COLUMNS if c.startswith("disc_nll_")
                            and c != "disc_nll_total"),
    "terminal_norm": ("terminal_flow", "terminal_packet"),
}

#: Folds of the cross-fitted calibration scores (see the module docstring).
CAL_FOLDS = 2
#: The uncalibrated transfer's column: OAS fitted on the source's calibration flows.
SOURCE_COLUMN = "oas_source"
#: Schema-metadata key of a scores file holding thresholds set elsewhere:
#: JSON ``{column: {"95": t, "99": t, "from": text}}``.
THRESHOLDS_KEY = "janus.thresholds"
#: The control's options: a feature far from the benign centre in either direction counts.
#: Validation standard deviations below this are treated as a constant column.
_MIN_STD = 1e-12
#: A column whose least-squares residual on the kept columns has an RMS below this (in units
#: of its own validation std) is an exact linear combination of them. Scores are computed in
#: float32 (relative rounding ~1e-7); a merely correlated column is far above this.
_COLLINEAR_TOL = 1e-5
#: ``log`` transform offset, as a fraction of the column's validation median.
_LOG_EPS = 0.01


@dataclass(frozen=True)
class AggregateOptions:
    """How ``oas``, ``ledoit_wolf``, ``mahalanobis`` and ``maxz`` treat the score vector (see
    the module docstring); ``oas_paper`` ignores them."""

    sided: str = "one"
    collinear: str = "exact"
    transform: str = "none"

    def __post_init__(self) -> None:
        for key, value, allowed in (("sided", self.sided, SIDES),
                                    ("collinear", self.collinear, COLLINEAR),
                                    ("transform", self.transform, TRANSFORMS)):
            if value not in allowed:
                raise JanusError(f"aggregate option {key}={value!r} is not one of "
                                 f"{list(allowed)}")


#: What ``oas_paper`` uses whatever the options: the paper's aggregator.
PAPER_OPTIONS = AggregateOptions(sided="two", collinear="keep", transform="none")
#: The model-free control's options: a flow feature far from the benign centre in either
#: direction is unusual (features have no "higher = more anomalous" orientation).
CONTROL_OPTIONS = AggregateOptions(sided="two", collinear="exact", transform="none")


@dataclass
class Aggregator:
    """A fitted aggregator: maps a score matrix ``(N, d)`` to scalars ``(N,)``.

    ``keep`` (``(k,)`` indices into the ``d`` input ``columns``) selects the columns used;
    ``offset`` (``(k,)``) is the ``log`` transform's ``eps``; ``mean``/``std`` (``(k,)``)
    z-score the transformed columns; ``precision`` (``(k, k)``, in z units) is ``None`` for
    ``maxz``. ``stats`` holds what the log reports (columns used, shrinkage, spectrum).
    """

    method: str
    columns: tuple[str, ...]
    options: AggregateOptions
    keep: np.ndarray
    offset: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    precision: np.ndarray | None = None
    location: np.ndarray | None = None  # (k,) covariance estimator's centre, z units
    stats: dict = field(default_factory=dict)

    @property
    def used(self) -> tuple[str, ...]:
        """Names of the columns the scalar is computed from."""
        return tuple(self.columns[j] for j in self.keep)

    def standardise(self, scores: np.ndarray) -> np.ndarray:
        """``scores`` ``(N, d)`` -> the kept, transformed, z-scored columns ``(N, k)``."""
        x = np.asarray(scores, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.columns):
            raise JanusError(
                f"aggregator {self.method!r} was fitted on {len(self.columns)} columns "
                f"{list(self.columns)}, got an array of shape {x.shape}"
            )
        t = _transform(x[:, self.keep], self.options.transform, self.offset, self.used)
        return (t - self.mean) / self.std  # (N, k)

    def apply(self, scores: np.ndarray) -> np.ndarray:
        """Aggregate ``scores`` ``(N, d)`` (float) into ``(N,)`` float64 scalars."""
        z = self.standardise(scores)  # (N, k)
        if self.method == "maxz":
            return z.max(axis=1)
        diff = z - self.location  # (N, k)
        if self.options.sided == "one":
            diff = np.maximum(diff, 0.0)
        d2 = np.einsum("nd,de,ne->n", diff, self.precision, diff)
        # A pseudo-inverse of a PSD matrix is PSD, but rounding can leave -1e-16.
        return np.sqrt(np.maximum(d2, 0.0))


def _transform(x: np.ndarray, kind: str, offset: np.ndarray, names: Sequence[str]
               ) -> np.ndarray:
    """The per-column transform ``kind`` of ``x`` ``(N, k)``; nonnegative input for the logs."""
    if kind == "none":
        return x
    negative = (x < 0).any(axis=0)
    if negative.any():
        bad = [names[j] for j in np.flatnonzero(negative)]
        raise JanusError(f"transform {kind!r} needs nonnegative scores, but columns {bad} "
                         "have negative values; use transform 'none'")
    return np.log1p(x) if kind == "log1p" else np.log(x + offset)


def derived_columns(columns: Sequence[str]) -> list[str]:
    """The columns of :data:`DERIVED_COLUMNS` whose parts are all among ``columns``."""
    return [c for c, parts in DERIVED_COLUMNS.items()
            if c in columns and all(p in columns for p in parts)]


def independent_columns(z: np.ndarray, candidates: Sequence[int]) -> list[int]:
    """The ``candidates`` (column indices of ``z`` ``(n, d)``, z-scored) left after dropping
    each one that is an exact linear combination of the others still kept, tested in order.

    Testing in order against *all* the others drops a total before its parts when it comes
    first, as in :data:`janus.contract.SCORE_COLUMNS`. "Exact" allows for float32 rounding in
    the score files (a sum of six float32 NLLs is off by ~1e-7 of its scale): residual RMS
    below :data:`_COLLINEAR_TOL`. A constant column (all zeros after z-scoring) is kept: its
    unit scale is handled by the covariance estimators. The test needs more flows than
    regressors; with too few (``n <= k + 1``, where any column is a combination), a column is
    kept unchecked.
    """
    kept = list(candidates)
    for j in candidates:
        col = z[:, j]
        others = [k for k in kept if k != j and np.any(z[:, k] != 0.0)]
        if not others or not np.any(col != 0.0) or len(others) + 1 >= z.shape[0]:
            continue
        a = np.column_stack([np.ones(z.shape[0]), z[:, others]])  # (n, 1 + k)
        coef, *_ = np.linalg.lstsq(a, col, rcond=None)
        resid = col - a @ coef
        if np.sqrt(np.mean(resid**2)) < _COLLINEAR_TOL * max(col.std(), _MIN_STD):
            kept.remove(j)
    return kept


def _zscore_stats(t: np.ndarray, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    mean = t.mean(axis=0)
    std = t.std(axis=0)
    constant = std < _MIN_STD * np.maximum(1.0, np.abs(mean))
    if constant.any():
        log.warning("columns constant on the validation flows (scale set to 1): %s",
                    [names[j] for j in np.flatnonzero(constant)])
    return mean, np.where(constant, 1.0, std)


def fit_aggregator(
    val_scores: np.ndarray, method: str, columns: Sequence[str] | None = None,
    options: AggregateOptions | None = None,
) -> Aggregator:
    """Fit aggregator ``method`` (one of :data:`METHODS`) on benign validation scores ``(n, d)``.

    ``options`` default to :class:`AggregateOptions` (``oas_paper`` always uses
    :data:`PAPER_OPTIONS`); ``columns`` name the ``d`` columns (the derived-column rule
    needs the :data:`janus.contract.SCORE_COLUMNS` names).
    """
    from sklearn.covariance import OAS, EmpiricalCovariance, LedoitWolf

    if method not in METHODS:
        raise JanusError(f"unknown aggregation method {method!r}; choose from {list(METHODS)}")
    opts = PAPER_OPTIONS if method == "oas_paper" else (options or AggregateOptions())
    x = np.asarray(val_scores, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise JanusError(
            f"aggregation needs at least 2 benign validation flows with a 2-d score matrix, "
            f"got shape {x.shape}"
        )
    cols = tuple(columns) if columns is not None else tuple(f"s{j}" for j in range(x.shape[1]))
    if len(cols) != x.shape[1]:
        raise JanusError(f"{len(cols)} column names {list(cols)} for {x.shape[1]} score columns")
    if not np.isfinite(x).all():
        bad = [cols[j] for j in np.flatnonzero(~np.isfinite(x).all(axis=0))]
        raise JanusError(f"validation scores contain NaN/inf in columns {bad}")

    dropped = derived_columns(cols) if opts.collinear == "drop" else []
    candidates = [j for j, c in enumerate(cols) if c not in dropped]
    offset = np.zeros(len(cols))
    if opts.transform == "log":
        offset = _LOG_EPS * np.median(x, axis=0) + _MIN_STD
    names = [cols[j] for j in candidates]
    t = _transform(x[:, candidates], opts.transform, offset[candidates], names)  # (n, c)
    mean, std = _zscore_stats(t, names)
    keep = candidates
    if opts.collinear in ("drop", "exact"):
        z_c = (t - mean) / std  # (n, c)
        keep = [candidates[i] for i in independent_columns(z_c, range(len(candidates)))]
        dropped += [cols[j] for j in candidates if j not in keep]
        sel = [candidates.index(j) for j in keep]
        mean, std = mean[sel], std[sel]
    keep_arr = np.asarray(keep, dtype=np.int64)
    agg = Aggregator(method=method, columns=cols, options=opts, keep=keep_arr,
                     offset=offset[keep_arr], mean=mean, std=std)
    agg.stats = {"n_val": int(x.shape[0]), "d": len(keep), "sided": opts.sided,
                 "transform": opts.transform, "dropped": dropped}
    if method == "maxz":
        return agg

    z = agg.standardise(x)  # (n, k)
    if method in ("oas", "oas_paper"):
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


def cross_fitted(
    fit_scores: np.ndarray, scores: np.ndarray, fit_rows: np.ndarray | None, method: str,
    columns: Sequence[str], options: AggregateOptions | None = None,
) -> tuple[np.ndarray, Aggregator]:
    """Fit ``method`` on ``fit_scores`` ``(n, d)`` and apply it to ``scores`` ``(N, d)``; the
    rows ``fit_rows`` ``(n,)`` of ``scores`` (the fitted flows, in the order of ``fit_scores``)
    get out-of-fold values instead (:data:`CAL_FOLDS` alternate folds, each scored by the
    aggregator fitted on the others). ``fit_rows=None``, or too few flows for two per fold,
    leaves every row in-sample. Returns ``((N,) scalars, the aggregator fitted on all)``."""
    agg = fit_aggregator(fit_scores, method, columns, options)
    out = agg.apply(scores)  # (N,)
    n = len(fit_scores)
    if fit_rows is None:
        return out, agg
    if n < 2 * CAL_FOLDS:
        log.warning("%d calibration flows are too few to cross-fit %s: its thresholds are "
                    "in-sample", n, method)
        return out, agg
    fold = np.arange(n) % CAL_FOLDS
    for k in range(CAL_FOLDS):
        part = fold == k
        out[fit_rows[part]] = fit_aggregator(fit_scores[~part], method, columns,
                                             options).apply(fit_scores[part])
    return out, agg


def aggregate_all(
    val_scores: np.ndarray, scores: np.ndarray, columns: Sequence[str],
    methods: Sequence[str] = METHODS, options: AggregateOptions | None = None,
    fit_rows: np.ndarray | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
    """Fit every method on ``val_scores`` ``(n, d)`` (the calibration flows) and apply it to
    ``scores`` ``(N, d)``; ``fit_rows`` ``(n,)``, the rows of ``scores`` the calibration flows
    are, get their cross-fitted values (:func:`cross_fitted`).

    Returns ``({method: (N,) scalars}, {method: fitted stats})``; the stats include the
    calibration distribution of the aggregated scalar (percentiles 50/95/99; cross-fitted
    when ``fit_rows`` is given).
    """
    out: dict[str, np.ndarray] = {}
    stats: dict[str, dict] = {}
    for method in methods:
        out[method], agg = cross_fitted(val_scores, scores, fit_rows, method, columns, options)
        v = agg.apply(val_scores) if fit_rows is None else out[method][fit_rows]
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
        description="Aggregate score vectors into scalars (oas, oas_paper, maxz, mahalanobis, "
        "ledoit_wolf) fitted on the benign calibration flows only (cross-fitted on them). "
        "Reads no labels.",
    )
    p.add_argument("--scores", required=True, type=Path,
                   help="SCORES.parquet: flow_id + score columns (higher = more anomalous)")
    p.add_argument("--splits", required=True, type=Path,
                   help="the TARGET dataset's SPLITS.npz; its 'cal' ids (benign calibration; "
                   "'val' in a file without 'cal') are the flows the aggregators are fitted on")
    p.add_argument("--out", required=True, type=Path,
                   help="AGG.parquet: flow_id, the method columns, then the input score columns")
    p.add_argument("--columns", nargs="+", default=None,
                   help="score columns to aggregate (default: janus.contract.SCORE_COLUMNS when "
                   "all are present, else every numeric column but flow_id)")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS,
                   help="aggregation methods to write (default: all)")
    p.add_argument("--source", nargs=2, type=Path, default=None, metavar=("RAW", "SPLITS"),
                   help=f"also write {SOURCE_COLUMN}: OAS fitted on the 'cal' flows of the "
                   "SOURCE dataset (RAW: the same model's scores file of its training dataset, "
                   "SPLITS: that dataset's SPLITS.npz), the uncalibrated transfer")
    add_option_arguments(p)
    return p


def add_option_arguments(p: argparse.ArgumentParser) -> None:
    """The :class:`AggregateOptions` flags (shared with ``janus evaluate --aggregate``)."""
    d = AggregateOptions()
    g = p.add_argument_group("aggregator options (every method but oas_paper)")
    g.add_argument("--sided", choices=SIDES, default=d.sided,
                   help="one: only scores above the benign centre count (z clipped at 0 from "
                   f"below); two: the paper's two-sided distance (default {d.sided})")
    g.add_argument("--collinear", choices=COLLINEAR, default=d.collinear,
                   help="exact: leave out every column that is an exact linear combination of "
                   "the others (disc_nll_total); drop: also disc_nll_total / terminal_norm "
                   "whenever their parts are inputs; keep: use every column (default "
                   f"{d.collinear})")
    g.add_argument("--transform", choices=TRANSFORMS, default=d.transform,
                   help="per-column transform of the nonnegative scores before z-scoring: none, "
                   f"log1p, or log (x + 1%% of the validation median) (default {d.transform})")


def options_from_args(args: argparse.Namespace) -> AggregateOptions:
    return AggregateOptions(sided=args.sided, collinear=args.collinear, transform=args.transform)


def declared_aggregate_columns(scores_path: str | Path) -> list[str] | None:
    """The score columns a scores file asks to be aggregated (schema metadata), or None."""
    import pyarrow.parquet as pq

    try:
        metadata = pq.read_schema(scores_path).metadata or {}
    except Exception:  # noqa: BLE001 -- unreadable files get their precise error from read_score_table
        return None
    raw = metadata.get(contract.AGGREGATE_COLUMNS_KEY.encode())
    return None if raw is None else list(json.loads(raw))


def aggregate_file(
    scores_path: str | Path, splits_path: str | Path, out_path: str | Path,
    columns: Sequence[str] | None = None, methods: Sequence[str] = METHODS,
    options: AggregateOptions | None = None,
    source: tuple[str | Path, str | Path] | None = None,
) -> dict[str, dict]:
    """Aggregate one scores file into ``out_path``, fitted on the ``cal`` ids of ``splits_path``
    (cross-fitted on those flows, see the module docstring).

    Reads exactly two files -- the scores Parquet and the TARGET's ``SPLITS.npz`` -- and never
    a label (``janus evaluate --aggregate`` calls this before it opens any labels file).
    Writes ``flow_id``, the ``methods`` columns, the input score columns, then any
    :data:`janus.contract.EXTENDED_SCORE_COLUMNS` of the scores file (unchanged). ``columns=None``
    takes the columns the scores file names under
    :data:`janus.contract.AGGREGATE_COLUMNS_KEY` (``janus score`` writes it), else
    :data:`janus.contract.SCORE_COLUMNS` when all are present, else every numeric column but
    ``flow_id``. ``options`` shape every method but ``oas_paper`` (default
    :class:`AggregateOptions`). Rows are matched to the splits by ``flow_id``, never by
    position. ``source`` = (the source dataset's raw scores file of the same model, its
    SPLITS.npz) adds :data:`SOURCE_COLUMN` with its thresholds in the schema metadata.
    Returns ``{method: fitted stats}``.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

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
    cal_ids = calibration_ids(splits, str(splits_path))
    val_rows = rows_of(flow_id, cal_ids, f"{scores_path} vs 'cal' of {splits_path}")
    val = scores[val_rows]  # (n_cal, d)
    finite = np.isfinite(scores)
    if not finite.all():
        bad = [cols[j] for j in np.flatnonzero(~finite.all(axis=0))]
        raise JanusError(f"{scores_path}: NaN/inf scores in columns {bad} "
                         f"(first at flow_id {int(flow_id[np.flatnonzero(~finite.all(1))[0]])})")
    opts = options or AggregateOptions()
    if opts.transform != "none" and (scores < 0).any():
        j = int(np.flatnonzero((scores < 0).any(axis=0))[0])
        row = int(np.flatnonzero(scores[:, j] < 0)[0])
        raise JanusError(f"{scores_path}: column {cols[j]!r} is negative at flow_id "
                         f"{int(flow_id[row])} ({scores[row, j]:.4g}); transform "
                         f"{opts.transform!r} needs nonnegative scores, use --transform none")
    log.info("%s: fitting %s on %d benign calibration flows x %d columns %s, %s", scores_path,
             list(methods), len(val_rows), len(cols), list(cols), opts)
    log.info("calibration column mean: %s", np.array2string(val.mean(0), precision=4))
    log.info("calibration column std:  %s", np.array2string(val.std(0), precision=4))
    out, stats = aggregate_all(val, scores, cols, methods, opts, fit_rows=val_rows)
    for method, st in stats.items():
        log.info("%s: %s", method, ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else
                                             f"{k}={v}" for k, v in st.items()))
    arrays = {"flow_id": pa.array(flow_id, pa.int64())}
    arrays.update({m: pa.array(out[m], pa.float64()) for m in methods})
    metadata = {}
    if source is not None:
        src_out, thresholds = _source_fit(source, cols, scores, opts)
        arrays[SOURCE_COLUMN] = pa.array(src_out, pa.float64())
        metadata[THRESHOLDS_KEY] = json.dumps({SOURCE_COLUMN: thresholds})
    arrays.update({c: pa.array(scores[:, j], pa.float64()) for j, c in enumerate(cols)})
    # The extended path scores (janus score --extended) are reported, not aggregated: they pass
    # through, in the scores file's row order, so janus evaluate scores them beside the rest.
    names = pq.read_schema(scores_path).names
    extra = [c for c in contract.EXTENDED_SCORE_COLUMNS if c in names and c not in cols]
    if extra:
        arrays.update(zip(extra, map(pa.array, read_score_table(scores_path, extra)[1].T)))
    table = pa.table(arrays)
    if metadata:
        table = table.replace_schema_metadata(metadata)
    write_parquet(out_path, table)
    log.info("wrote %s (%d flows)", out_path, len(flow_id))
    return stats


def _source_fit(source: tuple[str | Path, str | Path], cols: Sequence[str], scores: np.ndarray,
                opts: AggregateOptions) -> tuple[np.ndarray, dict]:
    """The uncalibrated scalar: OAS fitted on the ``cal`` flows of ``source`` = (the source
    dataset's raw scores file, its SPLITS.npz), applied to ``scores`` ``(N, d)`` (columns
    ``cols``). Returns ``((N,) scalars, {"95", "99": the source's cross-fitted cal
    percentiles, "from": text})``."""
    src_path, src_splits_path = source
    src_id, src_scores, src_cols = read_score_table(src_path, list(cols))
    src_splits = load_splits(src_splits_path)
    ids = calibration_ids(src_splits, str(src_splits_path))
    rows = rows_of(src_id, ids, f"{src_path} vs 'cal' of {src_splits_path}")
    if not np.isfinite(src_scores[rows]).all():
        raise JanusError(f"{src_path}: NaN/inf scores on the calibration flows of "
                         f"{src_splits_path}")
    fit = src_scores[rows]  # (n_cal_source, d)
    cal_out, agg = cross_fitted(fit, fit, np.arange(len(fit)), "oas", src_cols, opts)
    out = agg.apply(scores)
    thresholds = {str(q): float(np.percentile(cal_out, q)) for q in (95, 99)}
    thresholds["from"] = f"cal of {src_splits_path} ({len(fit)} flows of {src_path})"
    log.info("%s: OAS fitted on the source's %d calibration flows (%s): thresholds %s",
             SOURCE_COLUMN, len(fit), src_path, thresholds)
    return out, thresholds


def read_thresholds(path: str | Path) -> dict[str, dict]:
    """Thresholds a scores file carries for some columns (:data:`THRESHOLDS_KEY`), or {}."""
    import pyarrow.parquet as pq

    try:
        raw = (pq.read_schema(path).metadata or {}).get(THRESHOLDS_KEY.encode())
    except (OSError, ValueError):  # read_score_table names an unreadable file precisely
        return {}
    return {} if raw is None else dict(json.loads(raw))


def log_features(x: np.ndarray) -> np.ndarray:
    """The baselines' fixed transform ``sign(x) log1p(|x| / s)`` of flow features ``(n, 20)``
    (scales :data:`janus.contract.FLOW_LOG_SCALE`; identity where ``s = 0``)."""
    scale = np.asarray(contract.FLOW_LOG_SCALE)
    safe = np.where(scale > 0, scale, 1.0)
    return np.where(scale > 0, np.sign(x) * np.log1p(np.abs(x) / safe), x)


def feature_oas_file(features_path: str | Path, splits_path: str | Path,
                     out_path: str | Path) -> dict:
    """The model-free control: OAS Mahalanobis on the 20 flow features of
    ``features_path`` (a ``flow_features.parquet``), log-transformed, z-scored and fitted on
    the ``cal`` flows of ``splits_path`` (:data:`CONTROL_OPTIONS`, cross-fitted like every
    aggregator). Writes ``flow_id, oas`` for the val, cal and test flows; reads no label.
    Returns the fitted stats."""
    import pyarrow as pa

    from janus.detectors import read_flow_features

    x = read_flow_features(Path(features_path).parent)  # (N, 20), row = flow_id
    splits = load_splits(splits_path)
    cal_ids = calibration_ids(splits, str(splits_path))
    ids = np.union1d(np.union1d(splits["val"], cal_ids), splits["test"]).astype(np.int64)
    if ids.size and ids.max() >= len(x):
        raise JanusError(f"{splits_path}: flow id {int(ids.max())} >= {len(x)} flows of "
                         f"{features_path}; the splits belong to another dataset")
    z = log_features(x[ids])  # (n, 20)
    fit_rows = rows_of(ids, cal_ids, f"{features_path} vs 'cal' of {splits_path}")
    out, stats = aggregate_all(z[fit_rows], z, contract.FLOW_FEATURES, ("oas",),
                               CONTROL_OPTIONS, fit_rows=fit_rows)
    write_parquet(out_path, pa.table({"flow_id": pa.array(ids, pa.int64()),
                                      "oas": pa.array(out["oas"], pa.float64())}))
    log.info("feature-OAS control of %s fitted on %d calibration flows -> %s", features_path,
             len(fit_rows), out_path)
    return stats["oas"]


def run(args: argparse.Namespace) -> int:
    aggregate_file(args.scores, args.splits, args.out, args.columns, args.methods,
                   options_from_args(args), source=args.source)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(build_parser, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
