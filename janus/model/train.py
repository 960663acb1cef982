"""Train the JANUS flow-matching model on the benign training split of one dataset.

One joint loss per minibatch (:func:`joint_loss`):

* continuous (OT-CFM): ``x0 ~ N(0, I)`` over the FLOW token's 20 features and every valid
  packet's 3 continuous channels, re-paired with the data by minibatch OT on the masked
  squared distance (``--ot exact``, the default: the minimum-cost permutation; ``--ot
  sinkhorn``: pairs sampled from an entropic plan; ``--ot none``: independent pairs), ``t_c ~
  U(0, 1)``, ``x_t = t_c x1 + (1 - t_c) x0 + sigma eps``;
  loss = mean squared error of the predicted velocity against ``x1 - x0`` over all valid
  continuous values of the batch (padding excluded);
* discrete (mixture-path DFM, MASK source): ``t_d ~ U(0, 1)`` drawn independently of
  ``t_c``; each valid flag is kept with probability ``kappa(t_d) = t_d`` and set to MASK
  otherwise; loss = binary cross-entropy of the flag head against the clean flag, averaged
  over the MASKED positions only (a kept flag is in the input, so a loss there would only
  teach copying);
* ``loss = continuous + lambda_disc * discrete`` (``--lambda-disc 0``: continuous-only
  ablation, the flag head is not trained).

Optimisation: AdamW, per optimiser step a linear warm-up over ``--warmup-fraction`` of the
total steps (``--epochs`` x batches per epoch: the maximum run), then ``--schedule``:

* ``cosine``: cosine decay to 10 % of ``--lr`` at the end of the maximum run. The lowest
  losses come only as the learning rate anneals, at the very end, so early stopping can fire
  only on a noisy stretch before it;
* ``plateau``: ``--lr`` until the validation loss stops improving, then the learning rate
  falls by a factor ``sqrt(10)`` each time it plateaus again, down to the same 10 % floor,
  and early stopping fires at the plateau on the floor: the run ends when it has converged,
  not when the budget does.

A plateau is ``--patience`` epochs without a relative improvement of at least
``--min-delta`` over the best validation loss so far (evaluated with a fixed noise seed so
epochs are comparable); under ``cosine`` the first plateau stops the run. Gradient-norm
clipping throughout. Randomness comes from ``--seed`` only: the same seed, data, options and
thread count give bit-identical weights on CPU.

Outputs in ``RUN_DIR``: ``model.pt`` (the epoch with the lowest validation loss; what
``janus score`` reads), ``last.pt`` (the latest epoch, for ``--resume``), ``loss.csv`` (one
row per epoch: losses, the learning rate of the epoch's last step, whether it is the best
epoch and whether early stopping fired there), ``loss.png`` and ``train_summary.json`` (best
and stop epoch, steps, warm-up steps).
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from janus import provenance
from janus.cli import run_main
from janus.contract import DEFAULT_MAX_PACKETS, FEATURES_FILE, PACKETS_FILE
from janus.datasets.splits import load_splits
from janus.errors import ConfigError, JanusError
from janus.io import atomic_path, write_json, write_text
from janus.model.checkpoint import load_checkpoint, mark_finished, save_checkpoint, unwrap
from janus.model.data import Batch, FeatureStats, Prepared, length_batches, load_dataset
from janus.model.flowmatch import OT_METHODS, cfm_path, kappa, mixture_corrupt, ot_pair_indices
from janus.model.network import JanusNet, ModelConfig, count_parameters

log = logging.getLogger(__name__)

LOSS_COLUMNS = ("epoch", "train_loss", "train_cont", "train_disc", "val_loss", "val_cont",
                "val_disc", "lr", "seconds", "best", "early_stop")
#: The columns kept per epoch in the checkpoint's history (``best`` and ``early_stop`` are
#: derived from the training state when ``loss.csv`` is written).
HISTORY_COLUMNS = LOSS_COLUMNS[:9]
SCHEDULES = ("cosine", "plateau")
#: Both schedules end at this share of the peak learning rate; ``plateau`` reaches it in two
#: cuts by PLATEAU_FACTOR.
LR_FLOOR = 0.1
PLATEAU_FACTOR = 10.0 ** -0.5


@dataclass
class TrainOptions:
    """Optimiser and loop settings (not needed to rebuild the model, so not in ModelConfig)."""

    epochs: int = 50
    batch_size: int = 256
    lr: float = 5e-4
    weight_decay: float = 0.01
    warmup_fraction: float = 0.05  # share of the total optimiser steps spent in linear warm-up
    warmup_steps: int | None = None  # explicit warm-up steps instead of the fraction (old runs: 200)
    patience: int = 5  # epochs without a better validation loss before stopping
    min_delta: float = 0.0  # relative improvement of the best validation loss that counts
    schedule: str = "cosine"  # after the warm-up: cosine (over the maximum run) or plateau
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "auto"
    compile: bool = False
    disable_progress: bool | None = None  # tqdm semantics: None = bars only on a terminal

    def __post_init__(self) -> None:
        if not 0.0 < self.warmup_fraction <= 1.0:
            raise ConfigError(f"--warmup-fraction must be in (0, 1], got {self.warmup_fraction}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"--schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if not 0.0 <= self.min_delta < 1.0:
            raise ConfigError(f"--min-delta must be in [0, 1), got {self.min_delta}")
        if self.warmup_steps is not None and self.warmup_steps < 1:
            raise ConfigError(f"--warmup-steps must be >= 1, got {self.warmup_steps}")
        for name in ("epochs", "batch_size", "patience"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; an unavailable CUDA is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available (this PyTorch build or "
                          "machine has none); use --device cpu or auto")
    if name not in ("cpu", "cuda"):
        raise ConfigError(f"--device must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)


def make_optimizer(model: torch.nn.Module, opts: TrainOptions) -> torch.optim.AdamW:
    """AdamW over all parameters; the multi-tensor (foreach) update is ~5x faster on CPU too."""
    return torch.optim.AdamW(model.parameters(), lr=opts.lr, weight_decay=opts.weight_decay,
                             foreach=True)


def warmup_steps(total: int, opts: TrainOptions) -> int:
    """Optimiser steps of linear warm-up of a ``total``-step run: ``ceil(warmup_fraction *
    total)``, at least 1, at most ``total``; or ``opts.warmup_steps`` as given when set (which
    may exceed ``total``: the schedule of runs before the fraction, 200 steps, is reproducible)."""
    if opts.warmup_steps is not None:
        return opts.warmup_steps
    return max(1, min(total, math.ceil(opts.warmup_fraction * total)))


def lr_at(step: int, total: int, opts: TrainOptions, scale: float = 1.0) -> float:
    """Learning rate of optimiser step ``step`` (0-based) of ``total``: linear warm-up to
    ``opts.lr`` over :func:`warmup_steps`, then (``cosine``) cosine decay to ``LR_FLOOR *
    opts.lr`` at ``total`` or (``plateau``) ``scale * opts.lr``, ``scale`` being the plateau
    cuts so far (1, 1/sqrt(10), 0.1)."""
    warmup = warmup_steps(total, opts)
    if step < warmup:
        return opts.lr * (step + 1) / warmup
    if opts.schedule == "plateau":
        return opts.lr * scale
    progress = min(1.0, (step + 1 - warmup) / max(1, total - warmup))
    return opts.lr * (LR_FLOOR + (1 - LR_FLOOR) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def joint_loss(
    model: torch.nn.Module, batch: Batch, cfg: ModelConfig, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The joint CFM + DFM loss of one batch (see the module docstring).

    Returns ``(loss, continuous_loss, discrete_loss)`` (scalars; the parts are detached).
    """
    b, _, n_cont = batch.cont.shape
    dev = batch.cont.device
    mask = batch.mask  # (B, L)
    x1f, x1p = batch.flow, batch.cont  # (B, 20), (B, L, 3)
    x0f = torch.randn(x1f.shape, generator=gen, device=dev)
    x0p = torch.randn(x1p.shape, generator=gen, device=dev)
    if cfg.ot != "none":
        flat_mask = torch.cat([torch.ones_like(x1f, dtype=torch.bool),
                               mask[:, :, None].expand(-1, -1, n_cont).reshape(b, -1)], dim=1)
        idx = ot_pair_indices(torch.cat([x0f, x0p.reshape(b, -1)], 1),
                              torch.cat([x1f, x1p.reshape(b, -1)], 1), flat_mask, gen,
                              method=cfg.ot, reg=cfg.ot_reg)  # (B,)
        x0f, x0p = x0f[idx], x0p[idx]
    t_c = torch.rand(b, generator=gen, device=dev)
    t_d = torch.rand(b, generator=gen, device=dev)
    xtf, uf = cfm_path(x0f, x1f, t_c, cfg.sigma, torch.randn(x1f.shape, generator=gen, device=dev))
    xtp, up = cfm_path(x0p, x1p, t_c, cfg.sigma, torch.randn(x1p.shape, generator=gen, device=dev))
    xtp = xtp * mask[..., None]  # padding enters as 0, as at scoring time
    disc_t, replaced = mixture_corrupt(batch.disc, kappa(t_d), "mask", gen)
    with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
        vf, vp, logits = model(xtf, xtp, disc_t, batch.lengths, t_c, t_d)
    maskf = mask[..., None].float()
    sq = ((vf.float() - uf) ** 2).sum() + (((vp.float() - up) ** 2) * maskf).sum()
    cont = sq / (b * x1f.shape[1] + n_cont * maskf.sum())
    if cfg.lambda_disc > 0:
        sel = (replaced & mask[..., None]).float()  # (B, L, 6): masked, valid flags
        bce = F.binary_cross_entropy_with_logits(logits.float(), batch.disc.float(), reduction="none")
        disc = (bce * sel).sum() / sel.sum().clamp_min(1.0)
    else:
        disc = torch.zeros((), device=dev)
    return cont + cfg.lambda_disc * disc, cont.detach(), disc.detach()


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: Batch,
               cfg: ModelConfig, gen: torch.Generator, lr: float, grad_clip: float) -> list[float]:
    """One optimiser step on ``batch`` at learning rate ``lr``; returns [loss, cont, disc]."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    loss, cont, disc = joint_loss(model, batch, cfg, gen)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(unwrap(model).parameters(), grad_clip, foreach=True)
    optimizer.step()
    return [loss.item(), cont.item(), disc.item()]


def _epoch_generator(device: torch.device, seed: int, stream: int) -> torch.Generator:
    # One independent stream per (seed, epoch): resuming at epoch k replays epoch k exactly.
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + stream)


@torch.no_grad()
def validation_loss(model: torch.nn.Module, data: Prepared, cfg: ModelConfig, opts: TrainOptions,
                    device: torch.device) -> tuple[float, float, float]:
    """Flow-weighted mean joint loss on ``data`` with a fixed noise stream (comparable across epochs)."""
    model.eval()
    gen = _epoch_generator(device, opts.seed, stream=-1)
    tot = np.zeros(3)
    for idx in length_batches(data.lengths, opts.batch_size):
        parts = joint_loss(model, data.batch(idx).to(device), cfg, gen)
        tot += len(idx) * np.array([p.item() for p in parts])
    model.train()
    return tuple(tot / len(data))  # type: ignore[return-value]


def fit(
    train: Prepared,
    val: Prepared,
    stats: FeatureStats,
    cfg: ModelConfig,
    opts: TrainOptions,
    out_dir: Path,
    resume: bool = False,
    provenance: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train on prepared benign flows; write ``model.pt``, ``last.pt``, ``loss.csv``,
    ``loss.png`` and ``train_summary.json``. ``provenance`` (:func:`janus.provenance.collect`)
    goes into every checkpoint.

    Returns the training summary (see :func:`training_summary`).
    """
    if len(train) == 0 or len(val) == 0:
        raise JanusError(f"training needs benign train and val flows; got {len(train)} / {len(val)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(opts.device)
    torch.manual_seed(opts.seed)
    model = JanusNet(cfg).to(device)
    optimizer = make_optimizer(model, opts)
    state: dict[str, Any] = {"step": 0, "best_val": math.inf, "best_epoch": -1, "bad_epochs": 0,
                             "stop_epoch": None, "lr_scale": 1.0, "history": []}
    start_epoch = 0
    if resume:
        ckpt = load_checkpoint(out_dir / "last.pt")
        if ckpt["config"] != cfg.to_dict():
            raise ConfigError(f"{out_dir / 'last.pt'}: --resume with a different model config "
                              f"({ckpt['config']} vs {cfg.to_dict()})")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        state = {"stop_epoch": None, "lr_scale": 1.0, **ckpt["train_state"]}
        start_epoch = int(ckpt["epoch"]) + 1
        log.info("resuming %s at epoch %d", out_dir, start_epoch)
    else:
        # A fresh run replaces an earlier one: its finished model.pt must not survive a kill
        # of this run before the first epoch, where it would pass for this run's model.
        for name in ("model.pt", "last.pt", "train_summary.json"):
            (out_dir / name).unlink(missing_ok=True)
    run_model = torch.compile(model, dynamic=True) if opts.compile else model
    n_batches = math.ceil(len(train) / opts.batch_size)
    total_steps = opts.epochs * n_batches  # the cosine spans the maximum run, not the early stop
    log.info("training %d parameters on %s: %d train / %d val flows, %d steps per epoch, "
             "%d of %d steps warm-up", count_parameters(model), device, len(train), len(val),
             n_batches, warmup_steps(total_steps, opts), total_steps)
    for epoch in range(start_epoch, opts.epochs):
        if state["stop_epoch"] is not None:  # resumed from a run that had stopped early
            break
        t0 = time.perf_counter()
        rng = np.random.default_rng([opts.seed, epoch])
        gen = _epoch_generator(device, opts.seed, stream=epoch)
        tot = np.zeros(3)
        bar = tqdm(length_batches(train.lengths, opts.batch_size, rng), desc=f"epoch {epoch}",
                   unit="batch", leave=False, disable=opts.disable_progress)
        for idx in bar:
            lr = lr_at(state["step"], total_steps, opts, state["lr_scale"])
            parts = train_step(run_model, optimizer, train.batch(idx).to(device), cfg, gen, lr,
                               opts.grad_clip)
            if not math.isfinite(parts[0]):
                raise JanusError(f"epoch {epoch}, step {state['step']}: the loss is {parts[0]}; "
                                 "lower --lr or --grad-clip, or check the dataset for extreme values")
            state["step"] += 1
            tot += len(idx) * np.array(parts)
            bar.set_postfix(loss=f"{parts[0]:.4f}")
        train_parts = tot / len(train)
        val_parts = validation_loss(run_model, val, cfg, opts, device)
        row = [epoch, *train_parts, *val_parts, lr, time.perf_counter() - t0]  # lr of the last step
        state["history"].append([float(v) for v in row])
        # Patience counts epochs without a relative gain of min_delta; model.pt follows the
        # lowest loss even when the gain is smaller (so it is always the best epoch's weights).
        significant = val_parts[0] < state["best_val"] * (1.0 - opts.min_delta)
        improved = val_parts[0] < state["best_val"]
        state["bad_epochs"] = 0 if significant else state["bad_epochs"] + 1
        if state["bad_epochs"] >= opts.patience:
            if opts.schedule == "plateau" and state["lr_scale"] > LR_FLOOR * (1 + 1e-9):
                state["lr_scale"] = max(LR_FLOOR, state["lr_scale"] * PLATEAU_FACTOR)
                state["bad_epochs"] = 0
                log.info("epoch %d: plateau, learning rate cut to %.3g", epoch,
                         opts.lr * state["lr_scale"])
            else:
                state["stop_epoch"] = epoch
        if improved:
            state.update(best_val=float(val_parts[0]), best_epoch=epoch)
            save_checkpoint(out_dir / "model.pt", model, optimizer, cfg, epoch, opts.seed, stats, state,
                            provenance=provenance)
        save_checkpoint(out_dir / "last.pt", model, optimizer, cfg, epoch, opts.seed, stats, state,
                        provenance=provenance)
        log.info("epoch %d: train %.4f (cont %.4f, disc %.4f) val %.4f (cont %.4f, disc %.4f)%s, "
                 "%.0f flows/s", epoch, *train_parts, *val_parts, " *" if improved else "",
                 len(train) / row[-1])
        write_loss_csv(out_dir / "loss.csv", state)
        if state["stop_epoch"] is not None:
            log.info("early stop at epoch %d: %d epochs without a %.3g relative gain (best epoch %d)",
                     epoch, opts.patience, opts.min_delta, state["best_epoch"])
    plot_losses(out_dir / "loss.png", state)
    summary = training_summary(state, opts, len(train), n_batches, cfg)
    write_json(out_dir / "train_summary.json", summary)
    for name in ("model.pt", "last.pt"):  # the loop ended (early stop or max epochs)
        mark_finished(out_dir / name)
    return summary


def training_summary(state: dict[str, Any], opts: TrainOptions, n_train: int, n_batches: int,
                     cfg: ModelConfig) -> dict[str, Any]:
    """What ``train_summary.json`` records: best and stop epoch, steps, warm-up, throughput."""
    history = state["history"]
    secs = sum(r[HISTORY_COLUMNS.index("seconds")] for r in history)
    total = opts.epochs * n_batches
    return {
        "best_epoch": state["best_epoch"], "best_val": state["best_val"],
        "epochs": len(history), "max_epochs": opts.epochs,
        "early_stopped": state["stop_epoch"] is not None, "stop_epoch": state["stop_epoch"],
        "patience": opts.patience, "min_delta": opts.min_delta,
        "steps": state["step"], "steps_per_epoch": n_batches, "total_steps": total,
        "warmup_fraction": opts.warmup_fraction, "schedule": opts.schedule,
        "warmup_steps": warmup_steps(total, opts),
        "lr": opts.lr, "last_lr": history[-1][HISTORY_COLUMNS.index("lr")] if history else None,
        "ot": cfg.ot, "seconds": secs,
        "flows_per_s": n_train * len(history) / secs if secs else float("nan"),
    }


def write_loss_csv(path: Path, state: dict[str, Any]) -> None:
    """One row per epoch; ``best`` marks the best epoch so far (model.pt's), ``early_stop``
    the epoch at which early stopping fired."""
    lines = [",".join(LOSS_COLUMNS)]
    for r in state["history"]:
        epoch = int(r[0])
        flags = [int(epoch == state["best_epoch"]), int(epoch == state["stop_epoch"])]
        lines.append(",".join([str(epoch)] + [f"{v:.6g}" for v in r[1:]] + [str(f) for f in flags]))
    write_text(path, "\n".join(lines) + "\n")


def plot_losses(path: Path, state: dict[str, Any]) -> None:
    """Train and validation loss per epoch (log scale) and the best epoch, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h = np.array(state["history"], dtype=float).reshape(-1, len(HISTORY_COLUMNS))
    fig, ax = plt.subplots(figsize=(6, 4))
    for col, style in (("train_loss", "-"), ("val_loss", "-"), ("train_cont", ":"), ("train_disc", "--")):
        ax.plot(h[:, 0], h[:, HISTORY_COLUMNS.index(col)], style, label=col)
    if state["best_epoch"] >= 0:
        ax.axvline(state["best_epoch"], color="grey", lw=0.8, ls="--", label="best (model.pt)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


# --------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="janus train", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, type=Path, help="dataset folder (packets.npz, flow_features.parquet)")
    p.add_argument("--splits", required=True, type=Path, help="SPLITS.npz from 'janus splits' (train and val are used)")
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation, noise and batch order (default 0)")
    p.add_argument("--out", required=True, type=Path, help="run folder for model.pt, last.pt, loss.csv, loss.png")
    m = p.add_argument_group("model")
    d = ModelConfig()
    m.add_argument("--max-packets", type=int, default=DEFAULT_MAX_PACKETS, help=f"packet tokens per flow T (default {d.max_packets})")
    m.add_argument("--d-model", type=int, default=d.d_model, help=f"model width (default {d.d_model})")
    m.add_argument("--n-layers", type=int, default=d.n_layers, help=f"Transformer blocks (default {d.n_layers})")
    m.add_argument("--n-heads", type=int, default=d.n_heads, help=f"attention heads (default {d.n_heads})")
    m.add_argument("--sigma", type=float, default=d.sigma, help=f"CFM path noise (default {d.sigma})")
    m.add_argument("--lambda-disc", type=float, default=d.lambda_disc,
                   help=f"weight of the flag loss; 0 = continuous-only ablation (default {d.lambda_disc})")
    m.add_argument("--ot", choices=OT_METHODS, default=d.ot,
                   help="minibatch coupling of noise to data: exact = minimum-cost permutation, "
                        f"sinkhorn = sampled from an entropic plan, none = independent (default {d.ot})")
    m.add_argument("--ot-reg", type=float, default=d.ot_reg,
                   help=f"--ot sinkhorn: entropic regularisation relative to the cost spread (default {d.ot_reg})")
    m.add_argument("--full-attention", action="store_true", help="ablation: every token sees every packet")
    m.add_argument("--packets-see-flow", action="store_true",
                   help="ablation: packets also attend to the FLOW token, so the flag head reads "
                        "the flow's flag counts (the layout before issue 10)")
    o = p.add_argument_group("optimisation")
    t = TrainOptions()
    o.add_argument("--epochs", type=int, default=t.epochs, help=f"maximum epochs (default {t.epochs})")
    o.add_argument("--batch-size", type=int, default=t.batch_size, help=f"flows per batch (default {t.batch_size})")
    o.add_argument("--lr", type=float, default=t.lr, help=f"peak AdamW learning rate (default {t.lr})")
    o.add_argument("--weight-decay", type=float, default=t.weight_decay, help=f"AdamW weight decay (default {t.weight_decay})")
    o.add_argument("--warmup-fraction", type=float, default=t.warmup_fraction,
                   help="share of the total steps (--epochs x batches) in linear warm-up "
                        f"(default {t.warmup_fraction})")
    o.add_argument("--warmup-steps", type=int, default=None,
                   help="explicit warm-up steps instead of --warmup-fraction (runs before the "
                        "fraction used 200, even past the last step)")
    o.add_argument("--schedule", choices=SCHEDULES, default=t.schedule,
                   help="learning rate after the warm-up: cosine = decay to 10 %% over --epochs; "
                        "plateau = --lr, cut by sqrt(10) at each plateau down to 10 %%, early stop "
                        f"at the plateau there (default {t.schedule})")
    o.add_argument("--patience", type=int, default=t.patience,
                   help="epochs without a better val loss that make a plateau: stop (cosine, or "
                        f"plateau at the floor) or cut the learning rate (default {t.patience})")
    o.add_argument("--min-delta", type=float, default=t.min_delta,
                   help="relative val-loss gain over the best that resets the patience "
                        f"(default {t.min_delta})")
    o.add_argument("--grad-clip", type=float, default=t.grad_clip,
                   help=f"clip the global gradient norm to this value (default {t.grad_clip})")
    o.add_argument("--max-train-flows", type=int, default=None,
                   help="use a seeded random subset of at most this many training flows (default: all)")
    o.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="auto = CUDA (bf16 autocast) when available, else CPU (default auto)")
    o.add_argument("--compile", action="store_true", help="torch.compile the model (slower start, faster steps)")
    o.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch (default: PyTorch's choice)")
    o.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.pt")
    return p


def model_config_from_args(args: argparse.Namespace) -> ModelConfig:
    return ModelConfig(max_packets=args.max_packets, d_model=args.d_model, n_layers=args.n_layers,
                       n_heads=args.n_heads, sigma=args.sigma, lambda_disc=args.lambda_disc,
                       ot=args.ot, ot_reg=args.ot_reg, causal=not args.full_attention,
                       packets_see_flow=args.packets_see_flow)


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = model_config_from_args(args)
    opts = TrainOptions(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                        weight_decay=args.weight_decay, warmup_fraction=args.warmup_fraction,
                        warmup_steps=args.warmup_steps, schedule=args.schedule,
                        patience=args.patience, min_delta=args.min_delta, grad_clip=args.grad_clip,
                        seed=args.seed, device=args.device, compile=args.compile)
    resolve_device(opts.device)  # fail before loading data
    splits = load_splits(args.splits)
    ds = load_dataset(args.data)
    train_ids = splits["train"]
    if args.max_train_flows is not None and len(train_ids) > args.max_train_flows:
        rng = np.random.default_rng(args.seed)
        train_ids = np.sort(rng.choice(train_ids, args.max_train_flows, replace=False))
    for name, ids in (("train", train_ids), ("val", splits["val"])):
        if len(ids) and ids.max() >= ds.n_flows:
            raise JanusError(f"{args.splits}: {name} flow id {ids.max()} >= {ds.n_flows} flows of "
                             f"{args.data}; the splits belong to another dataset")
    if args.resume:
        stats = FeatureStats.from_state(load_checkpoint(args.out / "last.pt")["feature_stats"])
    else:
        stats = FeatureStats.fit(ds, train_ids, cfg.max_packets)
    train = stats.prepare(ds, train_ids, cfg.max_packets)
    val = stats.prepare(ds, splits["val"], cfg.max_packets)
    # Once per run (it hashes the inputs): the options, software and files behind the model.
    prov = provenance.collect(
        config={k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        inputs=[Path(args.data) / PACKETS_FILE, Path(args.data) / FEATURES_FILE, args.splits])
    summary = fit(train, val, stats, cfg, opts, args.out, resume=args.resume, provenance=prov)
    log.info("done: best epoch %d of %d (%s), val loss %.4f, %.0f train flows/s -> %s",
             summary["best_epoch"], summary["epochs"],
             f"early stop at {summary['stop_epoch']}" if summary["early_stopped"] else "no early stop",
             summary["best_val"], summary["flows_per_s"], args.out / "model.pt")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(build_parser, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
