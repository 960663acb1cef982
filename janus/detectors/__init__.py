"""Baseline detectors, and the ``janus baseline`` step.

Detectors (all fitted on benign training flows only, scores higher = more anomalous); the
last column is what each reads (:attr:`Detector.inputs`):

======================= ==================================================== ========
``nf``                  normalizing flow (zuko NSF), score = negative        features
                        log-likelihood (Shafir et al.)
``iforest``             scikit-learn Isolation Forest                        features
``lof``                 scikit-learn Local Outlier Factor (novelty mode)     features
``ocsvm``               scikit-learn One-Class SVM (RBF kernel)              features
``kitnet``              Kitsune's KitNET autoencoder ensemble (NDSS 2018)    features
``flowcfm``             flow matching on the flow features alone,            features
                        score = terminal norm
``ae``                  MLP autoencoder, score = reconstruction error        features
``memae``               memory-augmented autoencoder (Gong et al. ICCV       features
                        2019), score = reconstruction error
``unified_cfm``         token CFM over [FLOW, P1..Pn] with a masked-         both
                        prediction consistency loss, score = flow_consistency
``packet_cfm``          OT-CFM on the packet sequence, score = excess over   packets
                        the benign sigma-band of terminal points
``anomaly_transformer`` Anomaly-Transformer (ICLR 2022) over each flow's     packets
                        packets, score = association-weighted error
======================= ==================================================== ========

``janus baseline train`` reads ``flow_features.parquet`` (and, for a detector that reads
packets, the packet tensor through :func:`janus.model.data.load_dataset`) and the
``train``/``val`` ids of ``SPLITS.npz`` (benign by construction) -- never ``labels.parquet``;
``janus baseline score`` writes ``flow_id, score`` for ``janus evaluate``; ``janus baseline
run`` does both in one process (fit on the source, save, then score every target), which is
what the workflow runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from janus.cli import run_main
from janus.contract import FEATURES_FILE, FLOW_FEATURES, PACKETS_FILE
from janus.detectors.anomaly_transformer import AnomalyTransformerDetector
from janus.detectors.autoencoder import AEDetector, MemAEDetector
from janus.detectors.base import Detector, FeatureScaler, FlowData, TorchDetector, as_flow_data
from janus.detectors.classic import IForestDetector, LOFDetector, OCSVMDetector
from janus.detectors.flowcfm import FlowCFMDetector
from janus.detectors.kitnet import KitNETDetector
from janus.detectors.nf import NFDetector
from janus.detectors.packet_cfm import PacketCFMDetector
from janus.detectors.unified_cfm import UnifiedCFMDetector
from janus.errors import ConfigError, JanusError

log = logging.getLogger(__name__)

#: name -> detector class.
DETECTORS: dict[str, type[Detector]] = {
    cls.name: cls for cls in (NFDetector, IForestDetector, LOFDetector, OCSVMDetector,
                              KitNETDetector, FlowCFMDetector, AEDetector, MemAEDetector,
                              UnifiedCFMDetector, PacketCFMDetector, AnomalyTransformerDetector)
}

__all__ = ["DETECTORS", "Detector", "FeatureScaler", "FlowData", "make_detector",
           "read_flow_data", "read_flow_features"]


def make_detector(name: str, seed: int = 0, **params) -> Detector:
    """A fresh, unfitted detector ``name`` with hyper-parameter overrides ``params``."""
    if name not in DETECTORS:
        raise ConfigError(f"unknown detector {name!r}; choose from {sorted(DETECTORS)}")
    return DETECTORS[name](seed=seed, **params)


def read_flow_features(data_dir: str | Path, rows: np.ndarray | None = None) -> np.ndarray:
    """float64 ``(k, 20)`` flow features of ``rows`` (all flows when None) of
    ``DIR/flow_features.parquet``, in FLOW_FEATURES order; only those rows are read."""
    from janus.datasets.store import read_feature_rows

    return read_feature_rows(_features_file(data_dir), list(FLOW_FEATURES), rows)[0]


def read_flow_data(data_dir: str | Path, packets: bool) -> FlowData:
    """Every flow of ``DIR``, read lazily: the features, and with ``packets`` the packet
    tensor as well (opened by :func:`janus.model.data.load_dataset`, which checks the two hold
    the same flows). The fields are row readers (:mod:`janus.datasets.store`):
    :meth:`FlowData.take` reads only the rows it is given."""
    if not packets:
        from janus.datasets.store import feature_reader

        return FlowData(feature_reader(_features_file(data_dir), list(FLOW_FEATURES)))
    from janus.model.data import load_dataset

    ds = load_dataset(data_dir)
    return FlowData(ds.features, ds.packets, ds.lengths)


def _features_file(data_dir: str | Path) -> Path:
    """``DIR/flow_features.parquet``; :class:`JanusError` naming it when it is absent."""
    path = Path(data_dir) / FEATURES_FILE
    if not path.is_file():
        raise JanusError(f"{path}: not found; run 'janus extract' for {data_dir} first")
    return path


def _take(x: FlowData, ids: np.ndarray, what: str) -> FlowData:
    if ids.size and (ids.min() < 0 or ids.max() >= len(x)):
        raise JanusError(f"{what}: flow ids up to {int(ids.max())} but the dataset has "
                         f"{len(x)} flows; were the splits made from this dataset?")
    return x.take(ids)


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


def _add_fit_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--detector", required=True, choices=sorted(DETECTORS), help="which baseline")
    sp.add_argument("--data", required=True, type=Path,
                    help=f"dataset folder holding {FEATURES_FILE} (the training dataset; "
                    f"and {PACKETS_FILE} for the detectors that read packets)")
    sp.add_argument("--splits", required=True, type=Path,
                    help="SPLITS.npz: fit on 'train', early-stop on 'val' (both benign)")
    sp.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    sp.add_argument("--out", required=True, type=Path, help="model folder to write")
    sp.add_argument("--epochs", type=int, default=None,
                    help="maximum epochs of the torch detectors (nf, kitnet, flowcfm, ae, memae "
                    "and the packet detectors); ignored with a warning by the others")
    sp.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                    help="hyper-parameter override, VALUE as JSON (repeatable), e.g. "
                    "--param hidden=64 --param nu=0.1")
    sp.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (default 1: the workflow runs jobs in parallel)")


def _add_score_options(sp: argparse.ArgumentParser, prefix: str, required: bool) -> None:
    what = " after training" if prefix else ""
    sp.add_argument(f"--{prefix}data", required=required, type=Path, nargs="+",
                    default=None if required else [],
                    help=f"dataset folder(s) to score{what}, each holding {FEATURES_FILE} "
                    f"(and {PACKETS_FILE} for a packet detector; any dataset: the model's "
                    "own standardisation is used)")
    sp.add_argument(f"--{prefix}out", required=required, type=Path, nargs="+",
                    default=None if required else [],
                    help=f"SCORES.parquet (flow_id, score) to write, one per --{prefix}data")
    sp.add_argument(f"--{prefix}splits", type=Path, nargs="+", default=None,
                    help=f"score only the 'val', 'cal' and 'test' flows of this SPLITS.npz, one per "
                    f"--{prefix}data (default: every flow)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="janus baseline",
        description="Train and score the baseline detectors (on the 20 flow features or "
        "on the packets of each flow).",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="{train,score,run}")
    t = sub.add_parser("train", help="fit a detector on the benign training flows")
    _add_fit_options(t)
    s = sub.add_parser("score", help="score every flow (or val+test) of one or more datasets")
    s.add_argument("--model", required=True, type=Path, help="model folder from 'train'")
    _add_score_options(s, "", required=True)
    s.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    r = sub.add_parser("run", help="train, save, then score several datasets in one process "
                       "(one start-up instead of one per dataset)")
    _add_fit_options(r)
    _add_score_options(r, "score-", required=False)
    for sp in (t, s, r):
        # Also accepted after the subcommand; SUPPRESS keeps the top-level -v's count.
        sp.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                        help="more logging")
    return p


def train_detector(args: argparse.Namespace, x: FlowData | np.ndarray) -> Detector:
    """Fit ``args.detector`` on the 'train' rows of ``x`` (a dataset's :class:`FlowData`, or
    its features ``(N, 20)``; early stopping on 'val'), save it to ``args.out``, return it."""
    from janus.datasets.splits import load_splits

    x = as_flow_data(x)
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
    log.info("%s trained in %.2f s -> %s", args.detector, det.history["fit_seconds"], args.out)
    return det


def score_dataset(det: Detector, x: FlowData | np.ndarray, out: Path,
                  splits: Path | None = None) -> None:
    """Score the flows ``x`` of one dataset (:class:`FlowData` or features ``(N, 20)``; only
    'val' + 'cal' + 'test' of ``splits`` when given) and write ``out`` with columns ``flow_id, score``."""
    import pyarrow as pa

    from janus.datasets.splits import load_splits
    from janus.io import write_parquet

    x = as_flow_data(x)
    if splits is not None:
        parts = load_splits(splits)
        ids = np.union1d(np.union1d(parts["val"], parts["cal"]), parts["test"]).astype(np.int64)
        x = _take(x, ids, f"'val'/'cal'/'test' of {splits}")
    else:
        ids = np.arange(len(x), dtype=np.int64)
        x = x.take(ids)
    start = time.perf_counter()
    scores = det.score(x)
    log.info("scored %d flows with %s in %.2f s", len(ids), det.name, time.perf_counter() - start)
    if not np.isfinite(scores).all():
        log.warning("%d non-finite scores (flow_id %d first)", int((~np.isfinite(scores)).sum()),
                    int(ids[~np.isfinite(scores)][0]))
    write_parquet(out, pa.table({"flow_id": pa.array(ids, pa.int64()),
                                 "score": pa.array(scores, pa.float64())}))
    log.info("wrote %s", out)


def _score_targets(det: Detector, data: list[Path], outs: list[Path],
                   splits: list[Path] | None, prefix: str) -> None:
    """Score each ``data[k]`` into ``outs[k]`` (aligned lists; ``splits`` None or aligned)."""
    if len(outs) != len(data):
        raise JanusError(f"--{prefix}out has {len(outs)} values for {len(data)} "
                         f"--{prefix}data folders; give one output per dataset")
    if len(set(outs)) < len(outs):
        raise JanusError(f"--{prefix}out names the same file twice: {[str(o) for o in outs]}")
    if splits is not None and len(splits) != len(data):
        raise JanusError(f"--{prefix}splits has {len(splits)} values for {len(data)} "
                         f"--{prefix}data folders; give one per dataset")
    for k, folder in enumerate(data):
        score_dataset(det, read_flow_data(folder, det.reads_packets), outs[k],
                      None if splits is None else splits[k])


def run(args: argparse.Namespace) -> int:
    # The scikit-learn detectors never touch torch: their jobs skip its import (~1-2 s).
    if args.command == "score" or issubclass(DETECTORS[args.detector], TorchDetector):
        import torch

        torch.set_num_threads(max(1, args.threads))
    if args.command == "score":
        for folder in args.data:  # a missing input is reported before the model is loaded
            _features_file(folder)
        _score_targets(Detector.load(args.model), args.data, args.out, args.splits, "")
        return 0
    packets = DETECTORS[args.detector].inputs != "features"
    det = train_detector(args, read_flow_data(args.data, packets))
    if args.command == "run":
        _score_targets(det, args.score_data, args.score_out, args.score_splits, "score-")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(build_parser, run, argv)
