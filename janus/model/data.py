"""Loading a dataset folder, the model's input transform, and length-bucketed batching.

Input transform (``TRANSFORM = "log1p-v1"``). Every continuous input is first mapped by a fixed
monotone function, then standardised with the mean and standard deviation of the BENIGN
TRAINING flows (:class:`FeatureStats`, stored in the checkpoint so that any dataset is scored
with the training statistics):

* times (packet ``iat``; flow ``duration``, ``iat_*``, ``active_mean``, ``idle_mean``):
  ``log1p(x / 1 us)`` -- inter-arrival times span microseconds to minutes;
* ``fwd_ratio`` (a fraction in [0, 1]): unchanged;
* everything else (packet ``size`` and ``win``; flow sizes, counts, rates): ``log1p(x)``.

Negative inputs (none are expected) keep their sign: ``sign(x) log1p(|x| / s)``. A dimension
whose training standard deviation is below :data:`MIN_STD` (e.g. ``rst_count`` when no
benign training flow has a RST) is divided by 1 instead, so an attack that moves it shows up
as a large standardised value rather than a division by zero.

Batching. :func:`length_batches` sorts flows by length and cuts the order into batches;
:meth:`Prepared.batch` pads each batch only to its own longest flow. With packet-causal
attention (or key-padding masks) and masked losses this changes no result.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from janus.contract import (
    BINARY,
    CONTINUOUS,
    FEATURES_FILE,
    FLOW_FEATURES,
    FLOW_LOG_SCALE,
    TIME_SCALE_S,
)
from janus.datasets.store import PacketStore, RowReader, feature_reader, open_packets
from janus.errors import JanusError

if TYPE_CHECKING:  # torch is imported where tensors are made: the sklearn baselines
    import torch  # read the scaling constants here without paying for it

log = logging.getLogger(__name__)

TRANSFORM = "log1p-v1"
MIN_STD = 1e-3
_TIME_SCALE_S = TIME_SCALE_S
#: Per-dimension scale ``s`` of ``sign(x) log1p(|x| / s)``; ``0`` = identity.
FLOW_SCALE = np.array(FLOW_LOG_SCALE)
PACKET_SCALE = np.array([1.0, _TIME_SCALE_S, 1.0])  # size (bytes), iat (s), win
assert CONTINUOUS == (0, 1, 8)


def log1p_scaled(x: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``sign(x) log1p(|x| / scale)`` per last-axis dim; identity where ``scale == 0``."""
    x = np.asarray(x, dtype=np.float64)
    safe = np.where(scale > 0, scale, 1.0)
    y = np.sign(x) * np.log1p(np.abs(x) / safe)
    return np.where(scale > 0, y, x)


# --------------------------------------------------------------------------- loading
@dataclass
class Dataset:
    """One extracted dataset folder, row-aligned by ``flow_id = arange(N)``, read lazily.

    Each field is indexed like an array by rows (``ds.packets[rows, :t]``,
    ``ds.lengths[rows]``, ``ds.features[rows]``) and reads only those rows from disk
    (:mod:`janus.datasets.store`): memory follows the rows a step uses, not ``N``.
    """

    path: Path
    packets: PacketStore  # float32 (N, T, 9), packets.npz or the sharded store
    lengths: RowReader  # int64 (N,), 1..T
    features: RowReader  # float64 (N, 20), columns in FLOW_FEATURES order

    @property
    def n_flows(self) -> int:
        return self.packets.n_flows


def load_dataset(data_dir: str | Path) -> Dataset:
    """Open the packet tensor and ``flow_features.parquet`` of a dataset folder.

    Checks the layouts and that both hold the same ``N`` flows; lengths, finiteness and the
    ``flow_id`` alignment are checked on every row read (a :class:`JanusError` names the
    file and ``flow_id``).
    """
    data_dir = Path(data_dir)
    ft_path = data_dir / FEATURES_FILE
    store = open_packets(data_dir)
    if not ft_path.is_file():
        raise JanusError(f"{ft_path}: not found; run 'janus extract' for {data_dir} first")
    features = feature_reader(ft_path, list(FLOW_FEATURES))
    if len(features) != store.n_flows:
        raise JanusError(f"{ft_path}: {len(features)} rows but {store.path} holds "
                         f"{store.n_flows} flows; flow_id is not arange({store.n_flows})")
    return Dataset(path=data_dir, packets=store, lengths=store.length_reader, features=features)


# --------------------------------------------------------------------------- transform
@dataclass
class FeatureStats:
    """Standardisation statistics of the transformed inputs (from benign training flows)."""

    flow_mean: np.ndarray  # (20,)
    flow_std: np.ndarray  # (20,)
    packet_mean: np.ndarray  # (3,) size, iat, win
    packet_std: np.ndarray  # (3,)

    @classmethod
    def fit(cls, ds: Dataset, flow_ids: np.ndarray, max_packets: int) -> FeatureStats:
        """Statistics over ``flow_ids`` (the benign training split), valid packets only."""
        if len(flow_ids) == 0:
            raise JanusError("cannot fit input statistics on an empty training split")
        f = log1p_scaled(ds.features[flow_ids], FLOW_SCALE)
        t = min(max_packets, ds.packets.shape[1])
        lengths = np.minimum(ds.lengths[flow_ids], t)
        valid = np.arange(t)[None, :] < lengths[:, None]
        p = log1p_scaled(ds.packets.packets(flow_ids, t)[..., list(CONTINUOUS)][valid], PACKET_SCALE)
        return cls(flow_mean=f.mean(0), flow_std=_safe_std(f.std(0)),
                   packet_mean=p.mean(0), packet_std=_safe_std(p.std(0)))

    def to_state(self) -> dict[str, Any]:
        """Plain tensors and strings (loadable with ``torch.load(weights_only=True)``)."""
        import torch

        state: dict[str, Any] = {k: torch.tensor(getattr(self, k), dtype=torch.float64)
                                 for k in ("flow_mean", "flow_std", "packet_mean", "packet_std")}
        state["transform"] = TRANSFORM
        state["flow_features"] = list(FLOW_FEATURES)
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> FeatureStats:
        if state.get("transform") != TRANSFORM or list(state.get("flow_features", ())) != list(FLOW_FEATURES):
            raise JanusError(f"checkpoint input transform {state.get('transform')!r} / feature list "
                             f"does not match this JANUS ({TRANSFORM!r}); retrain the model")
        return cls(**{k: state[k].numpy() for k in ("flow_mean", "flow_std", "packet_mean", "packet_std")})

    def prepare(self, ds: Dataset, flow_ids: np.ndarray, max_packets: int) -> Prepared:
        """Transformed, standardised model inputs of ``flow_ids`` (first ``max_packets`` packets)."""
        flow_ids = np.asarray(flow_ids, dtype=np.int64)
        t = min(max_packets, ds.packets.shape[1])
        raw = ds.packets.packets(flow_ids, t)  # (n, t, 9)
        lengths = np.minimum(ds.lengths[flow_ids], t)
        valid = np.arange(t)[None, :] < lengths[:, None]  # (n, t)
        cont = (log1p_scaled(raw[..., list(CONTINUOUS)], PACKET_SCALE) - self.packet_mean) / self.packet_std
        cont = np.where(valid[..., None], cont, 0.0).astype(np.float32)
        disc = np.where(valid[..., None], raw[..., list(BINARY)] > 0.5, 0).astype(np.int8)
        flow = ((log1p_scaled(ds.features[flow_ids], FLOW_SCALE) - self.flow_mean) / self.flow_std)
        return Prepared(flow_id=flow_ids, flow=flow.astype(np.float32), cont=cont, disc=disc,
                        lengths=lengths.astype(np.int64))


def _safe_std(std: np.ndarray) -> np.ndarray:
    return np.where(std < MIN_STD, 1.0, std)


# --------------------------------------------------------------------------- batching
@dataclass
class Batch:
    """Model inputs of ``B`` flows padded to ``L`` = the longest flow of the batch."""

    flow_id: torch.Tensor  # int64 (B,)
    flow: torch.Tensor  # float32 (B, 20), standardised flow features
    cont: torch.Tensor  # float32 (B, L, 3), standardised size/iat/win, 0 on padding
    disc: torch.Tensor  # int64 (B, L, 6), flags in {0, 1}, 0 on padding
    lengths: torch.Tensor  # int64 (B,)
    mask: torch.Tensor  # bool (B, L), True on valid packets

    def to(self, device: torch.device | str) -> Batch:
        return Batch(**{k: v.to(device, non_blocking=True) for k, v in self.__dict__.items()})


@dataclass
class Prepared:
    """Model inputs of ``n`` flows, padded to ``T``; cut into batches with :meth:`batch`."""

    flow_id: np.ndarray  # int64 (n,)
    flow: np.ndarray  # float32 (n, 20)
    cont: np.ndarray  # float32 (n, T, 3)
    disc: np.ndarray  # int8 (n, T, 6)
    lengths: np.ndarray  # int64 (n,)

    def __len__(self) -> int:
        return int(self.lengths.shape[0])

    def batch(self, idx: np.ndarray, pad_to: int | None = None) -> Batch:
        """Rows ``idx`` padded to their own longest flow (or to ``pad_to`` packets)."""
        import torch

        lengths = self.lengths[idx]
        n_pkt = int(lengths.max()) if pad_to is None else pad_to
        return Batch(
            flow_id=torch.from_numpy(self.flow_id[idx]),
            flow=torch.from_numpy(self.flow[idx]),
            cont=torch.from_numpy(np.ascontiguousarray(self.cont[idx, :n_pkt])),
            disc=torch.from_numpy(self.disc[idx, :n_pkt].astype(np.int64)),
            lengths=torch.from_numpy(lengths),
            mask=torch.from_numpy(np.arange(n_pkt)[None, :] < lengths[:, None]),
        )


def length_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator | None = None,
                   max_tokens: int | None = None) -> list[np.ndarray]:
    """Cut the flows, sorted by length, into batches of row indices.

    A batch holds at most ``batch_size`` flows and, when ``max_tokens`` is given, at most
    ``max_tokens`` tokens after padding (flows x (longest length + 1 FLOW token)), so batches
    of long flows hold fewer flows and span a narrower length range (less padding).
    Without ``rng`` the order is deterministic (stable sort; scoring). With ``rng`` flows of
    equal length are shuffled and the batch order is permuted (training), so batch
    composition varies between epochs while each batch stays nearly uniform in length.
    """
    n = len(lengths)
    order = np.argsort(lengths, kind="stable") if rng is None else np.lexsort((rng.random(n), lengths))
    if max_tokens is None:
        cuts = np.arange(batch_size, n, batch_size)
    else:
        cuts, start = [], 0
        tokens = np.asarray(lengths)[order] + 1
        while start < n:
            # Sorted ascending, so a batch starting at `start` with k flows pads to tokens[start+k-1].
            k = np.arange(1, min(batch_size, n - start) + 1)
            fits = k * tokens[start:start + len(k)] <= max_tokens
            size = max(1, int(np.flatnonzero(fits)[-1]) + 1 if fits.any() else 1)
            start += size
            cuts.append(start)
        cuts = np.array(cuts[:-1], dtype=np.int64)
    batches = np.split(order, cuts)
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches
