"""``unified_cfm``: the workspace's Unified-CFM, a token CFM over ``[FLOW, P1..Pn]`` with a
masked-prediction consistency loss; score = ``flow_consistency``.

Model (:class:`janus.detectors.packet_nets.UnifiedCFMNet`): the FLOW token (the 20
standardised flow features) and one token per packet (standardised size, iat, win and the 6
binary channels) in one sequence with FULL attention, so the FLOW token reads its packets
and every packet reads the FLOW token -- what JANUS's packet-causal network forbids.

Loss per minibatch, ``L = L_cfm + lambda_flow L_flow + lambda_packet L_packet``:

* ``L_cfm``: OT-CFM over all continuous values of the flow (the 20 features and the 3 values
  of every valid packet) exactly as JANUS's continuous side: ``x0 ~ N(0, I)`` re-paired by
  minibatch OT, one ``t ~ U(0, 1)`` per flow, ``x_t = t x1 + (1 - t) x0 + sigma eps``, mean
  squared error of the velocity against ``x1 - x0``; the flags enter as clean inputs.
* ``L_flow`` (hide the flow token, predict it from the packets): the FLOW token is replaced
  by a learned MASK vector, the packets are clean (``t = 1``), and ``flow_pred`` regresses
  the 20 standardised features (mean squared error).
* ``L_packet`` (hide packets, predict them from the flow token): a share
  ``packet_mask_ratio`` of each flow's valid packets (1.0, the default: all of them, so they
  are predicted from the FLOW token and their positions alone) is replaced by a learned
  MASK vector, the FLOW token is clean, and ``packet_pred`` regresses the hidden packets'
  3 standardised continuous values (mean squared error over the hidden values).

Scores (``score``):

* ``flow_consistency`` (the default): ``mean_k (z_f[k] - zhat_f[k])^2`` over the 20 features,
  where ``zhat_f`` is ``flow_pred`` of the masked FLOW token given the flow's own packets: how
  well the flow's features agree with what its packets predict. Without the consistency
  loss (``lambda_flow = 0``) the head is never trained and stays 0, so the score is
  ``mean_k z_f[k]^2``, a plain norm of the features.
* ``terminal_norm``: JANUS's one-pass terminal norm from this model's field,
  ``x0 = x1 - v(x1, t = 1)``, mean of ``x0^2`` over the ``20 + 3n`` continuous values.

In this pipeline the 20 flow features are computed from the first ``T`` packets
(:mod:`janus.capture.features`), so a flow's features and packets always agree by
construction; ``flow_consistency`` then measures how far the packets -> features map learned
on benign flows is from the truth on a flow, which grows where the packets are unlike benign
ones. The workspace's runs took CICFlowMeter features over the whole flow, which can also
disagree with the first packets.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from janus.contract import N_FLOW_FEATURES
from janus.detectors.base import TorchDetector, seed_everything, train_minibatch
from janus.errors import ConfigError

SCORES = ("flow_consistency", "terminal_norm")


class UnifiedCFMDetector(TorchDetector):
    name = "unified_cfm"
    inputs = "both"
    defaults: ClassVar[dict[str, Any]] = {
        "max_packets": 64,  # packets per flow read (the data's T when smaller)
        "d_model": 32,  # as the default config's JANUS model (paper: 128)
        "n_layers": 2,
        "n_heads": 2,
        "mlp_ratio": 4.0,
        "sigma": 0.1,  # the workspace's within-dataset sigma (0.6 for cross sources)
        "lambda_flow": 0.3,
        "lambda_packet": 0.3,
        "packet_mask_ratio": 1.0,  # share of valid packets hidden by L_packet
        "ot": "exact",  # minibatch coupling, as janus.model.network.ModelConfig.ot
        "score": "flow_consistency",
        "epochs": 30,
        "batch_size": 128,
        "lr": 2e-3,
        "patience": 4,
    }

    def __init__(self, seed: int = 0, **params: Any) -> None:
        super().__init__(seed, **params)
        p = self.params
        if p["score"] not in SCORES:
            raise ConfigError(f"unified_cfm: score must be one of {list(SCORES)}, got "
                              f"{p['score']!r}")
        if not 0.0 < p["packet_mask_ratio"] <= 1.0:
            raise ConfigError("unified_cfm: packet_mask_ratio must be in (0, 1], got "
                              f"{p['packet_mask_ratio']}")

    def build(self) -> Any:
        from janus.detectors.packet_nets import UnifiedCFMNet

        p = self.params
        return UnifiedCFMNet(p["max_packets"], p["d_model"], p["n_layers"],
                             p["n_heads"], p["mlp_ratio"])

    def loss_parts(self, batch: Any, gen: Any) -> tuple[Any, Any, Any]:
        """``(L_cfm, L_flow, L_packet)`` of one :class:`PacketBatch` (scalars)."""
        import torch

        from janus.detectors.packets import masked_ot_source
        from janus.model.flowmatch import cfm_path

        p, net = self.params, self.module
        b = len(batch)
        mask = batch.mask  # (B, L)
        x1f, x1p = batch.flow, batch.cont  # (B, 20), (B, L, 3)
        # One OT pairing over the whole continuous vector [flow | packets], as in JANUS.
        x1 = torch.cat([x1f, x1p.reshape(b, -1)], 1)  # (B, 20 + 3L)
        valid = torch.cat([torch.ones_like(x1f, dtype=torch.bool),
                           mask[..., None].expand(-1, -1, 3).reshape(b, -1)], 1)
        x0 = masked_ot_source(x1, valid, gen, p["ot"])
        t = torch.rand(b, generator=gen)
        xt, ut = cfm_path(x0, x1, t, p["sigma"], torch.randn(x1.shape, generator=gen))
        xt = xt * valid  # padding enters as 0, as at scoring time
        h = net(xt[:, :N_FLOW_FEATURES], xt[:, N_FLOW_FEATURES:].reshape(x1p.shape),
                batch.flags, batch.lengths, t)  # (B, 1 + L, d)
        v = torch.cat([net.flow_head(h[:, 0]), net.packet_head(h[:, 1:]).reshape(b, -1)], 1)
        cfm = (((v - ut) ** 2) * valid).sum() / valid.sum()
        ones = torch.ones(b)
        zero = torch.zeros(())
        l_flow = l_packet = zero
        if p["lambda_flow"] > 0:
            hf = net(x1f, x1p, batch.flags, batch.lengths, ones, hide_flow=True)
            l_flow = ((net.flow_pred(hf[:, 0]) - x1f) ** 2).mean()
        if p["lambda_packet"] > 0:
            hide = mask & (torch.rand(mask.shape, generator=gen) < p["packet_mask_ratio"])
            hp = net(x1f, x1p, batch.flags, batch.lengths, ones, hide_packets=hide)
            err = ((net.packet_pred(hp[:, 1:]) - x1p) ** 2) * hide[..., None]
            l_packet = err.sum() / (3 * hide.sum()).clamp_min(1)
        return cfm, l_flow, l_packet

    def _fit(self, z_train: Any, z_val: Any | None) -> None:
        p = self.params
        seed_everything(self.seed)
        self.module = net = self.build()

        def loss(batch, gen):
            cfm, l_flow, l_packet = self.loss_parts(batch, gen)
            return cfm + p["lambda_flow"] * l_flow + p["lambda_packet"] * l_packet

        self.history.update(train_minibatch(
            net, loss, z_train, z_val, epochs=p["epochs"], batch_size=p["batch_size"],
            lr=p["lr"], patience=p["patience"], seed=self.seed, desc="unified_cfm"))

    def predicted_features(self, batch: Any) -> Any:
        """``zhat_f`` ``(B, 20)``: the masked FLOW token's prediction from the packets alone."""
        import torch

        h = self.module(batch.flow, batch.cont, batch.flags, batch.lengths,
                        torch.ones(len(batch)), hide_flow=True)
        return self.module.flow_pred(h[:, 0])

    def _score(self, z: Any) -> np.ndarray:
        import torch

        from janus.detectors.packets import packet_eval

        net = self.module

        def flow_consistency(batch):
            return ((batch.flow - self.predicted_features(batch)) ** 2).mean(1)

        def terminal_norm(batch):
            h = net(batch.flow, batch.cont, batch.flags, batch.lengths, torch.ones(len(batch)))
            x0f = batch.flow - net.flow_head(h[:, 0])  # (B, 20)
            x0p = (batch.cont - net.packet_head(h[:, 1:])) * batch.mask[..., None]  # (B, L, 3)
            n_values = N_FLOW_FEATURES + 3 * batch.lengths
            return ((x0f ** 2).sum(1) + (x0p ** 2).sum((1, 2))) / n_values

        fn = flow_consistency if self.params["score"] == "flow_consistency" else terminal_norm
        return packet_eval(fn, z)
