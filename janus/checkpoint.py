"""Checkpoints: everything needed to rebuild a run, loadable with ``weights_only=True``.

A checkpoint is a dict ``{model, optimizer, config, epoch, seed, feature_stats,
janus_version}`` plus, for resuming, ``train_state`` (plain numbers and lists). ``config``
is :meth:`ModelConfig.to_dict` (a plain dict); ``feature_stats`` is
:meth:`FeatureStats.to_state` (tensors, strings). Files are written atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from . import __version__
from .data import FeatureStats
from .errors import JanusError
from .io import atomic_path
from .model import JanusNet, ModelConfig

REQUIRED_KEYS = ("model", "optimizer", "config", "epoch", "seed", "feature_stats", "janus_version")


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module under ``torch.compile`` (whose state dict keys carry no ``_orig_mod.``)."""
    return getattr(model, "_orig_mod", model)


def save_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    config: ModelConfig,
    epoch: int,
    seed: int,
    feature_stats: FeatureStats,
    train_state: dict[str, Any] | None = None,
) -> None:
    """Write a checkpoint atomically (tensors moved to CPU so it loads anywhere)."""
    ckpt = {
        "model": {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else {},
        "config": config.to_dict(),
        "epoch": int(epoch),
        "seed": int(seed),
        "feature_stats": feature_stats.to_state(),
        "janus_version": __version__,
        "train_state": train_state or {},
    }
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(weights_only=True)`` onto the CPU and check its keys."""
    path = Path(path)
    if not path.is_file():
        raise JanusError(f"{path}: checkpoint not found; run 'janus train' first")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and unpickling errors all mean the same to the user
        raise JanusError(f"{path}: not a readable JANUS checkpoint ({exc})") from exc
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise JanusError(f"{path}: checkpoint lacks keys {missing}")
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any]) -> tuple[JanusNet, ModelConfig, FeatureStats]:
    """Rebuild the network (eval mode, CPU) and its input statistics from a loaded checkpoint."""
    cfg = ModelConfig.from_dict(dict(ckpt["config"]))
    model = JanusNet(cfg)
    model.load_state_dict(ckpt["model"])
    model.eval()
    return model, cfg, FeatureStats.from_state(ckpt["feature_stats"])
