"""Join labelled CSV rows to flows: canonical 5-tuples, the clock-offset diagnostic, matching.

A CSV row and a flow share a *canonical 5-tuple* when they have the same protocol and the
same unordered pair of (address, port) endpoints: CICFlowMeter sometimes swaps source and
destination (out-of-order packets), so direction is not part of the key. Addresses are
compared in canonical text (``ipaddress``), so ``2001:DB8::1`` and ``2001:db8:0::1`` agree.

Each row then matches, among the flows with its key, the one whose ``start_time`` is nearest
to the row's (offset-corrected) time within the tolerance; failing that, the flow whose
span ``[start - tol, end + tol]`` holds the row time (CICFlowMeter cuts one connection into
several rows: its 120 s activity timeout, its "first backward FIN ends the flow" fault).
Rows of a ``twelve_hour_suspect`` file with an hour of 1..11 are also tried 12 h later.
"""

from __future__ import annotations

import ipaddress

import polars as pl

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

