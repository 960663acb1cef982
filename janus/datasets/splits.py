"""Deterministic benign-train / benign-val / test splits of one dataset for one seed.

Output ``SPLITS.npz`` (read by train, score, aggregate, evaluate and the baselines):

* ``train`` -- int64 sorted flow ids, benign (label 0) only;
* ``val`` -- int64 sorted flow ids, benign only, disjoint from ``train``;
* ``test`` -- int64 sorted flow ids: benign flows disjoint from ``train`` and ``val``, plus
  attack flows (label 1); unknown flows (label -1) never enter any split;
* ``meta`` -- 0-d str array holding JSON: seed, data dir, requested and actual sizes, and
  how many benign / attack / unknown flows the dataset has.

Allocation. The benign flows are permuted with ``numpy.random.default_rng(seed)`` and taken
in the order val, cal, test, train (so ``n_val + n_cal`` equal to an earlier ``n_val`` leaves
test and train as they were); the attack flows are permuted with the same generator. When
the dataset has fewer benign flows than ``n_train + n_val + n_cal + n_test_benign``, all four are
scaled down in proportion (so a small dataset still gets a val and a test split). The test
split is balanced by default: both classes get ``min(benign test, attack)`` flows when both
exist. Every clipping is logged. The same (dataset, seed, sizes) always gives the same split.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from janus.cli import run_main
from janus.errors import ConfigError, JanusError
from janus.io import load_labels, write_npz

log = logging.getLogger(__name__)


def make_splits(
    labels: np.ndarray,
    seed: int,
    n_train: int = 10_000,
    n_val: int = 2_000,
    n_test_benign: int = 5_000,
    n_test_attack: int = 5_000,
    balance: bool = True,
    n_cal: int = 0,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Split flows with ``labels`` (int ``(N,)``: 0 benign, 1 attack, -1 unknown).

    Returns ``({"train", "val", "cal", "test"} -> sorted int64 flow ids, meta dict)``.
    """
    for name, value in (("n_train", n_train), ("n_val", n_val), ("n_cal", n_cal),
                        ("n_test_benign", n_test_benign), ("n_test_attack", n_test_attack)):
        if value < 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 0, got {value}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    benign = rng.permutation(np.flatnonzero(labels == 0))
    attack = rng.permutation(np.flatnonzero(labels == 1))
    want = np.array([n_val, n_cal, n_test_benign, n_train])
    sizes = want.copy()
    if want.sum() > benign.size:
        sizes = np.floor(want * benign.size / want.sum()).astype(np.int64)
        log.warning("only %d benign flows for %d requested (val %d, cal %d, test %d, train %d): "
                    "scaled to val %d, cal %d, test %d, train %d", benign.size, want.sum(),
                    *want, *sizes)
    nv, nc, ntb, ntr = (int(s) for s in sizes)
    nta = min(n_test_attack, attack.size)
    if nta < n_test_attack:
        log.warning("only %d attack flows for %d requested", attack.size, n_test_attack)
    if balance and ntb > 0 and nta > 0 and ntb != nta:
        k = min(ntb, nta)
        log.warning("balancing the test split: %d benign + %d attack -> %d + %d", ntb, nta, k, k)
        ntb = nta = k
    if nta == 0:
        log.warning("the test split has no attack flows; AUROC is undefined on it")
    val = benign[:nv]
    cal = benign[nv:nv + nc]
    test_b = benign[nv + nc:nv + nc + ntb]
    train = benign[nv + nc + ntb:nv + nc + ntb + ntr]
    out = {
        "train": np.sort(train).astype(np.int64),
        "val": np.sort(val).astype(np.int64),
        "cal": np.sort(cal).astype(np.int64),
        "test": np.sort(np.concatenate([test_b, attack[:nta]])).astype(np.int64),
    }
    meta = {
        "seed": int(seed),
        "requested": {"train": n_train, "val": n_val, "cal": n_cal,
                      "test_benign": n_test_benign, "test_attack": n_test_attack,
                      "balance": balance},
        "sizes": {"train": ntr, "val": nv, "cal": nc, "test_benign": ntb, "test_attack": nta},
        "available": {"benign": int(benign.size), "attack": int(attack.size),
                      "unknown": int((labels == -1).sum())},
    }
    return out, meta


def load_splits(path: str | Path) -> dict[str, Any]:
    """Read a splits file: ``{"train", "val", "cal", "test"}`` sorted int64 flow-id arrays
    and ``"meta"`` (a dict; empty when the file has none). ``cal`` is empty in a file written
    before it existed (:func:`threshold_ids` then falls back to ``val``)."""
    path = Path(path)
    if not path.is_file():
        raise JanusError(f"{path}: splits file not found; run 'janus splits' first")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = {"train", "val", "test"} - set(z.files)
            if missing:
                raise JanusError(f"{path}: splits file lacks arrays {sorted(missing)} (has {z.files})")
            out: dict[str, Any] = {k: np.asarray(z[k], dtype=np.int64) for k in ("train", "val", "test")}
            out["cal"] = np.asarray(z["cal"], dtype=np.int64) if "cal" in z.files else \
                np.zeros(0, np.int64)
            out["meta"] = json.loads(str(z["meta"])) if "meta" in z.files else {}
    except (OSError, ValueError) as exc:
        raise JanusError(f"{path}: not a readable .npz splits file ({exc})") from exc
    for key in ("train", "val", "cal", "test"):
        ids = out[key]
        if ids.ndim != 1 or (ids.size > 1 and np.any(np.diff(ids) <= 0)):
            raise JanusError(f"{path}: array {key!r} is not a 1-d strictly increasing id list")
    return out


def calibration_ids(splits: dict[str, Any], what: str = "splits") -> np.ndarray:
    """The benign flows that fit aggregators and set thresholds: ``cal``, or ``val`` (with a
    warning naming ``what``) for a splits file written before ``cal`` existed."""
    if splits["cal"].size:
        return splits["cal"]
    log.warning("%s has no 'cal' flows (written before the calibration split existed): "
                "thresholds and aggregators use 'val', the early-stopping flows; rerun "
                "'janus splits' for honest thresholds", what)
    return splits["val"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="janus splits", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, type=Path,
                   help="dataset folder (needs labels.parquet)")
    p.add_argument("--seed", required=True, type=int, help="split seed (one split per seed)")
    p.add_argument("--out", required=True, type=Path, help="output SPLITS.npz")
    p.add_argument("--n-train", type=int, default=10_000, help="benign training flows (default 10000)")
    p.add_argument("--n-val", type=int, default=1_000,
                   help="benign validation flows, for early stopping only (default 1000)")
    p.add_argument("--n-cal", type=int, default=1_000,
                   help="benign calibration flows: the aggregators' fit and the P95/P99 "
                   "thresholds (default 1000)")
    p.add_argument("--n-test-benign", type=int, default=5_000, help="benign test flows (default 5000)")
    p.add_argument("--n-test-attack", type=int, default=5_000, help="attack test flows (default 5000)")
    p.add_argument("--no-balance", action="store_true",
                   help="keep the benign and attack test sizes independent instead of equal")
    return p


def run(args: argparse.Namespace) -> int:
    labels = load_labels(args.data)
    splits, meta = make_splits(labels, args.seed, args.n_train, args.n_val, args.n_test_benign,
                               args.n_test_attack, balance=not args.no_balance, n_cal=args.n_cal)
    meta["data"] = str(args.data)
    write_npz(args.out, meta=np.array(json.dumps(meta)), **splits)
    log.info("splits of %s (seed %d): %s -> %s", args.data, args.seed, meta["sizes"], args.out)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(build_parser, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
