"""``kitnet``: KitNET, the anomaly detector of Kitsune, written from the published method.

Written from the paper (Mirsky, Doitshman, Elovici, Shabtai, "Kitsune: An Ensemble of
Autoencoders for Online Network Intrusion Detection", NDSS 2018, Sec. IV), not from the
authors' code:

1. **Feature mapper.** The correlation distance ``1 - corr(u, v)`` between every pair of the
   20 (standardised) features on the benign training flows is clustered by agglomerative
   hierarchical clustering (single linkage); the dendrogram is cut top-down, splitting every
   cluster with more than ``m`` features into its two children, until each group has at most
   ``m`` features.
2. **Ensemble layer.** One small autoencoder per group: ``k`` inputs, ``ceil(0.75 k)``
   sigmoid hidden units (hidden ratio beta = 0.75), tied weights, sigmoid outputs. Inputs
   are min-max normalised with the training minimum and maximum (so that a sigmoid can
   reconstruct them); each autoencoder outputs its reconstruction RMSE.
3. **Output layer.** One more autoencoder of the same kind over the vector of ensemble
   RMSEs (min-max normalised); the anomaly score is its reconstruction RMSE.

Difference from the original: Kitsune trains online, one stochastic-gradient step per packet
in a single pass (and trains the output layer concurrently with the ensemble). Here the
network is batch-trained in PyTorch: Adam on minibatches over several epochs, the ensemble
first, then the output layer on the trained ensemble's RMSEs, with early stopping on the
benign validation loss. The features are the 20 flow features, not Kitsune's damped
incremental packet statistics.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from janus.contract import N_FLOW_FEATURES
from janus.detectors.base import (
    MODEL_FILE,
    STATE_FILE,
    TorchDetector,
    batched_eval,
    seed_everything,
    train_minibatch,
)
from janus.errors import JanusError


def feature_groups(z: np.ndarray, max_size: int) -> list[list[int]]:
    """Cluster the columns of ``z`` ``(n, D)`` into groups of at most ``max_size`` features.

    Correlation distance + single-linkage clustering, cut top-down (step 1 above). A constant
    column has no correlation; it is treated as uncorrelated (distance 1) with all others.
    Groups are returned sorted by their smallest feature index, members sorted.
    """
    from scipy.cluster.hierarchy import linkage, to_tree
    from scipy.spatial.distance import squareform

    d = z.shape[1]
    if d <= max_size:
        return [list(range(d))]
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.corrcoef(z, rowvar=False)
    corr = np.nan_to_num(corr, nan=0.0)
    dist = np.clip(1.0 - corr, 0.0, 2.0)
    np.fill_diagonal(dist, 0.0)
    root = to_tree(linkage(squareform(dist, checks=False), method="single"))

    def cut(node) -> list[list[int]]:
        if node.get_count() <= max_size:
            return [sorted(node.pre_order())]
        return cut(node.get_left()) + cut(node.get_right())

    return sorted(cut(root), key=lambda g: g[0])


def _autoencoder_cls():
    import torch
    from torch import nn

    class TiedAE(nn.Module):
        """Tied-weight sigmoid autoencoder over min-max normalised inputs; forward -> RMSE (b,)."""

        def __init__(self, n_in: int, hidden_ratio: float) -> None:
            super().__init__()
            n_hidden = max(1, math.ceil(hidden_ratio * n_in))
            bound = 1.0 / n_in  # the paper's dA initialisation range
            self.weight = nn.Parameter(torch.empty(n_hidden, n_in).uniform_(-bound, bound))
            self.hbias = nn.Parameter(torch.zeros(n_hidden))
            self.vbias = nn.Parameter(torch.zeros(n_in))
            # Min-max normalisation bounds, set from training data, saved in the state.
            self.register_buffer("lo", torch.zeros(n_in))
            self.register_buffer("hi", torch.ones(n_in))

        def set_bounds(self, x: torch.Tensor) -> None:
            lo, hi = x.min(0).values, x.max(0).values
            # The paper divides by (max - min + 1e-16). A feature that was constant in training
            # then maps any new value to ~1e16 and the squared error overflows float32 to inf;
            # a span of 1 instead keeps such deviations finite (the inputs are standardised).
            self.lo.copy_(lo)
            self.hi.copy_(torch.where(hi > lo, hi, lo + 1.0))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = (x - self.lo) / (self.hi - self.lo)  # (b, k)
            h = torch.sigmoid(x @ self.weight.T + self.hbias)  # (b, ceil(.75 k))
            r = torch.sigmoid(h @ self.weight + self.vbias)  # (b, k)
            return ((x - r) ** 2).mean(1).sqrt()  # (b,)

    return TiedAE


def _kitnet_cls():
    import torch
    from torch import nn

    TiedAE = _autoencoder_cls()

    class KitNET(nn.Module):
        def __init__(self, groups: list[list[int]], hidden_ratio: float) -> None:
            super().__init__()
            self.groups = groups
            for j, g in enumerate(groups):
                self.register_buffer(f"idx{j}", torch.tensor(g, dtype=torch.long))
            self.ensemble = nn.ModuleList(TiedAE(len(g), hidden_ratio) for g in groups)
            self.output = TiedAE(len(groups), hidden_ratio)

        def ensemble_rmse(self, x: torch.Tensor) -> torch.Tensor:
            """``x`` ``(b, 20)`` -> ``(b, n_groups)`` reconstruction RMSE of each autoencoder."""
            return torch.stack([ae(x[:, getattr(self, f"idx{j}")])
                                for j, ae in enumerate(self.ensemble)], dim=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.output(self.ensemble_rmse(x))  # (b,)

    return KitNET


class KitNETDetector(TorchDetector):
    name = "kitnet"
    defaults: ClassVar[dict[str, Any]] = {
        "max_group": 10,  # m: the largest autoencoder of the ensemble (Kitsune's default)
        "hidden_ratio": 0.75,  # beta
        "epochs": 30,
        "batch_size": 128,
        "lr": 3e-3,
        "patience": 4,
        "groups": None,  # set by fit (the feature map), saved for load
    }

    def build(self) -> Any:
        groups = self.params["groups"]
        # From detector.json on load: a partition of the 20 features, or nothing is built.
        flat = [i for g in groups for i in g] if isinstance(groups, list) and all(
            isinstance(g, list) and g for g in groups) else None
        if not flat or sorted(flat) != list(range(N_FLOW_FEATURES)):
            raise ValueError(f"groups {str(groups)[:80]} are not a partition of the "
                             f"{N_FLOW_FEATURES} features")
        return _kitnet_cls()(groups, self.params["hidden_ratio"])

    def _load_state(self, folder: Path, meta: dict[str, Any]) -> None:
        super()._load_state(folder, meta)
        for j, g in enumerate(self.params["groups"]):  # the gather indices ride in the state
            if getattr(self.module, f"idx{j}").tolist() != g:
                raise JanusError(f"{folder / STATE_FILE}: idx{j} differs from group {j} of "
                                 f"{MODEL_FILE}; the folder is damaged -- retrain")

    def _fit(self, z_train: np.ndarray, z_val: np.ndarray | None) -> None:
        import torch

        p = self.params
        seed_everything(self.seed)
        p["groups"] = feature_groups(z_train, p["max_group"])
        self.module = net = self.build()
        x = torch.from_numpy(z_train)
        for j, ae in enumerate(net.ensemble):
            ae.set_bounds(x[:, getattr(net, f"idx{j}")])
        common = {"epochs": p["epochs"], "batch_size": p["batch_size"], "lr": p["lr"],
                  "patience": p["patience"], "seed": self.seed}
        # Stage 1: the ensemble, loss = sum of the autoencoders' mean squared RMSEs.
        hist_e = train_minibatch(net.ensemble, lambda xb, _g: (net.ensemble_rmse(xb) ** 2).mean(0)
                                 .sum(), z_train, z_val, desc="kitnet-ensemble", **common)
        # Stage 2: the output autoencoder on the frozen ensemble's RMSE vectors.
        r_train = batched_eval(net.ensemble_rmse, z_train).astype(np.float32)
        r_val = None if z_val is None else batched_eval(net.ensemble_rmse, z_val).astype(np.float32)
        net.output.set_bounds(torch.from_numpy(r_train))
        hist_o = train_minibatch(net.output, lambda rb, _g: (net.output(rb) ** 2).mean(),
                                 r_train, r_val, desc="kitnet-output", **common)
        self.history.update({"groups": p["groups"], "ensemble": hist_e, "output": hist_o})

    def _score(self, z: np.ndarray) -> np.ndarray:
        return batched_eval(self.module, z)
