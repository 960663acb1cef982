"""Packet input for the packet-sequence detectors: batches, the scoring loop, OT source draws.

The packet detectors (``unified_cfm``, ``packet_cfm``, ``anomaly_transformer``) read, per
flow, the standardised packet tensor of :class:`janus.detectors.base.PacketInputs`. A batch
(:class:`PacketBatch`) is padded to its own longest flow and carries the validity mask; every
loss and score of those detectors is masked by it, so padding changes no result (a test
checks that a flow scores the same alone and beside longer flows). This module imports
torch; the detector modules import it only when they build or train a model, so that
``import janus.detectors`` (which the workflow does while parsing) stays light.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from janus.detectors.base import PacketInputs


@dataclass
class PacketBatch:
    """``b`` flows of a :class:`PacketInputs`, padded to ``L`` = their longest flow."""

    flow: torch.Tensor  # float32 (b, 20)
    cont: torch.Tensor  # float32 (b, L, 3), 0 on padding
    flags: torch.Tensor  # float32 (b, L, 6), 0 on padding
    lengths: torch.Tensor  # int64 (b,)
    mask: torch.Tensor  # bool (b, L), True on valid packets

    def __len__(self) -> int:
        return int(self.lengths.shape[0])

    @classmethod
    def of(cls, inputs: PacketInputs, idx: Any) -> PacketBatch:
        """Rows ``idx`` (a slice, an index array or an index tensor) of ``inputs``."""
        if isinstance(idx, torch.Tensor):
            idx = idx.numpy()
        lengths = inputs.lengths[idx]
        n_pkt = max(1, int(lengths.max())) if len(lengths) else 1
        return cls(
            flow=torch.from_numpy(np.ascontiguousarray(inputs.flow[idx])),
            cont=torch.from_numpy(np.ascontiguousarray(inputs.cont[idx, :n_pkt])),
            flags=torch.from_numpy(np.ascontiguousarray(inputs.flags[idx, :n_pkt])),
            lengths=torch.from_numpy(np.ascontiguousarray(lengths)),
            mask=torch.from_numpy(np.arange(n_pkt)[None, :] < lengths[:, None]),
        )


def packet_eval(fn: Callable[[PacketBatch], torch.Tensor], inputs: PacketInputs,
                batch_size: int = 512) -> np.ndarray:
    """``fn`` (a :class:`PacketBatch` -> tensor ``(b,)``) over every flow of ``inputs``, no
    grad, in batches of flows of similar length (less padding); float64 ``(n,)`` in row order."""
    from janus.model.data import length_batches

    out = np.zeros(len(inputs), np.float64)
    with torch.no_grad():
        for idx in length_batches(inputs.lengths, batch_size):
            out[idx] = fn(PacketBatch.of(inputs, idx)).double().numpy()
    return out


def masked_ot_source(x1: torch.Tensor, mask: torch.Tensor, gen: torch.Generator,
                     method: str, reg: float = 0.05) -> torch.Tensor:
    """Source draws ``x0 ~ N(0, I)`` shaped like ``x1`` ``(B, ...)``, re-paired with the rows
    of ``x1`` by JANUS's minibatch OT (:func:`janus.model.flowmatch.ot_pair_indices`) on the
    squared distance over the valid values (``mask`` bool, broadcastable to ``x1``)."""
    from janus.model.flowmatch import ot_pair_indices

    x0 = torch.randn(x1.shape, generator=gen)
    if method == "none" or x1.shape[0] < 2:
        return x0
    b = x1.shape[0]
    flat_mask = mask.expand(x1.shape).reshape(b, -1)
    idx = ot_pair_indices(x0.reshape(b, -1), x1.reshape(b, -1), flat_mask, gen, method=method,
                          reg=reg)
    return x0[idx]
