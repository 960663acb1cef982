"""Join labelled CSV rows to flows, streamed over the flow table: canonical 5-tuples, the
clock-offset diagnostic, matching.

A CSV row and a flow share a *canonical 5-tuple* when they have the same protocol and the
same unordered pair of (address, port) endpoints: CICFlowMeter sometimes swaps source and
destination (out-of-order packets), so direction is not part of the key. Addresses are
compared in canonical text (``ipaddress``), so ``2001:DB8::1`` and ``2001:db8:0::1`` agree.

Each row then matches, among the flows with its key, the one whose ``start_time`` is nearest
to the row's (offset-corrected) time within the tolerance (equally near: the later start,
then the lower flow_id); failing that, the flow with the latest start at or before the row
time (ties: the lower flow_id) if its span ``[start - tol, end + tol]`` holds the row time
(CICFlowMeter cuts one connection into several rows: its 120 s activity timeout, its "first
backward FIN ends the flow" fault). Rows of a ``twelve_hour_suspect`` file with an hour of
1..11 are also tried 12 h later, after both.

How it streams. The CSV side is held as a compact index, :class:`CsvRows` (per row: the
5-tuple key as one exact ``complex128``, the time, a class code, a file number and flags,
sorted by key); the flow table is read in chunks, and per CSV row the best candidate of each
kind seen so far is kept (:class:`Matcher`, start time and flow id of the nearest and of the
latest-starting flow). Nearest and latest-start are decided per key over all flows, so the
best of the chunks' best is the answer whatever the chunking. Memory: ~55 bytes a CSV row
(index and match state) plus one flow chunk; nothing grows with the flow count.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import polars as pl

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
#: Candidate rows examined at once when matching one flow chunk (bounds a popular key).
MATCH_BATCH_ROWS = 1 << 20
HOW = ("start", "span", "start_12h", "span_12h")
#: Key of a row whose address, port or protocol is unreadable (reason ``bad_endpoint``)...
BAD_KEY = -1.0
#: ...and of a row with a readable protocol no flow can have (outside 0..255): it matches
#: nothing (reason ``no_flow_with_5tuple``), as before the key was packed.
NO_FLOW_KEY = -3.0
#: Address ids stay below this so that ``(id * 65536 + port) * 256 + proto`` is exact in
#: a float64 (the real part of a key).
MAX_IP_IDS = 1 << 29


class IpIds:
    """Dense ids of canonical addresses, shared by every spelling of one address.

    Ids are handed out to the CSV's addresses (:meth:`add`); a flow address no CSV row has
    gets no id (it cannot match). Only distinct texts go through :mod:`ipaddress`.
    """

    def __init__(self) -> None:
        self.raw: dict[str, int | None] = {}
        self.canon: dict[str, int] = {}
        self._known: dict[str, int] | None = None  # raw texts that are addresses -> id

    def _canon(self, text: str, grow: bool) -> int | None:
        try:
            canon = str(ipaddress.ip_address(text.strip()))
        except ValueError:
            return None
        if grow:
            if len(self.canon) >= MAX_IP_IDS:
                raise ValueError(f"more than {MAX_IP_IDS} distinct addresses in the label CSVs")
            return self.canon.setdefault(canon, len(self.canon))
        return self.canon.get(canon)

    def add(self, column: pl.Series) -> pl.Series:
        """Int64 ids of a CSV column's texts (null: not an address), learning new ones."""
        new = {t: self._canon(t, True) for t in column.drop_nulls().unique().to_list()
               if t not in self.raw}
        if new:
            self.raw.update(new)
            self._known = None
        return self._replace(column, {t: self.raw[t] for t in column.drop_nulls().unique()
                                      .to_list()})

    def lookup(self, column: pl.Series) -> pl.Series:
        """Int64 ids of a flow column's texts; null where no CSV row has the address."""
        if self._known is None:
            self._known = {k: v for k, v in self.raw.items() if v is not None}
        extra = {t: self._canon(t, False) for t in column.drop_nulls().unique().to_list()
                 if t not in self.raw}
        return self._replace(column, {**self._known, **extra} if extra else self._known)

    @staticmethod
    def _replace(column: pl.Series, mapping: dict[str, int | None]) -> pl.Series:
        known = {k: v for k, v in mapping.items() if v is not None}
        return column.cast(pl.String).replace_strict(known, default=None, return_dtype=pl.Int64)


def endpoint_keys(src_id: pl.Series, dst_id: pl.Series, src_port: pl.Series,
                  dst_port: pl.Series, proto: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """Canonical 5-tuple keys ``complex128 (n,)`` and ``lo_ok`` bool ``(n,)``.

    An endpoint is ``ip_id * 65536 + port`` (port 0..65535, else unreadable); ``lo``/``hi``
    are the smaller and larger of the two; the key is ``(lo * 256 + proto) + 1j * hi``, exact
    in float64 and ordered like ``(lo, proto, hi)`` by NumPy's lexicographic complex order.
    Unreadable parts give :data:`BAD_KEY`, a protocol outside 0..255 :data:`NO_FLOW_KEY`.
    ``lo_ok``: both endpoints readable (the diagnostic's sample takes such rows).
    """
    def endpoint(ip: pl.Series, port: pl.Series) -> np.ndarray:
        port = port.cast(pl.Int64)
        code = (ip * 65536 + port).to_numpy().astype(np.float64)
        ok = (port.is_between(0, 65535).fill_null(False) & ip.is_not_null()).to_numpy()
        return np.where(ok, code, np.nan)

    a, b = endpoint(src_id, src_port), endpoint(dst_id, dst_port)
    lo, hi = np.fmin(a, b), np.fmax(a, b)
    lo_ok = ~np.isnan(a) & ~np.isnan(b)
    p = proto.cast(pl.Int64)
    p_ok = p.is_not_null().to_numpy()
    p_in = p.is_between(0, 255).fill_null(False).to_numpy()
    pv = p.fill_null(0).to_numpy().astype(np.float64)
    real = np.where(lo_ok & p_ok, np.where(p_in, lo * 256 + pv, NO_FLOW_KEY), BAD_KEY)
    key = real + 1j * np.where(lo_ok & p_ok & p_in, hi, 0.0)
    return key, lo_ok


@dataclass
class CsvRows:
    """Every CSV row of a dataset, compact, sorted by key (the CSV side of the join).

    Arrays ``(R,)``: ``key`` complex128 (:func:`endpoint_keys`), ``time`` float64 (UTC
    seconds, NaN if unparseable; shifted by the applied offset before matching), ``code``
    int16 (index into ``classes``: ``(label, attack)``, label -2 bad, -1 unknown, 0, 1),
    ``file`` uint16 and ``twelve`` bool (also try ``time + 12 h``). ``sample``: row
    positions the offset diagnostic examines.
    """

    key: np.ndarray
    time: np.ndarray
    code: np.ndarray
    file: np.ndarray
    twelve: np.ndarray
    sample: np.ndarray
    classes: list[tuple[int, str | None]]

    @property
    def label(self) -> np.ndarray:
        return np.array([c[0] for c in self.classes], np.int8)[self.code] if self.code.size \
            else np.zeros(0, np.int8)


@dataclass
class CsvRowsBuilder:
    """Collects :class:`CsvRows` block by block (lists of compact arrays)."""

    parts: dict[str, list[np.ndarray]] = field(default_factory=lambda: {
        k: [] for k in ("key", "time", "code", "file", "twelve", "lo_ok")})
    pending_ampm: list[np.ndarray] = field(default_factory=list)

    def add_block(self, key: np.ndarray, time: np.ndarray, code: np.ndarray, file: int,
                  ampm_free: np.ndarray, lo_ok: np.ndarray) -> None:
        self.parts["key"].append(key)
        self.parts["time"].append(time)
        self.parts["code"].append(code.astype(np.int16))
        self.parts["file"].append(np.full(key.shape[0], file, np.uint16))
        self.parts["lo_ok"].append(lo_ok)
        self.pending_ampm.append(ampm_free)

    def end_file(self, twelve_hour_suspect: bool) -> None:
        """The file's rows with no AM/PM marker are tried 12 h later iff the file is suspect."""
        for ampm in self.pending_ampm:
            self.parts["twelve"].append(ampm & twelve_hour_suspect)
        self.pending_ampm = []

    def build(self, classes: list[tuple[int, str | None]]) -> CsvRows:
        def cat(name: str, dtype) -> np.ndarray:
            parts = self.parts.pop(name)
            return np.concatenate(parts).astype(dtype, copy=False) if parts \
                else np.zeros(0, dtype)

        key, time = cat("key", np.complex128), cat("time", np.float64)
        # The diagnostic's sample in file order, as before: every k-th row with a time and
        # both endpoints.
        lo_ok = cat("lo_ok", bool)
        candidates = np.flatnonzero(lo_ok & ~np.isnan(time))
        del lo_ok
        if candidates.size > OFFSET_MAX_ROWS:
            candidates = candidates[::candidates.size // OFFSET_MAX_ROWS + 1]
        order = np.argsort(key, kind="stable")
        sampled = np.zeros(key.shape[0], bool)
        sampled[candidates] = True
        sample = np.flatnonzero(sampled[order])  # their positions once sorted by key
        del sampled, candidates
        key, time = key[order], time[order]
        code, file, twelve = (cat(n, d)[order] for n, d in
                              (("code", np.int16), ("file", np.uint16), ("twelve", bool)))
        return CsvRows(key, time, code, file, twelve, sample, classes)


def _ranges(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(lo[i], hi[i])`` (int64)."""
    n = hi - lo
    if not n.sum():
        return np.zeros(0, np.int64)
    starts = np.repeat(lo - np.concatenate([[0], np.cumsum(n)[:-1]]), n)
    return starts + np.arange(n.sum())


@dataclass
class FlowChunk:
    """One chunk of flows keyed against the CSV rows: flows whose key some row has, with
    ``first``/``last`` the row range of that key. Arrays ``(m,)``."""

    flow_id: np.ndarray
    start: np.ndarray
    end: np.ndarray
    first: np.ndarray
    last: np.ndarray


def key_chunk(rows: CsvRows, flow_id: np.ndarray, key: np.ndarray, start: np.ndarray,
              end: np.ndarray) -> FlowChunk:
    """Look up a chunk's flow keys (:func:`endpoint_keys`) among ``rows``' keys."""
    ok = key.real >= 0
    flow_id, key, start, end = flow_id[ok], key[ok], start[ok], end[ok]
    order = np.argsort(key)  # sorted queries search several times faster
    flow_id, key, start, end = flow_id[order], key[order], start[order], end[order]
    first = np.searchsorted(rows.key, key, "left")
    last = np.searchsorted(rows.key, key, "right")
    hit = last > first
    return FlowChunk(flow_id[hit], start[hit], end[hit], first[hit], last[hit])


class OffsetDiagnostic:
    """Histogram of ``CSV time - flow start`` over 5-tuple matches on a half-hour grid,
    accumulated chunk by chunk, and the flow count of every CSV key (saturating at 255).

    Keys with more than :data:`OFFSET_MAX_FLOWS_PER_KEY` flows are left out; the pairs of
    sampled rows are kept (at most that many flows each) until the counts are complete.
    """

    def __init__(self, rows: CsvRows) -> None:
        self.rows = rows
        self.count = np.zeros(rows.key.shape[0], np.uint8)  # at each key's first row
        self.pairs: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def add(self, chunk: FlowChunk) -> None:
        keys, n = np.unique(chunk.first, return_counts=True)
        self.count[keys] = np.minimum(self.count[keys].astype(np.int64) + n, 255)
        small = self.count[chunk.first] <= OFFSET_MAX_FLOWS_PER_KEY
        first, last, start = chunk.first[small], chunk.last[small], chunk.start[small]
        s_lo = np.searchsorted(self.rows.sample, first)
        s_hi = np.searchsorted(self.rows.sample, last)
        if not (s_hi > s_lo).any():
            return
        which = _ranges(s_lo, s_hi)
        owner = np.repeat(np.arange(first.size), s_hi - s_lo)
        row = self.rows.sample[which]
        self.pairs.append((row, first[owner], self.rows.time[row] - start[owner]))

    def result(self) -> dict:
        """``rows_matched`` (sampled rows with a 5-tuple match), ``detected_hours`` (the
        mode, or None), ``share`` (fraction of those rows the mode explains, i.e. some
        pairing within +-15 min of it) and ``candidates`` (the three largest bins)."""
        result = {"rows_matched": 0, "detected_hours": None, "share": 0.0, "candidates": []}
        if not self.pairs:
            return result
        row, first, d = (np.concatenate(x) for x in zip(*self.pairs))
        keep = self.count[first] <= OFFSET_MAX_FLOWS_PER_KEY
        row, d = row[keep], d[keep]
        twelve = self.rows.twelve[row]
        row = np.concatenate([row, row[twelve]])
        d = np.concatenate([d, d[twelve] + HALF_DAY_S])
        n_rows = int(np.unique(row).size)
        if n_rows == 0:
            return result
        # polars' round (half to even), as the in-memory diagnostic did.
        bins = (pl.DataFrame({"row": row, "bin": (pl.Series(d) / OFFSET_STEP_S).round()
                              .cast(pl.Int64)})
                .unique().group_by("bin").len().sort(["len", "bin"], descending=[True, False]))
        top = bins.head(3).to_dicts()
        result["rows_matched"] = n_rows
        result["candidates"] = [
            {"hours": b["bin"] * OFFSET_STEP_S / 3600.0, "share": b["len"] / n_rows} for b in top]
        result["detected_hours"] = result["candidates"][0]["hours"]
        result["share"] = result["candidates"][0]["share"]
        return result


class _Best:
    """Per query row: start time and flow id of the nearest flow (within the tolerance) and
    of the latest-starting flow (its flow id encoded ``-2 - id`` when its span misses)."""

    def __init__(self, n: int, id_dtype) -> None:
        self.near_s = np.full(n, np.nan)
        self.near_id = np.full(n, -1, id_dtype)
        self.back_s = np.full(n, -np.inf)
        self.back_id = np.full(n, -1, id_dtype)

    def update(self, q: np.ndarray, t: np.ndarray, chunk: FlowChunk, fkey: np.ndarray,
               g: np.ndarray, tolerance_s: float) -> None:
        """Offer the chunk's flows (sorted by ``fkey = first + 1j * start``, then flow id)
        to query rows ``q`` with times ``t`` and key groups ``g``."""
        qkey = g + 1j * t
        m = fkey.size
        f = np.searchsorted(fkey, qkey, "left")  # first flow starting at or after t
        b = f - 1
        f_ok = (f < m) & (chunk.first[np.minimum(f, m - 1)] == g)
        b_ok = (b >= 0) & (chunk.first[np.maximum(b, 0)] == g)
        b = np.where(b_ok, np.searchsorted(fkey, fkey[np.maximum(b, 0)], "left"), 0)
        fi, bi = np.minimum(f, m - 1), b
        df = np.where(f_ok, chunk.start[fi] - t, np.inf)
        db = np.where(b_ok, t - chunk.start[bi], np.inf)
        pick = np.where(df <= db, fi, bi)  # equally near: the later start
        d = np.minimum(df, db)
        near = d <= tolerance_s
        self._offer_near(q[near], t[near], chunk.start[pick[near]], chunk.flow_id[pick[near]])
        p = np.searchsorted(fkey, qkey, "right") - 1  # latest start at or before t
        p_ok = (p >= 0) & (chunk.first[np.maximum(p, 0)] == g)
        p = np.searchsorted(fkey, fkey[np.maximum(p[p_ok], 0)], "left")
        inside = t[p_ok] <= chunk.end[p] + tolerance_s
        fid = chunk.flow_id[p]
        self._offer_back(q[p_ok], chunk.start[p], np.where(inside, fid, -2 - fid))

    def _offer_near(self, q, t, s, fid) -> None:
        old_s, old_id = self.near_s[q], self.near_id[q]
        d, old_d = np.abs(t - s), np.where(old_id >= 0, np.abs(t - old_s), np.inf)
        better = (d < old_d) | ((d == old_d) & ((s > old_s) | ((s == old_s) & (fid < old_id))))
        self.near_s[q[better]], self.near_id[q[better]] = s[better], fid[better]

    def _offer_back(self, q, s, code) -> None:
        old_s, old_code = self.back_s[q], self.back_id[q]
        fid, old_id = np.where(code >= 0, code, -2 - code), np.where(old_code >= 0, old_code,
                                                                      -2 - old_code)
        better = (s > old_s) | ((s == old_s) & (fid < old_id))
        self.back_s[q[better]], self.back_id[q[better]] = s[better], code[better]


class Matcher:
    """Match every known CSV row (label 0 or 1) to at most one flow, chunk by chunk."""

    def __init__(self, rows: CsvRows, n_flows: int, tolerance_s: float) -> None:
        self.rows = rows
        self.tol = tolerance_s
        id_dtype = np.int32 if n_flows < 2**31 - 2 else np.int64
        self.best = _Best(rows.key.shape[0], id_dtype)
        self.twelve_rows = np.flatnonzero(rows.twelve)
        self.best12 = _Best(self.twelve_rows.size, id_dtype)
        self.query = (rows.label >= 0) & ~np.isnan(rows.time)

    def _candidates(self, chunk: FlowChunk) -> Iterator[np.ndarray]:
        first, idx = np.unique(chunk.first, return_index=True)
        last = chunk.last[idx]
        total = np.cumsum(last - first)
        lo = 0
        while lo < first.size:  # runs of keys holding at most MATCH_BATCH_ROWS rows
            base = total[lo - 1] if lo else 0
            hi = max(lo + 1, int(np.searchsorted(total, base + MATCH_BATCH_ROWS, "right")))
            rows = _ranges(first[lo:hi], last[lo:hi])
            for i in range(0, rows.size, MATCH_BATCH_ROWS):  # one key's rows beyond that
                yield rows[i:i + MATCH_BATCH_ROWS]
            lo = hi

    def add(self, chunk: FlowChunk) -> None:
        if not chunk.flow_id.size:
            return
        order = np.lexsort((chunk.flow_id, chunk.start, chunk.first))
        chunk = FlowChunk(*(a[order] for a in (chunk.flow_id, chunk.start, chunk.end,
                                               chunk.first, chunk.last)))
        fkey = chunk.first + 1j * chunk.start
        for q in self._candidates(chunk):
            q = q[self.query[q]]
            g = np.searchsorted(self.rows.key, self.rows.key[q], "left")
            self.best.update(q, self.rows.time[q], chunk, fkey, g, self.tol)
            alt = q[self.rows.twelve[q]]
            if alt.size:
                j = np.searchsorted(self.twelve_rows, alt)
                g12 = np.searchsorted(self.rows.key, self.rows.key[alt], "left")
                self.best12.update(j, self.rows.time[alt] + HALF_DAY_S, chunk, fkey, g12,
                                   self.tol)

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """``flow_id`` int32/int64 ``(R,)`` (-1: unmatched) and ``how`` int8 ``(R,)`` (index into
        :data:`HOW`, -1: unmatched) of every row: start, then span, then the 12 h shifts."""
        n = self.rows.key.shape[0]
        fid = np.full(n, -1, self.best.near_id.dtype)
        how = np.full(n, -1, np.int8)
        for k, ids in enumerate((self.best.near_id, self.best.back_id)):
            new = (fid < 0) & (ids >= 0)
            fid[new], how[new] = ids[new], k
        for k, ids in enumerate((self.best12.near_id, self.best12.back_id), 2):
            rows = self.twelve_rows
            new = (fid[rows] < 0) & (ids >= 0)
            fid[rows[new]], how[rows[new]] = ids[new], k
        return fid, how


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
