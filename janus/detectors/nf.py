"""``nf``: a normalizing-flow density baseline on flow features, after Shafir et al.

The detector fits a neural-spline flow (:class:`zuko.flows.NSF`: masked autoregressive
rational-quadratic spline transforms) to the standardised flow features of benign training
flows by maximum likelihood, and scores a flow by its negative log-likelihood (nats, in
standardised feature space; the standardisation's constant Jacobian does not change the
ranking). Training stops early on the benign validation NLL.

Difference from the original evaluation, on purpose: Shafir et al. choose the decision
threshold with attack labels; here no label is used anywhere before ``janus evaluate``,
which sets thresholds at percentiles of the benign validation scores like every detector.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from janus.detectors.base import TorchDetector, batched_eval, seed_everything, train_minibatch


class NFDetector(TorchDetector):
    name = "nf"
    defaults: ClassVar[dict[str, Any]] = {
        "transforms": 3,  # autoregressive spline layers
        "hidden": 64,  # width of the two hidden layers of each layer's MADE
        "bins": 8,  # spline bins per feature
        # ~0.7 s per epoch of 7k flows on one core: 25 epochs keep the default run near 20 s.
        "epochs": 25,
        "batch_size": 256,
        "lr": 2e-3,
        "weight_decay": 1e-5,
        "patience": 4,
    }

    def build(self) -> Any:
        import zuko

        p = self.params
        return zuko.flows.NSF(features=20, context=0, transforms=p["transforms"], bins=p["bins"],
                              hidden_features=(p["hidden"], p["hidden"]))

    def _fit(self, z_train: np.ndarray, z_val: np.ndarray | None) -> None:
        seed_everything(self.seed)
        self.module = self.build()
        flow = self.module
        p = self.params

        def loss(xb, _gen):
            return -flow().log_prob(xb).mean()

        self.history.update(train_minibatch(
            flow, loss, z_train, z_val, epochs=p["epochs"], batch_size=p["batch_size"],
            lr=p["lr"], patience=p["patience"], seed=self.seed, desc="nf",
            weight_decay=p["weight_decay"]))

    def _score(self, z: np.ndarray) -> np.ndarray:
        dist = self.module()
        return batched_eval(lambda xb: -dist.log_prob(xb), z)
