"""``nf``: a normalizing-flow density baseline on flow features, after Shafir et al.

The detector fits a neural-spline flow (:class:`zuko.flows.NSF`: masked autoregressive
rational-quadratic spline transforms) to the standardised flow features of benign training
flows by maximum likelihood, and scores a flow by its negative log-likelihood (nats, in
standardised feature space). Training stops early on the benign validation NLL (patience
``patience``, at most ``epochs``), and the best-validation weights are kept.

Capacity. Shafir et al. use pzflow, whose default is one rational-quadratic spline coupling
per input dimension (20 here), K = 16 bins, 2 x 128 hidden units and ~100 epochs; that is
``PZFLOW_LIKE`` (what ``config/paper.yaml`` sets). The class defaults are what the embedded
default run affords on two CPU cores (README, "Baselines").

Integer features and spikes. Counts (``n_packets``, the flag counts) and byte maxima are
integers, and some are constant on benign traffic: a continuous density fitted to them
collapses onto the spikes (validation NLLs of -20 to -28 nats that jump between epochs), and
its likelihood then ranks flows by how exactly they hit an integer, not by how typical they
are. So, when ``dequantize`` is on (the default):

* every feature whose benign training values are all integers is *uniformly dequantised*
  during training and validation: ``x + u`` with ``u ~ U[0, 1)`` drawn afresh each batch, in
  the features' own units, before the fixed log transform and the standardisation (whose
  mean and std are those of one dequantised draw of the training flows, so an almost
  constant count does not blow its unit cells up to hundreds of standard deviations); scoring
  evaluates the density at the cell's midpoint ``x + 1/2`` (no noise, so scores are
  deterministic);
* every feature then gets Gaussian noise of ``jitter`` standardised units during training:
  the features also have point masses that are not integers (``duration = 0`` and the time
  features of one-packet flows) and exact functional relations (``packets_per_s =
  n_packets / duration``), on which an unsmoothed density grows without bound; smoothed at
  ``jitter``, the density is bounded and the validation NLL a stable stopping criterion.
  Features constant on benign training flows after dequantisation are listed as such.

Both are training-time devices only: no flow is dropped and no feature removed, so a test
flow that differs in a feature constant on benign traffic still scores as unusual. The
features concerned are recorded in ``detector.json`` (``history.dequantised``, and
``history.jittered`` for the features constant on benign training flows).

Difference from the original evaluation, on purpose: Shafir et al. choose the decision
threshold with attack labels; here no label is used anywhere before ``janus evaluate``,
which sets thresholds at percentiles of the benign calibration scores like every detector.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from janus.contract import FLOW_FEATURES
from janus.detectors.base import (
    Detector,
    FlowData,
    TorchDetector,
    as_flow_data,
    batched_eval,
    seed_everything,
    train_minibatch,
)

#: pzflow's defaults, as Shafir et al. ran them (config/paper.yaml sets these).
PZFLOW_LIKE: dict[str, Any] = {"transforms": 20, "bins": 16, "hidden": 128, "epochs": 100,
                               "patience": 10}


class NFDetector(TorchDetector):
    name = "nf"
    defaults: ClassVar[dict[str, Any]] = {
        "transforms": 3,  # autoregressive spline layers (pzflow: one per feature, 20)
        "hidden": 64,  # width of the two hidden layers of each layer's MADE (pzflow: 128)
        "bins": 8,  # spline bins per feature (pzflow: 16)
        "epochs": 60,  # maximum epochs; early stopping on the validation NLL ends most sooner
        "batch_size": 256,
        "lr": 2e-3,
        "weight_decay": 1e-5,
        "patience": 5,  # epochs without a validation improvement before stopping
        "dequantize": True,  # uniform dequantisation of integer-valued features (training)
        "jitter": 0.05,  # std (standardised units) of the training noise on every feature
    }

    def build(self) -> Any:
        import zuko

        p = self.params
        return zuko.flows.NSF(features=len(FLOW_FEATURES), context=0,
                              transforms=p["transforms"], bins=p["bins"],
                              hidden_features=(p["hidden"], p["hidden"]))

    # ---- integer features
    def _integer_mask(self) -> np.ndarray:
        """``(20,)`` bool: the features dequantised (from ``history``, so a loaded model
        scores like the trained one)."""
        names = set(self.history.get("dequantised", []))
        return np.array([f in names for f in FLOW_FEATURES])

    def fit(self, x_train: FlowData | np.ndarray,
            x_val: FlowData | np.ndarray | None = None) -> Detector:
        x = np.asarray(as_flow_data(x_train).features, dtype=np.float64)
        integer = (np.all(x == np.round(x), axis=0) if self.params["dequantize"] and x.size
                   else np.zeros(len(FLOW_FEATURES), bool))
        self.history["dequantised"] = [f for f, k in zip(FLOW_FEATURES, integer) if k]
        return super().fit(x_train, x_val)

    def _scaler_data(self, x_train: np.ndarray) -> np.ndarray:
        # Standardise with the statistics of the dequantised counts: a count that is almost
        # constant on benign flows has a tiny raw spread, and dividing the unit-wide
        # dequantisation cells by it would put them hundreds of units out.
        rng = np.random.default_rng(self.seed)
        return x_train + self._integer_mask() * rng.uniform(0.0, 1.0, x_train.shape)

    def score(self, x: FlowData | np.ndarray) -> np.ndarray:
        # The density of a dequantised count is evaluated at its cell's midpoint.
        data = as_flow_data(x)
        mid = np.asarray(data.features, dtype=np.float64) + 0.5 * self._integer_mask()
        return super().score(FlowData(mid, data.packets, data.lengths))

    def _fit(self, z_train: np.ndarray, z_val: np.ndarray | None) -> None:
        seed_everything(self.seed)
        self.module = self.build()
        flow = self.module
        p = self.params
        noise = self._training_noise(z_train)

        def loss(zb, gen):
            return -flow().log_prob(noise(zb, gen)).mean()

        self.history.update(train_minibatch(
            flow, loss, z_train, z_val, epochs=p["epochs"], batch_size=p["batch_size"],
            lr=p["lr"], patience=p["patience"], seed=self.seed, desc="nf",
            weight_decay=p["weight_decay"]))

    def _training_noise(self, z_train: np.ndarray):
        """``noise(zb (b, D) tensor, generator) -> tensor``: the dequantisation of the
        integer features (through the raw units: invert the standardisation and the log
        transform, add ``U[0, 1)``, transform back), then the jitter of every feature."""
        import torch

        d = z_train.shape[1]
        integer = self._integer_mask() if self.scaler is not None and d == len(FLOW_FEATURES) \
            else np.zeros(d, bool)
        if integer.any():
            sc = self.scaler
            scale = torch.tensor(np.where(sc.scale > 0, sc.scale, 1.0), dtype=torch.float64)
            ident = torch.tensor(sc.scale <= 0)
            mean = torch.tensor(sc.mean, dtype=torch.float64)
            std = torch.tensor(sc.std, dtype=torch.float64)
        mask = torch.tensor(integer)

        def to_z(x):
            y = torch.where(ident, x, torch.sign(x) * torch.log1p(x.abs() / scale))
            return (y - mean) / std

        def to_x(z):
            y = z * std + mean
            return torch.where(ident, y, torch.sign(y) * scale * torch.expm1(y.abs()))

        def dequantise(zb, gen):
            if not integer.any():
                return zb
            x = to_x(zb.double())
            u = torch.rand(x.shape, generator=gen, dtype=torch.float64)
            return torch.where(mask, to_z(x + u), zb.double()).to(zb.dtype)

        # Constant after dequantisation: only non-integer features can still be.
        z_deq = dequantise(torch.from_numpy(np.ascontiguousarray(z_train)),
                           torch.Generator().manual_seed(self.seed)).numpy()
        constant = z_deq.std(axis=0) < 1e-6
        self.history["jittered"] = ([f for f, k in zip(FLOW_FEATURES, constant) if k]
                                    if d == len(FLOW_FEATURES) else [])
        sigma = float(self.params["jitter"])

        def noise(zb, gen):
            out = dequantise(zb, gen)
            if sigma > 0:
                out = out + sigma * torch.randn(out.shape, generator=gen, dtype=out.dtype)
            return out

        return noise

    def _score(self, z: np.ndarray) -> np.ndarray:
        dist = self.module()
        return batched_eval(lambda xb: -dist.log_prob(xb), z)
