"""The extract step's writer: finished flows -> the dataset triple in start-time order, in
bounded memory.

The output order is the assembler's (:mod:`janus.capture.flows`): ``start_time``, ties by
``seq`` (the stream position of the flow's first packet; unique per flow), ``flow_id =
arange(N)`` in that order across the packet tensor, ``flows.parquet`` and
``flow_features.parquet``. Flows finish in another order (a long flow finishes after many
that started later), so :class:`SortedFlowSink` orders them with

* a **watermark**: the assembler's :meth:`~janus.capture.flows.FlowAssembler.emit_bound`, a
  key below which no flow is still open or still to start. Finished flows below it are
  written out at once, in order;
* a **buffer** of the finished flows above it, at most ``buffer_flows`` (``--buffer-flows``);
  when full it is sorted and **spilled** as a run (raw column files) into a temporary
  folder inside the output folder;
* a **k-way merge** of the runs and the buffer, block by block, that goes on writing whatever
  lies below the watermark as it rises (runs are read back a block at a time, so the merge
  holds about one buffer's worth of flows whatever the number of runs), and everything at
  the end.

Memory is then the open flows plus the buffer plus one block per run, not the capture's flow
count. :class:`DatasetWriter` turns the ordered flows into the three files (written to
temporary names and renamed into place only by :meth:`DatasetWriter.commit`); the spill
folder is removed on success, on an exception and on an interrupt (SIGINT, and SIGTERM
through :func:`janus.capture.extract.extract`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import fields
from pathlib import Path

import numpy as np

from janus.capture.flows import FlowResult
from janus.contract import (
    END_REASONS,
    FEATURES_FILE,
    FLOWS_FILE,
    N_CHANNELS,
    PACKETS_FILE,
    PACKETS_STORE_DIR,
    STATS_FILE,
)
from janus.datasets.store import DEFAULT_SHARD_ROWS, DEFAULT_STORE_MIN_FLOWS, ShardWriter
from janus.errors import ConfigError

#: Finished flows held before a spill. A buffered flow costs its kept rows (36 bytes a
#: packet, at most T) plus ~130 bytes: 0.5 M flows are ~0.25 GB of typical traffic (~10
#: packets a flow) and at most 1.2 GB at T = 64 (every flow 64 packets or more).
DEFAULT_BUFFER_FLOWS = 500_000
#: Rows per Parquet row group: pyarrow's own default, so that the tables come out byte for
#: byte as ``pq.write_table`` of the whole table wrote them before the writer streamed.
ROW_GROUP_ROWS = 1 << 20
#: Prefix of the spill folder inside the output folder.
SPILL_PREFIX = ".extract-spill-"
# Flows per padded block streamed into packets.npz (2.25 MiB at T = 64, one reused buffer).
_NPZ_BLOCK_FLOWS = 1024
# Smallest block a run is read back in (a merge of very many runs still moves whole blocks).
_MIN_BLOCK_FLOWS = 1024

_FIELDS = [f.name for f in fields(FlowResult) if f.name not in ("rows", "row_start", "max_packets")]


class OrderBroken(Exception):
    """A flow finished below a key already written (a confirmed backward clock step): the
    early writes were wrong, the extraction must be redone without them."""


# --------------------------------------------------------------------------- flow blocks
def _keys_below(start: np.ndarray, seq: np.ndarray, bound: tuple[float, int]) -> np.ndarray:
    """Mask of rows whose ``(start, seq)`` sorts strictly before ``bound``."""
    s, q = bound
    return (start < s) | ((start == s) & (seq < q))


def _count_before(start: np.ndarray, seq: np.ndarray, key: tuple[float, int], inclusive: bool) -> int:
    """How many rows of a key-sorted source sort before ``key`` (or at it, ``inclusive``):
    two binary searches instead of a scan of the source."""
    s, q = key
    lo = int(np.searchsorted(start, s, "left"))
    hi = int(np.searchsorted(start, s, "right"))
    return lo + int(np.searchsorted(seq[lo:hi], q, "right" if inclusive else "left"))


def take(res: FlowResult, index: np.ndarray) -> FlowResult:
    """Flows ``index`` (int array, in that order) of ``res`` with their kept rows gathered
    compact, in the same order."""
    index = np.asarray(index, np.int64)
    lengths = res.lengths[index]
    row_start = np.zeros(index.shape[0], np.int64)
    np.cumsum(lengths[:-1], out=row_start[1:])
    total = int(lengths.sum(dtype=np.int64))
    src = np.repeat(res.row_start[index] - row_start, lengths) + np.arange(total)
    return FlowResult(rows=res.rows[src], row_start=row_start, max_packets=res.max_packets,
                      **{k: getattr(res, k)[index] for k in _FIELDS})


def head(res: FlowResult, k: int) -> tuple[FlowResult, FlowResult]:
    """The first ``k`` flows of ``res`` and the rest, as views (both share ``res.rows``)."""
    def part(sl: slice) -> FlowResult:
        # An empty part keeps no reference to the rows (a spilled buffer is then freed).
        empty = len(range(*sl.indices(len(res)))) == 0
        return FlowResult(rows=res.rows[:0] if empty else res.rows, row_start=res.row_start[sl],
                          max_packets=res.max_packets, **{name: getattr(res, name)[sl] for name in _FIELDS})
    return part(slice(0, k)), part(slice(k, None))


def concat(parts: Sequence[FlowResult]) -> FlowResult:
    """Flows of ``parts`` one after the other, their kept rows gathered compact (a part may
    be a view that shares a larger ``rows``)."""
    rows, starts, offset = [], [], 0
    for p in parts:
        lengths = p.lengths.astype(np.int64)
        row_start = np.zeros(len(p), np.int64)
        np.cumsum(lengths[:-1], out=row_start[1:])
        total = int(lengths.sum())
        if p.rows.shape[0] == total and (len(p) == 0 or np.array_equal(p.row_start, row_start)):
            rows.append(p.rows)
        else:
            rows.append(p.rows[np.repeat(p.row_start - row_start, lengths) + np.arange(total)])
        starts.append(row_start + offset)
        offset += total
    return FlowResult(
        rows=np.concatenate(rows) if len(rows) != 1 else rows[0],
        row_start=np.concatenate(starts) if len(starts) != 1 else starts[0],
        max_packets=parts[0].max_packets,
        **{k: np.concatenate([getattr(p, k) for p in parts]) for k in _FIELDS})


def _sorted(res: FlowResult) -> FlowResult:
    """``res`` in key order, rows compact in that order."""
    order = np.lexsort((res.seq, res.start_time))
    if np.array_equal(order, np.arange(len(res))):
        return res
    return take(res, order)


class _Run:
    """One spilled run: a sorted block of flows as raw column files in ``folder``, read back
    a block at a time (``np.fromfile`` at an offset: no memory map, whose touched pages
    would count as the process's memory)."""

    def __init__(self, folder: Path, res: FlowResult):
        self.folder, self.T = folder, res.max_packets
        folder.mkdir()
        self.n = len(res)
        self.dtypes, self.widths = {}, {}
        row_end = np.cumsum(res.lengths, dtype=np.int64)
        for name, arr in (("rows", res.rows), ("row_end", row_end),
                          *((k, getattr(res, k)) for k in _FIELDS)):
            arr = np.ascontiguousarray(arr)
            self.dtypes[name] = arr.dtype
            self.widths[name] = int(np.prod(arr.shape[1:], dtype=np.int64))
            arr.tofile(folder / f"{name}.bin")
        self.pos = 0  # flows read back so far
        self.block = head(res, 0)[0]  # flows read back, not yet written (none yet)

    def _read(self, name: str, lo: int, hi: int) -> np.ndarray:
        dtype, width = self.dtypes[name], self.widths[name]
        out = np.fromfile(self.folder / f"{name}.bin", dtype=dtype, count=(hi - lo) * width,
                          offset=lo * width * dtype.itemsize)
        return out.reshape(-1, width) if width > 1 else out

    def load(self, flows: int) -> None:
        """Read the next ``flows`` flows (or the rest) into :attr:`block`."""
        lo, hi = self.pos, min(self.n, self.pos + flows)
        ends = self._read("row_end", max(lo - 1, 0), hi)
        first_row = int(ends[0]) if lo else 0
        ends = ends[1:] if lo else ends
        cols = {k: self._read(k, lo, hi) for k in _FIELDS}
        row_start = np.concatenate([[0], ends[:-1] - first_row]).astype(np.int64)
        rows = self._read("rows", first_row, int(ends[-1]))
        self.block = FlowResult(rows=rows, row_start=row_start, max_packets=self.T, **cols)
        self.pos = hi

    @property
    def exhausted(self) -> bool:
        return self.pos >= self.n and len(self.block) == 0


class SortedFlowSink:
    """Order finished flows by ``(start_time, seq)`` and hand them to ``write`` in that order,
    in chunks (see the module docstring). ``add`` takes each drained chunk with the
    assembler's bound (None: write nothing yet); ``finish`` writes the rest and removes the
    spill folder (as does ``close`` after an error)."""

    def __init__(self, write: Callable[[FlowResult], None], spill_parent: Path,
                 buffer_flows: int = DEFAULT_BUFFER_FLOWS):
        if buffer_flows < 1:
            raise ConfigError(f"--buffer-flows must be at least 1, got {buffer_flows}")
        self._write, self.buffer_flows = write, int(buffer_flows)
        self._spill_parent = Path(spill_parent)
        self._spill: Path | None = None
        self._buffer: list[FlowResult] = []
        self._n_buffered = 0
        self._runs: list[_Run] = []
        self._last: tuple[float, int] | None = None
        self.n_written = 0
        self.n_spilled = 0  # flows written to spill runs
        self.n_runs = 0
        self.spill_bytes = 0
        self.seconds = 0.0  # time spent here outside ``write`` (sorting, spilling, merging)

    def add(self, res: FlowResult, bound: tuple[float, int] | None) -> None:
        if len(res):
            if self._last is not None and _keys_below(res.start_time, res.seq, self._last).any():
                raise OrderBroken
            self._buffer.append(res)
            self._n_buffered += len(res)
        if bound is not None:
            self._emit(bound)
        if self._n_buffered > self.buffer_flows:
            t = time.perf_counter()
            self._spill_buffer()
            self.seconds += time.perf_counter() - t

    def finish(self) -> None:
        self._emit((np.inf, np.iinfo(np.int64).max), final=True)
        self.close()

    def close(self) -> None:
        """Drop the spill folder (idempotent)."""
        if self._spill is not None:
            shutil.rmtree(self._spill, ignore_errors=True)
            self._spill = None
        self._runs, self._buffer = [], []

    # ---- internals
    def _spill_buffer(self) -> None:
        if self._spill is None:
            self._spill_parent.mkdir(parents=True, exist_ok=True)
            self._spill = Path(tempfile.mkdtemp(prefix=SPILL_PREFIX, dir=self._spill_parent))
        run = _Run(self._spill / f"run-{self.n_runs:05d}", _sorted(concat(self._buffer)))
        self._runs.append(run)
        self.n_runs += 1
        self.n_spilled += run.n
        self.spill_bytes += sum((run.folder / f"{k}.bin").stat().st_size for k in run.dtypes)
        self._buffer, self._n_buffered = [], 0

    def _block_flows(self) -> int:
        return max(_MIN_BLOCK_FLOWS, self.buffer_flows // max(1, len(self._runs)))

    def _emit(self, bound: tuple[float, int], final: bool = False) -> None:
        """Write every held flow below ``bound`` (all, with ``final``), in key order.

        Every source (a drained chunk, a run's loaded block) is sorted, so what it gives is
        a prefix of it; a run's flows after its loaded block sort after the block's last
        flow, so nothing past that may go before the next block is read.
        """
        t = time.perf_counter()
        while True:
            for run in self._runs:
                if len(run.block) == 0 and run.pos < run.n:
                    run.load(self._block_flows())
            self._runs = [r for r in self._runs if not r.exhausted]
            cap = None
            for run in self._runs:
                if run.pos < run.n:
                    last = (run.block.start_time[-1], run.block.seq[-1])
                    cap = last if cap is None or last < cap else cap
            sources = [r.block for r in self._runs] + self._buffer
            counts = []
            for src in sources:
                k = _count_before(src.start_time, src.seq, bound, inclusive=False)
                if cap is not None:
                    k = min(k, _count_before(src.start_time, src.seq, cap, inclusive=True))
                counts.append(k)
            if not any(counts):
                break
            pieces, rest = [], []
            for src, k in zip(sources, counts):
                a, b = head(src, k)
                pieces.append(a)
                rest.append(b)
            for run, b in zip(self._runs, rest):
                run.block = b
            self._buffer = [b for b in rest[len(self._runs):] if len(b)]
            self._n_buffered = sum(len(b) for b in self._buffer)
            out = _sorted(concat([p for p in pieces if len(p)]))
            self._last = (float(out.start_time[-1]), int(out.seq[-1]))
            self.n_written += len(out)
            self.seconds += time.perf_counter() - t
            self._write(out)
            t = time.perf_counter()
            # Only a run whose block ran out can let more through; else all below is out.
            if not any(len(r.block) == 0 and r.pos < r.n for r in self._runs):
                break
        self._runs = [r for r in self._runs if not r.exhausted]
        self.seconds += time.perf_counter() - t
        if final and (self._buffer or self._runs):
            raise AssertionError("flows left after the final merge")


# --------------------------------------------------------------------------- the outputs
class _TableWriter:
    """A Parquet file written row group by row group to a temporary name beside ``path``;
    :meth:`commit` renames it into place. Row groups of :data:`ROW_GROUP_ROWS` rows, each
    written from one contiguous table, as ``pq.write_table`` of the whole table does."""

    def __init__(self, path: Path, use_dictionary):
        self.path, self.use_dictionary = path, use_dictionary
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".parquet.tmp", dir=path.parent)
        os.close(fd)
        self.tmp = Path(tmp)
        self._pending: list = []
        self._n_pending = 0
        self._writer = None

    def append(self, table) -> None:
        self._pending.append(table)
        self._n_pending += table.num_rows
        while self._n_pending >= ROW_GROUP_ROWS:
            self._flush(ROW_GROUP_ROWS)

    def _flush(self, rows: int) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.concat_tables(self._pending)
        head, rest = table.slice(0, rows).combine_chunks(), table.slice(rows)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.tmp, head.schema, use_dictionary=self.use_dictionary)
        self._writer.write_table(head)
        self._pending = [rest] if rest.num_rows else []
        self._n_pending = rest.num_rows

    def commit(self, empty) -> None:
        """Write the last row group (``empty``: the zero-row table, when nothing came) and
        rename the file into place."""
        if self._pending or self._writer is None:
            if not self._pending:
                self._pending = [empty]
            self._flush(self._n_pending)
        self._writer.close()
        self._writer = None
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.tmp, 0o666 & ~umask)
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self.tmp.unlink(missing_ok=True)


class DatasetWriter:
    """The dataset triple of ordered flow chunks (:meth:`write`), put in place by
    :meth:`commit`: nothing of it is visible under its final name before (``abort`` removes
    the temporary files).

    ``store``: ``"npz"`` (``packets.npz``: the packet rows are held in memory to the end),
    ``"sharded"`` (``packets/``, written shard by shard) or ``"auto"``: held in memory like
    npz until the ``store_min_flows``-th flow arrives, then moved into a sharded store and
    streamed from there on; so auto picks sharded exactly when ``N >= store_min_flows``, as
    before, without knowing ``N`` in advance (the memory it costs is bounded by that many
    flows' kept rows: ~0.5 GB at the default of 1 M typical flows).
    """

    def __init__(self, out_dir: Path, paths: Sequence[str], T: int, store: str = "auto",
                 store_min_flows: int = DEFAULT_STORE_MIN_FLOWS, shard_rows: int = DEFAULT_SHARD_ROWS):
        from janus.capture.extract import flow_schema

        self.out_dir, self.paths, self.T = Path(out_dir), [str(p) for p in paths], int(T)
        self.store, self.store_min_flows, self.shard_rows = store, int(store_min_flows), int(shard_rows)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        schema = flow_schema()
        text = [f.name for f in schema if str(f.type) == "string"]
        # Dictionary encoding only where values repeat (text columns): for the number columns
        # it took ~3/4 of the write time and the files come out smaller without it.
        self._flows = _TableWriter(self.out_dir / FLOWS_FILE, text)
        self._features = _TableWriter(self.out_dir / FEATURES_FILE, False)
        self._held: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # npz / auto: rows, row_start, lengths
        self._shards: ShardWriter | None = None
        self._buf: np.ndarray | None = None
        self.kind = "sharded" if store == "sharded" else None
        if self.kind == "sharded":
            self._open_shards()
        self.n = 0
        self.truncated = 0
        self.reasons = np.zeros(len(END_REASONS), np.int64)
        self.feature_seconds = 0.0

    def _open_shards(self) -> None:
        self.kind = "sharded"
        self._shards = ShardWriter(self.out_dir / PACKETS_STORE_DIR, self.T, self.shard_rows)
        # Padded in small blocks: the shard writer copies them into its own shard buffer.
        self._buf = np.empty((_NPZ_BLOCK_FLOWS, self.T, N_CHANNELS), np.float32)

    def _append_shards(self, rows: np.ndarray, row_start: np.ndarray, lengths: np.ndarray) -> None:
        from janus.capture.flows import _pad_rows

        step = self._buf.shape[0]
        for lo in range(0, len(lengths), step):
            hi = min(len(lengths), lo + step)
            block = self._buf[: hi - lo]
            _pad_rows(rows, row_start, lengths, lo, hi, block)
            self._shards.append(block, lengths[lo:hi])

    def write(self, res: FlowResult) -> None:
        """Append ``res`` (the next flows in output order; ``flow_id`` from :attr:`n` on)."""
        from janus.capture.extract import flows_table
        from janus.capture.features import compact_flow_features, features_table

        t = time.perf_counter()
        features = compact_flow_features(res.rows, res.row_start, res.lengths)
        self.feature_seconds += time.perf_counter() - t
        self._flows.append(flows_table(res, self.paths, first_id=self.n))
        self._features.append(features_table(features, first_id=self.n))
        if self._shards is not None:
            self._append_shards(res.rows, res.row_start, res.lengths)
        else:
            self._held.append((res.rows, res.row_start, res.lengths))
        self.n += len(res)
        self.truncated += int((res.n_packets > res.lengths).sum())
        self.reasons += np.bincount(res.end_reason, minlength=len(END_REASONS))
        if self.store == "auto" and self._shards is None and self.n >= self.store_min_flows:
            self._open_shards()
            for held in self._held:
                self._append_shards(*held)
            self._held = []

    def commit(self) -> str:
        """Put the three files in place (the other packet layout, left by an earlier run, is
        removed); the packet layout written, ``"npz"`` or ``"sharded"``."""
        from janus.capture.extract import empty_tables
        from janus.io import write_npz

        (self.out_dir / STATS_FILE).unlink(missing_ok=True)
        if self._shards is not None:
            (self.out_dir / PACKETS_FILE).unlink(missing_ok=True)
            self._shards.close()
            self._shards = self._buf = None
        else:
            self.kind = "npz"
            if (self.out_dir / PACKETS_STORE_DIR).is_dir():
                shutil.rmtree(self.out_dir / PACKETS_STORE_DIR)
            rows, row_start, lengths = self._held_arrays()
            write_npz(self.out_dir / PACKETS_FILE, packets=_padded_stream(rows, row_start, lengths, self.T),
                      lengths=lengths)
            self._held = []
        flows_empty, features_empty = empty_tables()
        self._flows.commit(flows_empty)
        self._features.commit(features_empty)
        return self.kind

    def _held_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self._held:
            return np.zeros((0, N_CHANNELS), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int32)
        offsets = np.cumsum([0] + [h[0].shape[0] for h in self._held[:-1]])
        return (np.concatenate([h[0] for h in self._held]),
                np.concatenate([h[1] + o for h, o in zip(self._held, offsets)]),
                np.concatenate([h[2] for h in self._held]).astype(np.int32))

    def abort(self) -> None:
        """Remove every temporary file (idempotent); the final names are left as they were."""
        self._flows.abort()
        self._features.abort()
        if self._shards is not None:
            self._shards.abort()
            self._shards = self._buf = None
        self._held = []


def _padded_stream(rows: np.ndarray, row_start: np.ndarray, lengths: np.ndarray, T: int):
    """The ``(N, T, 9)`` padded tensor as a :class:`janus.io.ArrayStream`: blocks of
    :data:`_NPZ_BLOCK_FLOWS` flows padded from the compact rows into one reused buffer."""
    from janus.capture.flows import _pad_rows
    from janus.io import ArrayStream

    n = lengths.shape[0]

    def blocks():
        buf = np.empty((min(n, _NPZ_BLOCK_FLOWS), T, N_CHANNELS), np.float32)
        for lo in range(0, n, _NPZ_BLOCK_FLOWS):
            hi = min(n, lo + _NPZ_BLOCK_FLOWS)
            block = buf[: hi - lo]
            _pad_rows(rows, row_start, lengths, lo, hi, block)
            yield block

    return ArrayStream((n, T, N_CHANNELS), np.dtype(np.float32), blocks)
