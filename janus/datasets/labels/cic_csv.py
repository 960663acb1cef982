"""Read CIC flow-label CSVs (CICFlowMeter ``GeneratedLabelledFlows`` / ``TrafficLabelling``).

Only eight columns matter: the two endpoints, the protocol, the flow's start timestamp and
the label. Everything is vectorised (polars): CICIDS2017 alone is 2.8 M rows. A file is
parsed in blocks of :data:`BLOCK_BYTES` (:func:`iter_label_csv`, cut at a line end outside
quotes), so a 9 GB CICDDoS2019 CSV never sits in memory whole.

Tolerated quirks, all seen in the published files:

* headers with leading spaces (``" Source IP"``), a UTF-8 BOM, duplicated or extra columns;
* cp1252 / latin-1 bytes (the en dash of ``Web Attack – Brute Force``): the file is decoded
  as UTF-8 with replacement, and :func:`janus.datasets.labels.names.normalise_label` knows U+FFFD;
* blank rows (``,,,,``) and ragged lines;
* timestamps ``d/m/yyyy h:mm``, ``d/m/yyyy h:mm:ss``, either with ``AM``/``PM``, and
  ``yyyy-mm-dd hh:mm:ss[.ffffff]`` (CICDDoS2019).

Refused with a one-line :class:`JanusError` naming the file and the line: binary content
(a NUL byte; a UTF-16 file says so), bare carriage returns (CR-only "classic Mac" line
endings, or a stray CR that would silently glue two rows together), an unbalanced quote,
and anything else the CSV parser rejects. A file with a header and no rows reads as an
empty table (the labels step warns about it).

Some CICIDS2017 days write afternoon times on a 12-hour clock *without* an AM/PM marker
(``7/7/2017 3:56`` for 15:56). A day/month/year file with no marker and no hour above 12 is
flagged ``twelve_hour_suspect``; the join then also tries such a row 12 h later.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from janus.errors import JanusError

#: canonical column -> accepted header spellings (compared stripped and lower-cased).
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "src_ip": ("source ip", "src ip", "src_ip"),
    "src_port": ("source port", "src port", "src_port"),
    "dst_ip": ("destination ip", "dst ip", "dst_ip"),
    "dst_port": ("destination port", "dst port", "dst_port"),
    "proto": ("protocol", "proto"),
    "timestamp": ("timestamp",),
    "raw_label": ("label",),
}

_DMY = (r"^(?P<d>\d{1,2})/(?P<m>\d{1,2})/(?P<y>\d{4})\s+(?P<H>\d{1,2}):(?P<M>\d{2})"
        r"(?::(?P<S>\d{2})(?P<F>\.\d+)?)?\s*(?P<ampm>[AaPp][Mm])?$")
_ISO = (r"^(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})[ T](?P<H>\d{1,2}):(?P<M>\d{2})"
        r"(?::(?P<S>\d{2})(?P<F>\.\d+)?)?$")


@dataclass
class LabelCsv:
    """One CSV's rows, ready to join. ``table`` has one row per non-blank CSV row."""

    path: Path
    #: columns src_ip, dst_ip (str), src_port, dst_port, proto (Int64, null if unparseable),
    #: time (Float64, Unix seconds read as if the CSV's clock were UTC; null if unparseable),
    #: ampm_free (bool: no AM/PM marker and hour 1..11), raw_label (str), line (Int64: the
    #: row's line in the file, the header being line 1)
    table: pl.DataFrame
    rows_total: int  # data rows in the file, blank rows included
    rows_blank: int  # rows with an empty label (CICIDS2017 pads files with ",,,,")
    timestamp_format: str  # "dmy", "iso", "mixed" or "none"
    twelve_hour_suspect: bool


@dataclass
class CsvSummary:
    """What :func:`iter_label_csv` learns of a whole file (filled in as blocks are read)."""

    rows_total: int = 0
    rows_blank: int = 0
    n_dmy: int = 0
    n_iso: int = 0
    any_marker: bool = False
    n_dmy_hours: int = 0
    max_dmy_hour: float = -1.0

    @property
    def timestamp_format(self) -> str:
        if not (self.n_dmy or self.n_iso):
            return "none"
        return "mixed" if self.n_dmy and self.n_iso else ("dmy" if self.n_dmy else "iso")

    @property
    def twelve_hour_suspect(self) -> bool:
        return bool(self.n_dmy and not self.any_marker and self.n_dmy_hours
                    and self.max_dmy_hour <= 12)


#: Bytes of a label CSV parsed at a time by :func:`iter_label_csv`.
BLOCK_BYTES = 1 << 22
#: Bytes read per step of :func:`check_text`.
_SCAN_CHUNK = 1 << 24
#: Longest header line read, bytes.
_MAX_HEADER = 1 << 20
#: Fields are cut to this many characters (see :func:`read_label_csv`).
MAX_FIELD_CHARS = 256


def _line_of(path: Path, offset: int) -> int:
    """1-based line number of byte ``offset`` (LF-separated)."""
    lines = 1
    with open(path, "rb") as fh:
        done = 0
        while done < offset:
            block = fh.read(min(_SCAN_CHUNK, offset - done))
            if not block:
                break
            lines += block.count(b"\n")
            done += len(block)
    return lines


def check_text(path: Path) -> None:
    """Refuse a file that is not line-oriented text: NUL bytes, bare CRs (see the module
    docstring). One pass over the file in 16 MiB blocks (C-speed counts and finds)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
            if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
                raise JanusError(f"{path}: is UTF-16 text (byte-order mark {head[:2]!r}); "
                                 "convert it to UTF-8, e.g. iconv -f UTF-16 -t UTF-8")
            fh.seek(0)
            offset, prev_cr, any_lf = 0, False, False
            while block := fh.read(_SCAN_CHUNK):
                nul = block.find(b"\0")
                if nul >= 0:
                    at = offset + nul
                    raise JanusError(f"{path}: line {_line_of(path, at)} (byte {at}): binary "
                                     "content (a NUL byte), not a text CSV; is it the right "
                                     "file, whole and unpacked?")
                if prev_cr and not block.startswith(b"\n"):
                    _bare_cr(path, offset - 1, any_lf)
                body = block[:-1] if block.endswith(b"\r") else block
                if body.count(b"\r") != body.count(b"\r\n"):
                    at = offset + re.search(rb"\r(?!\n)", body).start()
                    _bare_cr(path, at, any_lf or b"\n" in block[:at - offset])
                any_lf = any_lf or b"\n" in block
                prev_cr = block.endswith(b"\r")
                offset += len(block)
            if prev_cr:
                _bare_cr(path, offset - 1, any_lf)
    except OSError as exc:
        raise JanusError(f"{path}: cannot read label CSV ({exc})") from exc


def _bare_cr(path: Path, at: int, any_lf: bool) -> None:
    line = _line_of(path, at)
    if not any_lf and line == 1:
        raise JanusError(f"{path}: line 1 (byte {at}): lines end in a bare CR (classic Mac "
                         "line endings), not LF or CRLF; convert the file, e.g. "
                         "tr '\\r' '\\n' < IN > OUT")
    raise JanusError(f"{path}: line {line} (byte {at}): a carriage return without a line feed "
                     "(mixed line endings) would glue two rows together; fix or remove it")


def _header_indices(path: Path) -> dict[str, int]:
    """Map canonical column names to 0-based indices from the CSV's first line."""
    try:
        with open(path, "rb") as fh:
            first = fh.readline(_MAX_HEADER)
    except OSError as exc:
        raise JanusError(f"{path}: cannot read label CSV ({exc})") from exc
    if not first.strip():
        raise JanusError(f"{path}: empty label CSV (no header line)")
    if len(first) == _MAX_HEADER and not first.endswith(b"\n"):
        raise JanusError(f"{path}: line 1 is longer than {_MAX_HEADER} bytes; not a CIC "
                         "label CSV header")
    text = first.decode("utf-8", errors="replace").lstrip("\ufeff").rstrip("\r\n")
    try:
        header = [h.strip().lower() for h in next(csv.reader(io.StringIO(text)), [])]
    except csv.Error as exc:
        raise JanusError(f"{path}: line 1: unreadable CSV header ({exc})") from exc
    found: dict[str, int] = {}
    for name, aliases in COLUMN_ALIASES.items():
        idx = next((i for i, h in enumerate(header) if h in aliases), None)
        if idx is not None:
            found[name] = idx
    missing = [COLUMN_ALIASES[n][0].title() for n in COLUMN_ALIASES if n not in found]
    if missing:
        raise JanusError(
            f"{path}: label CSV lacks column(s) {', '.join(missing)} (header: {[h[:40] for h in header[:12]]}...). "
            "Only CSVs with endpoints and timestamps (CIC 'GeneratedLabelledFlows' / "
            "'TrafficLabelling') can be joined to flows; 'MachineLearningCVE' CSVs cannot."
        )
    return found


def _epoch_seconds(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of proleptic Gregorian dates (Hinnant's days_from_civil), * 86400."""
    y = y - (m <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    mp = (m + 9) % 12
    doy = (153 * mp + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return (era * 146097 + doe - 719468).astype(np.float64) * 86400.0


def parse_timestamps(values: pl.Series) -> tuple[pl.DataFrame, str, bool]:
    """Parse CIC timestamp strings (naive, the capture site's clock) to Unix-like seconds.

    Returns ``(frame, format, twelve_hour_suspect)``; ``frame`` has Float64 ``time`` (null
    where unparseable or out of range) and bool ``ampm_free`` (no marker, hour 1..11).
    """
    summary = CsvSummary()
    frame = _parse_times(values, summary)
    return frame, summary.timestamp_format, summary.twelve_hour_suspect


def _parse_times(values: pl.Series, summary: CsvSummary) -> pl.DataFrame:
    """:func:`parse_timestamps` of one block; adds the block's format counts to ``summary``."""
    s = values.cast(pl.String).str.strip_chars()
    dmy = s.str.extract_groups(_DMY).struct.unnest()
    iso = s.str.extract_groups(_ISO).struct.unnest()
    is_dmy = dmy["y"].is_not_null().to_numpy()
    is_iso = iso["y"].is_not_null().to_numpy()

    def num(col: str, fill: float = 0.0) -> np.ndarray:
        a = dmy[col].cast(pl.Float64, strict=False).fill_null(fill).to_numpy()
        b = iso[col].cast(pl.Float64, strict=False).fill_null(fill).to_numpy()
        return np.where(is_dmy, a, b)

    y, m, d, hh, mm, ss = (num(c) for c in ("y", "m", "d", "H", "M", "S"))
    frac = num("F")  # ".813448" parses as 0.813448
    ampm = dmy["ampm"].str.to_lowercase().to_numpy()
    pm, am = ampm == "pm", ampm == "am"
    hh = np.where(pm & (hh < 12), hh + 12, np.where(am & (hh == 12), 0, hh))
    ok = (is_dmy | is_iso) & (m >= 1) & (m <= 12) & (d >= 1) & (d <= 31) & (hh < 24) & (mm < 60) \
        & (ss < 61)
    days = _epoch_seconds(y.astype(np.int64), m.astype(np.int64), d.astype(np.int64))
    t = days + hh * 3600.0 + mm * 60.0 + ss + frac
    time = pl.Series("time", np.where(ok, t, np.nan)).fill_nan(None)
    has_marker = pm | am
    hours = hh[is_dmy & ok]
    summary.n_dmy += int(is_dmy.sum())
    summary.n_iso += int(is_iso.sum())
    summary.any_marker = summary.any_marker or bool(has_marker.any())
    summary.n_dmy_hours += int(hours.size)
    if hours.size:
        summary.max_dmy_hour = max(summary.max_dmy_hour, float(hours.max()))
    ampm_free = pl.Series("ampm_free", is_dmy & ok & ~has_marker & (hh >= 1) & (hh < 12))
    return pl.DataFrame([time, ampm_free])


def _blocks(path: Path, block_bytes: int) -> Iterator[tuple[bytes, int, bytes]]:
    """``(header line, line number of the block's first row, block)``: blocks of about
    ``block_bytes`` ending at a line end with an even number of quotes so far (a quoted
    field never straddles two blocks)."""
    with open(path, "rb") as fh:
        header = fh.readline(_MAX_HEADER)
        line = 2
        while block := fh.read(block_bytes):
            if not block.endswith(b"\n"):
                block += fh.readline()
            odd = block.count(b'"') % 2
            more = [block]
            while odd and (tail := fh.readline()):
                more.append(tail)
                odd ^= tail.count(b'"') % 2
            block = b"".join(more) if len(more) > 1 else block
            yield header, line, block
            line += block.count(b"\n")


def iter_label_csv(path: str | Path, summary: CsvSummary,
                   block_bytes: int | None = None) -> Iterator[pl.DataFrame]:
    """Read one CIC label CSV block by block: frames of its non-blank rows with the columns
    of :attr:`LabelCsv.table`; ``summary`` holds the whole file's counts once the iterator
    is exhausted (when it also raises if no timestamp of the file could be parsed).
    ``block_bytes``: bytes parsed at a time (default :data:`BLOCK_BYTES`)."""
    path = Path(path)
    if not path.is_file():
        raise JanusError(f"{path}: label CSV not found")
    check_text(path)
    idx = _header_indices(path)
    names = list(idx)
    order = sorted(range(len(names)), key=lambda i: idx[names[i]])
    first_row: tuple[int, str] | None = None  # line and timestamp of the first non-blank row
    parsed_any = False
    try:
        blocks = _blocks(path, block_bytes or BLOCK_BYTES)
        for header, line, block in blocks:
            try:
                raw = pl.read_csv(
                    header + block, columns=[idx[names[i]] for i in order], infer_schema=False,
                    encoding="utf8-lossy", truncate_ragged_lines=True, quote_char='"',
                )
            except pl.exceptions.PolarsError as exc:
                raise JanusError(f"{path}: {_parse_failure(path)}cannot parse label CSV "
                                 f"({' '.join(str(exc).split())[:200]})") from exc
            # The projection keeps file order, so the sorted names line up with the columns.
            raw.columns = [names[i] for i in order]
            summary.rows_total += raw.height
            # Line numbers hold while no quoted field spans lines (CIC CSVs quote nothing);
            # polars keeps blank lines as rows, so row k of a block is its line + k.
            raw = raw.with_row_index("line", offset=line).with_columns(
                pl.col(c).str.strip_chars() for c in names)
            # No valid address, port, time or class is this long; cutting a huge (damaged)
            # field keeps it invalid and keeps every later step from copying megabytes around.
            longest = raw.select(pl.col(c).str.len_bytes().max() for c in names).row(0)
            raw = raw.with_columns(pl.col(c).str.slice(0, MAX_FIELD_CHARS)
                                   for c, n in zip(names, longest) if n and n > MAX_FIELD_CHARS)
            height = raw.height
            raw = raw.filter(pl.col("raw_label").is_not_null() & (pl.col("raw_label") != ""))
            summary.rows_blank += height - raw.height
            if not raw.height:
                continue
            if first_row is None:
                first_row = (raw["line"][0], raw["timestamp"][0])
            times = _parse_times(raw["timestamp"], summary)
            parsed_any = parsed_any or times["time"].null_count() < raw.height
            yield pl.concat([raw, times], how="horizontal").select(
                "src_ip", "dst_ip",
                *(pl.col(c).cast(pl.Float64, strict=False).cast(pl.Int64, strict=False)
                  for c in ("src_port", "dst_port", "proto")),
                "time", "ampm_free", "raw_label", pl.col("line").cast(pl.Int64),
            )
    except OSError as exc:
        raise JanusError(f"{path}: cannot read label CSV ({exc})") from exc
    if first_row is not None and not parsed_any:
        raise JanusError(
            f"{path}: line {first_row[0]}: no Timestamp could be parsed (first value "
            f"{clip(first_row[1])}); "
            "expected 'd/m/yyyy h:mm[:ss] [AM|PM]' or 'yyyy-mm-dd hh:mm:ss[.ffffff]'"
        )


def read_label_csv(path: str | Path, block_bytes: int | None = None) -> LabelCsv:
    """Read one CIC label CSV into a :class:`LabelCsv` (strings parsed, blanks counted;
    the whole file in memory: the labels step streams :func:`iter_label_csv` instead)."""
    summary = CsvSummary()
    parts = list(iter_label_csv(path, summary, block_bytes))
    schema = {"src_ip": pl.String, "dst_ip": pl.String, "src_port": pl.Int64,
              "dst_port": pl.Int64, "proto": pl.Int64, "time": pl.Float64,
              "ampm_free": pl.Boolean, "raw_label": pl.String, "line": pl.Int64}
    table = pl.concat(parts) if parts else pl.DataFrame(schema=schema)
    return LabelCsv(Path(path), table, summary.rows_total, summary.rows_blank,
                    summary.timestamp_format, summary.twelve_hour_suspect)


def _parse_failure(path: Path) -> str:
    """``"line N: <why>; "`` for the first line with an unbalanced quote, else ``""``: the
    parser's own message names a chunk, not a line. Runs only after a parse failure."""
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, 1):
            if line.count(b'"') % 2:
                return f"line {number}: unbalanced quote (\"); "
    return ""


def clip(text: str | None, limit: int = 60) -> str:
    """``repr`` of a field for a message, cut to ``limit`` characters."""
    text = "" if text is None else text
    return repr(text[:limit]) + (f"... ({len(text)} characters)" if len(text) > limit else "")
