"""The evaluate step: metrics of every score column of a file, on the test flows.

This is the first step of the pipeline that reads ``labels.parquet``. For each score
column (the aggregated scalars and the raw score components alike):

* thresholds are the 95th and 99th percentiles of the column on the benign **validation**
  flows (``val`` of ``SPLITS.npz``) -- no attack label is involved in choosing them;
* every metric is computed on the **test** flows whose label is 0 or 1; flows labelled
  -1 (unknown) are dropped and counted.

Output JSON (``nan`` is written as ``null``)::

    {"detector", "source", "target", "seed", ..., "n_test", "n_benign", "n_attack",
     "n_unknown", "columns": {COLUMN: {"auroc", "auprc", "tpr_at_1fpr",
        "p95": {"threshold", "precision", "recall", "f1", "fpr", "flagged"}, "p99": {...},
        "per_attack": {CLASS: auroc}, "n_benign", "n_attack"}}}
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import __version__, contract
from .aggregate import read_score_table, rows_of
from .splits import load_splits
from .cli import run_main
from .errors import JanusError
from .io import write_json
from .metrics import (
    auroc,
    average_precision,
    nan_to_none,
    per_attack_auroc,
    prf_at_threshold,
    threshold_at_percentile,
    tpr_at_fpr,
)

log = logging.getLogger(__name__)

#: Validation percentiles that set the operating thresholds.
PERCENTILES: tuple[int, ...] = (95, 99)
#: The false-positive rate of the ``tpr_at_1fpr`` metric.
TARGET_FPR = 0.01


def read_labels(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read ``labels.parquet`` -> ``(flow_id int64, label int8 (-1/0/1), attack str)``."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise JanusError(f"{path}: labels file not found (run 'janus labels' first)")
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a non-Parquet file
        raise JanusError(f"{path}: not a readable Parquet file ({exc})") from exc
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


def evaluate_column(val: np.ndarray, test: np.ndarray, y: np.ndarray, attack: np.ndarray
                    ) -> dict:
    """All metrics of one score column: ``val`` (n_val,) benign scores, ``test`` (n,) with
    0/1 labels ``y`` and class names ``attack``."""
    out: dict = {
        "auroc": auroc(y, test),
        "auprc": average_precision(y, test),
        "tpr_at_1fpr": tpr_at_fpr(y, test, TARGET_FPR),
    }
    for q in PERCENTILES:
        out[f"p{q}"] = prf_at_threshold(y, test, threshold_at_percentile(val, q))
    out["per_attack"] = per_attack_auroc(attack, y, test)
    out["n_benign"] = int((y == 0).sum())
    out["n_attack"] = int((y == 1).sum())
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="janus evaluate",
        description="AUROC, P/R/F1 at benign-validation percentile thresholds, TPR@1%%FPR and "
        "per-attack AUROC for every score column of a scores file.",
    )
    p.add_argument("--scores", required=True, type=Path,
                   help="AGG.parquet (janus aggregate) or a baseline's SCORES.parquet")
    p.add_argument("--labels", required=True, type=Path,
                   help=f"the target dataset's {contract.LABELS_FILE}")
    p.add_argument("--splits", required=True, type=Path,
                   help="the target's SPLITS.npz: thresholds from 'val', metrics on 'test'")
    p.add_argument("--out", required=True, type=Path, help="METRICS.json to write")
    p.add_argument("--columns", nargs="+", default=None,
                   help="score columns to evaluate (default: every numeric column but flow_id)")
    p.add_argument("--detector", default=None, help="metadata: detector name (e.g. janus, nf)")
    p.add_argument("--source", default=None, help="metadata: dataset the model was trained on")
    p.add_argument("--target", default=None, help="metadata: dataset the scores are of")
    p.add_argument("--seed", type=int, default=None, help="metadata: the run's seed")
    return p


def run(args: argparse.Namespace) -> int:
    flow_id, scores, cols = read_score_table(args.scores, args.columns)
    splits = load_splits(args.splits)
    lab_id, label, attack = read_labels(args.labels)

    val_rows = rows_of(flow_id, splits["val"], f"{args.scores} vs 'val' of {args.splits}")
    test_rows = rows_of(flow_id, splits["test"], f"{args.scores} vs 'test' of {args.splits}")
    test_lab = rows_of(lab_id, splits["test"], f"{args.labels} vs 'test' of {args.splits}")
    val_lab = rows_of(lab_id, splits["val"], f"{args.labels} vs 'val' of {args.splits}")
    n_val_nonbenign = int((label[val_lab] != 0).sum())
    if n_val_nonbenign:
        log.warning("%d of %d validation flows are not labelled benign; thresholds are "
                    "then not purely benign percentiles", n_val_nonbenign, len(val_lab))

    y_all = label[test_lab]
    known = y_all >= 0
    y, att = y_all[known], attack[test_lab][known]
    log.info("test: %d flows (%d benign, %d attack, %d unknown dropped); val: %d flows",
             len(y_all), int((y == 0).sum()), int((y == 1).sum()), int((~known).sum()),
             len(val_rows))

    columns = {}
    for j, col in enumerate(cols):
        val = scores[val_rows, j]
        test = scores[test_rows, j][known]
        if not (np.isfinite(val).all() and np.isfinite(test).all()):
            raise JanusError(f"{args.scores}: column {col!r} has NaN/inf scores on val/test flows")
        columns[col] = evaluate_column(val, test, y, att)
        m = columns[col]
        log.info("%-20s auroc=%.4f tpr@1%%fpr=%.4f f1@p95=%.4f f1@p99=%.4f", col, m["auroc"],
                 m["tpr_at_1fpr"], m["p95"]["f1"], m["p99"]["f1"])

    result = {
        "detector": args.detector, "source": args.source, "target": args.target,
        "seed": args.seed, "scores_file": str(args.scores), "labels_file": str(args.labels),
        "splits_file": str(args.splits), "janus_version": __version__,
        "n_val": len(val_rows), "n_val_nonbenign": n_val_nonbenign,
        "n_test": len(y_all), "n_benign": int((y == 0).sum()),
        "n_attack": int((y == 1).sum()), "n_unknown": int((~known).sum()),
        "percentiles": list(PERCENTILES), "target_fpr": TARGET_FPR,
        "columns": columns,
    }
    write_json(args.out, nan_to_none(result))
    log.info("wrote %s (%d columns)", args.out, len(cols))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(build_parser, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
