"""Tests for janus/detectors/autoencoder.py: MemAE's memory read, hard shrinkage and entropy
loss (closed forms on hand-built weights), and the memory's effect: on benign flows that fill
a ring of a plane, an autoencoder also reconstructs the ring's empty centre, MemAE does not."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from janus import detectors as baselines
from janus.detectors.autoencoder import SHRINK_EPS, addressing_entropy, hard_shrink
from janus.errors import ConfigError
from janus.evaluation import metrics
from janus.model.data import FLOW_SCALE


def _raw(u: np.ndarray) -> np.ndarray:
    """Flow features whose fixed log transform (FeatureScaler) is exactly ``u`` ``(n, 20)``."""
    s = np.where(FLOW_SCALE > 0, FLOW_SCALE, 1.0)
    return np.where(FLOW_SCALE > 0, np.sign(u) * s * np.expm1(np.abs(u)), u)


def _plane(ab: np.ndarray, seed: int) -> np.ndarray:
    """Points ``ab`` ``(n, 2)`` of a fixed plane through 20-d transformed space, 0.05 noise."""
    basis = np.linalg.qr(np.random.default_rng(7).normal(size=(20, 2)))[0].T  # (2, 20)
    noise = 0.05 * np.random.default_rng(seed).normal(size=(len(ab), 20))
    return _raw(3.0 * ab @ basis + 5.0 + noise)


def _ring(n: int, seed: int) -> np.ndarray:
    theta = np.random.default_rng(seed).uniform(0, 2 * np.pi, n)
    return np.c_[np.cos(theta), np.sin(theta)]


@pytest.fixture(scope="module")
def ring_data():
    """Benign: the unit ring of the plane; anomalies: its centre (inside the benign span)."""
    train, val, test = _plane(_ring(600, 0), 1), _plane(_ring(200, 2), 3), _plane(_ring(200, 4), 5)
    centre = _plane(0.2 * np.random.default_rng(6).normal(size=(200, 2)), 7)
    x = np.concatenate([test, centre])
    y = np.r_[np.zeros(len(test)), np.ones(len(centre))].astype(int)
    return train, val, x, y


TRAIN = {"epochs": 30, "lr": 3e-3, "patience": 10}


def test_memory_stops_the_reconstruction_of_anomalies_an_autoencoder_generalises_to(ring_data):
    """The same encoder/decoder widths without the memory (``ae``) reconstructs the centre
    almost as well as the ring; MemAE can only decode memory items (prototypes of ring
    encodings), so the centre comes out on the ring."""
    train, val, x, y = ring_data
    ae = baselines.make_detector("ae", seed=0, **TRAIN).fit(train, val).score(x)
    mem = baselines.make_detector("memae", seed=0, **TRAIN).fit(train, val).score(x)
    assert metrics.auroc(y, ae) < 0.9
    assert metrics.auroc(y, mem) > 0.99
    # The centre's error is several times the ring's, not a sliver above it.
    assert np.median(mem[y == 1]) > 5 * np.median(mem[y == 0])


def test_hard_shrinkage_closed_form():
    w = torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.25, 0.25, 0.25, 0.25]], dtype=torch.float64)
    out = hard_shrink(w, 0.1)
    expected = torch.tensor([[0.5, 0.3, 0.15, 0.0], [0.25, 0.25, 0.25, 0.25]], dtype=torch.float64)
    expected = expected / expected.sum(1, keepdim=True)
    torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-12)
    # Every weight below lambda: nothing survives, the read is 0 (not NaN).
    assert torch.equal(hard_shrink(w[1:], 0.3), torch.zeros(1, 4, dtype=torch.float64))
    assert SHRINK_EPS <= 1e-9


def test_addressing_entropy_closed_form():
    w = torch.tensor([[0.5, 0.5, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.25] * 4])
    torch.testing.assert_close(addressing_entropy(w), torch.tensor([np.log(2), 0.0, np.log(4)], dtype=torch.float32))


@pytest.mark.parametrize("similarity", ["cosine", "dot"])
def test_the_decoder_reads_a_sparse_convex_combination_of_memory_items(ring_data, similarity):
    """On trained weights, for benign and anomalous flows alike: every addressing weight is 0 or
    at least lambda, rows sum to 1, and the reconstruction is the decoder of ``w' M``."""
    train, val, x, _ = ring_data
    det = baselines.make_detector("memae", seed=1, epochs=3, similarity=similarity).fit(train, val)
    net, lam = det.module, det.params["shrink_thres"]
    z = torch.from_numpy(det.scaler.transform(np.concatenate([x, 30 * x[:5]])))
    with torch.no_grad():
        z_hat, w = net(z)
        dense = torch.softmax(_similarity(net, net.encoder(z), similarity), dim=1)
        torch.testing.assert_close(net.decoder(w @ net.memory), z_hat)
    assert ((w == 0) | (w >= lam)).all()
    assert (w == 0).any(1).all()  # the shrinkage removes items in every row
    torch.testing.assert_close(w.sum(1), torch.ones(len(z)))
    # The kept weights are the dense softmax's above lambda, renormalised.
    kept = torch.where(dense >= lam, dense, torch.zeros_like(dense))
    torch.testing.assert_close(w, kept / kept.sum(1, keepdim=True), rtol=1e-4, atol=1e-6)


def _similarity(net, z_e, kind):
    if kind == "cosine":
        return torch.nn.functional.normalize(z_e, dim=1) @ \
            torch.nn.functional.normalize(net.memory, dim=1).T
    return z_e @ net.memory.T


def test_memae_loss_is_reconstruction_plus_weighted_entropy(ring_data):
    train, val, x, _ = ring_data
    det = baselines.make_detector("memae", seed=0, epochs=1, entropy_weight=0.5).fit(train, val)
    z = torch.from_numpy(det.scaler.transform(x[:64]))
    with torch.no_grad():
        z_hat, w = det.module(z)
        by_hand = (((z_hat - z) ** 2).sum(1) + 0.5 * addressing_entropy(w)).mean()
        torch.testing.assert_close(det.loss(z), by_hand)
        assert float(addressing_entropy(w).mean()) > 0.1  # the term is not vanishing here


def test_memae_options_are_checked():
    with pytest.raises(ConfigError, match="shrink_thres"):
        baselines.make_detector("memae", shrink_thres=1.5)
    with pytest.raises(ConfigError, match="similarity"):
        baselines.make_detector("memae", similarity="euclid")


def test_memae_seed_changes_the_model(ring_data):
    train, val, x, _ = ring_data
    a = baselines.make_detector("memae", seed=0, epochs=2).fit(train, val).score(x)
    b = baselines.make_detector("memae", seed=1, epochs=2).fit(train, val).score(x)
    assert not np.array_equal(a, b)
