"""Provenance of a result: the code, the software, the config and the input files behind it.

:func:`collect` returns a plain dict (strings, ints, lists: JSON and ``torch.load(
weights_only=True)`` safe) that result tables print in their footer
(:mod:`janus.evaluation.report`), checkpoints store under ``"provenance"``
(:mod:`janus.model.checkpoint`) and a model folder can write as ``provenance.json``
(:func:`write`). Nothing here fails for want of git, a package or an input: a missing piece is
``"unknown"`` (or ``None`` for a package that is not installed), never an exception.

Input files are hashed by streaming (1 MiB reads); a file larger than ``hash_limit`` bytes
(default :data:`HASH_LIMIT`, 1 GiB: ~1-2 s of SHA-256 on one core) is recorded by size and
modification time only, with ``"sha256": None`` and ``"hashed": false`` saying so.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from janus import __version__
from janus.workflow_config import canonical_json

#: Distributions whose versions are recorded (``None`` where one is not installed).
DEPENDENCIES = ("torch", "numpy", "scikit-learn", "scipy", "polars", "pyarrow", "numba",
                "zuko", "snakemake")
#: Files larger than this (bytes) are recorded by size and mtime, not hashed.
HASH_LIMIT = 1 << 30
#: Layout version of the dict.
FORMAT = 1
_CHUNK = 1 << 20
_UNKNOWN = "unknown"


def git_commit(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """``{"commit": SHA or "unknown", "dirty": bool or None}`` of the git checkout holding
    ``path`` (default: the janus package's own source). ``dirty``: tracked files differ from
    the commit (untracked files are not counted). Never raises: no git, no checkout or a
    slow git give ``"unknown"``."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    if where.is_file():
        where = where.parent
    try:
        head = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"],
                              capture_output=True, text=True, timeout=10, check=False)
        if head.returncode != 0:
            return {"commit": _UNKNOWN, "dirty": None}
        status = subprocess.run(["git", "-C", str(where), "status", "--porcelain",
                                 "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return {"commit": _UNKNOWN, "dirty": None}
    dirty = bool(status.stdout.strip()) if status.returncode == 0 else None
    return {"commit": head.stdout.strip() or _UNKNOWN, "dirty": dirty}


def versions(names: Iterable[str] = DEPENDENCIES) -> dict[str, str | None]:
    """Installed version of each distribution (from its metadata: nothing is imported)."""
    found: dict[str, str | None] = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def config_sha256(config: Mapping[str, Any]) -> str:
    """SHA-256 (64 hex digits) of the canonical JSON (sorted keys, no spaces) of ``config``."""
    return hashlib.sha256(canonical_json(dict(config)).encode()).hexdigest()


def file_record(path: str | os.PathLike, hash_limit: int = HASH_LIMIT) -> dict[str, Any]:
    """``{"path", "size", "mtime", "sha256", "hashed"}`` of one file; ``size`` in bytes,
    ``mtime`` in UTC ISO-8601. A file over ``hash_limit`` bytes is not read (``sha256`` None,
    ``hashed`` false); a missing file has ``size`` None."""
    path = Path(path)
    record: dict[str, Any] = {"path": str(path), "size": None, "mtime": None, "sha256": None,
                              "hashed": False}
    try:
        st = path.stat()
    except OSError:
        return record
    record["size"] = st.st_size
    record["mtime"] = datetime.fromtimestamp(st.st_mtime, timezone.utc).isoformat(
        timespec="seconds")
    if st.st_size > hash_limit or not path.is_file():
        return record
    digest = hashlib.sha256()
    try:
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(_CHUNK), b""):
                digest.update(chunk)
    except OSError:
        return record
    record["sha256"] = digest.hexdigest()
    record["hashed"] = True
    return record


def inputs_digest(records: Iterable[Mapping[str, Any]]) -> str:
    """One SHA-256 over the (path, size, sha256) of every input record, in the given order:
    equal inputs give equal digests (a footer prints this instead of every file)."""
    digest = hashlib.sha256()
    for r in records:
        digest.update(f"{r['path']}\0{r['size']}\0{r['sha256']}\n".encode())
    return digest.hexdigest()


def collect(config: Mapping[str, Any] | None = None,
            inputs: Iterable[str | os.PathLike] = (),
            hash_limit: int = HASH_LIMIT) -> dict[str, Any]:
    """The provenance dict of a result made from ``inputs`` under ``config`` (a step's
    resolved options, or the workflow's config).

    Keys: ``format``, ``janus_version``, ``git_commit``, ``git_dirty``, ``python``,
    ``platform``, ``dependencies`` (name -> version or None), ``config_sha256`` (None without
    a config), ``inputs`` (:func:`file_record` each, in the given order), ``inputs_sha256``
    (:func:`inputs_digest`), ``created`` (UTC ISO-8601).
    """
    git = git_commit()
    records = [file_record(p, hash_limit) for p in inputs]
    return {
        "format": FORMAT,
        "janus_version": __version__,
        "git_commit": git["commit"],
        "git_dirty": git["dirty"],
        "python": platform.python_version(),
        "platform": f"{platform.system()}-{platform.machine()}",
        "dependencies": versions(),
        "config_sha256": config_sha256(config) if config is not None else None,
        "inputs": records,
        "inputs_sha256": inputs_digest(records),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def footer_lines(prov: Mapping[str, Any]) -> list[str]:
    """Markdown list items of a table footer: code, software, config and inputs."""
    deps = ", ".join(f"{k} {v}" for k, v in prov["dependencies"].items() if v is not None)
    dirty = " (uncommitted changes)" if prov.get("git_dirty") else ""
    n = len(prov["inputs"])
    total = sum(r["size"] or 0 for r in prov["inputs"])
    unhashed = sum(not r["hashed"] for r in prov["inputs"])
    skipped = f"; {unhashed} not hashed (missing or over the size cap)" if unhashed else ""
    return [
        f"- git commit: `{prov['git_commit']}`{dirty}",
        (f"- software: janus {prov['janus_version']}, python {prov['python']} "
         f"({prov['platform']}); {deps}"),
        f"- options sha256: `{prov['config_sha256'] or 'n/a'}` (the step's resolved options)",
        (f"- inputs: {n} files, {total:,} bytes, sha256 of their (path, size, sha256) list: "
         f"`{prov['inputs_sha256']}`{skipped}"),
    ]


def write(path: str | os.PathLike, prov: Mapping[str, Any]) -> None:
    """Write ``prov`` as JSON, atomically (e.g. ``provenance.json`` of a model folder)."""
    from janus.io import write_json

    write_json(Path(path), dict(prov))

