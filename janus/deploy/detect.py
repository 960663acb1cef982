"""The detect step: ``janus detect CAPTURE [CAPTURE ...] --model DIR --out FILE``.

Extracts the captures (one continuous stream, in order; ``-`` = a pcap/pcapng stream on
standard input) with the model's own parameters, scores and aggregates every flow, and writes
one row per flow (:data:`janus.deploy.model.OUTPUT_COLUMNS`: the 5-tuple, times, packet and byte
counts, the score, ``alert`` = score above the chosen threshold, and the explanation columns
of :mod:`janus.deploy.attribution`) to ``FILE`` by its extension: ``.csv``, ``.parquet`` or
``.jsonl``. Flows are handed on in chunks of finished flows and each chunk is written as it
is scored, so memory stays bounded on multi-GB captures; rows come chunk by chunk (within a
chunk by start time): sort by ``start_time`` for the order of ``janus extract``. The file is
written atomically. A one-line summary (flows, alerts, rates) ends the run on stderr.

``--calibrate BENIGN ...`` first refits the aggregator and thresholds on every flow of the
benign captures (the new site's normal traffic), in memory; the folder given to ``--model``
is never written. ``--save-calibrated DIR`` also writes the calibrated model as a new folder.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from janus.cli import run_main
from janus.errors import ConfigError

log = logging.getLogger(__name__)

FORMATS = {".csv": "csv", ".parquet": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def output_format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ConfigError(f"--out {path}: unknown extension {path.suffix!r}; use .csv, .parquet or "
                          ".jsonl")
    return fmt


def write_tables(path: Path, tables: Iterable, schema) -> tuple[int, int]:
    """Write pyarrow ``tables`` (one per chunk) to ``path`` as they come, atomically; returns
    ``(rows, alerts)``. ``schema``: the file's schema when no table comes."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from janus.io import atomic_path

    fmt = output_format(path)
    rows = alerts = 0
    with atomic_path(path) as tmp:
        writer = None
        with open(tmp, "wb") as fh:
            for table in tables:
                if writer is None:
                    writer = _open_writer(fmt, fh, table.schema)
                _write(fmt, writer, fh, table)
                rows += table.num_rows
                alerts += int(pc.sum(table.column("alert")).as_py() or 0)
            if writer is None:
                writer = _open_writer(fmt, fh, schema)
                _write(fmt, writer, fh, pa.Table.from_pylist([], schema=schema))
            if fmt != "jsonl":
                writer.close()
    return rows, alerts


def _open_writer(fmt: str, fh, schema):
    if fmt == "csv":
        import pyarrow.csv as pcsv

        return pcsv.CSVWriter(fh, schema)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetWriter(fh, schema)
    return object()


def _write(fmt: str, writer, fh, table) -> None:
    if fmt == "jsonl":
        import polars as pl

        if table.num_rows:
            pl.from_arrow(table).write_ndjson(fh)
        return
    writer.write_table(table)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="janus detect",
        description="Score every flow of pcap/pcapng captures with a model folder and write one "
        "row per flow (5-tuple, times, counts, score, alert, explanation).")
    p.add_argument("captures", nargs="+", metavar="CAPTURE",
                   help="capture files in time order (one continuous stream); '-' reads a "
                   "pcap/pcapng stream from standard input")
    p.add_argument("--model", required=True, type=Path, metavar="DIR",
                   help="a model folder (results/models/<dataset>/seed<S>/)")
    p.add_argument("--out", required=True, type=Path, metavar="FILE",
                   help="output file: .csv, .parquet or .jsonl (by extension)")
    p.add_argument("--threshold", default=None, metavar="SPEC",
                   help="alert threshold: p95, p99 (benign percentiles), fpr (the folder's target "
                   "FPR), fpr=X (0 < X < 1), or a number (default: fpr)")
    p.add_argument("--calibrate", nargs="+", default=None, metavar="BENIGN",
                   help="benign captures of this site: refit the aggregator and thresholds on "
                   "them first (the network is not retrained; --model is not changed)")
    p.add_argument("--target-fpr", type=float, default=None, metavar="X",
                   help="with --calibrate: the FPR of the 'fpr' threshold (default: the folder's)")
    p.add_argument("--save-calibrated", type=Path, default=None, metavar="DIR",
                   help="with --calibrate: also write the calibrated model as a new model folder")
    p.add_argument("--with-scores", action="store_true",
                   help="also write the 10 JANUS score columns")
    p.add_argument("--chunk-flows", type=int, default=None, metavar="N",
                   help="finished flows scored at a time; bounds memory (default 16384)")
    p.add_argument("--progress", action="store_true",
                   help="show a progress bar on stderr even when it is not a terminal")
    p.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"),
                   help="where the network runs (default cpu)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch")
    return p


def run(args: argparse.Namespace) -> int:
    from janus.capture.batch import SkipCounter
    from janus.capture.pcap import NON_PACKET_SKIP_KEYS
    from janus.deploy.model import _empty_schema, load_model

    output_format(args.out)  # a wrong extension fails before any work
    if (args.save_calibrated or args.target_fpr is not None) and not args.calibrate:
        raise ConfigError("--save-calibrated and --target-fpr need --calibrate BENIGN ...")
    if "-" in (args.calibrate or []):
        raise ConfigError("--calibrate reads capture files, not '-' (standard input)")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model = load_model(args.model, device=args.device)
    if args.calibrate:
        model = model.calibrate(args.calibrate, args.target_fpr, chunk_flows=args.chunk_flows)
        if args.save_calibrated is not None:
            model.save(args.save_calibrated)
            log.info("wrote the calibrated model folder %s", args.save_calibrated)
    name, value = model.threshold(args.threshold)
    t1 = time.perf_counter()
    skips = SkipCounter()
    packets = [0]

    def tables():
        import pyarrow.compute as pc

        for table in model.iter_capture(args.captures, value, chunk_flows=args.chunk_flows,
                                        progress=True if args.progress else None,
                                        with_scores=args.with_scores, skips=skips):
            packets[0] += int(pc.sum(table.column("n_packets")).as_py() or 0)
            yield table

    import polars as pl

    schema = pl.DataFrame(schema=_empty_schema(args.with_scores)).to_arrow().schema
    rows, alerts = write_tables(args.out, tables(), schema)
    wall = time.perf_counter() - t1
    skipped = sum(v for k, v in skips.items() if k not in NON_PACKET_SKIP_KEYS)
    rate = f"{rows / wall:,.0f} flows/s, {packets[0] / wall:,.0f} packets/s" if wall > 0 else ""
    print(f"janus detect: {rows} flows, {alerts} alerts ({100 * alerts / max(rows, 1):.2f} %) at "
          f"{name} = {value:.4g}; {packets[0]} packets in flows, {skipped} skipped; "
          f"{wall:.2f} s ({rate}; model load {t1 - t0:.2f} s) -> {args.out}", file=sys.stderr)
    if rows == 0:
        log.warning("no flows in %s", ", ".join(args.captures))
    return 0


def main(argv=None) -> int:
    return run_main(build_parser, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
