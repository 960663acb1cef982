"""The labels step: flows.parquet -> labels.parquet + labels_report.json.

Sources, each optional, and how a flow's label is chosen:

* ``csv`` -- CIC label CSVs joined on the canonical 5-tuple and the start time
  (:mod:`janus.datasets.labels.join`); a flow matched by benign and attack rows is an attack.
* ``ip_rule`` -- ``--attacker IP[=class][@START,END]``: flows from or to IP overlapping the
  window are attacks.
* ``file`` -- ``--file-class GLOB=CLASS`` (first match wins), then ``--by-folder``.

Rules are evaluated after the CSV join, and a flow takes the label of the first source in
the precedence that labels it: by default ``ip_rule, csv, file`` -- an attacker rule the
user wrote overrides the CSV (whose CICFlowMeter faults are known), and a whole-capture
file rule only fills in flows neither labelled. An attacker rule that names no class says
only *attack*: a flow it takes keeps the attack class of the next source in the precedence
that calls it an attack with a class (CICDDoS2019's ``--attacker 172.16.0.5`` keeps the
CSV's ``drdos_dns``, ``syn``, ...; label_source is then that source), and gets ``attack``
only where none does. Disagreements are counted in the report.
A flow no source labels gets ``default``: ``unknown`` -> label -1, class ``unknown``,
label_source ``none``; ``benign`` -> label 0, class ``benign``, label_source ``default``.
No flow is ever dropped: labels.parquet is row-aligned with flows.parquet.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
from tqdm import tqdm

from janus import contract, io
from janus.cli import run_main
from janus.datasets.labels import join
from janus.datasets.labels.cic_csv import clip, read_label_csv
from janus.datasets.labels.names import normalise_label
from janus.datasets.labels.rules import (
    AttackerRule,
    apply_attacker_rules,
    file_rule_labels,
    parse_attacker,
    parse_file_classes,
)
from janus.errors import ConfigError, JanusError

log = logging.getLogger("janus.datasets.labels")

LABELS_REPORT_FILE = contract.LABELS_REPORT_FILE
SOURCES = ("csv", "ip_rule", "file")
DEFAULT_PRECEDENCE = ("ip_rule", "csv", "file")
DEFAULT_TOLERANCE_S = 120.0
#: ``label`` of CSV rows whose label text has no letter or digit, or is longer than
#: :data:`MAX_LABEL_CHARS` (left out, counted).
BAD_LABEL = -2
MAX_LABEL_CHARS = 200
_FLOW_COLUMNS = ("flow_id", "src_ip", "dst_ip", "src_port", "dst_port", "proto",
                 "start_time", "end_time", "source_file")


def _read_flows(data_dir: Path) -> pl.DataFrame:
    path = data_dir / contract.FLOWS_FILE
    if not path.is_file():
        raise JanusError(f"{path}: not found; run 'janus extract' for {data_dir} first")
    try:
        flows = pl.read_parquet(path, columns=list(_FLOW_COLUMNS))
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise JanusError(f"{path}: cannot read flows ({exc})") from exc
    if not (flows["flow_id"].to_numpy() == np.arange(flows.height)).all():
        raise JanusError(f"{path}: flow_id is not arange(N); the file breaks the data contract")
    return flows


def _csv_paths(csv: Iterable[str | os.PathLike]) -> list[Path]:
    """Files as given; a folder stands for its ``*.csv`` files (any case), sorted."""
    out: list[Path] = []
    for item in csv:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() == ".csv")
            if not found:
                raise JanusError(f"{path}: folder holds no .csv file")
            out.extend(found)
        elif path.is_file():
            out.append(path)
        else:
            raise JanusError(f"{path}: label CSV not found")
    return out


def _counts(values: pl.Series | np.ndarray) -> dict[str, int]:
    """Value -> count, most common first, ties by name (vectorised; nulls left out)."""
    series = values if isinstance(values, pl.Series) else pl.Series(values.tolist(), dtype=pl.String)
    vc = series.drop_nulls().value_counts(name="n").sort(["n", series.name],
                                                         descending=[True, False])
    return dict(zip(vc[series.name].to_list(), vc["n"].to_list()))


def parse_time_offset(value: str | float | None) -> str | float:
    """``"auto"``, ``"none"`` or a number of hours (a number or its text)."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "none"):
        return "none"
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        hours = float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"time offset {value!r}: expected auto, none or a number of hours") \
            from exc
    if not math.isfinite(hours):
        raise ConfigError(f"time offset {value!r}: expected a finite number of hours")
    return hours


def csv_labels(flows: pl.DataFrame, paths: Sequence[Path], *, time_offset: str | float,
               tolerance_s: float, utc_offset_hours: float
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Join label CSVs to ``flows``: ``hit`` bool ``(N,)``, ``label`` int8 ``(N,)``,
    ``attack`` object ``(N,)`` and the CSV part of the report.

    CSV times are read as the capture site's clock, moved to UTC by ``utc_offset_hours``
    (UTC = local - H), then by the residual ``time_offset`` (hours, CSV - flow start) that
    is detected (``auto``), skipped (``none``) or given.
    """
    parts, files = [], []
    for i, path in enumerate(tqdm(paths, desc="label CSVs", unit="file", disable=None)):
        lc = read_label_csv(path)
        files.append({"path": str(path), "rows": lc.rows_total, "blank_rows": lc.rows_blank,
                      "timestamp_format": lc.timestamp_format,
                      "twelve_hour_suspect": lc.twelve_hour_suspect})
        if lc.rows_total == 0:
            log.warning("%s: a header and no rows; it labels no flow", path)
        elif lc.table.height == 0:
            log.warning("%s: all %d rows are blank (no label); it labels no flow", path,
                        lc.rows_total)
        if lc.twelve_hour_suspect:
            log.warning("%s: d/m/y times with no AM/PM and no hour above 12; rows with hour "
                        "1..11 are also tried 12 h later", path)
        parts.append(lc.table.with_columns(
            twelve_h=pl.col("ampm_free") & lc.twelve_hour_suspect, file=pl.lit(i)))
    rows = pl.concat(parts).with_row_index("row_id").with_columns(
        time=pl.col("time") - utc_offset_hours * 3600.0)
    raws = rows["raw_label"].unique().to_list()  # a few dozen distinct spellings
    names = []
    for raw in raws:
        try:
            if len(raw) > MAX_LABEL_CHARS:
                raise JanusError("too long")
            names.append(normalise_label(raw))
        except JanusError:  # no letter or digit, or pages of text: a damaged row
            names.append((BAD_LABEL, None))
    rows = rows.join(pl.DataFrame({
        "raw_label": pl.Series(raws, dtype=pl.String),
        "label": pl.Series([n[0] for n in names], dtype=pl.Int8),
        "attack": pl.Series([n[1] for n in names], dtype=pl.String),
    }), on="raw_label", how="left", maintain_order="left")
    ip_ids = join.ip_id_map(flows["src_ip"], flows["dst_ip"], rows["src_ip"], rows["dst_ip"])
    keyed_flows = join.with_key(flows, ip_ids)
    rows = join.with_key(rows, ip_ids)

    diag = join.detect_offset(rows, keyed_flows)
    trusted = (diag["rows_matched"] >= join.OFFSET_MIN_ROWS
               and diag["share"] >= join.OFFSET_MIN_SHARE)
    best = "none" if diag["detected_hours"] is None else f"{diag['detected_hours']:+.1f} h"
    if time_offset == "auto":
        applied = diag["detected_hours"] if trusted else 0.0
        if not trusted:
            log.warning("time offset: no half-hour offset explains most of the %d CSV rows with "
                        "a 5-tuple match (best %s, %.0f%%); applying none",
                        diag["rows_matched"], best, 100 * diag["share"])
    else:
        applied = 0.0 if time_offset == "none" else float(time_offset)
    log.info("time offset: CSV time - flow start = %s explains %.1f%% of %d CSV rows with a "
             "5-tuple match; applying %+.1f h (--time-offset %s)", best, 100 * diag["share"],
             diag["rows_matched"], applied, time_offset)
    rows = rows.with_columns(time=pl.col("time") - applied * 3600.0)

    bad = rows.filter(pl.col("label") == BAD_LABEL)
    if bad.height:
        first = bad.row(0, named=True)
        log.warning("%s: line %d: label %s is not a class name; %d such rows are left out "
                    "(unmatched_reasons.bad_label)", paths[first["file"]], first["line"],
                    clip(first["raw_label"]), bad.height)
    known = rows.filter(pl.col("label") >= 0)
    matched = join.match_rows(known, keyed_flows, tolerance_s).join(
        known.select("row_id", "label", "attack"), on="row_id")
    per_flow, conflicts = join.flow_labels_from_rows(
        matched.filter(pl.col("flow_id").is_not_null()))
    n = flows.height
    hit = np.zeros(n, bool)
    label = np.full(n, -1, np.int8)
    attack = np.full(n, None, object)
    idx = per_flow["flow_id"].to_numpy()
    hit[idx] = True
    label[idx] = per_flow["label"].to_numpy()
    attack[idx] = per_flow["attack"].to_numpy()

    per_file = (matched.filter(pl.col("flow_id").is_not_null()).join(
        rows.select("row_id", "file"), on="row_id").group_by("file").len())
    for i, n_matched in zip(per_file["file"].to_list(), per_file["len"].to_list()):
        files[i]["rows_matched"] = n_matched
    for entry in files:
        entry.setdefault("rows_matched", 0)
    reasons = _counts(matched["reason"])
    if rows.height > known.height + bad.height:
        reasons["unknown_label"] = rows.height - known.height - bad.height
    if bad.height:
        reasons["bad_label"] = bad.height
    report = {
        "files": files,
        "rows": rows.height,
        "rows_blank": sum(f["blank_rows"] for f in files),
        "rows_matched": int(matched["flow_id"].is_not_null().sum()),
        "rows_unmatched": rows.height - int(matched["flow_id"].is_not_null().sum()),
        "unmatched_reasons": reasons,
        "match_kinds": _counts(matched["how"]),
        "row_classes": _counts(rows["attack"]),
        "flows_labelled": int(hit.sum()),
        "conflicts": conflicts,
        "tolerance_s": tolerance_s,
        "utc_offset_hours": utc_offset_hours,
        "time_offset": {"mode": time_offset if isinstance(time_offset, str) else "fixed",
                        **diag, "applied_hours": applied},
    }
    log.info("CSV join: %d of %d rows matched %d flows; unmatched rows by reason: %s",
             report["rows_matched"], rows.height, report["flows_labelled"],
             report["unmatched_reasons"] or "none")
    return hit, label, attack, report


def label_dataset(
    data_dir: str | os.PathLike,
    *,
    csv: Iterable[str | os.PathLike] = (),
    attackers: Iterable[str | AttackerRule] = (),
    by_folder: bool = False,
    file_classes: Mapping[str, str] | Iterable[str | tuple[str, str]] | None = None,
    default: str = "unknown",
    time_offset: str | float | None = "auto",
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    utc_offset_hours: float = 0.0,
    precedence: Sequence[str] = DEFAULT_PRECEDENCE,
) -> dict:
    """Label every flow of ``data_dir``; write labels.parquet and labels_report.json.

    See the module docstring for the sources and their precedence. Returns the report
    (also written to ``data_dir/labels_report.json``).
    """
    data_dir = Path(data_dir)
    if default not in (contract.UNKNOWN, contract.BENIGN):
        raise ConfigError(f"default {default!r}: expected 'unknown' or 'benign'")
    if sorted(precedence) != sorted(SOURCES):
        raise ConfigError(f"precedence {list(precedence)}: expected an order of {list(SOURCES)}")
    if not 0 <= tolerance_s < math.inf:
        raise ConfigError(f"tolerance {tolerance_s}: expected seconds >= 0")
    if not math.isfinite(utc_offset_hours):
        raise ConfigError(f"UTC offset {utc_offset_hours}: expected a finite number of hours")
    time_offset = parse_time_offset(time_offset)
    rules = [a if isinstance(a, AttackerRule) else parse_attacker(a) for a in attackers]
    globs = parse_file_classes(file_classes)
    paths = _csv_paths(csv)
    flows = _read_flows(data_dir)
    n = flows.height

    report: dict = {"data": str(data_dir), "n_flows": n}
    sources: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    generic: dict[str, np.ndarray] = {}  # flows a source calls an attack without a class
    if paths and n:
        hit, lab, att, report["csv"] = csv_labels(
            flows, paths, time_offset=time_offset, tolerance_s=tolerance_s,
            utc_offset_hours=utc_offset_hours)
        sources["csv"] = (hit, lab, att)
    if rules:
        hit, att, named, report["ip_rules"] = apply_attacker_rules(flows, rules)
        sources["ip_rule"] = (hit, np.where(hit, 1, -1).astype(np.int8), att)
        generic["ip_rule"] = hit & ~named
    if globs or by_folder:
        hit, lab, att, report["file_rules"] = file_rule_labels(flows["source_file"], globs,
                                                               by_folder)
        sources["file"] = (hit, lab, att)
    if not sources:
        log.warning("no label source given (--csv, --attacker, --file-class, --by-folder): "
                    "every flow gets the default %r", default)

    d_label, d_attack, d_source = (0, contract.BENIGN, "default") if default == contract.BENIGN \
        else (-1, contract.UNKNOWN, "none")
    label = np.full(n, d_label, np.int8)
    attack = np.full(n, d_attack, object)
    source = np.full(n, d_source, object)
    taken = np.zeros(n, bool)
    unnamed = np.zeros(n, bool)  # the winning source called the flow an attack, no class
    order = [s for s in precedence if s in sources]
    for name in SOURCES:
        generic.setdefault(name, np.zeros(n, bool))
    overridden = {}
    for rank, name in enumerate(order):
        hit, lab, att = sources[name]
        new = hit & ~taken
        label[new], attack[new], source[new] = lab[new], att[new], name
        unnamed[new] = generic[name][new]
        for winner in order[:rank]:  # flows this source labelled differently from a winner
            w_hit, w_lab, w_att = sources[winner]
            # A class differs only where both sources name one.
            classes = (att != w_att) & ~generic[name] & ~generic[winner]
            differ = hit & w_hit & ((lab != w_lab) | classes)
            if differ.any():
                overridden[f"{name}_overridden_by_{winner}"] = int(differ.sum())
        taken |= hit
    class_from: dict[str, int] = {}
    for name in order:  # an unnamed attack takes the class of the next source naming one
        hit, lab, att = sources[name]
        fill = unnamed & hit & (lab == 1) & ~generic[name]
        if fill.any():
            attack[fill], source[fill] = att[fill], name
            unnamed &= ~fill
            class_from[name] = int(fill.sum())

    report.update({
        "precedence": order,
        "default": default,
        "flows_unlabelled": int((~taken).sum()),
        "labels": {"benign": int((label == 0).sum()), "attack": int((label == 1).sum()),
                   "unknown": int((label == -1).sum())},
        "classes": _counts(attack),
        "label_source": _counts(source),
        "overridden": overridden,
        "unnamed_attack_class_from": class_from,
    })
    table = pa.table({
        "flow_id": pa.array(np.arange(n, dtype=np.int64)),
        "label": pa.array(label, pa.int8()),
        "attack": pa.array(attack.tolist(), pa.string()),
        "label_source": pa.array(source.tolist(), pa.string()),
    })
    assert table.column_names == list(contract.LABEL_COLUMNS)
    io.write_parquet(data_dir / contract.LABELS_FILE, table)
    io.write_json(data_dir / LABELS_REPORT_FILE, report)
    log.info("%s: %d flows: %d benign, %d attack, %d unknown (%d labelled by no source)",
             data_dir, n, *report["labels"].values(), report["flows_unlabelled"])
    return report


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="janus labels",
        description="Label the flows of an extracted dataset (flows.parquet) from CIC label "
        "CSVs, attacker addresses, or capture file/folder names; writes labels.parquet "
        "(row-aligned with flows.parquet) and labels_report.json.",
    )
    p.add_argument("--data", required=True, metavar="DIR",
                   help="extracted dataset folder holding flows.parquet; outputs go here")
    p.add_argument("--csv", action="extend", nargs="+", default=[], metavar="CSV",
                   help="CIC label CSV(s) with Source/Destination IP/Port, Protocol, Timestamp, "
                   "Label (GeneratedLabelledFlows / TrafficLabelling); a folder means its *.csv")
    p.add_argument("--attacker", action="append", default=[], metavar="SPEC",
                   help="IP[=class][@START,END]: flows from/to IP (or CIDR network) overlapping "
                   "the ISO-8601 UTC window are attacks of class; without a class they keep "
                   "the attack class another source (a CSV) gives them, else 'attack'; "
                   "repeatable, first match wins")
    p.add_argument("--by-folder", action="store_true",
                   help="the parent folder of each capture file is its class (CICIoT2023 "
                   "layout; Benign_Final -> benign)")
    p.add_argument("--file-class", action="append", default=[], metavar="GLOB=CLASS",
                   help="capture files matching GLOB (fnmatch, case-sensitive, on the path or "
                   "file name) are CLASS; repeatable, first match wins, e.g. "
                   "'*NonTor*=benign' '*Tor*=tor'")
    p.add_argument("--default", choices=(contract.UNKNOWN, contract.BENIGN),
                   default=contract.UNKNOWN,
                   help="label of flows no source labels: unknown (-1, never evaluated) or "
                   "benign (default: %(default)s)")
    p.add_argument("--time-offset", default="auto", metavar="auto|none|HOURS",
                   help="CSV time minus flow start time, removed before the join: 'auto' "
                   "detects a half-hour multiple from 5-tuple matches, 'none' applies none, a "
                   "number applies that many hours (default: %(default)s)")
    p.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE_S, metavar="SECONDS",
                   help="largest |CSV time - flow start| of a match, seconds; also the slack "
                   "around a flow's span (default: %(default)s)")
    p.add_argument("--utc-offset-hours", type=float, default=0.0, metavar="H",
                   help="the CSV clock's offset from UTC, hours (CICIDS2017: -3); CSV times "
                   "become UTC = local - H (default: %(default)s)")
    p.add_argument("--precedence", default=",".join(DEFAULT_PRECEDENCE), metavar="LIST",
                   help="comma-separated order of csv, ip_rule, file: a flow takes the label of "
                   "the first source that labels it (default: %(default)s)")
    p.add_argument("--registry-rule", metavar="NAME",
                   help="also apply the labelling rule of registry dataset NAME (cicids2017, "
                   "cicddos2019, ...; janus/datasets/registry.py, $JANUS_DATASETS_FILE "
                   "overrides): its CSV globs are expanded under --registry-root")
    p.add_argument("--registry-root", metavar="DIR", default=".",
                   help="folder the dataset was downloaded to (default: %(default)s)")
    return p


def apply_registry_rule(args: argparse.Namespace) -> argparse.Namespace:
    """``args`` with the registry rule of ``args.registry_rule`` added: its CSVs (globs
    expanded under ``args.registry_root``), attacker and file rules after the given ones, its
    time options in place of the defaults."""
    from janus.datasets.registry import get_dataset

    rule = get_dataset(args.registry_rule).label_rule
    root = Path(args.registry_root)
    for pattern in rule.csv_globs:
        if not any(p.is_file() for p in root.glob(pattern)):
            raise JanusError(f"{root}: no file matches {pattern!r}, a label CSV of "
                             f"{args.registry_rule}'s registry rule; download it again "
                             "(janus download) or fix the registry (--registry FILE)")
    ruled = build_parser().parse_args(["--data", args.data, *rule.to_cli_args(root)])
    merged = argparse.Namespace(**vars(args))
    merged.csv = [*args.csv, *ruled.csv]
    merged.attacker = [*args.attacker, *ruled.attacker]
    merged.file_class = [*args.file_class, *ruled.file_class]
    merged.by_folder = args.by_folder or ruled.by_folder
    if rule.time_offset is not None:
        merged.time_offset = ruled.time_offset
    if rule.utc_offset_hours is not None:
        merged.utc_offset_hours = ruled.utc_offset_hours
    return merged


def run(args: argparse.Namespace) -> int:
    if args.registry_rule:
        args = apply_registry_rule(args)
    label_dataset(
        args.data, csv=args.csv, attackers=args.attacker, by_folder=args.by_folder,
        file_classes=args.file_class, default=args.default,
        time_offset=parse_time_offset(args.time_offset), tolerance_s=args.tolerance,
        utc_offset_hours=args.utc_offset_hours,
        precedence=[s.strip() for s in args.precedence.split(",") if s.strip()],
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(build_parser, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
