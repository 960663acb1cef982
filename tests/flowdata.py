"""Tiny synthetic datasets in the contract's layout, for the model, splits, train and score tests.

Benign flows are TCP-like conversations with a strong packet-level structure: packet 1 is the
initiator's SYN (60 bytes), packet 2 the responder's SYN-ACK, then the sides alternate with
ACK (+PSH on data) packets of about 200 bytes (initiator) and 1200 bytes (responder), windows
29200 / 65535 and millisecond gaps. :func:`shuffle_channels` destroys that structure packet by
packet while keeping each channel's multiset of values per flow (so counts, durations and
rates are unchanged; only the per-direction size statistics move).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from janus.contract import (
    ACK,
    DIRECTION,
    FEATURES_FILE,
    FIN,
    FLOW_FEATURES,
    IAT,
    LABELS_FILE,
    N_CHANNELS,
    PACKETS_FILE,
    PSH,
    RST,
    SIZE,
    SYN,
    WIN,
)
from janus.io import write_npz, write_parquet


def benign_packets(n: int, t: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(packets (n, t, 9) float32, lengths (n,) int32)`` of structured benign flows."""
    lengths = rng.integers(3, t + 1, n).astype(np.int32)
    p = np.zeros((n, t, N_CHANNELS), np.float32)
    pos = np.arange(t)[None, :].repeat(n, 0)
    direction = (pos % 2).astype(np.float32)
    p[..., DIRECTION] = direction
    p[..., SIZE] = np.where(direction == 0, rng.normal(200, 10, (n, t)), rng.normal(1200, 40, (n, t)))
    p[:, :2, SIZE] = 60
    p[..., IAT] = rng.lognormal(np.log(1e-3), 0.2, (n, t))
    p[:, 0, IAT] = 0
    p[..., WIN] = np.where(direction == 0, 29200, 65535)
    p[:, :2, SYN] = 1
    p[:, 1:, ACK] = 1
    p[:, 2:, PSH] = 1
    valid = pos < lengths[:, None]
    return p * valid[..., None], lengths


def shuffle_channels(packets: np.ndarray, lengths: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each channel of each flow independently permuted over the flow's valid packets."""
    out = packets.copy()
    for i, n in enumerate(lengths):
        for c in range(N_CHANNELS):
            out[i, :n, c] = packets[i, rng.permutation(n), c]
    return out


def flow_features(packets: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The 20 flow features (float64 ``(n, 20)``), order-free statistics of the valid packets."""
    n, t = packets.shape[:2]
    valid = np.arange(t)[None, :] < lengths[:, None]
    fwd = valid & (packets[..., DIRECTION] == 0)
    bwd = valid & (packets[..., DIRECTION] == 1)
    size, iat = packets[..., SIZE].astype(np.float64), packets[..., IAT].astype(np.float64)

    def stats(sel: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cnt = np.maximum(sel.sum(1), 1)
        mean = (x * sel).sum(1) / cnt
        std = np.sqrt(((x - mean[:, None]) ** 2 * sel).sum(1) / cnt)
        return mean, np.where(sel, x, 0).max(1), std

    duration = (iat * valid).sum(1)
    rate = np.where(duration > 0, 1 / np.maximum(duration, 1e-12), 0)
    cols = {
        "duration": duration, "n_packets": lengths.astype(np.float64),
        "fwd_ratio": fwd.sum(1) / lengths,
        "iat_mean": duration / np.maximum(lengths - 1, 1), "iat_std": np.zeros(n),
        "iat_max": (iat * valid).max(1), "active_mean": duration, "idle_mean": np.zeros(n),
        "bytes_per_s": (size * valid).sum(1) * rate, "packets_per_s": lengths * rate,
    }
    cols["fwd_size_mean"], cols["fwd_size_max"], cols["fwd_size_std"] = stats(fwd, size)
    cols["bwd_size_mean"], cols["bwd_size_max"], cols["bwd_size_std"] = stats(bwd, size)
    for name, ch in (("syn_count", SYN), ("fin_count", FIN), ("rst_count", RST), ("psh_count", PSH)):
        cols[name] = (packets[..., ch] * valid).sum(1)
    return np.stack([cols[f] for f in FLOW_FEATURES], 1)


def write_dataset(folder: Path, packets: np.ndarray, lengths: np.ndarray,
                  labels: np.ndarray | None = None) -> Path:
    """Write ``packets.npz``, ``flow_features.parquet`` (and ``labels.parquet``) into ``folder``."""
    n = len(lengths)
    write_npz(folder / PACKETS_FILE, packets=packets.astype(np.float32), lengths=lengths.astype(np.int32))
    feats = flow_features(packets, lengths)
    cols = {"flow_id": pa.array(np.arange(n), pa.int64())}
    cols.update({f: pa.array(feats[:, k]) for k, f in enumerate(FLOW_FEATURES)})
    write_parquet(folder / FEATURES_FILE, pa.table(cols))
    if labels is not None:
        labels = np.asarray(labels, np.int8)
        attack = np.where(labels == 0, "benign", np.where(labels == 1, "shuffled", "unknown"))
        write_parquet(folder / LABELS_FILE, pa.table({
            "flow_id": pa.array(np.arange(n), pa.int64()), "label": pa.array(labels, pa.int8()),
            "attack": pa.array(attack.tolist()), "label_source": pa.array(["file"] * n)}))
    return folder


def mixed_dataset(folder: Path, n_benign: int, n_attack: int, t: int, seed: int = 0) -> Path:
    """Benign flows followed by channel-shuffled attack flows, labelled 0 / 1."""
    rng = np.random.default_rng(seed)
    pb, lb = benign_packets(n_benign, t, rng)
    pa_, la = benign_packets(n_attack, t, rng)
    pa_ = shuffle_channels(pa_, la, rng)
    labels = np.r_[np.zeros(n_benign, np.int8), np.ones(n_attack, np.int8)]
    return write_dataset(folder, np.concatenate([pb, pa_]), np.r_[lb, la], labels)
