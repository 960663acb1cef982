"""Does JANUS training converge, and does early stopping fire? Loss curves of a training setting.

Usage::

    python benchmarks/train_convergence.py --work DIR [--sites ...] [--seeds ...]
        [--config config/config.yaml] [--set epochs=40 lr=0.002 ...] [--tag NAME]

Trains one model per (site, seed) in this process, on one thread, with the model and
``train`` keys of ``--config`` (``--set KEY=VALUE`` overrides a ``train`` key or, for
``d_model``, ``n_layers``, ``n_heads`` and ``max_packets``, a model key), on the data and
splits that ``benchmarks/ablate_method.py run`` caches under ``--work`` (``data/SITE`` and
``data/SITE/splits/seedS.npz``). Writes every run's ``loss.csv`` under
``--work/convergence/TAG/SITE/seedS`` and prints one markdown row per run: epochs run,
whether and where early stopping fired, the best epoch (``model.pt``'s), the best validation
loss, the relative validation-loss gain over the last three epochs before the stop (the
slope left when training ended) and the training seconds (the loop only: no Python or torch
start-up, which the workflow's job pays once on top).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from janus.datasets.splits import load_splits
from janus.model.data import FeatureStats, load_dataset
from janus.model.network import ModelConfig
from janus.model.train import HISTORY_COLUMNS, TrainOptions, fit

REPO = Path(__file__).resolve().parents[1]
MODEL_KEYS = ("d_model", "n_layers", "n_heads", "max_packets")
TRAIN_KEYS = ("epochs", "batch_size", "lr", "warmup_fraction", "patience", "min_delta",
              "schedule")


def parse_set(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        if key not in MODEL_KEYS + TRAIN_KEYS or not value:
            raise SystemExit(f"--set {item!r}: expected KEY=VALUE with KEY one of "
                             f"{', '.join(MODEL_KEYS + TRAIN_KEYS)}")
        out[key] = value
    return out


def settings(cfg: dict, over: dict[str, str]) -> tuple[ModelConfig, dict]:
    m, t = cfg["model"], cfg["train"]
    model = {"d_model": m["d_model"], "n_layers": m["n_layers"], "n_heads": m["n_heads"],
             "max_packets": cfg["extract"]["max_packets"]}
    train = {k: t[k] for k in TRAIN_KEYS if t.get(k) is not None}
    ints = MODEL_KEYS + ("epochs", "batch_size", "patience")
    for key, value in over.items():
        target = model if key in MODEL_KEYS else train
        target[key] = int(value) if key in ints else value if key == "schedule" else float(value)
    cfg_m = ModelConfig(**model, sigma=m["sigma_within"], lambda_disc=m["lambda_disc"], ot=m["ot"],
                        ot_reg=m["ot_reg"], causal=m["causal"],
                        packets_see_flow=m.get("packets_see_flow", False))
    return cfg_m, train


def one_run(work: Path, site: str, seed: int, cfg: ModelConfig, train: dict, out: Path,
            max_train_flows: int | None) -> dict:
    data = work / "data" / site
    splits = load_splits(data / "splits" / f"seed{seed}.npz")
    ds = load_dataset(data)
    ids = splits["train"]
    if max_train_flows is not None and len(ids) > max_train_flows:
        ids = np.sort(np.random.default_rng(seed).choice(ids, max_train_flows, replace=False))
    stats = FeatureStats.fit(ds, ids, cfg.max_packets)
    tr = stats.prepare(ds, ids, cfg.max_packets)
    va = stats.prepare(ds, splits["val"], cfg.max_packets)
    opts = TrainOptions(**train, seed=seed, device="cpu", disable_progress=True)
    t0 = time.perf_counter()
    summary = fit(tr, va, stats, cfg, opts, out)
    summary["wall"] = time.perf_counter() - t0
    h = np.loadtxt(out / "loss.csv", delimiter=",", skiprows=1, ndmin=2)
    val = h[:, HISTORY_COLUMNS.index("val_loss")]
    k = len(val) - 1
    summary["tail_gain"] = float((val[max(0, k - 3)] - val[k]) / val[max(0, k - 3)] / min(3, k)) \
        if k else float("nan")
    summary["n_train"] = len(tr)
    return summary


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--config", type=Path, default=REPO / "config" / "config.yaml")
    p.add_argument("--sites", nargs="+", default=["office", "datacenter", "iot", "tunnel"])
    p.add_argument("--seeds", nargs="+", type=int, default=[42, 43])
    p.add_argument("--set", nargs="*", default=[], help="KEY=VALUE overrides")
    p.add_argument("--max-train-flows", type=int, default=None)
    p.add_argument("--tag", default="run")
    args = p.parse_args()
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.WARNING)
    cfg = yaml.safe_load(args.config.read_text())
    model_cfg, train = settings(cfg, parse_set(args.set))
    print(f"model {model_cfg}\ntrain {train}\n")
    print("| site | seed | flows | epochs | early stop | best epoch | best val loss | "
          "gain/epoch at end | s |")
    print("|:---|---:|---:|---:|---:|---:|---:|---:|---:|")
    rows = []
    for site in args.sites:
        for seed in args.seeds:
            out = args.work / "convergence" / args.tag / site / f"seed{seed}"
            s = one_run(args.work, site, seed, model_cfg, train, out, args.max_train_flows)
            rows.append(s)
            stop = s["stop_epoch"] if s["early_stopped"] else "—"
            print(f"| {site} | {seed} | {s['n_train']} | {s['epochs']} | {stop} | "
                  f"{s['best_epoch']} | {s['best_val']:.4f} | {100 * s['tail_gain']:+.2f} % | "
                  f"{s['wall']:.1f} |", flush=True)
    fired = sum(r["early_stopped"] for r in rows)
    wall = np.array([r["wall"] for r in rows])
    print(f"\nearly stopping fired in {fired} of {len(rows)} runs; "
          f"{wall.mean():.1f} ± {wall.std():.1f} s per model (training loop, one thread); "
          f"mean best val loss {np.mean([r['best_val'] for r in rows]):.4f}")


if __name__ == "__main__":
    main()
