"""The nf baseline's score is a normalised negative log-density (janus/detectors/nf.py).

The detector's own ``build`` / ``_fit`` / ``_score`` run on a 2-d toy: ``zuko.flows.NSF`` is
wrapped so that the flow it builds has 2 features instead of the 20 flow features (every
other hyper-parameter is the detector's default), so the density can be integrated on a grid.
"""

from __future__ import annotations

import numpy as np
import pytest

zuko = pytest.importorskip("zuko")

from janus.detectors.nf import NFDetector

MEANS = np.array([[-1.5, 0.0], [1.5, 0.5]])
STDS = np.array([[0.6, 0.9], [0.8, 0.4]])


def _sample(n: int, rng: np.random.Generator) -> np.ndarray:
    """A two-component, axis-aligned Gaussian mixture with weights 1/2: ``(n, 2)`` float32."""
    k = rng.integers(0, 2, size=n)
    return (MEANS[k] + STDS[k] * rng.normal(size=(n, 2))).astype(np.float32)


def _true_log_density(x: np.ndarray) -> np.ndarray:
    comp = [-0.5 * (((x - m) / s) ** 2).sum(1) - np.log(2 * np.pi * s.prod())
            for m, s in zip(MEANS, STDS)]
    return np.logaddexp(*comp) + np.log(0.5)


@pytest.fixture(scope="module")
def fitted() -> NFDetector:
    real = zuko.flows.NSF
    mp = pytest.MonkeyPatch()
    mp.setattr(zuko.flows, "NSF", lambda features, **kw: real(features=2, **kw))
    try:
        rng = np.random.default_rng(0)
        det = NFDetector(seed=0)
        det._fit(_sample(2000, rng), _sample(500, rng))
    finally:
        mp.undo()
    return det


def test_exp_of_minus_score_integrates_to_one(fitted):
    step = 0.05
    axis = np.arange(-8.0, 8.0 + step / 2, step)
    gx, gy = np.meshgrid(axis, axis, indexing="ij")
    grid = np.column_stack([gx.ravel(), gy.ravel()]).astype(np.float32)  # (G, 2)
    score = fitted._score(grid)
    assert score.shape == (len(grid),) and np.isfinite(score).all()
    mass = float(np.exp(-score).sum() * step * step)
    assert mass == pytest.approx(1.0, abs=0.03)


def test_score_is_minus_log_density(fitted):
    """score = -log q: its mean over fresh samples is the cross-entropy H(p, q) = H(p) +
    KL(p || q), a little above the true entropy (a sign flip would give about -H(p))."""
    rng = np.random.default_rng(1)
    x = _sample(20000, rng)
    score = fitted._score(x)
    entropy = -_true_log_density(x.astype(np.float64)).mean()
    kl = score.mean() - entropy
    assert -0.03 < kl < 0.1, (score.mean(), entropy)
    # Higher = more anomalous: the modes score lower than a point far from both.
    modes = fitted._score(MEANS.astype(np.float32))
    far = fitted._score(np.array([[0.0, 6.0]], np.float32))
    assert (modes < far).all()
    # Pointwise: the score tracks the true -log p where the data are.
    assert np.median(np.abs(score + _true_log_density(x.astype(np.float64)))) < 0.15
