"""Training and scoring speed of the JANUS model at paper size (T=64, d=128, 4 layers, 4 heads).

Usage: python benchmarks/bench_model.py [--flows 8192] [--threads 2] [--device cpu|cuda|both]

Flows are synthetic with a realistic length distribution: a third are 1-2 packet flows (DNS,
scans, lone RSTs), the rest have ``round(lognormal(log 8, 1.0))`` packets clipped to 1..64
(median about 8, about 2 % reach 64). The script prints the mean length it drew. Training
flows/s is one epoch of real optimiser steps (OT coupling included, length-bucketed batches
of 256) after two warm-up steps; scoring flows/s is :func:`janus.model.score.score_flows`
end to end (input transform, bucketing, one forward pass, all 10 scores).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from janus.contract import N_CHANNELS, N_FLOW_FEATURES
from janus.model.data import Dataset, FeatureStats, length_batches
from janus.model.network import JanusNet, ModelConfig, count_parameters
from janus.model.score import score_flows
from janus.model.train import _epoch_generator, train_step


def realistic_lengths(n: int, t: int, rng: np.random.Generator) -> np.ndarray:
    short = rng.random(n) < 1 / 3
    body = np.rint(rng.lognormal(np.log(8.0), 1.0, n))
    return np.clip(np.where(short, rng.integers(1, 3, n), body), 1, t).astype(np.int64)


def synthetic_dataset(n: int, t: int, rng: np.random.Generator) -> Dataset:
    lengths = realistic_lengths(n, t, rng)
    packets = np.zeros((n, t, N_CHANNELS), np.float32)
    valid = np.arange(t)[None, :] < lengths[:, None]
    packets[..., 0] = rng.integers(54, 1514, (n, t))
    packets[..., 1] = rng.exponential(0.05, (n, t))
    packets[..., 2:8] = rng.random((n, t, 6)) < 0.3
    packets[..., 8] = rng.integers(0, 65536, (n, t))
    packets *= valid[..., None]
    features = np.abs(rng.normal(size=(n, N_FLOW_FEATURES))) * 100
    return Dataset(path=None, packets=packets, lengths=lengths, features=features)  # type: ignore[arg-type]


def bench(device: torch.device, n: int, batch_size: int) -> None:
    rng = np.random.default_rng(0)
    cfg = ModelConfig()
    ds = synthetic_dataset(n, cfg.max_packets, rng)
    ids = np.arange(n)
    stats = FeatureStats.fit(ds, ids, cfg.max_packets)
    prep = stats.prepare(ds, ids, cfg.max_packets)
    torch.manual_seed(0)
    model = JanusNet(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    gen = _epoch_generator(device, 0, 0)
    batches = length_batches(prep.lengths, batch_size, rng)
    for idx in batches[:2]:
        train_step(model, opt, prep.batch(idx).to(device), cfg, gen, 1e-4, 1.0)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    with Clock() as train_clock:
        for idx in batches:
            train_step(model, opt, prep.batch(idx).to(device), cfg, gen, 1e-4, 1.0)
        sync()
    score_flows(model, stats, ds, ids[:1024], device=device, disable_progress=True)  # warm-up
    sync()
    with Clock() as score_clock:
        score_flows(model, stats, ds, ids, device=device, disable_progress=True)
        sync()
    print(f"  mean flow length {ds.lengths.mean():.2f} packets, {count_parameters(model):,} parameters")
    for name, clock in (("training", train_clock), ("scoring", score_clock)):
        print(f"  {name:<8} {n / clock.wall:8,.0f} flows/s  ({n / clock.cpu:,.0f} flows per CPU-second "
              f"of this process; CPU/wall = {clock.cpu / clock.wall:.2f})")


class Clock:
    """Wall and process CPU time of a block. CPU/wall well below the thread count means the
    machine was busy with other work and the wall-clock figure understates the code's speed."""

    def __enter__(self):
        self._w, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._w
        self.cpu = time.process_time() - self._c


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--flows", type=int, default=8192, help="synthetic flows per measurement (default 8192)")
    p.add_argument("--batch-size", type=int, default=256, help="training flows per batch")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for PyTorch")
    p.add_argument("--device", default="both", choices=("cpu", "cuda", "both"),
                   help="both = CPU, then CUDA when available")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    devices = ["cpu", "cuda"] if args.device == "both" else [args.device]
    for name in devices:
        if name == "cuda" and not torch.cuda.is_available():
            print("cuda: not available, skipped")
            continue
        label = f"cpu ({args.threads} threads)" if name == "cpu" else torch.cuda.get_device_name()
        print(f"{label}:")
        bench(torch.device(name), args.flows, args.batch_size)


if __name__ == "__main__":
    main()
