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

Memory: flows.parquet is read :data:`CHUNK_FLOWS` flows at a time (twice for the CSV join,
once more to label and write), labels.parquet is written chunk by chunk and the CSVs block
by block, so only the CSV rows' compact index (:class:`join.CsvRows`) grows with the data,
and it grows with the CSV rows, not the flows.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
from tqdm import tqdm

from janus import contract, io
from janus.cli import run_main
from janus.datasets.labels import join
from janus.datasets.labels.cic_csv import CsvSummary, clip, iter_label_csv
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
_KEY_COLUMNS = _FLOW_COLUMNS[:-1]


#: Flows labelled at a time (each pass over flows.parquet reads chunks of this many).
CHUNK_FLOWS = 1 << 16


def _flow_count(data_dir: Path) -> tuple[Path, int]:
    """flows.parquet of ``data_dir`` and its row count (from the footer; nothing else read)."""
    import pyarrow.parquet as pq

    path = data_dir / contract.FLOWS_FILE
    if not path.is_file():
        raise JanusError(f"{path}: not found; run 'janus extract' for {data_dir} first")
    try:
        with pq.ParquetFile(path) as pf:
            missing = set(_FLOW_COLUMNS) - set(pf.schema_arrow.names)
            n = pf.metadata.num_rows
    except Exception as exc:  # pyarrow raises several types for a non-Parquet file
        raise JanusError(f"{path}: cannot read flows ({exc})") from exc
    if missing:
        raise JanusError(f"{path}: cannot read flows (no column(s) {sorted(missing)})")
    return path, n


def _flow_chunks(path: Path, columns: Sequence[str], chunk: int) -> Iterator[pl.DataFrame]:
    """``columns`` of flows.parquet, ``chunk`` flows at a time, flow_id checked to be
    ``arange(N)``."""
    first = 0
    cols = list(dict.fromkeys(["flow_id", *columns]))
    try:
        for table in io.iter_parquet_tables(path, cols, chunk):
            frame = pl.from_arrow(table)
            if not (frame["flow_id"].to_numpy() == np.arange(first, first + frame.height)).all():
                raise JanusError(f"{path}: flow_id is not arange(N); the file breaks the data "
                                 "contract")
            first += frame.height
            yield frame
    except (OSError, ValueError, pl.exceptions.PolarsError) as exc:
        raise JanusError(f"{path}: cannot read flows ({exc})") from exc


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


class CsvLabels:
    """The CSV join's per-flow labels, served chunk by chunk: matched rows sorted by flow."""

    def __init__(self, flow_id: np.ndarray, code: np.ndarray,
                 classes: list[tuple[int, str | None]]) -> None:
        order = np.argsort(flow_id, kind="stable")
        self.flow_id, self.code = flow_id[order], code[order]
        self.class_label = np.array([c[0] for c in classes], np.int8)
        self.class_attack = np.array([c[1] for c in classes], object)
        self.conflicts = {"benign_vs_attack": 0, "attack_vs_attack": 0}

    @property
    def flows_labelled(self) -> int:
        return int(np.unique(self.flow_id).size)

    def chunk(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``hit`` bool, ``label`` int8, ``attack`` object ``(hi - lo,)`` of flows
        ``lo..hi-1``; adds their conflicts to :attr:`conflicts`."""
        a, b = np.searchsorted(self.flow_id, [lo, hi])
        code = self.code[a:b]
        per_flow, conflicts = join.flow_labels_from_rows(pl.DataFrame({
            "flow_id": self.flow_id[a:b].astype(np.int64), "label": self.class_label[code],
            "attack": pl.Series(self.class_attack[code].tolist(), dtype=pl.String)}))
        for k, v in conflicts.items():
            self.conflicts[k] += v
        n = hi - lo
        hit = np.zeros(n, bool)
        label = np.full(n, -1, np.int8)
        attack = np.full(n, None, object)
        idx = per_flow["flow_id"].to_numpy() - lo
        hit[idx] = True
        label[idx] = per_flow["label"].to_numpy()
        attack[idx] = per_flow["attack"].to_numpy()
        return hit, label, attack


def _class_code(raw: str, code_of: dict[str, int], classes: list) -> int:
    if raw not in code_of:
        try:
            if len(raw) > MAX_LABEL_CHARS:
                raise JanusError("too long")
            classes.append(normalise_label(raw))
        except JanusError:  # no letter or digit, or pages of text: a damaged row
            classes.append((BAD_LABEL, None))
        code_of[raw] = len(classes) - 1
    return code_of[raw]


def read_csv_rows(paths: Sequence[Path], ips: join.IpIds, utc_offset_hours: float
                  ) -> tuple[join.CsvRows, list[dict], tuple | None]:
    """Every label CSV, block by block, into the compact :class:`join.CsvRows` (times moved
    to UTC = local - H). Returns the rows, the per-file report entries and ``(file, line,
    raw label)`` of the first row whose label is not a class name (None if none)."""
    builder = join.CsvRowsBuilder()
    classes: list[tuple[int, str | None]] = []
    code_of: dict[str, int] = {}
    files, first_bad = [], None
    for i, path in enumerate(tqdm(paths, desc="label CSVs", unit="file", disable=None)):
        summary = CsvSummary()
        n_rows = 0
        for block in iter_label_csv(path, summary):
            for raw in block["raw_label"].unique().to_list():
                _class_code(raw, code_of, classes)
            code = block["raw_label"].replace_strict(code_of, return_dtype=pl.Int16).to_numpy()
            if first_bad is None:
                bad = np.flatnonzero(np.array([c[0] for c in classes])[code] == BAD_LABEL)
                if bad.size:
                    first_bad = (i, block["line"][int(bad[0])], block["raw_label"][int(bad[0])])
            key, lo_ok = join.endpoint_keys(ips.add(block["src_ip"]), ips.add(block["dst_ip"]),
                                            block["src_port"], block["dst_port"], block["proto"])
            time = block["time"].to_numpy().astype(np.float64) - utc_offset_hours * 3600.0
            builder.add_block(key, time, code, i, block["ampm_free"].to_numpy(), lo_ok)
            n_rows += block.height
        builder.end_file(summary.twelve_hour_suspect)
        files.append({"path": str(path), "rows": summary.rows_total,
                      "blank_rows": summary.rows_blank,
                      "timestamp_format": summary.timestamp_format,
                      "twelve_hour_suspect": summary.twelve_hour_suspect})
        if summary.rows_total == 0:
            log.warning("%s: a header and no rows; it labels no flow", path)
        elif n_rows == 0:
            log.warning("%s: all %d rows are blank (no label); it labels no flow", path,
                        summary.rows_total)
        if summary.twelve_hour_suspect:
            log.warning("%s: d/m/y times with no AM/PM and no hour above 12; rows with hour "
                        "1..11 are also tried 12 h later", path)
    return builder.build(classes), files, first_bad


def _keyed_chunks(flows_path: Path, rows: join.CsvRows, ips: join.IpIds, chunk: int
                  ) -> Iterator[join.FlowChunk]:
    for frame in _flow_chunks(flows_path, _KEY_COLUMNS, chunk):
        key, _ = join.endpoint_keys(ips.lookup(frame["src_ip"]), ips.lookup(frame["dst_ip"]),
                                    frame["src_port"], frame["dst_port"], frame["proto"])
        yield join.key_chunk(rows, frame["flow_id"].to_numpy(), key,
                             frame["start_time"].to_numpy(), frame["end_time"].to_numpy())


def csv_labels(flows_path: Path, paths: Sequence[Path], *, time_offset: str | float,
               tolerance_s: float, utc_offset_hours: float, chunk: int = CHUNK_FLOWS,
               n_flows: int | None = None) -> tuple[CsvLabels, dict]:
    """Join label CSVs to the flows of ``flows_path``: the per-flow labels (served chunk by
    chunk, :class:`CsvLabels`) and the CSV part of the report (its ``conflicts`` filled in
    as the chunks are served).

    CSV times are read as the capture site's clock, moved to UTC by ``utc_offset_hours``
    (UTC = local - H), then by the residual ``time_offset`` (hours, CSV - flow start) that
    is detected (``auto``), skipped (``none``) or given. Two passes over the flows: the
    offset diagnostic (and each key's flow count), then the matching.
    """
    ips = join.IpIds()
    rows, files, first_bad = read_csv_rows(paths, ips, utc_offset_hours)
    diagnostic = join.OffsetDiagnostic(rows)
    for fc in _keyed_chunks(flows_path, rows, ips, chunk):
        diagnostic.add(fc)
    diag = diagnostic.result()
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
    rows.time -= applied * 3600.0

    label = rows.label
    n_rows = label.size
    n_bad = int((label == BAD_LABEL).sum())
    n_known = int((label >= 0).sum())
    if first_bad is not None:
        file, line, raw = first_bad
        log.warning("%s: line %d: label %s is not a class name; %d such rows are left out "
                    "(unmatched_reasons.bad_label)", paths[file], line, clip(raw), n_bad)
    matcher = join.Matcher(rows, n_flows if n_flows is not None else 2**31, tolerance_s)
    for fc in _keyed_chunks(flows_path, rows, ips, chunk):
        matcher.add(fc)
    flow_id, how = matcher.result()
    del matcher
    matched = flow_id >= 0
    missed = np.flatnonzero((label >= 0) & ~matched)
    key_first = np.searchsorted(rows.key, rows.key[missed], "left")
    reason = np.select(
        [np.isnan(rows.time[missed]), rows.key[missed].real == join.BAD_KEY,
         diagnostic.count[key_first] == 0],
        ["bad_timestamp", "bad_endpoint", "no_flow_with_5tuple"], "no_flow_near_time")
    reasons = _counts(reason)
    if n_rows > n_known + n_bad:
        reasons["unknown_label"] = n_rows - n_known - n_bad
    if n_bad:
        reasons["bad_label"] = n_bad
    per_file = np.bincount(rows.file[matched], minlength=len(files))
    for entry, n_matched in zip(files, per_file.tolist()):
        entry["rows_matched"] = n_matched
    result = CsvLabels(flow_id[matched], rows.code[matched], rows.classes)
    row_classes: dict[str, int] = {}
    for (_, attack), n_code in zip(rows.classes, np.bincount(rows.code,
                                                             minlength=len(rows.classes))):
        if attack is not None and n_code:
            row_classes[attack] = row_classes.get(attack, 0) + int(n_code)
    n_matched = int(matched.sum())
    report = {
        "files": files,
        "rows": n_rows,
        "rows_blank": sum(f["blank_rows"] for f in files),
        "rows_matched": n_matched,
        "rows_unmatched": n_rows - n_matched,
        "unmatched_reasons": reasons,
        "match_kinds": _counts(np.array(join.HOW, object)[how[matched]]),
        "row_classes": _sorted_counts(row_classes),
        "flows_labelled": result.flows_labelled,
        "conflicts": result.conflicts,
        "tolerance_s": tolerance_s,
        "utc_offset_hours": utc_offset_hours,
        "time_offset": {"mode": time_offset if isinstance(time_offset, str) else "fixed",
                        **diag, "applied_hours": applied},
    }
    log.info("CSV join: %d of %d rows matched %d flows; unmatched rows by reason: %s",
             report["rows_matched"], n_rows, report["flows_labelled"],
             report["unmatched_reasons"] or "none")
    return result, report


def _sorted_counts(counts: Mapping[str, int]) -> dict[str, int]:
    """Most common first, ties by name (the order of :func:`_counts`)."""
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _add_counts(total: dict[str, int], part: Mapping[str, int]) -> None:
    for k, v in part.items():
        total[k] = total.get(k, 0) + v


def merge_sources(n: int, sources: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
                  generic: Mapping[str, np.ndarray], order: Sequence[str],
                  default: tuple[int, str, str]
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict, dict]:
    """One chunk's labels from its sources in precedence ``order`` (the module docstring):
    ``label`` int8, ``attack`` and ``source`` object, ``taken`` bool ``(n,)``, and the
    chunk's ``overridden`` and ``unnamed_attack_class_from`` counts."""
    label = np.full(n, default[0], np.int8)
    attack = np.full(n, default[1], object)
    source = np.full(n, default[2], object)
    taken = np.zeros(n, bool)
    unnamed = np.zeros(n, bool)  # the winning source called the flow an attack, no class
    overridden: dict[str, int] = {}
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
    return label, attack, source, taken, overridden, class_from


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
    chunk: int = CHUNK_FLOWS,
) -> dict:
    """Label every flow of ``data_dir``; write labels.parquet and labels_report.json.

    See the module docstring for the sources and their precedence. Flows are read and
    labelled ``chunk`` at a time (labels.parquet gets one row group per chunk), so memory is
    one chunk plus the CSV rows' compact index, whatever the flow count. Returns the report
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
    if chunk < 1:
        raise ConfigError(f"chunk {chunk}: expected flows >= 1")
    time_offset = parse_time_offset(time_offset)
    rules = [a if isinstance(a, AttackerRule) else parse_attacker(a) for a in attackers]
    globs = parse_file_classes(file_classes)
    paths = _csv_paths(csv)
    flows_path, n = _flow_count(data_dir)

    report: dict = {"data": str(data_dir), "n_flows": n}
    csv_join = None
    if paths and n:
        csv_join, report["csv"] = csv_labels(
            flows_path, paths, time_offset=time_offset, tolerance_s=tolerance_s,
            utc_offset_hours=utc_offset_hours, chunk=chunk, n_flows=n)
    if rules:
        report["ip_rules"] = {r.spec: 0 for r in rules}
    if globs or by_folder:
        report["file_rules"] = {}
    order = [s for s in precedence if s == "csv" and csv_join is not None
             or s == "ip_rule" and rules or s == "file" and (globs or by_folder)]
    if not order:
        log.warning("no label source given (--csv, --attacker, --file-class, --by-folder): "
                    "every flow gets the default %r", default)
    defaults = (0, contract.BENIGN, "default") if default == contract.BENIGN \
        else (-1, contract.UNKNOWN, "none")
    labels = {"benign": 0, "attack": 0, "unknown": 0}
    classes: dict[str, int] = {}
    label_source: dict[str, int] = {}
    overridden: dict[str, int] = {}
    class_from: dict[str, int] = {}
    unlabelled = 0
    schema = pa.schema([(k, pa.type_for_alias(v)) for k, v in contract.LABEL_COLUMNS.items()])
    with io.parquet_writer(data_dir / contract.LABELS_FILE, schema) as write:
        for frame in _flow_chunks(flows_path, _FLOW_COLUMNS, chunk):
            lo = int(frame["flow_id"][0])
            m = frame.height
            sources: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
            generic = {name: np.zeros(m, bool) for name in SOURCES}  # attack, no class
            if csv_join is not None:
                sources["csv"] = csv_join.chunk(lo, lo + m)
            if rules:
                hit, att, named, counts = apply_attacker_rules(frame, rules)
                sources["ip_rule"] = (hit, np.where(hit, 1, -1).astype(np.int8), att)
                generic["ip_rule"] = hit & ~named
                _add_counts(report["ip_rules"], counts)
            if globs or by_folder:
                hit, lab, att, files = file_rule_labels(frame["source_file"], globs, by_folder)
                sources["file"] = (hit, lab, att)
                report["file_rules"].update(files)
            label, attack, source, taken, over, fill = merge_sources(m, sources, generic, order,
                                                                     defaults)
            _add_counts(overridden, over)
            _add_counts(class_from, fill)
            unlabelled += int((~taken).sum())
            for name, value in (("benign", 0), ("attack", 1), ("unknown", -1)):
                labels[name] += int((label == value).sum())
            _add_counts(classes, _counts(attack))
            _add_counts(label_source, _counts(source))
            write(pa.table({
                "flow_id": pa.array(frame["flow_id"].to_numpy().astype(np.int64)),
                "label": pa.array(label, pa.int8()),
                "attack": pa.array(attack.tolist(), pa.string()),
                "label_source": pa.array(source.tolist(), pa.string()),
            }, schema=schema))
        if "file_rules" in report:
            report["file_rules"] = dict(sorted(report["file_rules"].items()))
        pairs = [f"{name}_overridden_by_{winner}" for rank, name in enumerate(order)
                 for winner in order[:rank]]
        report.update({
            "precedence": order,
            "default": default,
            "flows_unlabelled": unlabelled,
            "labels": labels,
            "classes": _sorted_counts(classes),
            "label_source": _sorted_counts(label_source),
            "overridden": {k: overridden[k] for k in pairs if k in overridden},
            "unnamed_attack_class_from": {k: class_from[k] for k in order if k in class_from},
        })
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
