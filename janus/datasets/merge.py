"""The merge step: per-file dataset folders -> one dataset folder.

``janus merge PART [PART ...] --out DIR`` joins the dataset triples that ``janus extract``
wrote for single capture files (one folder each, given in time order) into the triple one
dataset folder holds (:mod:`janus.contract`): the flows of part 1, then those of part 2, ...,
with ``flow_id`` renumbered to ``arange(N)`` across them. It lets a cluster extract a
dataset's capture files in parallel jobs (``extract.per_file`` in the workflow).

* ``flows.parquet`` and ``flow_features.parquet`` are copied batch by batch (at most
  ``shard_flows`` rows at a time), ``flow_id`` replaced by the running row number;
  ``source_file`` keeps the capture each flow came from.
* The packet tensor becomes the sharded store ``packets/`` (:mod:`janus.datasets.store`) or
  ``packets.npz``, chosen by the total as ``janus extract`` does (``--store``). Shards of a
  sharded part are hard-linked (copied across file systems) under their new numbers and
  listed in a new manifest: no tensor byte is read. An npz part is re-encoded shard by
  shard; an npz output is streamed from the parts' rows. Memory: one shard.
* ``extract_stats.json`` (written last): the parts' counts summed (files, skips, totals,
  end reasons, timestamp-guard counts, phase times), the common parameters, and under
  ``parts`` every part's own stats, under ``merge`` what this step did.

**Files are cut at their boundaries.** Each part was extracted on its own, so a flow that is
still open at the end of one file and goes on in the next is two flows here (its first
packets in the first, the rest a new flow in the next, whose initiator is the sender of its
own first packet), and a flow open at a file's end ends ``"eof"`` where a single stream
would have ended it ``"idle"`` later. CICFlowMeter, which made the CIC label CSVs, handles
each pcap on its own the same way. The README ("Per-file extraction") gives the measured
difference on real captures. The merge does not re-join such flows: the parts' outputs do
not hold what an exact re-join needs (the packets past the first T, the capture clock at the
continuation's first packet, the TCP state machine's state at the file's end).

Parts must agree on the options that shape flows (T, timeouts, ``strict``); a part that
differs, is incomplete (no ``extract_stats.json``) or breaks the ``flow_id`` contract is a
:class:`JanusError` naming it. Output is written into a temporary folder inside ``--out``
and moved into place, ``extract_stats.json`` last, so an interrupted merge never leaves a
triple that reads as whole.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from janus.cli import run_main
from janus.contract import (
    FEATURES_FILE,
    FLOWS_FILE,
    N_CHANNELS,
    PACKETS_FILE,
    PACKETS_STORE_DIR,
    STATS_FILE,
    STORE_MANIFEST_FILE,
)
from janus.datasets.store import (
    DEFAULT_SHARD_ROWS,
    DEFAULT_STORE_MIN_FLOWS,
    STORE_FORMAT,
    STORE_VERSION,
    STORES,
    PacketStore,
    choose_store,
    encode_shard,
    open_packets,
    read_manifest,
)
from janus.errors import ConfigError, JanusError
from janus.io import read_path_list

log = logging.getLogger(__name__)

#: Parameters of ``extract_stats.json`` that shape the flows: parts must agree on them.
#: (``chunk_bytes`` only sets the read batch size, ``store`` and ``shard_flows`` the layout.)
FLOW_PARAMETERS = ("max_packets", "idle_timeout_s", "active_timeout_s", "strict")
#: Timestamp-guard counters of ``extract_stats.json`` that add up over parts.
_TIMESTAMP_COUNTS = ("clamped_ahead", "clamped_behind", "steps_back")


# --------------------------------------------------------------------------- parts
class Part:
    """One part folder: its stats, packet store and row count, checked against each other."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        stats_path = self.path / STATS_FILE
        if not stats_path.is_file():
            raise JanusError(f"{self.path}: no {STATS_FILE}, so not a complete 'janus extract' "
                             "output (interrupted?); extract its capture again")
        try:
            self.stats = json.loads(stats_path.read_text(encoding="utf-8"))
            self.n = int(self.stats["totals"]["flows"])
            self.parameters = dict(self.stats["parameters"])
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError,
                ValueError) as exc:
            raise JanusError(f"{stats_path}: not the stats of 'janus extract' ({exc}); extract "
                             "its capture again") from exc
        self.store: PacketStore = open_packets(self.path)
        if self.store.n_flows != self.n:
            raise JanusError(f"{self.path}: {STATS_FILE} counts {self.n} flows, {self.store.path} "
                             f"holds {self.store.n_flows}; extract its capture again")
        for name in (FLOWS_FILE, FEATURES_FILE):
            rows = _parquet(self.path / name).metadata.num_rows
            if rows != self.n:
                raise JanusError(f"{self.path / name}: {rows} rows, {STATS_FILE} counts {self.n} "
                                 "flows; extract its capture again")


def _parquet(path: Path):
    import pyarrow.parquet as pq

    if not path.is_file():
        raise JanusError(f"{path}: not found; extract the part's capture again")
    try:
        return pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a non-Parquet file
        raise JanusError(f"{path}: not a readable Parquet file ({exc})") from exc


def check_parts(parts: Sequence[Part]) -> None:
    """Refuse parts whose flow-shaping options or T differ from the first part's."""
    first = parts[0]
    for part in parts[1:]:
        for key in FLOW_PARAMETERS:
            if part.parameters.get(key) != first.parameters.get(key):
                raise JanusError(
                    f"{part.path}: extracted with {key} = {part.parameters.get(key)!r}, "
                    f"{first.path} with {first.parameters.get(key)!r}; extract every part "
                    "with the same options")
        if part.store.T != first.store.T:
            raise JanusError(f"{part.path}: packet tensor of T = {part.store.T}, {first.path} "
                             f"of T = {first.store.T}; extract every part with the same --max-packets")


# --------------------------------------------------------------------------- tables
def _copy_table(parts: Sequence[Part], name: str, dest: Path, batch_rows: int,
                use_dictionary) -> None:
    """Concatenate ``name`` of every part into ``dest``, ``flow_id`` renumbered, one batch
    of at most ``batch_rows`` rows in memory; each part's own ``flow_id`` must be
    ``arange(n)`` (the contract the renumbering relies on)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _parquet(parts[0].path / name).schema_arrow
    offset = 0
    with pq.ParquetWriter(dest, schema, use_dictionary=use_dictionary) as writer:
        for part in parts:
            path = part.path / name
            pf = _parquet(path)
            if not pf.schema_arrow.equals(schema):
                raise JanusError(f"{path}: columns {pf.schema_arrow.names} differ from "
                                 f"{parts[0].path / name}'s; extract every part with the same "
                                 "janus version")
            seen = 0
            col = schema.get_field_index("flow_id")
            for batch in pf.iter_batches(batch_size=batch_rows):
                ids = batch.column(col).to_numpy()
                if not np.array_equal(ids, np.arange(seen, seen + len(ids))):
                    bad = int(np.flatnonzero(ids != np.arange(seen, seen + len(ids)))[0])
                    raise JanusError(f"{path}: row {seen + bad} has flow_id {ids[bad]}; a part's "
                                     "flow_id must be arange(N): extract its capture again")
                batch = batch.set_column(col, "flow_id",
                                         pa.array(ids + offset, pa.int64()))
                writer.write_batch(batch)
                seen += len(ids)
            offset += seen


# --------------------------------------------------------------------------- packets
def _link(src: Path, dst: Path) -> None:
    """Hard-link ``src`` as ``dst`` (a copy where the file system refuses links)."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _write_sharded(parts: Sequence[Part], folder: Path, T: int, shard_rows: int) -> dict:
    """The parts' tensors as one sharded store at ``folder`` (a new folder): shards of
    sharded parts linked, npz parts re-encoded ``shard_rows`` flows at a time."""
    folder.mkdir()
    shards: list[dict] = []

    def names() -> dict:
        k = len(shards)
        return {"packets": f"shard-{k:05d}.npy", "lengths": f"lengths-{k:05d}.npy"}

    for part in parts:
        if part.store.kind == "sharded":
            manifest = read_manifest(part.store.path)
            for entry in manifest["shards"]:
                new = names()
                for key in ("packets", "lengths"):
                    _link(part.store.path / entry[key], folder / new[key])
                shards.append({**entry, **new})
            continue
        for _, packets, lengths in part.store.chunks(chunk_rows=shard_rows):
            new = names()
            data = encode_shard(packets)
            np.save(folder / new["packets"], data, allow_pickle=False)
            np.save(folder / new["lengths"], lengths.astype(np.int32), allow_pickle=False)
            shards.append({
                **new, "rows": len(lengths), "encoding": "float32" if data is packets else "compact",
                "packets_bytes": (folder / new["packets"]).stat().st_size,
                "lengths_bytes": (folder / new["lengths"]).stat().st_size,
            })
    manifest = {"format": STORE_FORMAT, "version": STORE_VERSION,
                "n_flows": sum(int(s["rows"]) for s in shards), "T": T, "channels": N_CHANNELS,
                "shard_rows": max([int(s["rows"]) for s in shards], default=shard_rows),
                "shards": shards}
    (folder / STORE_MANIFEST_FILE).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def _row_blocks(parts: Sequence[Part], what: str, rows: int) -> Iterator[np.ndarray]:
    for part in parts:
        for lo in range(0, part.n, rows):
            sel = np.arange(lo, min(part.n, lo + rows))
            if what == "packets":
                yield part.store.packets(sel)
            else:
                yield part.store.lengths(sel).astype(np.int32)


def _write_npz(parts: Sequence[Part], path: Path, T: int, n: int, rows: int) -> None:
    """The parts' tensors as one ``packets.npz``, streamed ``rows`` flows at a time."""
    from janus.io import ArrayStream, write_npz

    write_npz(
        path,
        packets=ArrayStream((n, T, N_CHANNELS), np.dtype(np.float32),
                            lambda: _row_blocks(parts, "packets", rows)),
        lengths=ArrayStream((n,), np.dtype(np.int32), lambda: _row_blocks(parts, "lengths", rows)),
    )


# --------------------------------------------------------------------------- stats
def merge_stats(parts: Sequence[Part], kind: str, shard_rows: int, merge_s: float) -> dict:
    """The ``extract_stats.json`` of the merged folder (see the module docstring)."""
    files, skipped, totals, reasons, phase = [], Counter(), Counter(), Counter(), Counter()
    stamps: dict = {k: 0 for k in _TIMESTAMP_COUNTS}
    stamps["steps_back_s"] = 0.0
    stamps["max_clock_jump_s"] = parts[0].stats.get("timestamps", {}).get("max_clock_jump_s")
    stamps["first"] = {}
    packets_before = 0
    for part in parts:
        s = part.stats
        files_before = len(files)
        files += s.get("files", [])
        skipped.update(s.get("skipped", {}))
        totals.update(s.get("totals", {}))
        reasons.update(s.get("end_reasons", {}))
        phase.update(s.get("phase_time_s", {}))
        ts = s.get("timestamps", {})
        for key in _TIMESTAMP_COUNTS:
            stamps[key] += int(ts.get(key, 0))
        stamps["steps_back_s"] = round(stamps["steps_back_s"] + float(ts.get("steps_back_s", 0)), 6)
        for key, first in ts.get("first", {}).items():
            if key not in stamps["first"]:
                # Positions and file indices in the merged stream of files.
                stamps["first"][key] = {**first, "packet": packets_before + int(first["packet"]),
                                        "file_index": files_before + int(first["file_index"])}
        packets_before += int(s.get("totals", {}).get("packets_kept", 0)) \
            + int(s.get("totals", {}).get("packets_skipped", 0))
    wall = round(sum(float(p.stats.get("wall_time_s", 0)) for p in parts), 3)
    packets = int(totals["packets_kept"] + totals["packets_skipped"])
    parameters = {k: parts[0].parameters.get(k) for k in FLOW_PARAMETERS}
    parameters.update(store=kind, shard_flows=shard_rows if kind == "sharded" else None)
    return {
        "files": files,
        "skipped": dict(sorted(skipped.items())),
        "totals": dict(totals),
        "end_reasons": dict(reasons),
        "timestamps": stamps,
        "parameters": parameters,
        # Extraction time of all parts together (job-seconds; they may have run side by side).
        "wall_time_s": wall,
        "phase_time_s": {k: round(v, 3) for k, v in phase.items()},
        "packets_per_s": round(packets / wall, 1) if wall > 0 else None,
        "merge": {"parts": len(parts), "wall_time_s": round(merge_s, 3),
                  "file_boundaries": "cut (each part extracted on its own)"},
        "parts": [{"path": str(p.path), **p.stats} for p in parts],
    }


# --------------------------------------------------------------------------- merge
def merge(
    part_dirs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    store: str = "auto",
    store_min_flows: int = DEFAULT_STORE_MIN_FLOWS,
    shard_rows: int = DEFAULT_SHARD_ROWS,
) -> dict:
    """Merge the part folders ``part_dirs`` (in time order) into ``out_dir``.

    ``store``, ``store_min_flows`` and ``shard_rows`` as for :func:`janus.capture.extract.extract`
    (``shard_rows`` also bounds the rows of a table batch). Returns the summary written to
    ``extract_stats.json``. Raises :class:`JanusError` for a bad part (named), ``out_dir``
    among the parts or naming a file, and :class:`ConfigError` for bad options.
    """
    t0 = time.perf_counter()
    if not part_dirs:
        raise ConfigError("no part folders given")
    choose_store(store, 0)  # checks the name before any work
    if shard_rows < 1:
        raise ConfigError(f"--shard-flows must be at least 1, got {shard_rows}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise JanusError(f"{out_dir}: --out must be a folder, but it is an existing file")
    for p in part_dirs:
        if Path(p).resolve() == out_dir.resolve():
            raise JanusError(f"{p}: a part folder cannot be the --out folder; merge into a new one")
    parts = [Part(p) for p in part_dirs]
    check_parts(parts)
    n, T = sum(p.n for p in parts), parts[0].store.T
    _warn_overlaps(parts)
    kind = choose_store(store, n, store_min_flows)

    out_dir.mkdir(parents=True, exist_ok=True)
    # An earlier triple in out_dir is being replaced: from here on it no longer says it is
    # whole, so an interrupted merge leaves no complete-looking triple behind.
    (out_dir / STATS_FILE).unlink(missing_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".merge.", suffix=".tmp", dir=out_dir))
    try:
        text = ["src_ip", "dst_ip", "end_reason", "source_file"]
        _copy_table(parts, FLOWS_FILE, tmp / FLOWS_FILE, shard_rows, text)
        _copy_table(parts, FEATURES_FILE, tmp / FEATURES_FILE, shard_rows, False)
        if kind == "sharded":
            _write_sharded(parts, tmp / PACKETS_STORE_DIR, T, shard_rows)
        else:
            _write_npz(parts, tmp / PACKETS_FILE, T, n, shard_rows)
        summary = merge_stats(parts, kind, shard_rows, time.perf_counter() - t0)
        from janus.io import write_json

        write_json(tmp / STATS_FILE, summary)
        _move_into_place(tmp, out_dir, kind)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("%d parts, %d flows -> %s (%s) in %.2f s", len(parts), n, out_dir, kind,
             time.perf_counter() - t0)
    return summary


def _warn_overlaps(parts: Sequence[Part]) -> None:
    """Warn when a part's flows start before the previous part's last flow started: the
    parts are then not in time order (or overlap), and the merged rows are not sorted by
    start time as one stream's would be. Read from the row-group statistics (a part's flows
    are sorted by start time), not from the column."""
    last = None
    for part in parts:
        meta = _parquet(part.path / FLOWS_FILE).metadata
        if part.n == 0 or meta.num_row_groups == 0:
            continue
        col = meta.schema.to_arrow_schema().get_field_index("start_time")
        first = meta.row_group(0).column(col).statistics
        final = meta.row_group(meta.num_row_groups - 1).column(col).statistics
        if first is None or final is None or not (first.has_min_max and final.has_min_max):
            continue
        if last is not None and first.min < last[1]:
            log.warning("%s: its first flow starts at %.6f, before the last flow of %s (%.6f): "
                        "are the parts in time order?", part.path, first.min, last[0], last[1])
        last = (part.path, final.max)


def _move_into_place(tmp: Path, out_dir: Path, kind: str) -> None:
    """Replace ``out_dir``'s triple with the one in ``tmp``, ``extract_stats.json`` last
    (dropped first), so no moment shows a mixed triple with a stats file."""
    (out_dir / STATS_FILE).unlink(missing_ok=True)
    if kind == "sharded":
        (out_dir / PACKETS_FILE).unlink(missing_ok=True)
        old = out_dir / PACKETS_STORE_DIR
        if old.exists():
            aside = tmp / "old-packets"
            os.replace(old, aside)
        os.replace(tmp / PACKETS_STORE_DIR, out_dir / PACKETS_STORE_DIR)
    else:
        if (out_dir / PACKETS_STORE_DIR).is_dir():
            shutil.rmtree(out_dir / PACKETS_STORE_DIR)
        os.replace(tmp / PACKETS_FILE, out_dir / PACKETS_FILE)
    umask = os.umask(0)
    os.umask(umask)
    for name in (FLOWS_FILE, FEATURES_FILE, STATS_FILE):
        os.chmod(tmp / name, 0o666 & ~umask)
        os.replace(tmp / name, out_dir / name)


# --------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="janus merge",
        description="Merge dataset folders that 'janus extract' wrote for single capture files "
        f"(in time order) into one: {FLOWS_FILE} and {FEATURES_FILE} concatenated with flow_id "
        f"renumbered, the packet tensors joined, {STATS_FILE} summed. A flow that spans two "
        "files stays two flows (each file was extracted on its own).",
    )
    parser.add_argument("parts", metavar="PART", nargs="*", type=Path,
                        help="part folders (each the --out of 'janus extract' on one capture), "
                        "in time order")
    parser.add_argument("--parts-from", type=Path, default=None, metavar="FILE",
                        help="read part folders from FILE, one per line (blank lines and lines "
                        "starting with '#' ignored), after any PART arguments")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR",
                        help="output folder (created if missing; an existing triple is replaced)")
    parser.add_argument("--store", choices=STORES, default="auto",
                        help=f"packet tensor layout: npz ({PACKETS_FILE}), sharded "
                        f"({PACKETS_STORE_DIR}/; the parts' shards are hard-linked) or auto: "
                        "sharded from --store-min-flows flows on (default %(default)s)")
    parser.add_argument("--store-min-flows", type=int, default=DEFAULT_STORE_MIN_FLOWS, metavar="N",
                        help="flows from which --store auto writes the sharded store "
                        "(default %(default)s)")
    parser.add_argument("--shard-flows", type=int, default=DEFAULT_SHARD_ROWS, metavar="N",
                        help="flows per shard re-encoded from an npz part, and rows per table "
                        "batch (default %(default)s)")
    return parser


def run(args: argparse.Namespace) -> int:
    parts = list(args.parts)
    if args.parts_from is not None:
        parts += read_path_list(args.parts_from, "parts list")
    if not parts:
        raise JanusError("no part given: name PART folders or --parts-from FILE")
    merge(parts, args.out, store=args.store, store_min_flows=args.store_min_flows,
          shard_rows=args.shard_flows)
    return 0


def main(argv=None) -> int:
    return run_main(build_parser, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
