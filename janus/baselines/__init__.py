"""Baseline detectors on the 20 flow features, and the ``janus baseline`` step.

Detectors (all fitted on benign training flows only, scores higher = more anomalous):

========== ===========================================================================
``nf``      normalizing flow (zuko NSF), score = negative log-likelihood (Shafir et al.)
``iforest`` scikit-learn Isolation Forest
``lof``     scikit-learn Local Outlier Factor (novelty mode)
``ocsvm``   scikit-learn One-Class SVM (RBF kernel)
``kitnet``  Kitsune's KitNET autoencoder ensemble, written from the NDSS 2018 paper
``flowcfm`` flow matching on the flow features alone, score = terminal norm
========== ===========================================================================

``janus baseline train`` reads ``flow_features.parquet`` and the ``train``/``val`` ids of
``SPLITS.npz`` (benign by construction) -- never ``labels.parquet``; ``janus baseline score``
writes ``flow_id, score`` for ``janus evaluate``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..cli import run_main
from ..contract import FEATURES_FILE, FLOW_FEATURES
from ..errors import ConfigError, JanusError
from .base import Detector, FeatureScaler
from .classic import IForestDetector, LOFDetector, OCSVMDetector
from .flowcfm import FlowCFMDetector
from .kitnet import KitNETDetector
from .nf import NFDetector

log = logging.getLogger(__name__)

#: name -> detector class.
DETECTORS: dict[str, type[Detector]] = {
    cls.name: cls for cls in (NFDetector, IForestDetector, LOFDetector, OCSVMDetector,
                              KitNETDetector, FlowCFMDetector)
}

__all__ = ["DETECTORS", "Detector", "FeatureScaler", "make_detector", "read_flow_features"]


def make_detector(name: str, seed: int = 0, **params) -> Detector:
    """A fresh, unfitted detector ``name`` with hyper-parameter overrides ``params``."""
    if name not in DETECTORS:
        raise ConfigError(f"unknown detector {name!r}; choose from {sorted(DETECTORS)}")
    return DETECTORS[name](seed=seed, **params)


def read_flow_features(data_dir: str | Path) -> np.ndarray:
    """``DIR/flow_features.parquet`` -> float64 ``(N, 20)`` in FLOW_FEATURES order, row = flow_id."""
    import pyarrow.parquet as pq

    path = Path(data_dir) / FEATURES_FILE
    if not path.is_file():
        raise JanusError(f"{path}: not found; run 'janus extract' for {data_dir} first")
    table = pq.read_table(path)
    missing = [c for c in ("flow_id", *FLOW_FEATURES) if c not in table.column_names]
    if missing:
        raise JanusError(f"{path}: missing columns {missing}")
    flow_id = table.column("flow_id").to_numpy()
    if not np.array_equal(flow_id, np.arange(len(flow_id))):
        raise JanusError(f"{path}: flow_id is not arange({len(flow_id)})")
    x = np.stack([table.column(c).to_numpy().astype(np.float64) for c in FLOW_FEATURES], 1)
    bad = ~np.isfinite(x)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise JanusError(f"{path}: non-finite {FLOW_FEATURES[col]} at flow_id {row}")
    return x


def _take(x: np.ndarray, ids: np.ndarray, what: str) -> np.ndarray:
    if ids.size and (ids.min() < 0 or ids.max() >= len(x)):
        raise JanusError(f"{what}: flow ids up to {int(ids.max())} but the dataset has "
                         f"{len(x)} flows; were the splits made from this dataset?")
    return x[ids]


def _parse_params(items: Sequence[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--param {item!r}: expected KEY=VALUE (VALUE as JSON)")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value  # a bare string such as gamma=scale
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="janus baseline",
        description="Train and score the baseline detectors on the 20 flow features.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="{train,score}")
    t = sub.add_parser("train", help="fit a detector on the benign training flows")
    t.add_argument("--detector", required=True, choices=sorted(DETECTORS), help="which baseline")
    t.add_argument("--data", required=True, type=Path,
                   help=f"dataset folder holding {FEATURES_FILE}")
    t.add_argument("--splits", required=True, type=Path,
                   help="SPLITS.npz: fit on 'train', early-stop on 'val' (both benign)")
    t.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    t.add_argument("--out", required=True, type=Path, help="model folder to write")
    t.add_argument("--epochs", type=int, default=None,
                   help="maximum epochs of the torch detectors (nf, kitnet, flowcfm)")
    t.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="hyper-parameter override, VALUE as JSON (repeatable), e.g. "
                   "--param hidden=64 --param nu=0.1")
    t.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: the workflow runs jobs in parallel)")
    s = sub.add_parser("score", help="score every flow (or val+test) of a dataset")
    s.add_argument("--model", required=True, type=Path, help="model folder from 'train'")
    s.add_argument("--data", required=True, type=Path,
                   help=f"dataset folder holding {FEATURES_FILE} (any dataset; the model's "
                   "own standardisation is used)")
    s.add_argument("--out", required=True, type=Path, help="SCORES.parquet: flow_id, score")
    s.add_argument("--splits", type=Path, default=None,
                   help="score only the 'val' and 'test' flows of this SPLITS.npz "
                   "(default: every flow)")
    s.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    for sp in (t, s):
        # Also accepted after the subcommand; SUPPRESS keeps the top-level -v's count.
        sp.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                        help="more logging")
    return p


def run(args: argparse.Namespace) -> int:
    import torch

    from ..splits import load_splits

    torch.set_num_threads(max(1, args.threads))
    x = read_flow_features(args.data)
    if args.command == "train":
        splits = load_splits(args.splits)
        params = _parse_params(args.param)
        det_cls = DETECTORS[args.detector]
        if args.epochs is not None:
            if "epochs" not in det_cls.defaults:
                log.warning("--epochs ignored: %s is not trained by epochs", args.detector)
            else:
                params["epochs"] = args.epochs
        det = make_detector(args.detector, args.seed, **params)
        x_train = _take(x, splits["train"], f"'train' of {args.splits}")
        x_val = _take(x, splits["val"], f"'val' of {args.splits}")
        log.info("training %s (seed %d) on %d benign flows, %d benign validation flows",
                 args.detector, args.seed, len(x_train), len(x_val))
        det.fit(x_train, x_val)
        det.save(args.out)
        log.info("%s trained in %.2f s -> %s", args.detector, det.history["fit_seconds"],
                 args.out)
        return 0

    import pyarrow as pa

    from ..io import write_parquet

    det = Detector.load(args.model)
    if args.splits is not None:
        splits = load_splits(args.splits)
        ids = np.union1d(splits["val"], splits["test"]).astype(np.int64)
        x = _take(x, ids, f"'val'/'test' of {args.splits}")
    else:
        ids = np.arange(len(x), dtype=np.int64)
    start = time.perf_counter()
    scores = det.score(x)
    log.info("scored %d flows with %s in %.2f s", len(ids), det.name, time.perf_counter() - start)
    if not np.isfinite(scores).all():
        log.warning("%d non-finite scores (flow_id %d first)", int((~np.isfinite(scores)).sum()),
                    int(ids[~np.isfinite(scores)][0]))
    write_parquet(args.out, pa.table({"flow_id": pa.array(ids, pa.int64()),
                                      "score": pa.array(scores, pa.float64())}))
    log.info("wrote %s", args.out)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(build_parser, run, argv)
