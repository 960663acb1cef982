"""The extract step: capture files -> the dataset triple, plus skip counts.

``janus extract PCAP [PCAP ...] --out DIR`` reads the captures as one continuous packet
stream in the order given (a flow may start in one split file and go on in the next),
assembles bidirectional flows (:mod:`janus.flows`) and writes, each atomically:

* ``packets.npz`` -- ``packets`` float32 ``(N, T, 9)`` and ``lengths`` int32 ``(N,)``;
* ``flows.parquet`` -- :data:`janus.contract.FLOW_COLUMNS`, one row per flow;
* ``flow_features.parquet`` -- ``flow_id`` + the 20 features (:mod:`janus.features`);
* ``extract_stats.json`` -- written last: packets read per file, packets skipped by reason,
  totals, end reasons, the parameters and the wall time.

All three tables are indexed by ``flow_id = arange(N)`` in the same row order (flows sorted
by start time). With ``--labels`` the labels step runs on the result.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .batch import SkipCounter, ip_text_from_words
from .cli import run_main
from .contract import (
    DEFAULT_MAX_PACKETS,
    END_REASONS,
    FEATURES_FILE,
    FLOW_COLUMNS,
    FLOWS_FILE,
    PACKETS_FILE,
    STATS_FILE,
)
from .errors import ConfigError, JanusError
from .features import arrow_column, compute_flow_features, features_table
from .flows import FlowAssembler, FlowResult

log = logging.getLogger(__name__)

DEFAULT_IDLE_TIMEOUT_S = 120.0
DEFAULT_CHUNK_MB = 32
_BYTES_KEY = "truncated_tail_bytes"  # the one SkipCounter key that counts bytes, not packets


def _string_array(values: Sequence[str]):
    """A pyarrow ``string`` array built from buffers.

    ``pa.array(list_of_str)`` imports pandas on first use (~0.25 s per process, a large
    share of extracting a small capture); offsets + UTF-8 bytes go straight to Arrow.
    """
    import pyarrow as pa

    encoded = [v.encode("utf-8") for v in values]
    offsets = np.zeros(len(encoded) + 1, np.int64)
    np.cumsum(np.fromiter(map(len, encoded), np.int64, len(encoded)), out=offsets[1:])
    if offsets[-1] >= 2**31:
        return pa.array(values, type=pa.large_string()).cast(pa.string())
    return pa.StringArray.from_buffers(len(encoded), pa.py_buffer(offsets.astype(np.int32)),
                                       pa.py_buffer(b"".join(encoded)))


def flows_table(res: FlowResult, paths: Sequence[str]):
    """A :class:`FlowResult` -> pyarrow Table with exactly :data:`janus.contract.FLOW_COLUMNS`."""
    import pyarrow as pa

    files = np.asarray([str(p) for p in paths], dtype=object)
    n = len(res)
    cols = {
        "flow_id": np.arange(n, dtype=np.int64),
        "src_ip": ip_text_from_words(res.src_ip),
        "dst_ip": ip_text_from_words(res.dst_ip),
        "src_port": res.src_port,
        "dst_port": res.dst_port,
        "proto": res.proto,
        "start_time": res.start_time,
        "end_time": res.end_time,
        "n_packets": res.n_packets,
        "n_bytes": res.n_bytes,
        "end_reason": res.end_reason_text(),
        "source_file": files[res.file_index].tolist() if n else [],
    }
    schema = pa.schema([(name, pa.type_for_alias(t)) for name, t in FLOW_COLUMNS.items()])
    assert list(cols) == schema.names
    arrays = {}
    for field in schema:
        value = cols[field.name]
        arrays[field.name] = (_string_array(value) if field.type == pa.string()
                              else arrow_column(value, FLOW_COLUMNS[field.name]))
    return pa.table(arrays, schema=schema)


def _progress(total_bytes: int):
    from tqdm import tqdm

    return tqdm(total=total_bytes, unit="B", unit_scale=True, unit_divisor=1024, desc="extract",
                disable=None, dynamic_ncols=True)


def extract(
    paths: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    max_packets: int = DEFAULT_MAX_PACKETS,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT_S,
    active_timeout: float | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_MB << 20,
    labels: Sequence[str | os.PathLike] | None = None,
) -> dict:
    """Extract ``paths`` (one continuous stream, in order) into ``out_dir``.

    Returns the summary written to ``extract_stats.json``. Raises :class:`JanusError` for a
    missing or unreadable capture (:class:`janus.errors.CaptureError` from the reader names
    the file and byte offset) and :class:`ConfigError` for bad parameters.
    """
    from .pcap import iter_capture

    paths = [str(p) for p in paths]
    if not paths:
        raise ConfigError("no capture files given")
    for p in paths:
        if not Path(p).is_file():
            raise JanusError(f"{p}: capture file not found")
    if max_packets < 1:
        raise ConfigError(f"--max-packets must be >= 1, got {max_packets}")
    if not idle_timeout > 0:
        raise ConfigError(f"--idle-timeout must be > 0 seconds, got {idle_timeout}")
    if active_timeout is not None and not active_timeout > 0:
        raise ConfigError(f"--active-timeout must be > 0 seconds, got {active_timeout}")
    if chunk_bytes < 1 << 16:
        raise ConfigError(f"chunk size must be at least 64 KiB, got {chunk_bytes} bytes")
    out_dir = Path(out_dir)
    t0 = time.perf_counter()

    sizes = [Path(p).stat().st_size for p in paths]
    skips = SkipCounter()
    asm = FlowAssembler(max_packets, idle_timeout, active_timeout)
    per_file: list[dict] = []
    with _progress(sum(sizes)) as bar:
        for index, (path, size) in enumerate(zip(paths, sizes)):
            kept, shown = 0, 0
            for batch in iter_capture(path, file_index=index, skips=skips, chunk_bytes=chunk_bytes):
                asm.add(batch)
                kept += len(batch)
                # The reader does not report offsets; advance by an estimate (record header +
                # frame) capped at the file size, then snap to the exact size at file end.
                step = min(size - shown, 16 * len(batch) + int(batch.wire_len.sum(dtype=np.int64)))
                bar.update(step)
                shown += step
            bar.update(size - shown)
            per_file.append({"path": path, "bytes": size, "packets_kept": kept})
        bar.set_postfix_str("assembling")
        res = asm.finish()

    features = compute_flow_features(res.packets, res.lengths)
    _write_outputs(out_dir, res, features, paths)
    wall = time.perf_counter() - t0

    skipped = {k: int(v) for k, v in sorted(skips.items())}
    n_skipped = sum(v for k, v in skipped.items() if k != _BYTES_KEY)
    n_kept = sum(f["packets_kept"] for f in per_file)
    reasons = Counter(res.end_reason_text())
    summary = {
        "files": per_file,
        "skipped": skipped,
        "totals": {
            "packets_kept": n_kept,
            "packets_skipped": n_skipped,
            "flows": len(res),
            "bytes_read": sum(sizes),
            "packets_in_flows_truncated": int((res.n_packets > res.lengths).sum()),
        },
        "end_reasons": {r: int(reasons.get(r, 0)) for r in END_REASONS},
        "parameters": {
            "max_packets": max_packets,
            "idle_timeout_s": idle_timeout,
            "active_timeout_s": active_timeout,
            "chunk_bytes": chunk_bytes,
        },
        "wall_time_s": round(wall, 3),
        "packets_per_s": round((n_kept + n_skipped) / wall, 1) if wall > 0 else None,
    }
    from .io import write_json

    write_json(out_dir / STATS_FILE, summary)
    log.info("%d packets (%d skipped) -> %d flows in %.2f s -> %s", n_kept + n_skipped, n_skipped,
             len(res), wall, out_dir)
    if len(res) == 0:
        log.warning("no flows were extracted from %s; see %s for skipped packets", ", ".join(paths),
                    out_dir / STATS_FILE)
    if labels:
        # Imported here so that extraction works on installs where the labels step is absent.
        from .labels import label_dataset

        label_dataset(out_dir, csv=[str(c) for c in labels])
    return summary


def _write_outputs(out_dir: Path, res: FlowResult, features: np.ndarray, paths: Sequence[str]) -> None:
    from .io import write_npz, write_parquet

    # The stats file, written last, marks a complete triple: drop a previous run's first so
    # that a run interrupted between two writes never looks complete.
    (out_dir / STATS_FILE).unlink(missing_ok=True)
    write_npz(out_dir / PACKETS_FILE, packets=res.packets, lengths=res.lengths)
    write_parquet(out_dir / FLOWS_FILE, flows_table(res, paths))
    write_parquet(out_dir / FEATURES_FILE, features_table(features))


# --------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="janus extract",
        description="Read pcap/pcapng captures (one continuous stream, in the order given) and "
        f"write {PACKETS_FILE}, {FLOWS_FILE}, {FEATURES_FILE} and {STATS_FILE} into --out.",
    )
    parser.add_argument("captures", metavar="PCAP", nargs="+", type=Path,
                        help="capture files (pcap or pcapng), in time order; flows may span files")
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
    parser.add_argument("--labels", nargs="+", type=Path, default=None, metavar="CSV",
                        help="CIC flow CSVs to label the flows with (runs 'janus labels' afterwards); "
                        "put this option after the captures")
    return parser


def run(args: argparse.Namespace) -> int:
    extract(
        args.captures, args.out, max_packets=args.max_packets, idle_timeout=args.idle_timeout,
        active_timeout=args.active_timeout, chunk_bytes=int(args.chunk_mb * (1 << 20)), labels=args.labels,
    )
    return 0


def main(argv=None) -> int:
    return run_main(build_parser, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
