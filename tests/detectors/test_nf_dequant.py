"""nf's uniform dequantisation of integer features and its training noise (janus/detectors/nf.py),
and the loss.csv every epoch-trained baseline writes (janus/detectors/base.py)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("zuko")

from janus.contract import FLOW_FEATURES
from janus.detectors import Detector, make_detector
from janus.detectors.base import TorchDetector

INTEGER = {"n_packets", "fwd_size_max", "bwd_size_max", "syn_count", "fin_count", "rst_count",
           "psh_count"}
SMALL = {"transforms": 1, "hidden": 16, "bins": 4, "epochs": 6, "batch_size": 64}


def _features(n: int, seed: int) -> np.ndarray:
    """Flow-like features ``(n, 20)``: integer counts and sizes, positive reals elsewhere;
    rst_count is 0 on every flow (constant on benign traffic, as in the synthetic sites)."""
    rng = np.random.default_rng(seed)
    x = rng.gamma(2.0, 1e-3, size=(n, len(FLOW_FEATURES)))
    for j, f in enumerate(FLOW_FEATURES):
        if f in INTEGER:
            x[:, j] = rng.poisson(4.0, n) + 1
    x[:, FLOW_FEATURES.index("fwd_ratio")] = rng.uniform(0, 1, n)
    x[:, FLOW_FEATURES.index("rst_count")] = 0
    return x


@pytest.fixture(scope="module")
def fitted():
    det = make_detector("nf", seed=0, **SMALL)
    det.fit(_features(400, 0), _features(150, 1))
    return det


def test_integer_features_are_found_and_scored_at_the_cell_midpoint(fitted):
    assert set(fitted.history["dequantised"]) == INTEGER
    x = _features(50, 2)
    mid = x.copy()
    for j, f in enumerate(FLOW_FEATURES):
        if f in INTEGER:
            mid[:, j] += 0.5
    np.testing.assert_allclose(fitted.score(x), TorchDetector.score(fitted, mid), rtol=1e-6)
    # Deterministic: no noise at scoring time.
    np.testing.assert_array_equal(fitted.score(x), fitted.score(x))


def test_training_noise_is_a_uniform_cell_for_integers_plus_jitter(fitted):
    """Back in the features' units, an integer feature of a noised batch lies in [x, x + 1)
    and is spread over the cell (uniform dequantisation); every feature also carries the
    N(0, jitter^2) noise in standardised units."""
    import torch

    x = np.repeat(_features(1, 4), 4000, axis=0)  # one flow, many draws
    z = fitted.scaler.transform(x)
    sc = fitted.scaler
    jitter_free = make_detector("nf", seed=0, jitter=0.0, **SMALL)
    jitter_free.scaler, jitter_free.history = sc, {"dequantised": sorted(INTEGER)}
    noise = jitter_free._training_noise(z)
    zn = noise(torch.from_numpy(z), torch.Generator().manual_seed(0)).double().numpy()
    y = zn * sc.std + sc.mean
    back = np.sign(y) * np.where(sc.scale > 0, sc.scale, 1) * np.expm1(np.abs(y))
    for j, f in enumerate(FLOW_FEATURES):
        if f in INTEGER:
            u = back[:, j] - x[:, j]
            assert u.min() >= -1e-6 and u.max() < 1 + 1e-6
            assert abs(u.mean() - 0.5) < 0.02 and abs(u.std() - (1 / 12) ** 0.5) < 0.02
        else:
            np.testing.assert_allclose(zn[:, j], z[:, j], atol=1e-6)  # untouched without jitter
    jittered = fitted._training_noise(z)(torch.from_numpy(z), torch.Generator().manual_seed(1))
    other = [j for j, f in enumerate(FLOW_FEATURES) if f not in INTEGER]
    d = jittered.double().numpy()[:, other] - z[:, other]
    assert abs(d.std() - fitted.params["jitter"]) < 0.005 and abs(d.mean()) < 0.005


def test_loaded_model_scores_like_the_trained_one_and_loss_csv(fitted, tmp_path):
    fitted.save(tmp_path / "m")
    back = Detector.load(tmp_path / "m")
    x = _features(30, 3)
    np.testing.assert_allclose(back.score(x), fitted.score(x), rtol=1e-6)
    lines = (tmp_path / "m" / "loss.csv").read_text().splitlines()
    assert lines[0] == "stage,epoch,train_loss,val_loss"
    assert len(lines) == 1 + fitted.history["epochs_run"]
    first = lines[1].split(",")
    assert float(first[3]) == pytest.approx(fitted.history["val_loss"][0], rel=1e-5)
