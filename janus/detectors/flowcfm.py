"""``flowcfm``: flow matching on the 20 flow features alone (no packets, no flags).

The same continuous flow matching as JANUS's flow token (:mod:`janus.model.flowmatch`): source
``x0 ~ N(0, I)``, straight path ``x_t = t x1 + (1 - t) x0 + sigma eps``, target
``u = x1 - x0``, minibatch Sinkhorn OT coupling of ``x0`` to ``x1``; the velocity field is an
MLP on ``[x_t, sinusoidal embedding of t]`` (:func:`janus.model.network.timestep_embedding`).

Score (the terminal-norm definition of JANUS's continuous side, restricted to the flow
token): at ``t = 1`` the field predicts ``x1 - x0``, so ``x0_hat = x - v(x, t=1)`` recovers
the source point a flow came from; benign flows map near the bulk of ``N(0, I)`` and
``score = mean_d x0_hat_d^2`` (~1 for benign) grows for flows the field cannot explain. This
is exactly JANUS's ``terminal_flow`` score (:mod:`janus.model.score`), from a flow-only model.
"""

from __future__ import annotations

import itertools
from typing import Any, ClassVar

import numpy as np

from janus.contract import N_FLOW_FEATURES
from janus.detectors.base import TorchDetector, batched_eval, seed_everything, train_minibatch


def _velocity_cls():
    import torch
    from torch import nn

    from janus.model.network import timestep_embedding

    class VelocityMLP(nn.Module):
        """``v(x (b, D), t (b,)) -> (b, D)``: an MLP on ``[x, emb(t)]`` with SiLU activations."""

        def __init__(self, dim: int, hidden: int, layers: int, t_dim: int) -> None:
            super().__init__()
            self.t_dim = t_dim
            sizes = [dim + t_dim] + [hidden] * layers
            mods: list[nn.Module] = []
            for a, b in itertools.pairwise(sizes):
                mods += [nn.Linear(a, b), nn.SiLU()]
            mods.append(nn.Linear(sizes[-1], dim))
            self.net = nn.Sequential(*mods)

        def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return self.net(torch.cat([x, timestep_embedding(t, self.t_dim).to(x.dtype)], 1))

    return VelocityMLP


class FlowCFMDetector(TorchDetector):
    name = "flowcfm"
    defaults: ClassVar[dict[str, Any]] = {
        "hidden": 128,
        "layers": 3,
        "t_dim": 32,
        "sigma": 0.1,  # as janus.model.network.ModelConfig.sigma
        "ot": True,
        "ot_reg": 0.05,  # as janus.model.network.ModelConfig.ot_reg
        "epochs": 30,
        "batch_size": 256,
        "lr": 2e-3,
        "patience": 6,
    }

    def build(self) -> Any:
        p = self.params
        return _velocity_cls()(N_FLOW_FEATURES, p["hidden"], p["layers"], p["t_dim"])

    def _fit(self, z_train: np.ndarray, z_val: np.ndarray | None) -> None:
        import torch

        from janus.model.flowmatch import cfm_path, ot_pair_indices

        p = self.params
        seed_everything(self.seed)
        self.module = net = self.build()

        def loss(x1, gen):
            b = x1.shape[0]
            x0 = torch.randn(x1.shape, generator=gen)
            if p["ot"] and b > 1:
                x0 = x0[ot_pair_indices(x0, x1, torch.ones_like(x1), gen, reg=p["ot_reg"])]
            t = torch.rand(b, generator=gen)
            eps = torch.randn(x1.shape, generator=gen)
            xt, ut = cfm_path(x0, x1, t, p["sigma"], eps)
            return ((net(xt, t) - ut) ** 2).mean()

        self.history.update(train_minibatch(
            net, loss, z_train, z_val, epochs=p["epochs"], batch_size=p["batch_size"],
            lr=p["lr"], patience=p["patience"], seed=self.seed, desc="flowcfm"))

    def _score(self, z: np.ndarray) -> np.ndarray:
        import torch

        def terminal(x):
            x0_hat = x - self.module(x, torch.ones(x.shape[0]))  # (b, 20)
            return (x0_hat ** 2).mean(1)

        return batched_eval(terminal, z)
