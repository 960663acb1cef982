"""The networks of the two packet flow-matching detectors (``unified_cfm``, ``packet_cfm``).

:class:`TokenBackbone` is the Transformer they share: JANUS's AdaLN-Zero blocks
(:class:`janus.model.network.Block`, imported) over ``[FRONT..., P1..Pn]`` with FULL
attention -- every token attends to every valid token, padding keys masked out -- conditioned
on the flow-matching time through JANUS's sinusoidal embedding. It differs from the JANUS
network in exactly that attention (JANUS keeps packets causal and the FLOW token apart, so
the FLOW token could never read its packets) and in taking already-embedded tokens, so each
detector chooses its own inputs.
"""

from __future__ import annotations

import torch
from torch import nn

from janus.contract import BINARY, CONTINUOUS, N_FLOW_FEATURES
from janus.model.network import Block, _modulate, timestep_embedding

N_CONT = len(CONTINUOUS)  # size, iat, win
N_BIN = len(BINARY)  # direction, syn, fin, rst, psh, ack


def key_mask(lengths: torch.Tensor, n_tokens: int, n_front: int) -> torch.Tensor:
    """Bool ``(B, 1, N, N)``: every query may attend to the ``n_front`` front tokens and the
    valid packets (token ``n_front + i`` is packet ``i + 1``); padding keys are hidden."""
    pos = torch.arange(n_tokens, device=lengths.device)
    valid = pos[None, :] < lengths[:, None] + n_front  # (B, N)
    return valid[:, None, None, :].expand(-1, 1, n_tokens, -1)


class TokenBackbone(nn.Module):
    """Full-attention AdaLN-Zero Transformer over ``[FRONT..., P1..Pn]``, time-conditioned.

    ``forward(front (B, F, d) or None, packets (B, L, d), lengths (B,), t (B,))`` ->
    ``(B, F + L, d)``: a learned position embedding is added to the packet tokens, the time
    ``t`` in [0, 1] enters every block through AdaLN modulation (as in JANUS, one time for
    the whole flow), and the output is the final modulated LayerNorm.
    """

    def __init__(self, d_model: int, n_layers: int, n_heads: int, mlp_ratio: float,
                 max_packets: int) -> None:
        super().__init__()
        d = d_model
        self.pos = nn.Parameter(torch.randn(max_packets, d) * 0.02)
        self.time_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.blocks = nn.ModuleList(Block(d, n_heads, mlp_ratio) for _ in range(n_layers))
        self.norm_out = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.ada_out = nn.Linear(d, 2 * d)
        nn.init.zeros_(self.ada_out.weight)
        nn.init.zeros_(self.ada_out.bias)

    def forward(self, front: torch.Tensor | None, packets: torch.Tensor, lengths: torch.Tensor,
                t: torch.Tensor) -> torch.Tensor:
        n_pkt = packets.shape[1]
        if n_pkt > self.pos.shape[0]:
            raise ValueError(f"{n_pkt} packets per flow exceed the model's max_packets="
                             f"{self.pos.shape[0]}")
        x = packets + self.pos[:n_pkt]  # (B, L, d)
        n_front = 0 if front is None else front.shape[1]
        if front is not None:
            x = torch.cat([front, x], dim=1)  # (B, F + L, d)
        c = torch.nn.functional.silu(self.time_mlp(timestep_embedding(t, x.shape[-1])))  # (B, d)
        attn = key_mask(lengths, x.shape[1], n_front)
        for block in self.blocks:
            x = block(x, c, attn)
        shift, scale = self.ada_out(c)[:, None, :].chunk(2, dim=-1)
        return _modulate(self.norm_out(x), shift, scale)


def zero_linear(d_in: int, d_out: int) -> nn.Linear:
    """A linear head initialised to output 0 (a velocity field that starts at rest)."""
    layer = nn.Linear(d_in, d_out)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class UnifiedCFMNet(nn.Module):
    """Unified-CFM: the FLOW token and the packet tokens in one full-attention sequence.

    Token inputs: the FLOW token embeds the 20 flow features, packet ``Pi`` its 3 continuous
    channels and its 6 binary channels (the flags are seen, never flow-matched). A hidden
    token is replaced by a learned MASK vector (packets keep their position embedding).
    Heads: ``flow_head`` / ``packet_head`` give the CFM velocity of the FLOW token (20) and
    of each packet (3); ``flow_pred`` / ``packet_pred`` predict a hidden token's clean values
    (the consistency heads). All four start at 0.
    """

    def __init__(self, max_packets: int, d_model: int, n_layers: int, n_heads: int,
                 mlp_ratio: float) -> None:
        super().__init__()
        d = d_model
        self.backbone = TokenBackbone(d, n_layers, n_heads, mlp_ratio, max_packets)
        self.flow_in = nn.Linear(N_FLOW_FEATURES, d)
        self.packet_in = nn.Linear(N_CONT + N_BIN, d)
        self.flow_mask = nn.Parameter(torch.zeros(d))
        self.packet_mask = nn.Parameter(torch.zeros(d))
        self.flow_head = zero_linear(d, N_FLOW_FEATURES)
        self.packet_head = zero_linear(d, N_CONT)
        self.flow_pred = zero_linear(d, N_FLOW_FEATURES)
        self.packet_pred = zero_linear(d, N_CONT)

    def forward(self, flow: torch.Tensor, cont: torch.Tensor, flags: torch.Tensor,
                lengths: torch.Tensor, t: torch.Tensor, hide_flow: bool = False,
                hide_packets: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states ``(B, 1 + L, d)`` of ``[FLOW, P1..PL]``.

        ``flow`` ``(B, 20)`` and ``cont`` ``(B, L, 3)`` at CFM time ``t`` ``(B,)``; ``flags``
        ``(B, L, 6)`` 0/1; ``hide_flow``: the FLOW token is the MASK vector (its features do
        not enter at all); ``hide_packets`` bool ``(B, L)``: those packets are MASK vectors.
        """
        b = flow.shape[0]
        front = self.flow_mask.expand(b, 1, -1) if hide_flow else self.flow_in(flow)[:, None]
        pkt = self.packet_in(torch.cat([cont, flags], dim=-1))  # (B, L, d)
        if hide_packets is not None:
            pkt = torch.where(hide_packets[..., None], self.packet_mask, pkt)
        return self.backbone(front, pkt, lengths, t)


class PacketCFMNet(nn.Module):
    """Packet-CFM: a velocity field over the packet sequence alone (no FLOW token).

    ``forward(x (B, L, C), lengths (B,), t (B,)) -> v (B, L, C)``, ``C`` values per packet
    (the detector flow-matches all 9 channels).
    """

    def __init__(self, max_packets: int, channels: int, d_model: int, n_layers: int,
                 n_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.backbone = TokenBackbone(d_model, n_layers, n_heads, mlp_ratio, max_packets)
        self.packet_in = nn.Linear(channels, d_model)
        self.head = zero_linear(d_model, channels)
        # The benign band of the terminal points, per channel (fitted after training).
        self.register_buffer("band_mean", torch.zeros(channels))
        self.register_buffer("band_std", torch.ones(channels))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(None, self.packet_in(x), lengths, t))
