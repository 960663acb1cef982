"""Checkpoints: everything needed to rebuild a run, loadable with ``weights_only=True``.

A checkpoint is a dict ``{model, optimizer, config, epoch, seed, feature_stats,
janus_version, format, finished, provenance}`` plus, for resuming, ``train_state`` (plain
numbers and lists); ``provenance`` is :func:`janus.provenance.collect` of the run (``{}`` in
checkpoints written before it existed). ``config`` is :meth:`ModelConfig.to_dict` (a plain
dict); ``feature_stats`` is :meth:`FeatureStats.to_state` (tensors, strings). Files are written atomically.

``finished`` says whether the training run that wrote the file reached its end (early stop
or the last epoch): ``janus train`` writes ``model.pt`` with ``finished=False`` whenever the
validation loss improves and rewrites it with ``finished=True`` (:func:`mark_finished`)
when its loop ends, so a run folder left by a killed ``janus train`` is never scored.
Checkpoints of format 1 (before the field existed) cannot say whether their training
finished: :func:`load_checkpoint` reads them, but refuses them where a finished training is
required, asking for a retrain -- a guess of "finished" could score a half-trained model.

Every way a file can fail to be a checkpoint (not a zip archive, truncated, Python objects
that ``weights_only`` refuses, a newer format, a config or state dict that does not fit this
JANUS) is a one-line :class:`JanusError` naming the file.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from janus import __version__
from janus.errors import JanusError
from janus.io import atomic_path
from janus.model.data import FeatureStats
from janus.model.network import JanusNet, ModelConfig

#: Layout version of the checkpoint dict; 1 = before ``format``/``finished`` existed.
FORMAT = 2
REQUIRED_KEYS = ("model", "optimizer", "config", "epoch", "seed", "feature_stats",
                 "janus_version", "format", "finished")
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save has written zip archives since torch 1.6


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
    finished: bool = False,
    provenance: dict[str, Any] | None = None,
) -> None:
    """Write a checkpoint atomically (tensors moved to CPU so it loads anywhere).

    ``finished``: the training run has ended (see the module docstring). ``provenance``:
    :func:`janus.provenance.collect` of the run (git commit, versions, option hash, input
    hashes), stored as plain data under ``"provenance"`` (``{}`` when not given).
    """
    ckpt = {
        "model": {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else {},
        "config": config.to_dict(),
        "epoch": int(epoch),
        "seed": int(seed),
        "feature_stats": feature_stats.to_state(),
        "janus_version": __version__,
        "train_state": train_state or {},
        "format": FORMAT,
        "finished": bool(finished),
        "provenance": dict(provenance or {}),
    }
    _write(path, ckpt)


def _write(path: str | Path, ckpt: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)


def mark_finished(path: str | Path) -> None:
    """Rewrite the checkpoint at ``path`` (same weights and state) with ``finished=True``,
    atomically: the last act of a training run that reached its end."""
    path = Path(path)
    if not path.is_file():
        raise JanusError(f"{path}: not written: no epoch reached a finite validation loss; "
                         "check the dataset for extreme values or lower --lr")
    ckpt = load_checkpoint(path)
    ckpt["finished"] = True
    ckpt["format"] = FORMAT
    _write(path, ckpt)


def _one_line(exc: BaseException, limit: int = 160) -> str:
    """The first sentence of an exception message, on one line."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    text = " ".join(text.split())
    return (text[:limit] + "...") if len(text) > limit else (text or type(exc).__name__)


def _read(path: Path) -> Any:
    """``torch.load(weights_only=True)`` with every failure turned into one line."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    size = path.stat().st_size
    if head != _ZIP_MAGIC:
        raise JanusError(f"{path}: not a readable JANUS checkpoint: {size} bytes that are not a zip "
                         f"archive as torch.save writes (starts with {head!r}); point at "
                         "RUN_DIR/model.pt from 'janus train'")
    if not zipfile.is_zipfile(path):
        raise JanusError(f"{path}: truncated or corrupt checkpoint ({size} bytes, no zip "
                         "central directory): the copy is incomplete or the writer was "
                         "interrupted; copy it again or rerun 'janus train'")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL (\S+)", str(exc))
        what = f" ({found.group(1)})" if found else ""
        raise JanusError(
            f"{path}: refused for safety: the file holds Python objects or code{what}, not "
            "only plain tensors and numbers as a JANUS checkpoint does; it was not written "
            "by 'janus train' -- do not load files you did not make") from exc
    except Exception as exc:  # zip members, storages: all mean a damaged file to the user
        raise JanusError(f"{path}: corrupt checkpoint ({_one_line(exc)}); copy it again or "
                         "rerun 'janus train'") from exc


def load_checkpoint(path: str | Path, require_finished: bool = False) -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(weights_only=True)`` onto the CPU and check it.

    Checks the keys, the format version, that the config is exactly this JANUS's
    :class:`ModelConfig` and that the state dict fits the network it describes. With
    ``require_finished`` a checkpoint whose training did not finish (or that predates the
    ``finished`` field) is refused: what ``janus score`` and other consumers of a trained
    model ask for. A format-1 checkpoint loads with ``finished=False`` otherwise.
    """
    path = Path(path)
    if not path.is_file():
        raise JanusError(f"{path}: checkpoint not found; run 'janus train' first")
    ckpt = _read(path)
    if not isinstance(ckpt, dict):
        raise JanusError(f"{path}: not a JANUS checkpoint (holds a {type(ckpt).__name__}, not "
                         "a dict)")
    fmt = ckpt.get("format", 1)
    if not isinstance(fmt, int) or fmt > FORMAT:
        raise JanusError(f"{path}: checkpoint format {fmt!r} is newer than this JANUS "
                         f"{__version__} reads (up to {FORMAT}; written by JANUS "
                         f"{ckpt.get('janus_version')!r}); upgrade janus or retrain")
    if fmt == 1:
        ckpt = {**ckpt, "format": 1, "finished": False}
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise JanusError(f"{path}: checkpoint lacks keys {missing}; not written by "
                         "'janus train'")
    _check_fits(path, ckpt)
    if require_finished and ckpt["finished"] is not True:
        if fmt == 1:
            raise JanusError(f"{path}: written by JANUS {ckpt['janus_version']!r}, before "
                             "checkpoints recorded whether training finished; rerun janus "
                             "train")
        raise JanusError(f"{path}: training of {path.parent} did not finish (killed?); rerun "
                         "janus train (or janus train --resume)")
    return ckpt


def _config(path: Path, config: Any, version: Any) -> ModelConfig:
    """The :class:`ModelConfig` of a checkpoint; its keys must be exactly this JANUS's."""
    if not isinstance(config, dict):
        raise JanusError(f"{path}: checkpoint config is a {type(config).__name__}, not a dict")
    known = [f.name for f in fields(ModelConfig)]
    unknown = sorted(set(config) - set(known))
    absent = [k for k in known if k not in config]
    if unknown or absent:
        raise JanusError(f"{path}: checkpoint config does not match this JANUS {__version__} "
                         f"(unknown keys {unknown}, missing keys {absent}); it was written by "
                         f"JANUS {version!r} -- retrain the model")
    try:
        return ModelConfig.from_dict(dict(config))
    except (TypeError, ValueError) as exc:
        raise JanusError(f"{path}: checkpoint config is invalid ({_one_line(exc)}); retrain "
                         "the model") from exc


def _check_fits(path: Path, ckpt: dict[str, Any]) -> None:
    """The state dict holds exactly the tensors, of the shapes, that ``config`` builds, and
    the input statistics are complete."""
    cfg = _config(path, ckpt["config"], ckpt["janus_version"])
    state = ckpt["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise JanusError(f"{path}: checkpoint 'model' is not a dict of tensors")
    try:
        with torch.device("meta"):  # shapes only: no memory, no initialisation
            net = JanusNet(cfg)
    except (RuntimeError, NotImplementedError):  # an op in __init__ that meta lacks
        net = JanusNet(cfg)
    expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    absent = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} vs {shape}" for k, shape in expected.items()
             if k in state and tuple(state[k].shape) != shape]
    if absent or extra or wrong:
        parts = [f"{label} {items[:3]}{' ...' if len(items) > 3 else ''}"
                 for label, items in (("missing", absent), ("unexpected", extra),
                                      ("shape (checkpoint vs config)", wrong)) if items]
        raise JanusError(f"{path}: the weights do not fit the checkpoint's own config "
                         f"({'; '.join(parts)}); the file is damaged or from an incompatible "
                         "JANUS -- retrain the model")
    try:
        FeatureStats.from_state(ckpt["feature_stats"])
    except (KeyError, TypeError, AttributeError) as exc:
        raise JanusError(f"{path}: checkpoint feature_stats are incomplete ({_one_line(exc)}); "
                         "retrain the model") from exc


def model_from_checkpoint(ckpt: dict[str, Any]) -> tuple[JanusNet, ModelConfig, FeatureStats]:
    """Rebuild the network (eval mode, CPU) and its input statistics from a loaded checkpoint
    (from :func:`load_checkpoint`, which has checked that the weights fit the config)."""
    cfg = ModelConfig.from_dict(dict(ckpt["config"]))
    model = JanusNet(cfg)
    model.load_state_dict(ckpt["model"])
    model.eval()
    return model, cfg, FeatureStats.from_state(ckpt["feature_stats"])
