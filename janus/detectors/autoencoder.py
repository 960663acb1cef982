"""``ae`` and ``memae``: the reconstruction baselines on the 20 flow features.

Both see the standardised flow features ``z`` ``(b, 20)`` of :class:`~janus.detectors.base.
FeatureScaler` and score a flow by its reconstruction error ``mean_k (z_k - z_hat_k)^2``
(standardised units squared; higher = more anomalous). Encoder and decoder are MLPs with
ReLU hidden layers: ``20 -> hidden -> latent`` and ``latent -> hidden -> 20`` (linear output:
standardised features are unbounded).

``ae``: a plain autoencoder, trained on benign flows by the squared error.

``memae``: the memory-augmented autoencoder of Gong et al., "Memorizing Normality to Detect
Anomaly: Memory-augmented Deep Autoencoder for Unsupervised Anomaly Detection" (ICCV 2019),
written from the paper (Sec. 3), with MLPs instead of its convolutional encoder/decoder. The
decoder never sees the encoding ``z_e = f_e(z)`` ``(b, C)`` itself, only a read of a learned
memory ``M`` ``(N, C)``:

1. **Attention addressing** (Eq. 4-5): ``w_i = softmax_i(d(z_e, m_i))`` with the cosine
   similarity ``d(z_e, m_i) = z_e m_i^T / (|z_e| |m_i|)``.
2. **Hard shrinkage** (Eq. 7, the paper's continuous ReLU form):
   ``w'_i = max(w_i - lambda, 0) w_i / (|w_i - lambda| + eps)``, then ``w' / |w'|_1``:
   every weight below the threshold ``lambda`` (``shrink_thres``; the paper advises a value in
   ``[1/N, 3/N]``) is set to exactly 0, so the read ``z_hat_e = w' M`` is a sparse convex
   combination of a few memory items (Eq. 3). If every weight is below ``lambda`` the read is 0.
3. **Loss** (Eq. 9-10): ``|z - f_d(z_hat_e)|_2^2 + alpha * E(w')`` per flow, with the
   addressing entropy ``E(w') = sum_i -w'_i log w'_i`` pushing towards sparse addressing;
   ``alpha = 0.0002`` as in the paper.

Since the memory holds prototypes of benign encodings, a flow unlike them is decoded from
the nearest benign prototypes and reconstructed badly, even where a plain autoencoder would
generalise and reconstruct it well (the paper's motivation, checked in the tests).

Differences from the paper: MLPs on flow features instead of convolutions on images or
video clips; the score is the per-flow mean squared error, not the per-frame error
normalised over a video; training stops early on the benign validation loss.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from janus.contract import N_FLOW_FEATURES
from janus.detectors.base import TorchDetector, batched_eval, seed_everything, train_minibatch
from janus.errors import ConfigError

#: The ``eps`` of the hard shrinkage (Eq. 7): keeps its division finite at ``w_i = lambda``.
SHRINK_EPS = 1e-12
#: Addressing similarities of ``memae``: the paper's cosine, the authors' code's dot product.
SIMILARITIES = ("cosine", "dot")


def _mlp(sizes: list[int]) -> Any:
    """``Linear`` layers of ``sizes`` with ReLU between them (none after the last)."""
    from torch import nn

    mods: list[Any] = []
    for k in range(len(sizes) - 1):
        mods.append(nn.Linear(sizes[k], sizes[k + 1]))
        if k < len(sizes) - 2:
            mods.append(nn.ReLU())
    return nn.Sequential(*mods)


def hard_shrink(w: Any, lam: float) -> Any:
    """Eq. 7 then L1 renormalisation: weights ``w`` ``(b, N)`` (rows sum to 1) -> ``(b, N)``
    with every entry below ``lam`` exactly 0 and rows summing to 1 (0 if none survives)."""
    import torch
    import torch.nn.functional as F

    w = torch.relu(w - lam) * w / ((w - lam).abs() + SHRINK_EPS)
    return F.normalize(w, p=1, dim=1)


def _memae_cls():
    import torch
    import torch.nn.functional as F
    from torch import nn

    class MemAE(nn.Module):
        """Encoder, memory ``(N, C)``, decoder; ``forward(z (b, 20))`` -> ``(z_hat (b, 20),
        w' (b, N))``."""

        def __init__(self, hidden: int, latent: int, memory: int, shrink_thres: float,
                     similarity: str) -> None:
            super().__init__()
            self.shrink_thres, self.similarity = shrink_thres, similarity
            self.encoder = _mlp([N_FLOW_FEATURES, hidden, latent])
            self.decoder = _mlp([latent, hidden, N_FLOW_FEATURES])
            bound = 1.0 / latent ** 0.5  # as the authors' memory module
            self.memory = nn.Parameter(torch.empty(memory, latent).uniform_(-bound, bound))

        def address(self, z_e: torch.Tensor) -> torch.Tensor:
            """Encodings ``(b, C)`` -> shrunk addressing weights ``w'`` ``(b, N)``."""
            if self.similarity == "cosine":
                z_e, mem = F.normalize(z_e, dim=1), F.normalize(self.memory, dim=1)
            else:
                mem = self.memory
            w = torch.softmax(z_e @ mem.T, dim=1)  # (b, N)
            return hard_shrink(w, self.shrink_thres) if self.shrink_thres > 0 else w

        def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            w = self.address(self.encoder(z))  # (b, N)
            return self.decoder(w @ self.memory), w  # (b, 20), (b, N)

    return MemAE


def addressing_entropy(w: Any) -> Any:
    """``E(w') = sum_i -w'_i log w'_i`` per row of ``(b, N)`` -> ``(b,)`` (``0 log 0 = 0``)."""
    import torch

    return -(w * torch.log(w.clamp_min(1e-30))).sum(1)


class AEDetector(TorchDetector):
    name = "ae"
    defaults: ClassVar[dict[str, Any]] = {
        "hidden": 64,  # width of the encoder's and the decoder's hidden layer
        "latent": 8,  # bottleneck width
        "epochs": 30,
        "batch_size": 128,
        "lr": 3e-3,
        "weight_decay": 0.0,
        "patience": 4,
    }

    def build(self) -> Any:
        p = self.params
        return _mlp([N_FLOW_FEATURES, p["hidden"], p["latent"], p["hidden"], N_FLOW_FEATURES])

    def _fit(self, z_train: np.ndarray, z_val: np.ndarray | None) -> None:
        p = self.params
        seed_everything(self.seed)
        self.module = net = self.build()
        self.history.update(train_minibatch(
            net, lambda xb, _g: ((net(xb) - xb) ** 2).sum(1).mean(), z_train, z_val,
            epochs=p["epochs"], batch_size=p["batch_size"], lr=p["lr"], patience=p["patience"],
            seed=self.seed, desc="ae", weight_decay=p["weight_decay"]))

    def _score(self, z: np.ndarray) -> np.ndarray:
        return batched_eval(lambda xb: ((self.module(xb) - xb) ** 2).mean(1), z)


class MemAEDetector(TorchDetector):
    name = "memae"
    defaults: ClassVar[dict[str, Any]] = {
        "hidden": 64,
        "latent": 8,  # C: width of the encoding and of each memory item
        "memory": 50,  # N: memory items
        "shrink_thres": 0.02,  # lambda of the hard shrinkage (1/N here; the paper: 1/N..3/N)
        "entropy_weight": 2e-4,  # alpha (the paper's value)
        "similarity": "cosine",  # addressing: "cosine" (the paper's Eq. 5) or "dot" (authors' code)
        "epochs": 30,
        "batch_size": 128,
        "lr": 3e-3,
        "weight_decay": 0.0,
        "patience": 4,
    }

    def __init__(self, seed: int = 0, **params: Any) -> None:
        super().__init__(seed, **params)
        lam = self.params["shrink_thres"]
        if not isinstance(lam, (int, float)) or not 0.0 <= lam < 1.0:
            raise ConfigError(f"memae: shrink_thres must be a number in [0, 1), got {lam!r}")
        if self.params["similarity"] not in SIMILARITIES:
            raise ConfigError(f"memae: similarity must be one of {list(SIMILARITIES)}, got "
                              f"{self.params['similarity']!r}")

    def build(self) -> Any:
        p = self.params
        return _memae_cls()(p["hidden"], p["latent"], p["memory"], float(p["shrink_thres"]),
                            p["similarity"])

    def loss(self, xb: Any) -> Any:
        """Eq. 10 on a batch ``(b, 20)``: mean over flows of the squared L2 reconstruction
        error plus ``entropy_weight`` times the addressing entropy."""
        z_hat, w = self.module(xb)
        rec = ((z_hat - xb) ** 2).sum(1)  # (b,)
        return (rec + self.params["entropy_weight"] * addressing_entropy(w)).mean()

    def _fit(self, z_train: np.ndarray, z_val: np.ndarray | None) -> None:
        p = self.params
        seed_everything(self.seed)
        self.module = self.build()
        self.history.update(train_minibatch(
            self.module, lambda xb, _g: self.loss(xb), z_train, z_val, epochs=p["epochs"],
            batch_size=p["batch_size"], lr=p["lr"], patience=p["patience"], seed=self.seed,
            desc="memae", weight_decay=p["weight_decay"]))

    def _score(self, z: np.ndarray) -> np.ndarray:
        return batched_eval(lambda xb: ((self.module(xb)[0] - xb) ** 2).mean(1), z)
