"""The evaluate step: metrics of every score column of a file, on the test flows.

This is the first step of the pipeline that reads ``labels.parquet``. For each score
column (the aggregated scalars and the raw score components alike):

* thresholds are the 95th and 99th percentiles of the column on the benign **calibration**
  flows (``cal`` of ``SPLITS.npz``; ``val`` for a file older than ``cal``), which no model
  used for early stopping and whose aggregated scores are cross-fitted
  (:mod:`janus.evaluation.aggregate`) -- no attack label is involved in choosing them. A
  column whose scores file carries its own thresholds (``oas_source``: the source's
  calibration percentiles, :data:`janus.evaluation.aggregate.THRESHOLDS_KEY`) uses those;
* every metric is computed on the **test** flows whose label is 0 or 1; flows labelled
  -1 (unknown) are dropped and counted;
* precision and F1 are given on the test set as it is (balanced by default) and at the
  attack prevalences :data:`PREVALENCES` (reweighted, :func:`janus.evaluation.metrics.at_prevalence`);
* the headline columns (:data:`BOOT_COLUMNS`) also get :data:`N_BOOT` stratified bootstrap
  AUROCs of the test flows, from which the report draws 95 % intervals.

Output JSON (``nan`` is written as ``null``)::

    {"detector", "source", "target", "seed", ..., "n_test", "n_benign", "n_attack",
     "n_unknown", "n_cal", "thresholds_from", "columns": {COLUMN: {"auroc", "auprc",
        "tpr_at_1fpr", "tpr_at_0.1fpr",
        "p95": {"threshold", "precision", "recall", "f1", "fpr", "flagged",
                "prevalence": {"0.01": {"precision", "f1"}, "0.1": {...}}}, "p99": {...},
        "thresholds_from", "per_attack": {CLASS: auroc}, "per_attack_n": {CLASS: flows},
        "auroc_boot": [...] (BOOT_COLUMNS only), "n_benign", "n_attack", "n_infinite"}}}

A score of +inf / -inf (an overflowing detector) is ranked above / below every finite score
(:func:`rank_finite`, counted in ``n_infinite``); a NaN score is an error.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from janus import __version__, contract
from janus.cli import run_main
from janus.datasets.splits import calibration_ids, load_splits
from janus.errors import JanusError
from janus.evaluation.aggregate import (
    SOURCE_COLUMN,
    add_option_arguments,
    options_from_args,
    read_score_table,
    read_thresholds,
    rows_of,
)
from janus.evaluation.metrics import (
    at_prevalence,
    auroc,
    average_precision,
    bootstrap_auroc,
    nan_to_none,
    per_attack_auroc,
    prf_at_threshold,
    threshold_at_percentile,
    tpr_at_fpr,
)
from janus.io import read_parquet, write_json

log = logging.getLogger(__name__)

#: Validation percentiles that set the operating thresholds.
PERCENTILES: tuple[int, ...] = (95, 99)
#: The false-positive rate of the ``tpr_at_1fpr`` metric.
TARGET_FPR = 0.01
#: Every false-positive rate a TPR is read at: key ``tpr_at_<100 x fpr>fpr``.
TARGET_FPRS: tuple[float, ...] = (0.001, 0.01)
#: Attack shares of a realistic stream at which precision and F1 are also given.
PREVALENCES: tuple[float, ...] = (0.01, 0.1)
#: Columns that get bootstrap AUROCs: the ones the report ranks detectors by.
BOOT_COLUMNS: tuple[str, ...] = ("oas", SOURCE_COLUMN, "terminal_norm", "score")
#: Bootstrap replicates per headline column.
N_BOOT = 200


def tpr_key(fpr: float) -> str:
    """``tpr_at_1fpr`` for 0.01, ``tpr_at_0.1fpr`` for 0.001."""
    return f"tpr_at_{100 * fpr:g}fpr"


def read_labels(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read ``labels.parquet`` -> ``(flow_id int64, label int8 (-1/0/1), attack str)``."""
    path = Path(path)
    table = read_parquet(path, "labels file", "run 'janus labels' first")
    missing = [c for c in ("flow_id", "label", "attack") if c not in table.column_names]
    if missing:
        raise JanusError(f"{path}: missing columns {missing} (columns: {table.column_names})")
    flow_id = table.column("flow_id").to_numpy().astype(np.int64)
    label = table.column("label").to_numpy().astype(np.int8)
    attack = np.asarray(table.column("attack").to_pylist(), dtype=object)
    bad = ~np.isin(label, (-1, 0, 1))
    if bad.any():
        raise JanusError(f"{path}: label of flow_id {int(flow_id[bad][0])} is "
                         f"{int(label[bad][0])}; labels must be -1, 0 or 1")
    return flow_id, label, attack


def evaluate_column(val: np.ndarray, test: np.ndarray, y: np.ndarray, attack: np.ndarray,
                    thresholds: dict | None = None, n_boot: int = 0, boot_seed: int = 0
                    ) -> dict:
    """All metrics of one score column: ``val`` (n_cal,) benign calibration scores (the
    thresholds are their percentiles unless ``thresholds`` maps ``"95"``/``"99"`` to given
    values), ``test`` (n,) with 0/1 labels ``y`` and class names ``attack``; ``n_boot`` > 0
    adds that many bootstrap AUROCs (``auroc_boot``, seeded by ``boot_seed``)."""
    out: dict = {
        "auroc": auroc(y, test),
        "auprc": average_precision(y, test),
    }
    for fpr in TARGET_FPRS:
        out[tpr_key(fpr)] = tpr_at_fpr(y, test, fpr)
    for q in PERCENTILES:
        thr = (float(thresholds[str(q)]) if thresholds is not None
               else threshold_at_percentile(val, q))
        m = prf_at_threshold(y, test, thr)
        m["prevalence"] = {f"{p:g}": at_prevalence(m["recall"], m["fpr"], p) for p in PREVALENCES}
        out[f"p{q}"] = m
    out["per_attack"] = per_attack_auroc(attack, y, test)
    out["per_attack_n"] = {str(c): int(((y == 1) & (attack == c)).sum()) for c in out["per_attack"]}
    out["n_benign"] = int((y == 0).sum())
    out["n_attack"] = int((y == 1).sum())
    if n_boot > 0:
        out["auroc_boot"] = [round(float(v), 5) for v in bootstrap_auroc(y, test, n_boot, boot_seed)]
    return out


def rank_finite(val: np.ndarray, test: np.ndarray, what: str
                ) -> tuple[np.ndarray, np.ndarray, int]:
    """``(val, test, n)`` with infinite scores replaced by finite ones of the same rank.

    A score of +inf (a detector whose arithmetic overflowed on a flow far outside its
    training range) means "more anomalous than every finite score", and -inf the reverse.
    Every metric here depends only on the order of the scores and on thresholds drawn from
    them, so +inf / -inf become one value above / below every finite score of ``val`` and
    ``test`` (ties among them stay ties) and ``n`` (how many) is reported. NaN has no rank:
    :class:`JanusError` naming ``what``.
    """
    both = np.concatenate([val, test])
    if np.isnan(both).any():
        raise JanusError(f"{what} has {int(np.isnan(both).sum())} NaN scores on the val/test "
                         "flows; a NaN has no rank, so no metric can be computed")
    infinite = np.isinf(both)
    if not infinite.any():
        return val, test, 0
    finite = both[~infinite]
    hi, lo = (float(finite.max()), float(finite.min())) if finite.size else (0.0, 0.0)
    step = max(1.0, hi - lo)
    log.warning("%s: %d infinite scores ranked beyond every finite one", what,
                int(infinite.sum()))

    def clip(x: np.ndarray) -> np.ndarray:
        return np.where(np.isposinf(x), hi + step, np.where(np.isneginf(x), lo - step, x))

    return clip(val), clip(test), int(infinite.sum())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="janus evaluate",
        description="AUROC (with bootstrap replicates), P/R/F1 at benign-calibration percentile "
        "thresholds (also at realistic attack prevalences), TPR at 0.1 %% and 1 %% FPR and "
        "per-attack AUROC for every score column of a scores file. Several files can be "
        "evaluated in one process: --scores, --out and the per-file options then take aligned "
        "lists (an option given once applies to every file).",
    )
    p.add_argument("--scores", required=True, type=Path, nargs="+",
                   help="AGG.parquet (janus aggregate) or a baseline's SCORES.parquet; several "
                   "files are evaluated one by one")
    p.add_argument("--labels", required=True, type=Path, nargs="+",
                   help=f"the target dataset's {contract.LABELS_FILE}: one, or one per --scores")
    p.add_argument("--splits", required=True, type=Path, nargs="+",
                   help="the target's SPLITS.npz (thresholds from 'cal', metrics on 'test'): one, "
                   "or one per --scores")
    p.add_argument("--out", required=True, type=Path, nargs="+",
                   help="METRICS.json to write, one per --scores")
    p.add_argument("--aggregate", nargs=2, action="append", default=[], type=Path,
                   metavar=("RAW", "AGG"),
                   help="first aggregate RAW (a 'janus score' file) into AGG exactly as 'janus "
                   "aggregate' does, fitted on the 'cal' ids of the --splits entry of AGG, which "
                   "must be one of --scores; every aggregation runs before any labels file is "
                   "opened (repeatable)")
    p.add_argument("--source-fit", nargs=3, action="append", default=[], type=Path,
                   metavar=("RAW", "SOURCE_RAW", "SOURCE_SPLITS"),
                   help="with '--aggregate RAW AGG': also write the uncalibrated transfer "
                   "(column oas_source) into AGG: OAS fitted on the 'cal' flows of "
                   "SOURCE_SPLITS in SOURCE_RAW (the same model's scores of its own training "
                   "dataset), with thresholds from the source (repeatable)")
    p.add_argument("--feature-oas", nargs=2, action="append", default=[], type=Path,
                   metavar=("FEATURES", "AGG"),
                   help="first write the model-free control AGG: OAS Mahalanobis on the 20 flow "
                   "features of FEATURES (flow_features.parquet), fitted on the 'cal' ids of the "
                   "--splits entry of AGG, which must be one of --scores (repeatable)")
    p.add_argument("--columns", nargs="+", default=None,
                   help="score columns to evaluate (default: every numeric column but flow_id)")
    p.add_argument("--detector", nargs="+", default=None,
                   help="metadata: detector name (e.g. janus, nf), one or one per --scores")
    p.add_argument("--source", default=None, help="metadata: dataset the model was trained on")
    p.add_argument("--target", nargs="+", default=None,
                   help="metadata: dataset the scores are of, one or one per --scores")
    p.add_argument("--seed", type=int, default=None, help="metadata: the run's seed")
    add_option_arguments(p)  # --sided, --collinear, --transform of every --aggregate
    return p


def _aligned(values: Sequence | None, n: int, option: str, broadcast: bool = True) -> list:
    """``values`` as a list of ``n`` (one value repeated when ``broadcast``); None -> n Nones."""
    if values is None:
        return [None] * n
    if len(values) == n:
        return list(values)
    if broadcast and len(values) == 1:
        return list(values) * n
    raise JanusError(f"{option} has {len(values)} values for {n} --scores files; give "
                     f"{'one or ' if broadcast else ''}{n}")


def evaluate_scores(
    scores_path: Path, labels: tuple[np.ndarray, np.ndarray, np.ndarray], labels_path: Path,
    splits: dict[str, np.ndarray], splits_path: Path, columns: Sequence[str] | None = None,
    boot_seed: int = 0,
) -> dict:
    """Metrics of every score column of ``scores_path`` (the METRICS.json body without the
    run metadata). ``labels`` is :func:`read_labels` of ``labels_path``; ``splits`` is
    :func:`janus.datasets.splits.load_splits` of ``splits_path`` (the paths name the files in messages)."""
    flow_id, scores, cols = read_score_table(scores_path, columns)
    given = read_thresholds(scores_path)
    lab_id, label, attack = labels
    cal_ids = calibration_ids(splits, str(splits_path))
    cal_key = "cal" if splits["cal"].size else "val"
    val_rows = rows_of(flow_id, cal_ids, f"{scores_path} vs '{cal_key}' of {splits_path}")
    test_rows = rows_of(flow_id, splits["test"], f"{scores_path} vs 'test' of {splits_path}")
    test_lab = rows_of(lab_id, splits["test"], f"{labels_path} vs 'test' of {splits_path}")
    val_lab = rows_of(lab_id, cal_ids, f"{labels_path} vs '{cal_key}' of {splits_path}")
    n_val_nonbenign = int((label[val_lab] != 0).sum())
    if n_val_nonbenign:
        log.warning("%d of %d calibration flows are not labelled benign; thresholds are "
                    "then not purely benign percentiles", n_val_nonbenign, len(val_lab))

    y_all = label[test_lab]
    known = y_all >= 0
    y, att = y_all[known], attack[test_lab][known]
    log.info("%s: test %d flows (%d benign, %d attack, %d unknown dropped); %s %d flows",
             scores_path, len(y_all), int((y == 0).sum()), int((y == 1).sum()),
             int((~known).sum()), cal_key, len(val_rows))

    result_columns = {}
    for j, col in enumerate(cols):
        val, test, n_inf = rank_finite(scores[val_rows, j], scores[test_rows, j][known],
                                       f"{scores_path}: column {col!r}")
        result_columns[col] = evaluate_column(
            val, test, y, att, thresholds=given.get(col),
            n_boot=N_BOOT if col in BOOT_COLUMNS else 0, boot_seed=boot_seed + j)
        m = result_columns[col]
        m["thresholds_from"] = given[col]["from"] if col in given else cal_key
        m["n_infinite"] = n_inf
        log.info("%-20s auroc=%.4f tpr@1%%fpr=%.4f f1@p95=%.4f f1@p99=%.4f", col, m["auroc"],
                 m["tpr_at_1fpr"], m["p95"]["f1"], m["p99"]["f1"])
    return {
        "scores_file": str(scores_path), "labels_file": str(labels_path),
        "splits_file": str(splits_path), "janus_version": __version__,
        "n_val": int(splits["val"].size), "n_cal": len(val_rows),
        "thresholds_from": cal_key, "n_val_nonbenign": n_val_nonbenign,
        "n_test": len(y_all), "n_benign": int((y == 0).sum()),
        "n_attack": int((y == 1).sum()), "n_unknown": int((~known).sum()),
        "percentiles": list(PERCENTILES), "target_fpr": TARGET_FPR,
        "target_fprs": list(TARGET_FPRS), "prevalences": list(PREVALENCES), "n_boot": N_BOOT,
        "columns": result_columns,
    }


def run(args: argparse.Namespace) -> int:
    import zlib

    from janus.evaluation.aggregate import aggregate_file, feature_oas_file

    n = len(args.scores)
    outs = _aligned(args.out, n, "--out", broadcast=False)
    labels_paths = _aligned(args.labels, n, "--labels")
    splits_paths = _aligned(args.splits, n, "--splits")
    detectors = _aligned(args.detector, n, "--detector")
    targets = _aligned(args.target, n, "--target")
    if len(set(outs)) < n:
        raise JanusError("--out names the same METRICS.json twice: "
                         f"{sorted({str(o) for o in outs if outs.count(o) > 1})}")

    # Aggregation first, from the scores and the target's splits alone: no labels file has
    # been opened yet, so nothing an aggregator fits can depend on a label.
    sources = {raw: (src, src_splits) for raw, src, src_splits in args.source_fit}
    unused = sorted(str(r) for r in set(sources) - {raw for raw, _ in args.aggregate})
    if unused:
        raise JanusError(f"--source-fit {unused[0]}: no '--aggregate {unused[0]} AGG' to add "
                         "the uncalibrated column to")
    for raw, agg in args.aggregate:
        if agg not in args.scores:
            raise JanusError(f"--aggregate {raw} {agg}: {agg} is not one of --scores, so it "
                             "would be written but never evaluated")
        aggregate_file(raw, splits_paths[args.scores.index(agg)], agg,
                       options=options_from_args(args), source=sources.get(raw))
    for features, agg in args.feature_oas:
        if agg not in args.scores:
            raise JanusError(f"--feature-oas {features} {agg}: {agg} is not one of --scores, "
                             "so it would be written but never evaluated")
        feature_oas_file(features, splits_paths[args.scores.index(agg)], agg)

    labels_cache: dict[Path, tuple] = {}
    splits_cache: dict[Path, dict] = {}
    for k in range(n):
        if labels_paths[k] not in labels_cache:
            labels_cache[labels_paths[k]] = read_labels(labels_paths[k])
        if splits_paths[k] not in splits_cache:
            splits_cache[splits_paths[k]] = load_splits(splits_paths[k])
        # Bootstrap draws depend on the run and the target, never on the order of the files.
        boot_seed = zlib.crc32(f"{args.seed}/{targets[k]}".encode())
        body = evaluate_scores(args.scores[k], labels_cache[labels_paths[k]], labels_paths[k],
                               splits_cache[splits_paths[k]], splits_paths[k], args.columns,
                               boot_seed=boot_seed)
        result = {"detector": detectors[k], "source": args.source, "target": targets[k],
                  "seed": args.seed, **body}
        write_json(outs[k], nan_to_none(result))
        log.info("wrote %s (%d columns)", outs[k], len(body["columns"]))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(build_parser, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
