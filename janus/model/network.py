"""The JANUS network: one Transformer backbone, a velocity head and a flag head.

Tokens. A flow of ``n`` packets is the sequence ``[FLOW, P1, ..., Pn]`` (``n <= T``):

* the FLOW token carries the 20 transformed, standardised flow features
  (:data:`janus.contract.FLOW_FEATURES`, continuous, noised along the CFM path);
* packet token ``Pi`` carries the packet's 3 continuous channels (size, iat, win;
  transformed, standardised, noised along the CFM path), its 6 binary channels (direction,
  syn, fin, rst, psh, ack) as one-hot over {0, 1, MASK} (corrupted along the discrete path),
  and a learned position embedding of ``i``.

Attention (the default, ``causal=True, packets_see_flow=False``). The FLOW token attends only
to itself; packet ``Pi`` attends to ``P1..Pi`` and NOT to the FLOW token. So

* ``v_flow`` (the FLOW token's 20-d velocity) is a function of the (noised) flow features and
  the times only;
* ``v_packet[i]`` and ``flag_logits[i]`` are functions of the tokens of ``P1..Pi`` and the
  times only: packet-causal in information terms, not just in the attention pattern. The 20
  flow features are summaries of the whole flow (``n_packets``, ``duration``, sizes, rates)
  and ten of them are derived from the flags or the direction (``syn/fin/rst/psh_count``,
  ``fwd_ratio``, ``fwd_size_*``, ``bwd_size_*``), so a packet that read the FLOW token would
  see later packets and the flag counts the flag head is asked to predict.

Padding after a flow's last packet cannot reach any valid output, so a batch may be padded
to any length. Two ablations: ``packets_see_flow=True`` lets every packet attend to the FLOW
token as well (the layout of checkpoints written before this option existed; ``Pi`` then
reads whole-flow summaries and flag counts), and ``causal=False`` is full attention: every
token sees every valid packet (and the FLOW token when ``packets_see_flow``), padding keys
masked out.

Conditioning. Two times enter, ``t_c`` (continuous path) and ``t_d`` (discrete path),
each through a sinusoidal embedding; an MLP maps both to one conditioning vector that drives
AdaLN-Zero modulation (shift, scale, gate) in every block and the final layer. Training
draws them independently, so the model also knows the corner ``(t_c, t_d) = (1, 0)``
(clean continuous values, all flags hidden) that :mod:`janus.model.score` evaluates.

Heads. ``flow_head`` gives the FLOW token's 20-d velocity, ``packet_head`` each packet's 3-d
velocity, ``flag_head`` each packet's 6 Bernoulli logits for the clean flags. With every
flag MASK (scoring), ``flag_logits[i]`` is a prediction of packet ``i``'s direction and flags
from the size, iat and win of ``P1..Pi`` and the position ``i`` alone.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from janus.contract import BINARY, CONTINUOUS, DEFAULT_MAX_PACKETS, N_FLOW_FEATURES
from janus.errors import ConfigError
from janus.model.flowmatch import N_DISC_STATES, OT_METHODS

N_CONT = len(CONTINUOUS)  # 3 continuous packet channels
N_BIN = len(BINARY)  # 6 binary packet channels


@dataclass
class ModelConfig:
    """Architecture and loss hyper-parameters (paper defaults). Stored in the checkpoint."""

    max_packets: int = DEFAULT_MAX_PACKETS  # T: packet tokens per flow
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    mlp_ratio: float = 4.0
    sigma: float = 0.1  # CFM path noise
    lambda_disc: float = 1.0  # weight of the flag (discrete) loss; 0 = continuous-only ablation
    ot: str = "exact"  # minibatch coupling of x0 to x1: exact, sinkhorn or none (OT_METHODS)
    ot_reg: float = 0.05  # Sinkhorn's entropic regularisation, relative to the cost spread
    causal: bool = True  # packet-causal attention; False = full attention ablation
    # Packets also attend to the FLOW token (whole-flow summaries and flag counts): ablation,
    # and the layout of checkpoints that predate this key (see from_dict).
    packets_see_flow: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.ot, bool):  # checkpoints before OT_METHODS: True meant Sinkhorn
            self.ot = "sinkhorn" if self.ot else "none"
        if self.ot not in OT_METHODS:
            raise ConfigError(f"model option ot must be one of {', '.join(OT_METHODS)}, got {self.ot!r}")
        if self.d_model % self.n_heads:
            raise ConfigError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        for name in ("max_packets", "d_model", "n_layers", "n_heads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"model option {name} must be >= 1, got {getattr(self, name)}")
        if self.sigma < 0 or self.lambda_disc < 0 or self.ot_reg <= 0:
            raise ConfigError("sigma and lambda_disc must be >= 0 and ot_reg > 0, got "
                              f"{self.sigma}, {self.lambda_disc}, {self.ot_reg}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        d = dict(d)
        # Checkpoints written before packets_see_flow existed were trained with packets
        # attending to the FLOW token; rebuild them that way.
        d.setdefault("packets_see_flow", True)
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"checkpoint config has unknown keys {sorted(unknown)}; "
                              "it was written by a newer JANUS")
        return cls(**d)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding of times ``t`` ``(B,)`` in [0, 1] -> ``(B, dim)``.

    ``t`` is scaled by 1000 so that the lowest frequencies still separate nearby times.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)
    args = 1000.0 * t.float()[:, None] * freqs[None, :]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, dim % 2))


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``x * (1 + scale) + shift`` in one fused op; ``scale``, ``shift`` ``(B, 1, d)``."""
    return torch.addcmul(shift, x, 1.0 + scale)


class Block(nn.Module):
    """Pre-norm Transformer block with AdaLN-Zero: the block is the identity at initialisation."""

    def __init__(self, d: int, n_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.norm1 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        hidden = int(d * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(d, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, d))
        self.ada = nn.Linear(d, 6 * d)
        nn.init.zeros_(self.ada.weight)
        nn.init.zeros_(self.ada.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor, attn_mask: torch.Tensor | str) -> torch.Tensor:
        """``x`` ``(B, L, d)``; ``c`` ``(B, d)`` (already SiLU-activated); ``attn_mask`` a bool
        ``(B, 1, L, L)`` (True = may attend), ``"causal"`` (lower-triangular over all of ``x``)
        or ``"flow_apart"`` (token 0 attends to itself, tokens ``1..`` causally among
        themselves: the default layout, computed without a mask tensor)."""
        b, n, d = x.shape
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c)[:, None, :].chunk(6, dim=-1)
        h = _modulate(self.norm1(x), shift1, scale1)
        q, k, v = self.qkv(h).view(b, n, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        if isinstance(attn_mask, torch.Tensor):
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        elif attn_mask == "flow_apart":
            # Softmax over a single key is 1: the FLOW token's attention output is its value.
            a = torch.cat([v[:, :, :1], F.scaled_dot_product_attention(
                q[:, :, 1:], k[:, :, 1:], v[:, :, 1:], is_causal=True)], dim=2)  # (B, h, L, d/h)
        else:
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = torch.addcmul(x, gate1, self.proj(a.transpose(1, 2).reshape(b, n, d)))  # (B, L, d)
        return torch.addcmul(x, gate2, self.mlp(_modulate(self.norm2(x), shift2, scale2)))


class JanusNet(nn.Module):
    """Backbone + heads. See the module docstring for tokens, attention and conditioning."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.flow_in = nn.Linear(N_FLOW_FEATURES, d)
        self.packet_in = nn.Linear(N_CONT + N_BIN * N_DISC_STATES, d)
        self.pos = nn.Parameter(torch.randn(cfg.max_packets, d) * 0.02)
        self.time_mlp = nn.Sequential(nn.Linear(2 * d, d), nn.SiLU(), nn.Linear(d, d))
        self.blocks = nn.ModuleList(Block(d, cfg.n_heads, cfg.mlp_ratio) for _ in range(cfg.n_layers))
        self.norm_out = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.ada_out = nn.Linear(d, 2 * d)
        self.flow_head = nn.Linear(d, N_FLOW_FEATURES)
        self.packet_head = nn.Linear(d, N_CONT)
        self.flag_head = nn.Linear(d, N_BIN)
        for layer in (self.ada_out, self.flow_head, self.packet_head, self.flag_head):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(
        self,
        flow: torch.Tensor,
        cont: torch.Tensor,
        disc: torch.Tensor,
        lengths: torch.Tensor,
        t_c: torch.Tensor,
        t_d: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One evaluation of the network.

        ``flow`` ``(B, 20)`` and ``cont`` ``(B, L, 3)``: continuous values at time ``t_c``;
        ``disc`` int64 ``(B, L, 6)`` in {0, 1, MASK}: flags at time ``t_d``; ``lengths`` ``(B,)``
        valid packets per flow (``1..L``); ``t_c``, ``t_d`` ``(B,)``. ``L <= max_packets``.
        Returns ``(v_flow (B, 20), v_packet (B, L, 3), flag_logits (B, L, 6))``; values at
        padded packets are meaningless and must be masked by the caller.
        """
        n_pkt = cont.shape[1]
        if n_pkt > self.cfg.max_packets:
            raise ValueError(f"{n_pkt} packets per flow exceed the model's max_packets="
                             f"{self.cfg.max_packets}")
        onehot = F.one_hot(disc, N_DISC_STATES).to(cont.dtype).flatten(2)  # (B, L, 18)
        pkt = self.packet_in(torch.cat([cont, onehot], dim=-1)) + self.pos[:n_pkt]  # (B, L, d)
        x = torch.cat([self.flow_in(flow)[:, None, :], pkt], dim=1)  # (B, L+1, d)
        temb = torch.cat([timestep_embedding(t_c, self.cfg.d_model),
                          timestep_embedding(t_d, self.cfg.d_model)], dim=-1)
        c = F.silu(self.time_mlp(temb.to(x.dtype)))  # (B, d)
        attn_mask = self.attention(lengths, n_pkt)
        for block in self.blocks:
            x = block(x, c, attn_mask)
        shift, scale = self.ada_out(c)[:, None, :].chunk(2, dim=-1)
        h = _modulate(self.norm_out(x), shift, scale)  # (B, L+1, d)
        return self.flow_head(h[:, 0]), self.packet_head(h[:, 1:]), self.flag_head(h[:, 1:])

    def attention(self, lengths: torch.Tensor, n_pkt: int) -> torch.Tensor | str:
        """What each token may attend to (see the module docstring), as :class:`Block` takes it."""
        if self.cfg.causal:
            return "causal" if self.cfg.packets_see_flow else "flow_apart"
        return self.full_attention_mask(lengths, n_pkt, self.cfg.packets_see_flow)

    @staticmethod
    def full_attention_mask(lengths: torch.Tensor, n_pkt: int, packets_see_flow: bool = True
                            ) -> torch.Tensor:
        """Bool ``(B, 1, L+1, L+1)``: every query may attend to the valid packets; the FLOW
        token (key 0) is visible to itself, and to the packets only when ``packets_see_flow``."""
        pos = torch.arange(n_pkt + 1, device=lengths.device)
        key_valid = pos[None, :] <= lengths[:, None]  # (B, L+1)
        mask = key_valid[:, None, None, :].expand(-1, 1, n_pkt + 1, -1)  # (B, 1, L+1, L+1)
        if packets_see_flow:
            return mask
        flow_key_ok = (pos[:, None] == 0) | (pos[None, :] > 0)  # (L+1, L+1): query, key
        return mask & flow_key_ok


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
