"""The extract step: capture files -> the dataset triple, plus skip counts.

``janus extract PCAP [PCAP ...] --out DIR`` reads the captures as one continuous packet
stream in the order given (a flow may start in one split file and go on in the next),
assembles bidirectional flows (:mod:`janus.capture.flows`) and writes, each atomically:

* ``packets.npz`` -- ``packets`` float32 ``(N, T, 9)`` and ``lengths`` int32 ``(N,)``
  (streamed into the file in padded blocks from the compact kept rows, which are held to
  the end: the whole padded tensor is never in memory); or, for large datasets
  (``--store``), the same tensor as the sharded store ``packets/``
  (:mod:`janus.datasets.store`), written shard by shard as the flows come;
* ``flows.parquet`` -- :data:`janus.contract.FLOW_COLUMNS`, one row per flow;
* ``flow_features.parquet`` -- ``flow_id`` + the 20 features (:mod:`janus.capture.features`);
* ``extract_stats.json`` -- written last: packets read per file, packets skipped by reason
  (and bytes skipped over damage, see :mod:`janus.capture.pcap`), totals, end reasons, the timestamps
  the flow assembler's clock guard clamped or stepped over (``timestamps``, see
  :mod:`janus.capture.flows`), the parameters, the wall time and its split into phases (startup:
  loading the compiled kernels, once per process; read + decode; flow assembly; features;
  writing), and packets/s with and without the startup phase.

All three tables are indexed by ``flow_id = arange(N)`` in the same row order (flows sorted
by start time, ties by first-packet order). Flows are written out while the captures are
read, as soon as no earlier-starting flow can still come (:mod:`janus.capture.sink`: a
watermark, a buffer of ``--buffer-flows`` flows spilled as sorted runs into a temporary
folder in ``--out``, a k-way merge), so memory is bounded by the open flows and that buffer,
not by the capture; the files are the same, byte for byte, as writing every flow at the end.
``extract_stats.json``'s ``spill`` says how many flows were spilled. With ``--labels`` the labels step runs on
the result.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import signal
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from janus.capture.batch import SkipCounter, ip_text_from_words
from janus.capture.features import arrow_column, compact_flow_features, features_table
from janus.capture.flows import FlowAssembler, FlowResult
from janus.capture.sink import (
    DEFAULT_BUFFER_FLOWS,
    SPILL_PREFIX,
    DatasetWriter,
    OrderBroken,
    SortedFlowSink,
)
from janus.cli import run_main
from janus.contract import (
    DEFAULT_MAX_PACKETS,
    END_REASONS,
    FEATURES_FILE,
    FLOW_COLUMNS,
    FLOWS_FILE,
    N_CHANNELS,
    PACKETS_FILE,
    PACKETS_STORE_DIR,
    STATS_FILE,
)
from janus.datasets.store import (
    DEFAULT_SHARD_ROWS,
    DEFAULT_STORE_MIN_FLOWS,
    STORES,
    choose_store,
)
from janus.errors import ConfigError, JanusError
from janus.io import read_path_list

log = logging.getLogger(__name__)

DEFAULT_IDLE_TIMEOUT_S = 120.0
DEFAULT_CHUNK_MB = 32


def _arrow_strings(lengths: np.ndarray, data: np.ndarray):
    """A pyarrow ``string`` array from per-row byte lengths and the concatenated UTF-8 bytes.

    Built from buffers: ``pa.array(list_of_str)`` imports pandas on first use (~0.25 s per
    process, a large share of extracting a small capture).
    """
    import pyarrow as pa

    offsets = np.zeros(lengths.shape[0] + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if offsets[-1] >= 2**31:
        raise JanusError(f"{FLOWS_FILE}: a text column would hold {offsets[-1]} bytes, more than "
                         "Arrow's 2 GiB limit for one column; extract the captures in several runs")
    return pa.StringArray.from_buffers(lengths.shape[0], pa.py_buffer(offsets.astype(np.int32)),
                                       pa.py_buffer(np.ascontiguousarray(data, np.uint8)))


def _choice_strings(choices: Sequence[str], index: np.ndarray):
    """``[choices[i] for i in index]`` as a pyarrow ``string`` array, without Python strings
    per row (a byte gather: one flow table row costs ~10 ns instead of ~1 us)."""
    encoded = [c.encode("utf-8") for c in choices]
    pool = np.frombuffer(b"".join(encoded), np.uint8)
    size = np.fromiter(map(len, encoded), np.int64, len(encoded))
    first = np.zeros(len(encoded), np.int64)
    np.cumsum(size[:-1], out=first[1:])
    index = np.asarray(index, np.int64)
    lengths = size[index]
    total = int(lengths.sum())
    # Output byte j of row r comes from pool[first[index[r]] + (j - start of row r)].
    row_start = np.cumsum(lengths) - lengths
    src = np.repeat(first[index] - row_start, lengths) + np.arange(total)
    return _arrow_strings(lengths, pool[src])


def _ip_strings(words: np.ndarray):
    """uint64 ``(n, 2)`` address words -> pyarrow ``string`` array of the same text as
    :func:`janus.capture.batch.ip_text_from_words` (dotted quad for IPv4-mapped, RFC 5952 otherwise).

    IPv4 rows are formatted digit by digit with NumPy (~15 vector operations in all) instead
    of building a Python string per address; IPv6 rows, rare in practice, use the reference
    formatter.
    """
    words = np.asarray(words, dtype=np.uint64)
    is_v4 = (words[:, 0] == 0) & ((words[:, 1] >> np.uint64(32)) == np.uint64(0xFFFF))
    v4 = (words[:, 1] & np.uint64(0xFFFFFFFF)).astype(np.int64)
    octets = [(v4 >> shift) & 0xFF for shift in (24, 16, 8, 0)]
    digits = [1 + (o >= 10) + (o >= 100) for o in octets]
    lengths = digits[0] + digits[1] + digits[2] + digits[3] + 3
    v6_rows = np.flatnonzero(~is_v4)
    v6_text = [t.encode("ascii") for t in ip_text_from_words(words[v6_rows])]
    lengths[v6_rows] = np.fromiter(map(len, v6_text), np.int64, len(v6_text))
    data = np.empty(int(lengths.sum()), np.uint8)
    start = np.cumsum(lengths) - lengths
    rows = np.flatnonzero(is_v4)
    pos = start[rows]
    for k in range(4):
        o, d = octets[k][rows], digits[k][rows]
        three = d == 3
        data[pos[three]] = 48 + o[three] // 100
        two = d >= 2
        data[pos[two] + d[two] - 2] = 48 + (o[two] // 10) % 10
        data[pos + d - 1] = 48 + o % 10
        pos = pos + d
        if k < 3:
            data[pos] = 46  # "."
            pos = pos + 1
    for r, text in zip(v6_rows.tolist(), v6_text):
        data[start[r]: start[r] + len(text)] = np.frombuffer(text, np.uint8)
    return _arrow_strings(lengths, data)


def flow_schema():
    """The pyarrow schema of ``flows.parquet``: :data:`janus.contract.FLOW_COLUMNS`."""
    import pyarrow as pa

    return pa.schema([(name, pa.type_for_alias(t)) for name, t in FLOW_COLUMNS.items()])


def empty_tables():
    """The zero-row ``flows.parquet`` and ``flow_features.parquet`` tables."""
    import dataclasses

    none = {f.name: np.zeros(0, np.int64) for f in dataclasses.fields(FlowResult)}
    none.update(rows=np.zeros((0, N_CHANNELS), np.float32), max_packets=1, seq=None,
                src_ip=np.zeros((0, 2), np.uint64), dst_ip=np.zeros((0, 2), np.uint64),
                lengths=np.zeros(0, np.int32), end_reason=np.zeros(0, np.int8))
    res = FlowResult(**none)
    return flows_table(res, []), features_table(compact_flow_features(res.rows, res.row_start, res.lengths))


def flows_table(res: FlowResult, paths: Sequence[str], first_id: int = 0):
    """A :class:`FlowResult` -> pyarrow Table with exactly :data:`janus.contract.FLOW_COLUMNS`;
    ``flow_id`` counts from ``first_id``."""
    import pyarrow as pa

    n = len(res)
    strings = {
        "src_ip": _ip_strings(res.src_ip),
        "dst_ip": _ip_strings(res.dst_ip),
        "end_reason": _choice_strings(END_REASONS, res.end_reason),
        "source_file": _choice_strings([str(p) for p in paths], res.file_index),
    }
    numbers = {
        "flow_id": np.arange(first_id, first_id + n, dtype=np.int64),
        "src_port": res.src_port,
        "dst_port": res.dst_port,
        "proto": res.proto,
        "start_time": res.start_time,
        "end_time": res.end_time,
        "n_packets": res.n_packets,
        "n_bytes": res.n_bytes,
    }
    schema = flow_schema()
    assert set(strings) | set(numbers) == set(schema.names)
    arrays = {}
    for field in schema:
        if field.type == pa.string():
            arrays[field.name] = strings[field.name]
        else:
            arrays[field.name] = arrow_column(numbers[field.name], FLOW_COLUMNS[field.name])
    return pa.table(arrays, schema=schema)


def _progress(total_bytes: int):
    from tqdm import tqdm

    return tqdm(total=total_bytes, unit="B", unit_scale=True, unit_divisor=1024, desc="extract",
                disable=None, dynamic_ncols=True)


#: CPU seconds :func:`load_runtime` may use before it says that numba is compiling.
COMPILE_NOTICE_AFTER_S = 3.0


def load_runtime() -> None:
    """Import the Parquet writer and load every compiled kernel of the extraction.

    The first compiled call in a process initialises numba's runtime (~0.5 s here: it
    imports its NumPy and scipy support modules) and each kernel then loads from numba's
    on-disk cache; ``import pyarrow.parquet`` costs ~0.1 s. :func:`extract` pays this first,
    as the ``startup`` phase of its stats, so that the other phases time the data work alone.
    Cheap (~ms) once done in a process.

    When numba's cache is cold (the first run after an install or upgrade) the kernels are
    compiled instead, ~20 s of silence: once loading has used more than
    :data:`COMPILE_NOTICE_AFTER_S` of CPU time, a one-line notice on stderr says why. CPU
    time, not wall time: a warm load uses ~1 CPU-s however busy the machine is, so later runs
    print nothing.
    """
    import sys
    import threading

    import pyarrow.parquet  # noqa: F401

    from janus.capture import pcap
    from janus.capture.flows import load_kernels

    done = threading.Event()
    start = time.process_time()

    def watch() -> None:
        while not done.wait(0.1):
            if time.process_time() - start > COMPILE_NOTICE_AFTER_S:
                print("janus extract: compiling the capture kernels with numba (first run "
                      "after an install or upgrade; ~20 s once, cached for later runs)",
                      file=sys.stderr, flush=True)
                return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        pcap.load_kernels()
        res = load_kernels()
        compact_flow_features(res.rows, res.row_start, res.lengths)
    finally:
        done.set()
        watcher.join()


def extract(
    paths: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    max_packets: int = DEFAULT_MAX_PACKETS,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT_S,
    active_timeout: float | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_MB << 20,
    labels: Sequence[str | os.PathLike] | None = None,
    strict: bool = False,
    store: str = "auto",
    store_min_flows: int = DEFAULT_STORE_MIN_FLOWS,
    shard_rows: int = DEFAULT_SHARD_ROWS,
    buffer_flows: int = DEFAULT_BUFFER_FLOWS,
) -> dict:
    """Extract ``paths`` (one continuous stream, in order) into ``out_dir``.

    ``strict``: stop at the first damaged record or block of a capture instead of skipping
    to the next valid one (:func:`janus.capture.pcap.iter_capture`).

    ``store``: the packet tensor's layout, ``"npz"`` (``packets.npz``), ``"sharded"``
    (``packets/``, shards of ``shard_rows`` flows, :mod:`janus.datasets.store`) or
    ``"auto"``: sharded from ``store_min_flows`` flows on. The other layout, left by an
    earlier run, is removed.

    ``buffer_flows``: finished flows held (waiting for earlier-starting flows to finish)
    before they are spilled as a sorted run into a temporary folder inside ``out_dir``
    (:mod:`janus.capture.sink`); the output is the same whatever its value.

    Returns the summary written to ``extract_stats.json``. Raises :class:`JanusError` for a
    missing or unreadable capture (:class:`janus.errors.CaptureError` from the reader names
    the file and byte offset), an ``out_dir`` that is a file, and :class:`ConfigError` for bad
    parameters.
    """
    paths = [str(p) for p in paths]
    if not paths:
        raise ConfigError("no capture files given")
    for p in paths:
        if not Path(p).is_file():
            raise JanusError(f"{p}: capture file not found")
    choose_store(store, 0)  # checks the name before any work
    if shard_rows < 1:
        raise ConfigError(f"--shard-flows must be at least 1, got {shard_rows}")
    if buffer_flows < 1:
        raise ConfigError(f"--buffer-flows must be at least 1, got {buffer_flows}")
    if chunk_bytes < 1 << 16:
        raise ConfigError(f"chunk size must be at least 64 KiB, got {chunk_bytes} bytes")
    out_dir = Path(out_dir)
    for folder in (out_dir, *out_dir.parents):
        if folder.exists() and not folder.is_dir():
            raise JanusError(f"{out_dir}: --out must be a folder, but {folder} is an existing file;"
                             " name a new or existing folder")
    t0 = time.perf_counter()
    # Checks the parameters.
    FlowAssembler(max_packets, idle_timeout, active_timeout, sources=paths)
    load_runtime()
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    # Spill folders of a run that was killed outright (SIGKILL, power loss).
    for stale in out_dir.glob(SPILL_PREFIX + "*"):
        shutil.rmtree(stale, ignore_errors=True)
    options = {"max_packets": max_packets, "idle_timeout": idle_timeout,
               "active_timeout": active_timeout, "chunk_bytes": chunk_bytes, "strict": strict,
               "store": store, "store_min_flows": store_min_flows, "shard_rows": shard_rows,
               "buffer_flows": buffer_flows}
    startup = time.perf_counter() - t0
    early = True
    try:
        with _terminate_as_interrupt():
            try:
                asm, writer, sink, skips, per_file, phase = _extract_pass(paths, out_dir, early=True,
                                                                          **options)
            except OrderBroken:
                # Rare: a confirmed backward step of the capture clock by more than the idle
                # timeout (see "Timestamps" in janus.capture.flows) let a flow start below
                # flows already written. The second pass holds every flow to the end.
                log.warning("the capture clock stepped back after flows had been written; "
                            "reading the captures again, writing the flows only at the end")
                early = False
                asm, writer, sink, skips, per_file, phase = _extract_pass(paths, out_dir, early=False,
                                                                          **options)
    except BaseException:
        if created:  # leave no empty folder behind a failed first run
            with contextlib.suppress(OSError):
                out_dir.rmdir()
        raise
    phase = {"startup": startup, **phase}
    wall = time.perf_counter() - t0

    from janus.capture.pcap import NON_PACKET_SKIP_KEYS

    sizes = [f["bytes"] for f in per_file]
    skipped = {k: int(v) for k, v in sorted(skips.items())}
    # Bytes of a cut final record and unknown pcapng blocks are not packets.
    n_skipped = sum(v for k, v in skipped.items() if k not in NON_PACKET_SKIP_KEYS)
    n_kept = sum(f["packets_kept"] for f in per_file)
    summary = {
        "files": per_file,
        "skipped": skipped,
        "totals": {
            "packets_kept": n_kept,
            "packets_skipped": n_skipped,
            "flows": writer.n,
            "bytes_read": sum(sizes),
            "packets_in_flows_truncated": writer.truncated,
        },
        "end_reasons": {r: int(c) for r, c in zip(END_REASONS, writer.reasons)},
        "timestamps": _timestamp_summary(asm.timestamp_stats, paths),
        "parameters": {
            "max_packets": max_packets,
            "idle_timeout_s": idle_timeout,
            "active_timeout_s": active_timeout,
            "chunk_bytes": chunk_bytes,
            "strict": strict,
            "store": writer.kind,
            "shard_flows": shard_rows if writer.kind == "sharded" else None,
            "buffer_flows": buffer_flows,
        },
        # Flows that waited for an earlier-starting flow and were spilled to disk on the way.
        "spill": {"flows": sink.n_spilled, "runs": sink.n_runs, "bytes": sink.spill_bytes,
                  "early_writes": early},
        "wall_time_s": round(wall, 3),
        "phase_time_s": {k: round(v, 3) for k, v in phase.items()},
        "packets_per_s": _rate(n_kept + n_skipped, wall),
        # The rate of the data work: the whole step less the one-time startup phase.
        "packets_per_s_after_startup": _rate(n_kept + n_skipped, wall - phase["startup"]),
    }
    from janus.io import write_json

    write_json(out_dir / STATS_FILE, summary)
    log.info("%d packets (%d skipped) -> %d flows in %.2f s -> %s", n_kept + n_skipped, n_skipped,
             writer.n, wall, out_dir)
    if writer.n == 0:
        log.warning("no flows were extracted from %s; see %s for skipped packets", ", ".join(paths),
                    out_dir / STATS_FILE)
    if labels:
        # Imported here so that extraction works on installs where the labels step is absent.
        from janus.datasets.labels import label_dataset

        label_dataset(out_dir, csv=[str(c) for c in labels])
    return summary


def _extract_pass(paths: list[str], out_dir: Path, *, early: bool, max_packets: int, idle_timeout: float,
                  active_timeout: float | None, chunk_bytes: int, strict: bool, store: str,
                  store_min_flows: int, shard_rows: int, buffer_flows: int):
    """Read the captures once and write the triple (not the stats). ``early``: write flows as
    soon as the assembler's bound allows (else all at the end, through the spill runs).

    Returns ``(assembler, writer, sink, skips, per_file, phase seconds)``; raises
    :class:`OrderBroken` (with ``early``) when the capture clock stepped back after flows
    were written, having removed everything it wrote.
    """
    from janus.capture.pcap import iter_capture

    asm = FlowAssembler(max_packets, idle_timeout, active_timeout, sources=paths)
    writer = DatasetWriter(out_dir, paths, max_packets, store, store_min_flows, shard_rows)
    sink = SortedFlowSink(writer.write, out_dir, buffer_flows)
    sizes = [Path(p).stat().st_size for p in paths]
    skips = SkipCounter()
    per_file: list[dict] = []
    # Seconds per phase: read (file reading + record walk + header decoding), flows
    # (assembly), features, write (ordering, spilling, merging and writing the files).
    phase = dict.fromkeys(("read", "flows", "features", "write"), 0.0)
    tick = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal tick
        now = time.perf_counter()
        phase[name] += now - tick
        tick = now

    def hand_over(res: FlowResult, bound) -> None:
        lap("flows")
        before = writer.feature_seconds
        sink.add(res, bound)
        lap("write")
        phase["write"] -= writer.feature_seconds - before
        phase["features"] += writer.feature_seconds - before

    try:
        with _progress(sum(sizes)) as bar:
            for index, (path, size) in enumerate(zip(paths, sizes)):
                kept, shown = 0, 0
                for batch in iter_capture(path, file_index=index, skips=skips, chunk_bytes=chunk_bytes,
                                          strict=strict):
                    lap("read")
                    asm.add(batch)
                    kept += len(batch)
                    # The reader does not report offsets; advance by an estimate (record header
                    # + frame) capped at the file size, then snap to the exact size at file end.
                    step = min(size - shown, 16 * len(batch) + int(batch.wire_len.sum(dtype=np.int64)))
                    bar.update(step)
                    shown += step
                    hand_over(asm.drain(), asm.emit_bound() if early else None)
                bar.update(size - shown)
                per_file.append({"path": path, "bytes": size, "packets_kept": kept})
                lap("read")
            bar.set_postfix_str("assembling")
            res = asm.finish()
            hand_over(res, None)
            before = writer.feature_seconds
            sink.finish()
            kind = writer.commit()
            lap("write")
            phase["write"] -= writer.feature_seconds - before
            phase["features"] += writer.feature_seconds - before
    except BaseException:
        sink.close()
        writer.abort()
        raise
    log.debug("packet store: %s", kind)
    return asm, writer, sink, skips, per_file, phase


@contextlib.contextmanager
def _terminate_as_interrupt():
    """SIGTERM (a cancelled Snakemake or SLURM job) raises KeyboardInterrupt inside the block,
    so that the temporary files and spill runs are removed as on Ctrl-C (only in the main
    thread, where Python can take signals)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _timestamp_summary(stats: dict, paths: Sequence[str]) -> dict:
    """:attr:`FlowAssembler.timestamp_stats` with each first packet's file named."""
    out = dict(stats)
    out["first"] = {k: {**v, "file": paths[v["file_index"]]} for k, v in stats["first"].items()}
    return out


def _rate(packets: int, seconds: float) -> float | None:
    return round(packets / seconds, 1) if seconds > 0 else None


# --------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="janus extract",
        description="Read pcap/pcapng captures (one continuous stream, in the order given) and "
        f"write {PACKETS_FILE}, {FLOWS_FILE}, {FEATURES_FILE} and {STATS_FILE} into --out.",
    )
    parser.add_argument("captures", metavar="PCAP", nargs="*", type=Path,
                        help="capture files (pcap or pcapng), in time order; flows may span files")
    parser.add_argument("--captures-from", type=Path, default=None, metavar="FILE",
                        help="read capture paths from FILE, one per line (blank lines and lines "
                        "starting with '#' ignored), after any PCAP arguments; 'janus download "
                        "--captures-list' writes such a file")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR",
                        help="output folder (created if missing; existing outputs are replaced)")
    parser.add_argument("--max-packets", type=int, default=DEFAULT_MAX_PACKETS, metavar="T",
                        help="packets kept per flow in the tensor (default %(default)s); totals in "
                        f"{FLOWS_FILE} always cover the whole flow")
    parser.add_argument("--idle-timeout", type=float, default=DEFAULT_IDLE_TIMEOUT_S, metavar="S",
                        help="seconds without a packet after which a flow ends (default %(default)s)")
    parser.add_argument("--active-timeout", type=float, default=None, metavar="S",
                        help="split a flow once a packet comes more than S seconds after its first "
                        "packet (default: never)")
    parser.add_argument("--chunk-mb", type=float, default=DEFAULT_CHUNK_MB, metavar="MB",
                        help="capture bytes decoded per batch; bounds memory (default %(default)s)")
    parser.add_argument("--strict", action="store_true",
                        help="stop with an error at the first damaged record or block of a capture "
                        "(default: warn, skip to the next valid record and count the skipped bytes "
                        f"in {STATS_FILE})")
    parser.add_argument("--store", choices=STORES, default="auto",
                        help=f"packet tensor layout: npz ({PACKETS_FILE}), sharded ({PACKETS_STORE_DIR}/, "
                        "memory-mapped shards) or auto: sharded from --store-min-flows flows on "
                        "(default %(default)s)")
    parser.add_argument("--store-min-flows", type=int, default=DEFAULT_STORE_MIN_FLOWS, metavar="N",
                        help="flows from which --store auto writes the sharded store "
                        "(default %(default)s)")
    parser.add_argument("--shard-flows", type=int, default=DEFAULT_SHARD_ROWS, metavar="N",
                        help="flows per shard of the sharded store (default %(default)s)")
    parser.add_argument("--buffer-flows", type=int, default=DEFAULT_BUFFER_FLOWS, metavar="N",
                        help="finished flows held in memory while an earlier-starting flow is still "
                        "open, before they are spilled as a sorted run to a temporary folder in --out "
                        "and merged at the end; bounds memory, never changes the output "
                        "(default %(default)s: ~0.25 GB of typical flows, at most 1.2 GB at T = 64)")
    parser.add_argument("--labels", nargs="+", type=Path, default=None, metavar="CSV",
                        help="CIC flow CSVs to label the flows with (runs 'janus labels' afterwards); "
                        "put this option after the captures")
    return parser


def read_captures_list(path: Path) -> list[Path]:
    """Capture paths listed in ``path``, one per line; relative paths are taken as given."""
    captures = read_path_list(path, "captures list")
    if not captures:
        raise JanusError(f"{path}: the captures list names no file")
    return captures


def run(args: argparse.Namespace) -> int:
    captures = list(args.captures)
    if args.captures_from is not None:
        captures += read_captures_list(args.captures_from)
    if not captures:
        raise JanusError("no capture given: name PCAP files or --captures-from FILE")
    extract(
        captures, args.out, max_packets=args.max_packets, idle_timeout=args.idle_timeout,
        active_timeout=args.active_timeout, chunk_bytes=int(args.chunk_mb * (1 << 20)), labels=args.labels,
        strict=args.strict, store=args.store, store_min_flows=args.store_min_flows,
        shard_rows=args.shard_flows, buffer_flows=args.buffer_flows,
    )
    return 0


def main(argv=None) -> int:
    return run_main(build_parser, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
