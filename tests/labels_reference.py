"""The in-memory labeller of janus 0.3.0 (whole CSVs, whole flow table, polars joins), kept
unchanged as the oracle of the streamed one: tests hold their labels.parquet and reports
equal. Copied from janus/datasets/labels/{step,join,cic_csv}.py at 0.3.0; not used by the
package."""

from __future__ import annotations

import ipaddress
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
from janus.datasets.labels.cic_csv import (
    MAX_FIELD_CHARS,
    LabelCsv,
    _header_indices,
    _parse_failure,
    check_text,
    clip,
    parse_timestamps,
)
from janus.datasets.labels.names import normalise_label
from janus.datasets.labels.rules import (
    AttackerRule,
    apply_attacker_rules,
    file_rule_labels,
    parse_attacker,
    parse_file_classes,
)
from janus.datasets.labels.step import (
    BAD_LABEL,
    DEFAULT_PRECEDENCE,
    DEFAULT_TOLERANCE_S,
    LABELS_REPORT_FILE,
    MAX_LABEL_CHARS,
    SOURCES,
    _csv_paths,
    parse_time_offset,
)
from janus.errors import ConfigError, JanusError

log = logging.getLogger("labels_reference")
_FLOW_COLUMNS = ("flow_id", "src_ip", "dst_ip", "src_port", "dst_port", "proto",
                 "start_time", "end_time", "source_file")

KEY = ("lo", "hi", "proto")
#: Offsets are searched on this grid (a whole number of half-hours covers every time zone
#: in use bar a handful of quarter-hour ones, and daylight-saving slips).
OFFSET_STEP_S = 1800.0
#: The offset is applied only if it explains at least this share of 5-tuple matches...
OFFSET_MIN_SHARE = 0.5
#: ...and at least this many CSV rows had a 5-tuple match at all.
OFFSET_MIN_ROWS = 5
#: Keys with more flows than this are left out of the diagnostic: each of their rows would
#: pair with every flow and drown the histogram in port-reuse noise.
OFFSET_MAX_FLOWS_PER_KEY = 4
#: Rows examined by the diagnostic at most (an even subsample beyond that).
OFFSET_MAX_ROWS = 200_000
HALF_DAY_S = 43200.0


def ip_id_map(*columns: pl.Series) -> dict[str, int]:
    """Raw address text -> dense id shared by every canonical spelling; invalid text is left out.

    Only distinct values go through :mod:`ipaddress` (thousands, not millions).
    """
    uniques = pl.concat([c.cast(pl.String) for c in columns]).drop_nulls().unique().to_list()
    canon_id: dict[str, int] = {}
    out: dict[str, int] = {}
    for text in uniques:
        try:
            canon = str(ipaddress.ip_address(text.strip()))
        except ValueError:
            continue
        out[text] = canon_id.setdefault(canon, len(canon_id))
    return out


def with_key(frame: pl.DataFrame, ip_ids: dict[str, int]) -> pl.DataFrame:
    """Add ``lo``, ``hi`` (Int64 endpoint codes ``ip_id * 65536 + port``, unordered) to ``frame``.

    ``frame`` needs src_ip, dst_ip, src_port, dst_port, proto; a null ``lo``/``hi`` marks an
    unparseable address or port.
    """
    def endpoint(ip: str, port: str) -> pl.Expr:
        ok = pl.col(port).is_between(0, 65535)
        ip_id = pl.col(ip).replace_strict(ip_ids, default=None, return_dtype=pl.Int64)
        return pl.when(ok).then(ip_id * 65536 + pl.col(port).cast(pl.Int64))

    return (
        frame.with_columns(_a=endpoint("src_ip", "src_port"), _b=endpoint("dst_ip", "dst_port"))
        .with_columns(lo=pl.min_horizontal("_a", "_b"), hi=pl.max_horizontal("_a", "_b"),
                      proto=pl.col("proto").cast(pl.Int64))
        .with_columns(
            lo=pl.when(pl.col("_a").is_not_null() & pl.col("_b").is_not_null()).then("lo"),
            hi=pl.when(pl.col("_a").is_not_null() & pl.col("_b").is_not_null()).then("hi"),
        )
        .drop("_a", "_b")
    )


def detect_offset(rows: pl.DataFrame, flows: pl.DataFrame) -> dict:
    """Histogram ``CSV time - flow start_time`` over 5-tuple matches, on a half-hour grid.

    ``rows``: row_id, lo, hi, proto, time (s), twelve_h (bool: also try time + 12 h).
    ``flows``: lo, hi, proto, start_time (s). Returns a JSON-able dict with
    ``rows_matched`` (rows with a 5-tuple match), ``detected_hours`` (the mode, or None),
    ``share`` (fraction of those rows the mode explains, i.e. some pairing within +-15 min of
    it) and ``candidates`` (the three largest bins).
    """
    counts = flows.group_by(KEY).len()
    small = flows.join(counts.filter(pl.col("len") <= OFFSET_MAX_FLOWS_PER_KEY), on=KEY)
    rows = rows.filter(pl.col("time").is_not_null() & pl.col("lo").is_not_null())
    if rows.height > OFFSET_MAX_ROWS:
        rows = rows.gather_every(rows.height // OFFSET_MAX_ROWS + 1)
    pairs = rows.join(small.select(*KEY, "start_time"), on=KEY).select(
        "row_id", d=pl.col("time") - pl.col("start_time"), twelve_h="twelve_h")
    pairs = pl.concat([
        pairs.select("row_id", "d"),
        pairs.filter("twelve_h").select("row_id", d=pl.col("d") + HALF_DAY_S),
    ])
    n_rows = pairs["row_id"].n_unique()
    result = {"rows_matched": n_rows, "detected_hours": None, "share": 0.0, "candidates": []}
    if n_rows == 0:
        return result
    bins = (pairs.select("row_id", bin=(pl.col("d") / OFFSET_STEP_S).round().cast(pl.Int64))
            .unique().group_by("bin").len().sort(["len", "bin"], descending=[True, False]))
    top = bins.head(3).to_dicts()
    result["candidates"] = [
        {"hours": b["bin"] * OFFSET_STEP_S / 3600.0, "share": b["len"] / n_rows} for b in top]
    result["detected_hours"] = result["candidates"][0]["hours"]
    result["share"] = result["candidates"][0]["share"]
    return result


def _asof(rows: pl.DataFrame, flows: pl.DataFrame, col: str, strategy: str,
          tolerance_s: float | None) -> pl.DataFrame:
    # Null keys (bad address/port) must not pair with each other inside the by-groups.
    has_key = pl.all_horizontal(pl.col(k).is_not_null() for k in KEY)
    left = rows.filter(pl.col(col).is_not_null() & has_key).select("row_id", *KEY, t=col).sort("t")
    right = flows.filter(has_key).select(*KEY, "start_time", "end_time", "flow_id").sort(
        "start_time")
    return left.join_asof(right, left_on="t", right_on="start_time", by=list(KEY),
                          strategy=strategy, tolerance=tolerance_s, check_sortedness=False)


def match_rows(rows: pl.DataFrame, flows: pl.DataFrame, tolerance_s: float) -> pl.DataFrame:
    """Match every CSV row to at most one flow.

    ``rows``: row_id, lo, hi, proto, time (corrected Unix seconds), twelve_h (bool).
    ``flows``: flow_id, lo, hi, proto, start_time, end_time.
    Returns ``rows``' row_id with ``flow_id`` (null when unmatched), ``how`` (``start``,
    ``span``, ``start_12h``, ``span_12h``) and ``reason`` for unmatched rows
    (``bad_timestamp``, ``bad_endpoint``, ``no_flow_with_5tuple``, ``no_flow_near_time``).
    """
    base = rows.with_columns(
        alt=pl.when("twelve_h").then(pl.col("time") + HALF_DAY_S))
    options = []
    # Preference, then distance: a start match beats a span match, and the row's own time
    # beats its 12 h shift whatever the distances.
    for rank, (col, suffix) in enumerate((("time", ""), ("alt", "_12h"))):
        near = _asof(base, flows, col, "nearest", tolerance_s).filter(
            pl.col("flow_id").is_not_null())
        options.append(near.select("row_id", "flow_id", how=pl.lit("start" + suffix),
                                   rank=pl.lit(2 * rank),
                                   score=(pl.col("t") - pl.col("start_time")).abs()))
        back = _asof(base, flows, col, "backward", None).filter(
            pl.col("flow_id").is_not_null()
            & (pl.col("t") <= pl.col("end_time") + tolerance_s))
        options.append(back.select("row_id", "flow_id", how=pl.lit("span" + suffix),
                                   rank=pl.lit(2 * rank + 1),
                                   score=pl.col("t") - pl.col("start_time")))
    best = (pl.concat(options).sort(["row_id", "rank", "score"])
            .group_by("row_id", maintain_order=True).first().select("row_id", "flow_id", "how"))
    keys = flows.select(KEY).unique().with_columns(_has_key=pl.lit(True))
    out = base.join(best, on="row_id", how="left").join(keys, on=KEY, how="left")
    reason = (pl.when(pl.col("flow_id").is_not_null()).then(None)
              .when(pl.col("time").is_null()).then(pl.lit("bad_timestamp"))
              .when(pl.col("lo").is_null() | pl.col("proto").is_null()).then(pl.lit("bad_endpoint"))
              .when(pl.col("_has_key").is_null()).then(pl.lit("no_flow_with_5tuple"))
              .otherwise(pl.lit("no_flow_near_time")))
    return out.select("row_id", "flow_id", "how", reason=reason).sort("row_id")


def flow_labels_from_rows(matched: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, int]]:
    """Fold matched rows into one label per flow: any attack row wins over benign rows.

    ``matched``: flow_id, label (0/1), attack. Returns (flow_id, label, attack) per matched
    flow and conflict counts: ``benign_vs_attack`` (flows with both), ``attack_vs_attack``
    (flows with two attack classes; the class with most rows wins, ties alphabetical).
    """
    per_class = (matched.group_by("flow_id", "label", "attack").len()
                 .sort(["flow_id", "label", "len", "attack"], descending=[False, True, True, False]))
    flows = per_class.group_by("flow_id", maintain_order=True).agg(
        label=pl.col("label").first(), attack=pl.col("attack").first(),
        n_benign=(pl.col("label") == 0).sum(), n_attack_classes=(pl.col("label") == 1).sum())
    conflicts = {
        "benign_vs_attack": int(((flows["n_benign"] > 0) & (flows["n_attack_classes"] > 0)).sum()),
        "attack_vs_attack": int((flows["n_attack_classes"] > 1).sum()),
    }
    return flows.select("flow_id", "label", "attack"), conflicts



def read_label_csv(path: str | Path) -> LabelCsv:
    """Read one CIC label CSV into a :class:`LabelCsv` (strings parsed, blanks counted)."""
    path = Path(path)
    if not path.is_file():
        raise JanusError(f"{path}: label CSV not found")
    check_text(path)
    idx = _header_indices(path)
    names = list(idx)
    order = sorted(range(len(names)), key=lambda i: idx[names[i]])
    try:
        raw = pl.read_csv(
            path, columns=[idx[names[i]] for i in order], infer_schema=False,
            encoding="utf8-lossy", truncate_ragged_lines=True, quote_char='"',
        )
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise JanusError(f"{path}: {_parse_failure(path)}cannot parse label CSV "
                         f"({' '.join(str(exc).split())[:200]})") from exc
    # The projection keeps file order, so the sorted names line up with the columns.
    raw.columns = [names[i] for i in order]
    rows_total = raw.height
    # Line numbers hold while no quoted field spans lines (CIC CSVs quote nothing); polars
    # keeps blank lines as rows, so data row k is line k + 2.
    raw = raw.with_row_index("line", offset=2).with_columns(
        pl.col(c).str.strip_chars() for c in names)
    # No valid address, port, time or class is this long; cutting a huge (damaged) field
    # keeps it invalid and keeps every later step from copying megabytes around.
    longest = raw.select(pl.col(c).str.len_bytes().max() for c in names).row(0)
    raw = raw.with_columns(pl.col(c).str.slice(0, MAX_FIELD_CHARS)
                           for c, n in zip(names, longest) if n and n > MAX_FIELD_CHARS)
    raw = raw.filter(pl.col("raw_label").is_not_null() & (pl.col("raw_label") != ""))
    times, fmt, suspect = parse_timestamps(raw["timestamp"])
    if raw.height and times["time"].null_count() == raw.height:
        raise JanusError(
            f"{path}: line {raw['line'][0]}: no Timestamp could be parsed (first value "
            f"{clip(raw['timestamp'][0])}); "
            "expected 'd/m/yyyy h:mm[:ss] [AM|PM]' or 'yyyy-mm-dd hh:mm:ss[.ffffff]'"
        )
    table = pl.concat([raw, times], how="horizontal").select(
        "src_ip", "dst_ip",
        *(pl.col(c).cast(pl.Float64, strict=False).cast(pl.Int64, strict=False)
          for c in ("src_port", "dst_port", "proto")),
        "time", "ampm_free", "raw_label", pl.col("line").cast(pl.Int64),
    )
    return LabelCsv(path, table, rows_total, rows_total - raw.height, fmt, suspect)



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


def _counts(values: pl.Series | np.ndarray) -> dict[str, int]:
    """Value -> count, most common first, ties by name (vectorised; nulls left out)."""
    series = values if isinstance(values, pl.Series) else pl.Series(values.tolist(), dtype=pl.String)
    vc = series.drop_nulls().value_counts(name="n").sort(["n", series.name],
                                                         descending=[True, False])
    return dict(zip(vc[series.name].to_list(), vc["n"].to_list()))


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
    ip_ids = ip_id_map(flows["src_ip"], flows["dst_ip"], rows["src_ip"], rows["dst_ip"])
    keyed_flows = with_key(flows, ip_ids)
    rows = with_key(rows, ip_ids)

    diag = detect_offset(rows, keyed_flows)
    trusted = (diag["rows_matched"] >= OFFSET_MIN_ROWS
               and diag["share"] >= OFFSET_MIN_SHARE)
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
    matched = match_rows(known, keyed_flows, tolerance_s).join(
        known.select("row_id", "label", "attack"), on="row_id")
    per_flow, conflicts = flow_labels_from_rows(
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


