"""What MemAE's memory changes, on the set of ``tests/detectors/test_autoencoder.py``.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/memae_ring.py [--seeds 0 1 2] [--epochs 30]

Benign flows fill a ring of a plane through (transformed) feature space; the anomalies are
the ring's empty centre, inside the span of the benign data. Prints, per seed, the AUROC of
``ae`` and ``memae`` (same encoder/decoder widths; ``memae`` decodes only memory reads), and
for ``memae`` with either addressing similarity and three entropy weights the mean
addressing entropy (nats) and the mean number of memory items that survive the shrinkage
on benign test flows. One torch thread; seconds in all.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from janus import detectors
from janus.detectors.autoencoder import addressing_entropy
from janus.evaluation import metrics
from janus.model.data import FLOW_SCALE


def _raw(u: np.ndarray) -> np.ndarray:
    """Flow features whose fixed log transform is exactly ``u`` ``(n, 20)``."""
    s = np.where(FLOW_SCALE > 0, FLOW_SCALE, 1.0)
    return np.where(FLOW_SCALE > 0, np.sign(u) * s * np.expm1(np.abs(u)), u)


def _plane(ab: np.ndarray, seed: int) -> np.ndarray:
    basis = np.linalg.qr(np.random.default_rng(7).normal(size=(20, 2)))[0].T  # (2, 20)
    noise = 0.05 * np.random.default_rng(seed).normal(size=(len(ab), 20))
    return _raw(3.0 * ab @ basis + 5.0 + noise)


def _ring(n: int, seed: int) -> np.ndarray:
    theta = np.random.default_rng(seed).uniform(0, 2 * np.pi, n)
    return np.c_[np.cos(theta), np.sin(theta)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=30)
    args = p.parse_args()
    torch.set_num_threads(1)
    train, val, test = _plane(_ring(600, 0), 1), _plane(_ring(200, 2), 3), _plane(_ring(200, 4), 5)
    centre = _plane(0.2 * np.random.default_rng(6).normal(size=(200, 2)), 7)
    x = np.concatenate([test, centre])
    y = np.r_[np.zeros(len(test)), np.ones(len(centre))].astype(int)
    fit = {"epochs": args.epochs, "lr": 3e-3, "patience": 10}
    print("| seed | ae AUROC | memae AUROC |\n|---|---|---|")
    for seed in args.seeds:
        auc = [metrics.auroc(y, detectors.make_detector(name, seed=seed, **fit)
                             .fit(train, val).score(x)) for name in ("ae", "memae")]
        print(f"| {seed} | {auc[0]:.3f} | {auc[1]:.3f} |")
    print("\n| similarity | entropy_weight | entropy (nats) | items kept | AUROC |\n|---|---|---|---|---|")
    for sim in ("cosine", "dot"):
        for alpha in (0.0, 2e-4, 1e-2):
            det = detectors.make_detector("memae", seed=args.seeds[0], similarity=sim,
                                          entropy_weight=alpha, **fit).fit(train, val)
            with torch.no_grad():
                _, w = det.module(torch.from_numpy(det.scaler.transform(test)))
            print(f"| {sim} | {alpha:g} | {float(addressing_entropy(w).mean()):.3f} | "
                  f"{float((w > 0).sum(1).float().mean()):.1f} | "
                  f"{metrics.auroc(y, det.score(x)):.3f} |")


if __name__ == "__main__":
    main()
