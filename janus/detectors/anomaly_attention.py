"""The Anomaly-Transformer network (Xu, Wu, Wang, Long, ICLR 2022), over packet sequences.

Written from the paper (Sec. 3), with the packet sequence of one flow as the series:

* **Anomaly-Attention** (per layer ``l`` and head): from the layer input ``X`` ``(L, d)``,
  ``Q, K, V = X W_Q, X W_K, X W_V`` and a scale ``sigma = X W_sigma`` ``(L, 1)``;
  the *prior association* ``P[i, j] = Rescale(exp(-|i - j|^2 / (2 sigma_i^2)) /
  (sqrt(2 pi) sigma_i))`` (a learnable-width Gaussian over the distance between packet
  indices, rescaled to sum to 1 over the flow's valid packets); the *series association*
  ``S = softmax(Q K^T / sqrt(d_head))`` over the valid packets; the output ``S V``. As in
  the authors' released code, ``sigma = 3^(sigmoid(5 w) + 1e-5) - 1`` keeps it in
  ``(0, 2)`` packets.
* **Encoder layer**: ``Z = LayerNorm(AnomalyAttention(X) + X)``,
  ``X' = LayerNorm(FeedForward(Z) + Z)``; a final LayerNorm and a linear map reconstruct
  the input.
* **Association discrepancy** of packet ``i``: ``AssDis_i = 1/Layers sum_l (KL(P_i || S_i) +
  KL(S_i || P_i))`` (KL over the keys, averaged over the heads).

Padding: keys after a flow's last packet are masked out of ``S`` and ``P`` (both are
distributions over the valid packets only), and the caller masks every per-packet quantity,
so no padded packet reaches a valid one.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from janus.model.network import timestep_embedding

#: Keeps the logarithms of the KL divergences finite (the authors' code uses the same).
KL_EPS = 1e-4


def symmetric_kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``KL(p || q) + KL(q || p)`` over the last axis, averaged over heads: ``(B, H, L, L)`` x2
    -> ``(B, L)``. Padded keys are 0 in both and add nothing."""
    lp, lq = torch.log(p + KL_EPS), torch.log(q + KL_EPS)
    return ((p * (lp - lq)).sum(-1) + (q * (lq - lp)).sum(-1)).mean(1)


class AnomalyAttention(nn.Module):
    """``forward(x (B, L, d), valid (B, L)) -> (out (B, L, d), series, prior)``, the
    associations ``(B, H, L, L)``, rows summing to 1 over the valid keys."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.sigma = nn.Linear(d_model, n_heads)
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor,
                                                                    torch.Tensor]:
        b, n, d = x.shape
        h = self.n_heads
        q, k, v = self.qkv(x).view(b, n, 3, h, d // h).permute(2, 0, 3, 1, 4)  # (B, H, L, dh)
        keys = valid[:, None, None, :]  # (B, 1, 1, L)
        logits = (q @ k.transpose(-1, -2)) / math.sqrt(d // h)  # (B, H, L, L)
        series = torch.softmax(logits.masked_fill(~keys, float("-inf")), dim=-1)
        sigma = torch.sigmoid(5.0 * self.sigma(x)) + 1e-5  # (B, L, H)
        sigma = (torch.pow(3.0, sigma) - 1.0).transpose(1, 2)[..., None]  # (B, H, L, 1)
        pos = torch.arange(n, device=x.device, dtype=x.dtype)
        dist2 = (pos[:, None] - pos[None, :]) ** 2  # (L, L)
        gauss = torch.exp(-dist2 / (2.0 * sigma ** 2)) / (math.sqrt(2.0 * math.pi) * sigma)
        gauss = gauss * keys
        # A valid query always has its own key (weight 1 / (sqrt(2 pi) sigma) > 0); only a
        # padded query far from every valid key can underflow to an all-zero row.
        prior = gauss / gauss.sum(-1, keepdim=True).clamp_min(1e-30)
        out = (series @ v).transpose(1, 2).reshape(b, n, d)  # (B, L, d)
        return self.proj(out), series, prior


class EncoderLayer(nn.Module):
    """Post-norm layer: ``Z = LN(A(X) + X)``, ``X' = LN(FF(Z) + Z)``."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int) -> None:
        super().__init__()
        self.attn = AnomalyAttention(d_model, n_heads)
        self.norm1 = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model))
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor,
                                                                    torch.Tensor]:
        a, series, prior = self.attn(x, valid)
        z = self.norm1(a + x)
        return self.norm2(self.ff(z) + z), series, prior


class AnomalyTransformerNet(nn.Module):
    """``forward(x (B, L, C), valid (B, L))`` -> ``(recon (B, L, C), [(series, prior)] per
    layer)``. Input embedding: a linear map of the ``C`` packet values plus the fixed
    sinusoidal position embedding of the packet index (as the paper's Transformer)."""

    def __init__(self, channels: int, d_model: int, n_layers: int, n_heads: int,
                 d_ff: int) -> None:
        super().__init__()
        self.embed = nn.Linear(channels, d_model)
        self.layers = nn.ModuleList(EncoderLayer(d_model, n_heads, d_ff) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, channels)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, list]:
        n, d = x.shape[1], self.embed.out_features
        # Position i as "time" i / 1000: timestep_embedding scales by 1000, giving the
        # standard Transformer sinusoid sin/cos(i / 10000^(2k/d)).
        pos = timestep_embedding(torch.arange(n, device=x.device) / 1000.0, d)  # (L, d)
        h = self.embed(x) + pos
        assoc = []
        for layer in self.layers:
            h, series, prior = layer(h, valid)
            assoc.append((series, prior))
        return self.out(self.norm(h)), assoc
