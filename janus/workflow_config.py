"""Provenance helpers for the Snakemake workflow: a config hash and a code fingerprint.

The workflow (``workflow/rules/common.smk``) imports these to put provenance into rule
``params``; the values then reach the steps on the command line. Nothing in this module
reads Snakemake's ``config`` object or the ``snakemake`` global: callers pass plain dicts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from janus import __version__

#: Hex digits kept from a SHA-256; 12 (48 bits) keeps the collision odds among a lab's
#: configs negligible while staying short enough for a table footer.
HASH_DIGITS = 12


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace, so equal configs give equal text.

    Floats are written by ``repr`` (shortest round-trip form), so ``0.1`` and ``0.10`` in two
    YAML files hash the same, while ``1`` and ``1.0`` (int vs float) do not: the steps see
    them as different command-line text too.
    """
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def config_hash(config: Mapping[str, Any], digits: int = HASH_DIGITS) -> str:
    """The first ``digits`` hex digits of the SHA-256 of the canonical JSON of ``config``."""
    return hashlib.sha256(canonical_json(dict(config)).encode()).hexdigest()[:digits]


def code_fingerprint(package_dir: str | Path | None = None, digits: int = HASH_DIGITS) -> str:
    """``<version>+<hash>`` where the hash covers every ``*.py`` file of the package.

    Rules that put this into ``params`` rerun when any source file of ``janus`` changes
    (Snakemake cannot see edits inside an installed package). Files are hashed in sorted
    relative-path order with their paths, so a rename changes the fingerprint too.
    """
    root = Path(package_dir) if package_dir is not None else Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return f"{__version__}+{digest.hexdigest()[:digits]}"


def package_version(rerun_on_code_change: bool = False) -> str:
    """What rules put into ``params.janus``: the version, or the code fingerprint."""
    return code_fingerprint() if rerun_on_code_change else __version__
