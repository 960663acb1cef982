"""``anomaly_transformer``: Anomaly-Transformer (Xu et al., ICLR 2022) over each flow's packets.

The network and the association discrepancy are in :mod:`janus.detectors.anomaly_attention`
(written from the paper). Adaptation from time series to packet sequences:

* **The series is one flow.** The paper slides fixed windows (length 100) over one long
  multivariate series; here every flow is its own window: its first ``n <= T`` packets,
  each a 9-channel "time point" (standardised size, iat, win and the six binary channels as
  0/1). Windows have different lengths, so every attention row, the prior and every
  per-packet term are masked to the flow's valid packets.
* **Distance is the packet index.** The prior's Gaussian is over ``|i - j|`` in packets (the
  paper: time steps); inter-arrival times are an input channel, not the distance.
* **Minimax training** (paper Sec. 3.2): ``L = ||X - Xhat||^2 -/+ lambda ||AssDis||_1``; the
  *minimise* phase updates the prior with the series association detached
  (``rec + lambda AssDis(P, S.detach())``), the *maximise* phase the series association with
  the prior detached (``rec - lambda AssDis(P.detach(), S)``). The authors' code
  back-propagates both losses before one optimiser step; here the step takes the gradient of
  their mean (the same direction, half the scale; Adam is insensitive to the scale). Its
  value equals the reconstruction error, which early stopping watches.
* **Anomaly criterion** (paper Eq. 6): per packet ``i``,
  ``softmax_i(-temperature * AssDis_i) * ||X_i - Xhat_i||^2`` (softmax over the flow's valid
  packets; ``temperature = 50`` as the authors' code; the paper writes it without one). A
  **flow's score** is the sum over its valid packets (``aggregate: sum``, the default): the
  reconstruction error averaged with the softmax weights, comparable across lengths.
  ``aggregate: mean`` divides that by the number of packets, as a plain mean of the
  per-packet criterion would (it favours long flows: the weights sum to 1 whatever the
  length).

The paper's point-adjustment of detections and its window-level thresholding do not apply:
``janus evaluate`` thresholds the per-flow scores at benign validation percentiles like every
detector.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from janus.detectors.base import TorchDetector, seed_everything, train_minibatch
from janus.errors import ConfigError

AGGREGATES = ("sum", "mean")
#: Values per packet: size, iat, win, direction, syn, fin, rst, psh, ack.
CHANNELS = 9


def packet_series(batch: Any) -> Any:
    """``(B, L, 9)``: standardised size/iat/win and the six 0/1 channels; 0 on padding."""
    import torch

    return torch.cat([batch.cont, batch.flags], -1)


class AnomalyTransformerDetector(TorchDetector):
    name = "anomaly_transformer"
    inputs = "packets"
    defaults: ClassVar[dict[str, Any]] = {
        "max_packets": 64,  # packets per flow read (the data's T when smaller)
        "d_model": 32,  # paper: 512 over 100-point windows; packet windows are short
        "n_layers": 2,  # paper: 3
        "n_heads": 2,  # paper: 8
        "d_ff": 64,  # paper: 512
        "lambda": 3.0,  # weight of the association discrepancy (paper: 3)
        "temperature": 50.0,  # of the softmax over -AssDis in the criterion (authors' code)
        "aggregate": "sum",
        "epochs": 30,
        "batch_size": 128,
        "lr": 1e-3,
        "patience": 4,
    }

    def __init__(self, seed: int = 0, **params: Any) -> None:
        super().__init__(seed, **params)
        if self.params["aggregate"] not in AGGREGATES:
            raise ConfigError(f"anomaly_transformer: aggregate must be one of "
                              f"{list(AGGREGATES)}, got {self.params['aggregate']!r}")
        if self.params["d_model"] % self.params["n_heads"]:
            raise ConfigError(f"anomaly_transformer: d_model={self.params['d_model']} is not "
                              f"divisible by n_heads={self.params['n_heads']}")

    def build(self) -> Any:
        from janus.detectors.anomaly_attention import AnomalyTransformerNet

        p = self.params
        return AnomalyTransformerNet(CHANNELS, p["d_model"], p["n_layers"], p["n_heads"],
                                     p["d_ff"])

    def parts(self, batch: Any) -> dict[str, Any]:
        """Per packet of one batch: ``x``, ``recon`` ``(B, L, 9)``; ``err`` ``(B, L)`` (mean
        squared reconstruction error over the 9 values); ``series_dis`` (prior detached) and
        ``prior_dis`` (series detached), ``(B, L)``, each ``AssDis`` averaged over layers."""
        from janus.detectors.anomaly_attention import symmetric_kl

        x = packet_series(batch)
        recon, assoc = self.module(x, batch.mask)
        series_dis = sum(symmetric_kl(s, p.detach()) for s, p in assoc) / len(assoc)
        prior_dis = sum(symmetric_kl(s.detach(), p) for s, p in assoc) / len(assoc)
        err = ((recon - x) ** 2).mean(-1)
        return {"x": x, "recon": recon, "err": err, "series_dis": series_dis,
                "prior_dis": prior_dis}

    def minimax_loss(self, batch: Any) -> Any:
        """The training loss of one batch: the mean of the maximise-phase loss
        ``rec - lambda AssDis(P.detach(), S)`` and the minimise-phase loss
        ``rec + lambda AssDis(P, S.detach())`` (AssDis and rec averaged over valid packets).
        So the prior (sigma) gets only ``+lambda/2`` of the discrepancy's gradient, the series
        (Q, K) only ``-lambda/2``, and the value equals the reconstruction error."""
        q = self.parts(batch)
        m = batch.mask.float()
        n = m.sum()
        rec = (q["err"] * m).sum() / n
        maximise = rec - self.params["lambda"] * (q["series_dis"] * m).sum() / n
        minimise = rec + self.params["lambda"] * (q["prior_dis"] * m).sum() / n
        return 0.5 * (maximise + minimise)

    def _fit(self, z_train: Any, z_val: Any | None) -> None:
        p = self.params
        seed_everything(self.seed)
        self.module = net = self.build()
        self.history.update(train_minibatch(
            net, lambda batch, _gen: self.minimax_loss(batch), z_train, z_val,
            epochs=p["epochs"], batch_size=p["batch_size"], lr=p["lr"], patience=p["patience"],
            seed=self.seed, desc="anomaly_transformer"))

    def criterion(self, batch: Any) -> Any:
        """The per-packet anomaly criterion ``(B, L)``, 0 on padding (module docstring)."""
        import torch

        q = self.parts(batch)
        # series_dis and prior_dis differ only in what is detached: both are AssDis.
        logits = (-self.params["temperature"] * q["series_dis"]).masked_fill(~batch.mask,
                                                                            float("-inf"))
        return torch.softmax(logits, dim=1) * q["err"] * batch.mask

    def _score(self, z: Any) -> np.ndarray:
        from janus.detectors.packets import packet_eval

        def score(batch):
            total = self.criterion(batch).sum(1)
            return total if self.params["aggregate"] == "sum" else total / batch.lengths

        return packet_eval(score, z)
