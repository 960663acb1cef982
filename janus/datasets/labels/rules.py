"""Rule labels: attacker addresses with a time window, capture folder, capture file glob.

Rules are coarse, so each reports what it touched: the number of flows per attacker spec,
the class found for every folder, the class of every capture file.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import PurePath

import numpy as np
import polars as pl

from janus.datasets.labels.names import normalise_label
from janus.errors import ConfigError, JanusError

#: Class given by an attacker rule that names none.
DEFAULT_ATTACK_CLASS = "attack"


@dataclass(frozen=True)
class AttackerRule:
    """Flows from or to ``network`` that overlap ``[start, end]`` are attacks of ``attack``.

    A rule that names no class (``named=False``, class :data:`DEFAULT_ATTACK_CLASS`) says
    only *attack*: the labels step keeps the class another source (a CSV) gives its flows.
    """

    spec: str
    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    attack: str  # clean class name
    start: float | None  # Unix seconds (UTC); None = open
    end: float | None
    named: bool = True  # the spec names the class


def _iso_utc(text: str, spec: str) -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ConfigError(f"attacker rule {spec!r}: {text!r} is not an ISO-8601 time "
                          "(e.g. 2017-07-07T18:56:00Z)") from exc
    if when.tzinfo is None:  # documented: naive times are UTC
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def parse_attacker(spec: str) -> AttackerRule:
    """Parse ``IP[=class][@START,END]``: IP may be a CIDR network; times are ISO-8601, UTC if
    naive, either may be empty for an open end (``@,2018-12-01T11:00``)."""
    body, _, window = spec.partition("@")
    ip_text, has_class, cls = body.partition("=")
    try:
        network = ipaddress.ip_network(ip_text.strip(), strict=False)
    except ValueError as exc:
        raise ConfigError(f"attacker rule {spec!r}: {ip_text!r} is not an IP address or "
                          "network; expected IP[=class][@START,END]") from exc
    named = bool(has_class and cls.strip())
    try:
        label, attack = normalise_label(cls) if named else (1, DEFAULT_ATTACK_CLASS)
    except JanusError as exc:  # a class of punctuation only
        raise ConfigError(f"attacker rule {spec!r}: class {cls!r} is not a class name") from exc
    if label != 1:
        raise ConfigError(f"attacker rule {spec!r}: class {cls!r} is not an attack class")
    start = end = None
    if window:
        if window.count(",") != 1:
            raise ConfigError(f"attacker rule {spec!r}: window {window!r} must be START,END")
        a, b = window.split(",")
        start, end = _iso_utc(a, spec), _iso_utc(b, spec)
        if start is not None and end is not None and end < start:
            raise ConfigError(f"attacker rule {spec!r}: window ends before it starts")
    return AttackerRule(spec, network, attack, start, end, named)


def apply_attacker_rules(flows: pl.DataFrame, rules: Sequence[AttackerRule]
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, int]]:
    """Which flows a rule applies to (bool ``(N,)``), their attack class (object ``(N,)``,
    ``None`` elsewhere) and whether the rule named that class (bool ``(N,)``); the first
    matching rule wins. Also returns the number of flows each rule labelled.

    ``flows``: src_ip, dst_ip (text), start_time, end_time (Unix seconds).
    """
    n = flows.height
    out = np.full(n, None, dtype=object)
    taken = np.zeros(n, bool)
    named = np.zeros(n, bool)
    counts: dict[str, int] = {}
    if not rules:
        return taken, out, named, counts
    addresses = pl.concat([flows["src_ip"], flows["dst_ip"]]).unique().drop_nulls().to_list()
    parsed = {}
    for text in addresses:
        try:
            parsed[text] = ipaddress.ip_address(text)
        except ValueError:
            continue
    start = flows["start_time"].to_numpy()
    end = flows["end_time"].to_numpy()
    for rule in rules:
        inside = [t for t, ip in parsed.items() if ip.version == rule.network.version
                  and ip in rule.network]
        hit = (flows["src_ip"].is_in(inside) | flows["dst_ip"].is_in(inside)).to_numpy()
        if rule.start is not None:
            hit &= end >= rule.start
        if rule.end is not None:
            hit &= start <= rule.end
        new = hit & ~taken
        out[new] = rule.attack
        named[new] = rule.named
        taken |= new
        counts[rule.spec] = int(new.sum())
    return taken, out, named, counts


def parse_file_classes(file_classes: Mapping[str, str] | Iterable[str | tuple[str, str]] | None
                       ) -> list[tuple[str, str]]:
    """``"GLOB=CLASS"`` strings, ``(glob, class)`` pairs or a mapping -> ordered pairs."""
    if not file_classes:
        return []
    items = file_classes.items() if isinstance(file_classes, Mapping) else file_classes
    out = []
    for item in items:
        if isinstance(item, str):
            glob, sep, cls = item.rpartition("=")
            if not sep or not glob or not cls.strip():
                raise ConfigError(f"file class {item!r}: expected GLOB=CLASS, e.g. '*NonTor*=benign'")
            item = (glob, cls)
        out.append((str(item[0]), str(item[1])))
    return out


def file_rule_labels(source_files: pl.Series, file_classes: list[tuple[str, str]],
                     by_folder: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, str]]:
    """Labels from the capture file of each flow.

    Returns ``hit`` bool ``(N,)`` (a rule applied), ``label`` int8 ``(N,)``, ``attack``
    object ``(N,)`` and ``{glob match or folder name: class}`` for the report. File globs
    are tried first, in order (first match wins; :func:`fnmatch.fnmatchcase`, case-sensitive,
    against the whole path and against the file name). With ``by_folder`` a file no glob
    matched takes the normalised name of its parent folder (CICIoT2023 layout).
    """
    per_file: dict[str, tuple[int, str]] = {}
    report: dict[str, str] = {}
    for path in source_files.unique().drop_nulls().to_list():
        name = PurePath(path).name
        hit = next((cls for glob, cls in file_classes
                    if fnmatch.fnmatchcase(path, glob) or fnmatch.fnmatchcase(name, glob)), None)
        if hit is not None:
            try:
                per_file[path] = normalise_label(hit)
            except JanusError as exc:
                raise ConfigError(f"file class for {path}: {hit!r} is not a class name") from exc
            report[path] = per_file[path][1]
        elif by_folder and PurePath(path).parent.name:
            folder = PurePath(path).parent.name
            try:
                per_file[path] = normalise_label(folder)
            except JanusError as exc:
                raise JanusError(f"{path}: folder name {folder!r} is not a class name; give "
                                 "its files a --file-class") from exc
            report[folder] = per_file[path][1]
    hit = source_files.is_in(list(per_file)).fill_null(False).to_numpy()
    label = source_files.replace_strict({p: v[0] for p, v in per_file.items()}, default=-1,
                                        return_dtype=pl.Int8).to_numpy()
    attack = source_files.replace_strict({p: v[1] for p, v in per_file.items()}, default=None,
                                         return_dtype=pl.String).to_numpy()
    return hit, label, attack, dict(sorted(report.items()))
