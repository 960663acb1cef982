"""The models step: trained runs -> deployable model folders (:mod:`janus.deploy.folder`).

``janus models --dataset D --data data/D --checkpoint RUN/model.pt ... --scores S.parquet ...
--splits SPLITS.npz ... --metrics METRICS.json ... --seed 42 ... --out results/models/D``
writes ``OUT/seed<S>/`` for every (aligned) seed: the checkpoint, the ``oas`` aggregator
fitted on the seed's benign validation flows exactly as ``janus evaluate --aggregate`` fits
it (same columns, same :class:`~janus.evaluation.aggregate.AggregateOptions`, so applying it
reproduces the ``oas`` column of the run's AGG file), the P95/P99/target-FPR thresholds of
those flows, the extraction parameters of ``data/D/extract_stats.json``, provenance and a
model card with the run's test metrics. One process writes every seed of a dataset (the
workflow's one extra job per dataset). Reads no label: the test metrics come from the
evaluate step's METRICS.json.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from janus import __version__
from janus.cli import run_main
from janus.contract import SCORE_COLUMNS, STATS_FILE
from janus.deploy.folder import (
    DEFAULT_TARGET_FPR,
    METHOD,
    Calibration,
    read_json,
    thresholds_from,
    write_folder,
)
from janus.errors import JanusError

log = logging.getLogger(__name__)

#: Columns of METRICS.json copied into the card and the manifest.
CARD_COLUMNS = ("oas", "terminal_norm")
_METRIC_KEYS = ("auroc", "auprc", "tpr_at_1fpr", "p95", "p99", "per_attack")


def _score_options(scores_path: Path) -> dict[str, Any]:
    import pyarrow.parquet as pq

    from janus.model.score import SCORE_OPTIONS_KEY

    meta = pq.read_schema(scores_path).metadata or {}
    raw = meta.get(SCORE_OPTIONS_KEY.encode())
    if raw is None:
        raise JanusError(f"{scores_path}: no score options in its metadata; it was not written by "
                         "'janus score' -- rescore the run")
    return json.loads(raw)


def _test_metrics(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    m = read_json(Path(path), "metrics file")
    cols = m.get("columns", {})
    return {"metrics_file": str(path), "n_benign": m.get("n_benign"), "n_attack": m.get("n_attack"),
            "columns": {c: {k: cols[c].get(k) for k in _METRIC_KEYS} for c in CARD_COLUMNS
                        if c in cols}}


def provenance(dataset: str, data_dir: Path, seed: int, ckpt: dict[str, Any],
               splits: dict[str, Any], n_flows: int, config_hash: str | None,
               stats: dict[str, Any]) -> dict[str, Any]:
    """Where the model came from: code, config, data, flow counts, training run."""
    return {
        "janus_version": __version__, "config_hash": config_hash, "dataset": dataset,
        "seed": int(seed), "best_epoch": int(ckpt["epoch"]), "trained_by": ckpt.get("janus_version"),
        "network": {k: ckpt["config"][k] for k in ("d_model", "n_layers", "n_heads", "sigma",
                                                    "lambda_disc") if k in ckpt["config"]},
        "data": {"folder": str(data_dir),
                 "captures": [f["path"] for f in stats.get("files", [])],
                 "capture_bytes": sum(int(f.get("bytes", 0)) for f in stats.get("files", []))},
        "flows": {"dataset": int(n_flows), "train": len(splits["train"]),
                  "val": len(splits["val"]), "cal": len(splits["cal"]),
                  "test": len(splits["test"])},
    }


def build_folder(out: Path, *, dataset: str, data_dir: Path, checkpoint: Path, scores: Path,
                 splits: Path, seed: int, metrics: Path | None = None,
                 target_fpr: float = DEFAULT_TARGET_FPR, options=None,
                 config_hash: str | None = None) -> dict[str, Any]:
    """Write one model folder ``out`` (see the module docstring); returns its manifest."""
    from janus.datasets.splits import calibration_ids, load_splits
    from janus.deploy.card import model_card
    from janus.evaluation.aggregate import (
        cross_fitted,
        declared_aggregate_columns,
        read_score_table,
        rows_of,
    )
    from janus.model.checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint, require_finished=True)
    columns = declared_aggregate_columns(scores) or list(SCORE_COLUMNS)
    flow_id, mat, cols = read_score_table(scores, columns)
    parts = load_splits(splits)
    # The benign calibration flows ('cal', disjoint from the early-stopping 'val'), with
    # out-of-fold scalars for the thresholds, exactly as janus.aggregate fits its 'oas'.
    ids = calibration_ids(parts, str(splits))
    fit = mat[rows_of(flow_id, ids, f"{scores} vs 'cal' of {splits}")]  # (n_cal, d)
    benign, agg = cross_fitted(fit, fit, np.arange(len(fit)), METHOD, cols, options)
    cal = Calibration(aggregator=agg, benign_scores=np.sort(benign),
                      thresholds=thresholds_from(benign, target_fpr),
                      source={"kind": "benign calibration split", "splits": str(splits),
                              "dataset": dataset, "n_flows": int(fit.shape[0])})
    stats = read_json(Path(data_dir) / STATS_FILE, "extraction stats")
    params = stats.get("parameters", {})
    if params.get("max_packets") != ckpt["config"]["max_packets"]:
        raise JanusError(f"{data_dir / STATS_FILE}: extracted with T = {params.get('max_packets')} "
                         f"packets per flow, but {checkpoint} has T = {ckpt['config']['max_packets']}")
    manifest = {
        "extraction": {"max_packets": int(params["max_packets"]),
                       "idle_timeout_s": float(params["idle_timeout_s"]),
                       "active_timeout_s": params.get("active_timeout_s")},
        "score_options": _score_options(scores),
        "provenance": provenance(dataset, Path(data_dir), seed, ckpt, parts,
                                 stats.get("totals", {}).get("flows", 0), config_hash, stats),
        "test_metrics": _test_metrics(metrics),
    }
    # janus.provenance: code commit, dependency versions, and the inputs' sizes and SHA-256.
    from janus.provenance import collect

    manifest["provenance"]["environment"] = collect(
        {"target_fpr": target_fpr, "aggregate": asdict(cal.aggregator.options)},
        inputs=[checkpoint, scores, splits, Path(data_dir) / STATS_FILE])
    write_folder(out, checkpoint, manifest, cal, model_card(manifest, cal))
    log.info("%s: %s seed %d, thresholds %s", out, dataset, seed, cal.thresholds)
    return manifest


def build_parser() -> argparse.ArgumentParser:
    from janus.evaluation.aggregate import add_option_arguments

    p = argparse.ArgumentParser(
        prog="janus models",
        description="Write deployable model folders OUT/seed<S>/ (checkpoint, aggregator, "
        "thresholds, extraction parameters, provenance, model card) for the trained runs of one "
        "dataset; the lists --checkpoint, --scores, --splits, --metrics and --seed are aligned.")
    p.add_argument("--dataset", required=True, help="the dataset's name (provenance)")
    p.add_argument("--data", required=True, type=Path, help="its extracted folder (data/D)")
    p.add_argument("--checkpoint", required=True, type=Path, nargs="+",
                   help="RUN/model.pt of 'janus train', one per seed")
    p.add_argument("--scores", required=True, type=Path, nargs="+",
                   help="the run's raw scores of its own dataset (val + test flows), one per seed")
    p.add_argument("--splits", required=True, type=Path, nargs="+",
                   help="the dataset's SPLITS.npz of each seed (its benign 'cal' flows fit the aggregator)")
    p.add_argument("--metrics", type=Path, nargs="+", default=None,
                   help="the run's METRICS.json of its own dataset, one per seed (for the card)")
    p.add_argument("--seed", required=True, type=int, nargs="+", help="the seeds, aligned")
    p.add_argument("--out", required=True, type=Path,
                   help="folder that receives seed<S>/ for every seed")
    p.add_argument("--target-fpr", type=float, default=DEFAULT_TARGET_FPR,
                   help="benign false-alarm rate of the 'fpr' threshold (default %(default)s)")
    p.add_argument("--config-hash", default=None, help="the workflow config's hash (provenance)")
    add_option_arguments(p)
    return p


def run(args: argparse.Namespace) -> int:
    from janus.evaluation.aggregate import options_from_args

    n = len(args.seed)
    lists = {"--checkpoint": args.checkpoint, "--scores": args.scores, "--splits": args.splits}
    if args.metrics is not None:
        lists["--metrics"] = args.metrics
    for option, values in lists.items():
        if len(values) != n:
            raise JanusError(f"{option} has {len(values)} values for {n} seeds; give one per --seed")
    metrics: Sequence[Path | None] = args.metrics or [None] * n
    for k, seed in enumerate(args.seed):
        build_folder(args.out / f"seed{seed}", dataset=args.dataset, data_dir=args.data,
                     checkpoint=args.checkpoint[k], scores=args.scores[k], splits=args.splits[k],
                     seed=seed, metrics=metrics[k], target_fpr=args.target_fpr,
                     options=options_from_args(args), config_hash=args.config_hash)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(build_parser, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
