"""Deployable model folders: write one from a training run, read one back without running code.

A model folder (``results/models/<dataset>/seed<S>/`` in the workflow) holds:

* ``model.pt`` -- the checkpoint of ``janus train`` (a hard link where the file system allows,
  else a copy), read with ``torch.load(weights_only=True)``: tensors and numbers only;
* ``model.json`` -- the manifest: :data:`FORMAT`, the extraction parameters the model was
  trained with (``max_packets`` T, idle/active timeouts), the score options, provenance
  (JANUS version, config hash, training data, flow counts), the model's own test metrics, and
  the SHA-256 and size of ``model.pt``;
* ``aggregator.json`` -- what calibration changes: the fitted aggregator
  (:class:`janus.evaluation.aggregate.Aggregator`: columns, options, z-scoring, OAS precision),
  the benign scalars it was fitted on (sorted; any ``fpr=`` threshold is read from them), the
  thresholds ``p95``, ``p99`` and ``fpr`` (at ``target_fpr``, default 1 %) and where the
  benign flows came from;
* ``MODEL_CARD.md`` -- a short human-readable card.

Everything but the checkpoint is JSON, so loading a folder never executes code. A missing,
truncated, corrupt or foreign file is a one-line :class:`JanusError` naming it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from janus import __version__
from janus.contract import SCORE_COLUMNS
from janus.errors import JanusError

#: Manifest format tag; a folder with another tag is refused.
FORMAT = "janus-model/1"
MANIFEST_FILE = "model.json"
AGGREGATOR_FILE = "aggregator.json"
CHECKPOINT_FILE = "model.pt"
CARD_FILE = "MODEL_CARD.md"
FILES = (CHECKPOINT_FILE, MANIFEST_FILE, AGGREGATOR_FILE, CARD_FILE)
#: The scalar every deployed model alerts on (the workflow's JANUS scalar).
METHOD = "oas"
DEFAULT_TARGET_FPR = 0.01


# --------------------------------------------------------------------------- thresholds
def thresholds_from(benign: np.ndarray, target_fpr: float = DEFAULT_TARGET_FPR) -> dict[str, float]:
    """``p95``/``p99`` (benign percentiles, linear interpolation, as ``janus evaluate``) and
    ``fpr`` (the ``1 - target_fpr`` quantile) of the benign scalars ``(n,)``; an alert is
    ``score > threshold``, so about ``target_fpr`` of benign flows alert."""
    v = np.asarray(benign, dtype=np.float64)
    if v.size < 2:
        raise JanusError(f"thresholds need at least 2 benign flows, got {v.size}")
    if not 0 < target_fpr < 1:
        raise JanusError(f"target FPR must be in (0, 1), got {target_fpr}")
    return {"p95": float(np.percentile(v, 95)), "p99": float(np.percentile(v, 99)),
            "fpr": float(np.percentile(v, 100 * (1 - target_fpr))), "target_fpr": float(target_fpr)}


# --------------------------------------------------------------------------- aggregator <-> JSON
def _finite_or_none(obj: Any) -> Any:
    """JSON has no inf/NaN: such stats (a condition number of inf) become null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite_or_none(v) for v in obj]
    if isinstance(obj, np.generic):
        return _finite_or_none(obj.item())
    return obj


def aggregator_to_dict(agg) -> dict[str, Any]:
    """A fitted :class:`~janus.evaluation.aggregate.Aggregator` as plain JSON values (floats
    written by ``repr``, so they read back bit for bit)."""
    return {
        "method": agg.method, "columns": list(agg.columns), "options": asdict(agg.options),
        "keep": [int(k) for k in agg.keep], "offset": agg.offset.tolist(),
        "mean": agg.mean.tolist(), "std": agg.std.tolist(),
        "precision": None if agg.precision is None else agg.precision.tolist(),
        "location": None if agg.location is None else agg.location.tolist(),
        "stats": _finite_or_none(agg.stats),
    }


def aggregator_from_dict(d: Any, path: Path):
    """The :class:`~janus.evaluation.aggregate.Aggregator` of :func:`aggregator_to_dict`,
    every field checked (a wrong one names ``path`` and the key)."""
    from janus.evaluation.aggregate import METHODS, AggregateOptions, Aggregator

    def bad(key: str, why: str) -> JanusError:
        return JanusError(f"{path}: aggregator key {key!r} {why}; the file is damaged or not "
                          "written by JANUS -- rebuild the model folder")

    if not isinstance(d, dict):
        raise bad("aggregator", "is not an object")
    for key in ("method", "columns", "options", "keep", "offset", "mean", "std", "precision",
                "location"):
        if key not in d:
            raise bad(key, "is missing")
    if d["method"] not in METHODS or d["method"] == "maxz":
        raise bad("method", f"is {d['method']!r}, not a distance method of {list(METHODS)}")
    cols = d["columns"]
    if not isinstance(cols, list) or not cols or any(c not in SCORE_COLUMNS for c in cols):
        raise bad("columns", f"must list JANUS score columns, got {cols!r}")
    try:
        options = AggregateOptions(**d["options"])
    except (TypeError, JanusError) as exc:
        raise bad("options", f"is invalid ({exc})") from None

    def vector(key: str, n: int | None) -> np.ndarray:
        try:
            a = np.asarray(d[key], dtype=np.float64)
        except (TypeError, ValueError):
            raise bad(key, "is not a list of numbers") from None
        if a.ndim != 1 or (n is not None and a.shape[0] != n) or not np.isfinite(a).all():
            raise bad(key, f"must be {n} finite numbers, got shape {a.shape}")
        return a

    keep = vector("keep", None)
    if keep.size == 0 or (keep != np.round(keep)).any() or keep.min() < 0 or keep.max() >= len(cols):
        raise bad("keep", f"must index the {len(cols)} columns")
    k = keep.size
    std = vector("std", k)
    if (std <= 0).any():
        raise bad("std", "must be positive")
    try:
        precision = np.asarray(d["precision"], dtype=np.float64)
    except (TypeError, ValueError):
        raise bad("precision", "is not a matrix of numbers") from None
    if precision.shape != (k, k) or not np.isfinite(precision).all():
        raise bad("precision", f"must be a finite {k} x {k} matrix, got shape {precision.shape}")
    return Aggregator(method=d["method"], columns=tuple(cols), options=options,
                      keep=keep.astype(np.int64), offset=vector("offset", k),
                      mean=vector("mean", k), std=std, precision=precision,
                      location=vector("location", k), stats=dict(d.get("stats") or {}))


# --------------------------------------------------------------------------- files
def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def link_or_copy(src: Path, dst: Path) -> None:
    """``dst`` becomes the same bytes as ``src``: a hard link (no space) or, across file
    systems, an atomic copy."""
    from janus.io import atomic_path

    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)


def read_json(path: Path, what: str) -> dict[str, Any]:
    """A JSON object file, every failure one line naming ``path``."""
    if not path.is_file():
        raise JanusError(f"{path}: not found; {path.parent} is not a complete JANUS model folder "
                         f"(it needs {', '.join(FILES)}; build one with 'snakemake models')")
    try:
        obj = json.loads(path.read_text())
    except UnicodeDecodeError:
        raise JanusError(f"{path}: the {what} is not text (binary or damaged file)") from None
    except json.JSONDecodeError as exc:
        raise JanusError(f"{path}: the {what} is not valid JSON (line {exc.lineno}, column "
                         f"{exc.colno}: {exc.msg}); the file is truncated or damaged -- rebuild "
                         "the model folder") from None
    if not isinstance(obj, dict):
        raise JanusError(f"{path}: the {what} holds a JSON {type(obj).__name__}, not an object")
    return obj


@dataclass
class Calibration:
    """What ``aggregator.json`` holds: the aggregator, the benign scalars, the thresholds."""

    aggregator: Any  # janus.evaluation.aggregate.Aggregator
    benign_scores: np.ndarray  # float64 (n,), sorted: the aggregated benign scalars
    thresholds: dict[str, float]  # p95, p99, fpr, target_fpr
    source: dict[str, Any] = field(default_factory=dict)  # where the benign flows came from

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "aggregator": aggregator_to_dict(self.aggregator),
                "thresholds": self.thresholds, "benign_source": _finite_or_none(self.source),
                "benign_scores": np.sort(self.benign_scores).tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any], path: Path) -> Calibration:
        if d.get("format") != FORMAT:
            raise JanusError(f"{path}: format {d.get('format')!r} is not {FORMAT!r}; not a JANUS "
                             "model folder's aggregator, or from a newer JANUS")
        agg = aggregator_from_dict(d.get("aggregator"), path)
        thr = d.get("thresholds")
        need = ("p95", "p99", "fpr", "target_fpr")
        if not isinstance(thr, dict) or any(not isinstance(thr.get(k), int | float) for k in need):
            raise JanusError(f"{path}: 'thresholds' must hold numbers {list(need)}; rebuild the "
                             "model folder")
        try:
            benign = np.asarray(d.get("benign_scores"), dtype=np.float64)
        except (TypeError, ValueError):
            benign = np.zeros(0)
        if benign.ndim != 1 or benign.size < 2 or not np.isfinite(benign).all():
            raise JanusError(f"{path}: 'benign_scores' must be at least 2 finite numbers; "
                             "rebuild the model folder")
        return cls(aggregator=agg, benign_scores=np.sort(benign),
                   thresholds={k: float(thr[k]) for k in need}, source=d.get("benign_source") or {})


def write_folder(out: Path, checkpoint: Path, manifest: dict[str, Any], calibration: Calibration,
                 card: str) -> None:
    """Write a model folder: the checkpoint (link or copy), then ``aggregator.json``, the card
    and, last, ``model.json`` (with the checkpoint's SHA-256), each atomically. The manifest
    written last marks a complete folder."""
    from janus.io import write_json, write_text

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST_FILE).unlink(missing_ok=True)
    link_or_copy(Path(checkpoint), out / CHECKPOINT_FILE)
    write_json(out / AGGREGATOR_FILE, calibration.to_dict())
    write_text(out / CARD_FILE, card)
    ck = out / CHECKPOINT_FILE
    manifest = {**manifest, "format": FORMAT,
                "files": {CHECKPOINT_FILE: {"sha256": sha256_of(ck), "bytes": ck.stat().st_size}}}
    write_json(out / MANIFEST_FILE, _finite_or_none(manifest))


def read_manifest(folder: Path) -> dict[str, Any]:
    """``model.json`` of ``folder``, its format and keys checked, the checkpoint's checksum
    verified (a damaged or replaced ``model.pt`` is refused before torch reads it)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise JanusError(f"{folder}: not a folder; --model takes a model folder "
                         "(results/models/<dataset>/seed<S>/)")
    path = folder / MANIFEST_FILE
    m = read_json(path, "model manifest")
    if m.get("format") != FORMAT:
        raise JanusError(f"{path}: format {m.get('format')!r} is not {FORMAT!r}; not a JANUS "
                         "model folder, or one from a newer JANUS -- upgrade janus or rebuild it")
    for key in ("extraction", "score_options", "files"):
        if not isinstance(m.get(key), dict):
            raise JanusError(f"{path}: key {key!r} is missing; rebuild the model folder")
    ex = m["extraction"]
    if not isinstance(ex.get("max_packets"), int) or not isinstance(ex.get("idle_timeout_s"), int | float):
        raise JanusError(f"{path}: 'extraction' needs max_packets and idle_timeout_s; rebuild the "
                         "model folder")
    ck = folder / CHECKPOINT_FILE
    want = m["files"].get(CHECKPOINT_FILE) or {}
    if not ck.is_file():
        raise JanusError(f"{ck}: not found; the model folder {folder} is incomplete")
    size = ck.stat().st_size
    if want.get("bytes") != size:
        raise JanusError(f"{ck}: {size} bytes, but {MANIFEST_FILE} records {want.get('bytes')}; the "
                         "checkpoint is truncated or was replaced -- copy the folder again")
    if want.get("sha256") != sha256_of(ck):
        raise JanusError(f"{ck}: SHA-256 differs from the one in {MANIFEST_FILE}; the checkpoint is "
                         "damaged or was replaced -- copy the folder again")
    return m


def read_calibration(folder: Path) -> Calibration:
    path = Path(folder) / AGGREGATOR_FILE
    return Calibration.from_dict(read_json(path, "aggregator"), path)


def current_version() -> str:
    return __version__
