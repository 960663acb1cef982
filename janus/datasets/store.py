"""The packet tensor of a dataset folder, read row by row: ``packets.npz`` or the sharded store.

Two layouts hold the same ``(N, T, 9)`` float32 tensor and ``(N,)`` lengths (row ``i`` =
``flow_id`` ``i``), chosen by size at extraction (:func:`choose_store`):

* ``packets.npz`` (small datasets): two stored (uncompressed) ``.npy`` members. They are read
  through a memory map of the member's bytes inside the zip, a window of rows at a time, so
  a reader never loads the whole tensor either.
* ``packets/`` (the sharded store, large datasets): ``shard-KKKKK.npy`` files of at most
  ``shard_rows`` flows each, ``lengths-KKKKK.npy`` (int32) beside each, and
  ``manifest.json``, written last: format, ``n_flows``, ``T``, ``shard_rows``, and per shard
  its files, rows, encoding and byte sizes. Every file is an ordinary ``.npy``
  (``np.load(path, mmap_mode="r")`` opens it without reading it).

Encodings of a shard (per shard: the writer picks the smallest that gives the float32 values
back bit for bit, :func:`encode_shard`):

* ``compact`` -- a packed record per packet: ``size`` uint16 (uint32 when a frame is larger
  than 65535 bytes), ``iat`` float32 (as extracted), ``win`` uint16 and the six binary
  channels as bits of one uint8 ``flags`` (bit ``k`` = :data:`janus.contract.BINARY` ``[k]``):
  9 (or 11) bytes per packet instead of 36. Extracted captures always fit (sizes and windows
  are integers, flags 0/1).
* ``float32`` -- the ``(n, T, 9)`` tensor itself, for values that are not (e.g. synthetic
  fixtures with fractional sizes).

Writes are atomic: shards go into a temporary folder beside ``packets/``, the manifest is
written last and the folder is renamed into place, so an interrupted write never leaves a
``packets/`` that reads as whole. A reader checks every shard's size against the manifest
and its ``.npy`` header when it opens it; a missing, truncated or foreign file is a
:class:`JanusError` naming it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from janus.contract import (
    BINARY,
    IAT,
    N_CHANNELS,
    PACKETS_FILE,
    PACKETS_STORE_DIR,
    SIZE,
    STORE_MANIFEST_FILE,
    WIN,
)
from janus.errors import JanusError

STORE_FORMAT = "janus-packet-shards"
STORE_VERSION = 1
#: Flows per shard: at T = 64 a compact shard is 19 MiB and the writer's float32 buffer 75 MiB.
DEFAULT_SHARD_ROWS = 32_768
#: ``--store auto`` writes the sharded store from this many flows on (2.3 GB of npz at T = 64).
DEFAULT_STORE_MIN_FLOWS = 1_000_000
STORES = ("auto", "npz", "sharded")
#: Rows per memory-mapped window of ``packets.npz`` (the npz counterpart of a shard).
NPZ_WINDOW_ROWS = DEFAULT_SHARD_ROWS
ENCODINGS = ("compact", "float32")


def choose_store(store: str, n_flows: int, min_flows: int = DEFAULT_STORE_MIN_FLOWS) -> str:
    """``"npz"`` or ``"sharded"`` for ``store`` in :data:`STORES` and a dataset of ``n_flows``."""
    if store not in STORES:
        raise JanusError(f"packet store {store!r} is not one of {list(STORES)}")
    if store == "auto":
        return "sharded" if n_flows >= min_flows else "npz"
    return store


# --------------------------------------------------------------------------- encoding
def compact_dtype(size_dtype: str) -> np.dtype:
    """The packed record of one packet (``size_dtype`` ``"<u2"`` or ``"<u4"``)."""
    return np.dtype([("size", size_dtype), ("iat", "<f4"), ("win", "<u2"), ("flags", "u1")])


def _exact(x: np.ndarray, dtype: str) -> np.ndarray | None:
    """``x`` (float32) as ``dtype`` when casting back gives the same bits (so fractions,
    -0.0, NaN and out-of-range values fail), else None."""
    with np.errstate(invalid="ignore", over="ignore"):
        y = x.astype(dtype)
    return y if np.array_equal(y.astype(np.float32).view(np.uint32), x.view(np.uint32)) else None


def encode_shard(packets: np.ndarray) -> np.ndarray:
    """float32 ``(n, T, 9)`` -> the compact ``(n, T)`` records, or ``packets`` itself when
    the compact form would not give back every value bit for bit."""
    packets = np.ascontiguousarray(packets, np.float32)
    size = _exact(packets[..., SIZE], "<u2")
    if size is None:
        size = _exact(packets[..., SIZE], "<u4")
    win = _exact(packets[..., WIN], "<u2")
    flags = np.zeros(packets.shape[:2], np.uint8)
    for k, ch in enumerate(BINARY):
        bit = _exact(packets[..., ch], "u1")
        if bit is None or bit.max(initial=0) > 1:
            return packets
        flags |= bit << k
    if size is None or win is None:
        return packets
    rec = np.empty(packets.shape[:2], compact_dtype(size.dtype.str))
    rec["size"], rec["iat"], rec["win"], rec["flags"] = size, packets[..., IAT], win, flags
    return rec


def decode(block: np.ndarray) -> np.ndarray:
    """A shard block (compact ``(k, T)`` records or float32 ``(k, T, 9)``) -> float32 ``(k, T, 9)``."""
    if block.dtype.names is None:
        return np.ascontiguousarray(block, dtype=np.float32)
    out = np.zeros((*block.shape, N_CHANNELS), np.float32)
    out[..., SIZE] = block["size"]
    out[..., IAT] = block["iat"]
    out[..., WIN] = block["win"]
    flags = block["flags"]
    for k, ch in enumerate(BINARY):
        out[..., ch] = (flags >> k) & 1
    return out


# --------------------------------------------------------------------------- reading
@dataclass(frozen=True)
class _Segment:
    """Rows ``lo..hi-1`` of the tensor: where their packets and lengths lie on disk."""

    lo: int
    hi: int
    packets: Path
    packets_offset: int  # bytes into the file of row lo's packets
    packets_dtype: np.dtype  # compact record or float32
    lengths: Path
    lengths_offset: int
    lengths_dtype: np.dtype


class PacketStore:
    """The packet tensor of one dataset folder; reads only the rows asked for.

    ``packets(rows)`` float32 ``(k, T, 9)`` and ``lengths(rows)`` int64 ``(k,)`` for any int
    array ``rows`` (any order, repeats allowed), gathered segment by segment (a shard, or a
    window of ``packets.npz``) through a memory map that is closed after each segment, so
    resident memory is the result plus one segment's touched pages. ``store[rows, ...]``
    is ``packets(rows)[(slice(None), ...)]`` for code written against an array.
    """

    def __init__(self, path: Path, kind: str, n_flows: int, T: int, segments: list[_Segment]):
        self.path, self.kind, self.n_flows, self.T = path, kind, n_flows, T
        self._segments = segments
        self._bounds = np.array([s.lo for s in segments] + [n_flows], np.int64)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.n_flows, self.T, N_CHANNELS)

    def __len__(self) -> int:
        return self.n_flows

    def packets(self, rows: np.ndarray | None = None, t: int | None = None) -> np.ndarray:
        """float32 ``(k, t, 9)`` of ``rows`` (all rows when None); ``t`` <= T packets each."""
        t = self.T if t is None else min(t, self.T)
        return self._gather(rows, "packets", t)

    def lengths(self, rows: np.ndarray | None = None) -> np.ndarray:
        """int64 ``(k,)`` valid packet rows of ``rows``, each checked to lie in ``1..T``."""
        return self._gather(rows, "lengths", self.T)

    def __getitem__(self, key):
        return RowReader(self.packets, self.shape)[key]

    @property
    def length_reader(self) -> RowReader:
        """``lengths`` as an indexable ``(N,)`` :class:`RowReader`."""
        return RowReader(self.lengths, (self.n_flows,))

    def chunks(self, rows: np.ndarray | None = None, chunk_rows: int | None = None
               ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """``(rows, packets (k, T, 9), lengths (k,))`` over ``rows`` (sorted; all rows when
        None) in chunks of at most ``chunk_rows`` flows (default: one segment's worth)."""
        rows = np.arange(self.n_flows, dtype=np.int64) if rows is None else np.sort(np.asarray(rows, np.int64))
        step = max(1, chunk_rows or DEFAULT_SHARD_ROWS)
        for lo in range(0, len(rows), step):
            part = rows[lo:lo + step]
            yield part, self.packets(part), self.lengths(part)

    # ---- internals
    def _gather(self, rows: np.ndarray | None, what: str, t: int) -> np.ndarray:
        rows = np.arange(self.n_flows, dtype=np.int64) if rows is None else np.asarray(rows, np.int64)
        if rows.ndim != 1:
            raise ValueError(f"rows must be 1-d, got shape {rows.shape}")
        if rows.size and (rows.min() < 0 or rows.max() >= self.n_flows):
            bad = rows[(rows < 0) | (rows >= self.n_flows)][0]
            raise JanusError(f"{self.path}: flow id {bad} is outside 0..{self.n_flows - 1}; "
                             "were the splits made from this dataset?")
        order = np.argsort(rows, kind="stable")
        srt = rows[order]
        if what == "packets":
            out = np.empty((len(rows), t, N_CHANNELS), np.float32)
        else:
            out = np.empty(len(rows), np.int64)
        cuts = np.searchsorted(srt, self._bounds)
        for k, seg in enumerate(self._segments):
            a, b = cuts[k], cuts[k + 1]
            if a == b:
                continue
            local = srt[a:b] - seg.lo
            if what == "packets":
                block = decode(self._map(seg, "packets")[local, :t])
                bad = ~np.isfinite(block)
                if bad.any():
                    i = int(np.argwhere(bad)[0][0])
                    raise JanusError(f"{seg.packets}: non-finite packet value at flow_id "
                                     f"{seg.lo + int(local[i])}")
            else:
                block = self._map(seg, "lengths")[local].astype(np.int64)
                bad = np.flatnonzero((block < 1) | (block > self.T))
                if bad.size:
                    raise JanusError(f"{seg.lengths}: lengths[{seg.lo + int(local[bad[0]])}] = "
                                     f"{block[bad[0]]} is outside 1..{self.T}")
            out[order[a:b]] = block
        return out

    def _map(self, seg: _Segment, what: str) -> np.ndarray:
        path, offset, dtype = ((seg.packets, seg.packets_offset, seg.packets_dtype) if what == "packets"
                               else (seg.lengths, seg.lengths_offset, seg.lengths_dtype))
        shape = (seg.hi - seg.lo, self.T) if what == "packets" else (seg.hi - seg.lo,)
        if what == "packets" and dtype.names is None:
            shape = (*shape, N_CHANNELS)
        try:
            return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
        except (OSError, ValueError) as exc:
            raise JanusError(f"{path}: cannot map rows {seg.lo}..{seg.hi - 1} ({exc}); "
                             "the file changed since it was opened, rerun 'janus extract'") from exc


def open_packets(data_dir: str | os.PathLike) -> PacketStore:
    """Open the packet tensor of dataset folder ``data_dir`` (``packets.npz`` or ``packets/``)."""
    data_dir = Path(data_dir)
    npz, shards = data_dir / PACKETS_FILE, data_dir / PACKETS_STORE_DIR
    if npz.is_file() and shards.exists():
        raise JanusError(f"{data_dir}: holds both {PACKETS_FILE} and {PACKETS_STORE_DIR}/; "
                         "remove the stale one (or rerun 'janus extract', which replaces both)")
    if shards.exists():
        return _open_sharded(shards)
    if npz.is_file():
        return _open_npz(npz)
    raise JanusError(f"{npz}: not found (nor {PACKETS_STORE_DIR}/); run 'janus extract' for "
                     f"{data_dir} first")


def _npy_header(fh, path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """Shape, dtype and data offset of the ``.npy`` stream at ``fh``'s position."""
    from numpy.lib import format as npy_format

    try:
        version = npy_format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = npy_format.read_array_header_1_0(fh)
        else:
            shape, fortran, dtype = npy_format.read_array_header_2_0(fh)
    except (ValueError, OSError, EOFError) as exc:
        raise JanusError(f"{path}: not a .npy array ({exc}); rerun 'janus extract'") from exc
    if fortran or dtype.hasobject:
        raise JanusError(f"{path}: a Fortran-order or object array; rerun 'janus extract'")
    return shape, dtype, fh.tell()


def _open_npz(path: Path) -> PacketStore:
    try:
        zf = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise JanusError(f"{path}: cannot read ({exc}); rerun 'janus extract'") from exc
    members = {}
    with zf, open(path, "rb") as fh:
        for name in ("packets", "lengths"):
            try:
                info = zf.getinfo(name + ".npy")
            except KeyError as exc:
                raise JanusError(f"{path}: missing array '{name}'; expected 'packets' and "
                                 "'lengths'") from exc
            if info.compress_type != zipfile.ZIP_STORED:
                raise JanusError(f"{path}: member {info.filename} is compressed; rewrite it "
                                 "uncompressed (np.savez, not savez_compressed)")
            # The local header (30 bytes + name + extra field) precedes the member's bytes.
            fh.seek(info.header_offset)
            local = fh.read(30)
            if len(local) < 30 or local[:4] != b"PK\x03\x04":
                raise JanusError(f"{path}: damaged zip header of {info.filename}; rerun 'janus extract'")
            start = info.header_offset + 30 + int.from_bytes(local[26:28], "little") \
                + int.from_bytes(local[28:30], "little")
            fh.seek(start)
            shape, dtype, data = _npy_header(fh, path)
            if data - start + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize > info.file_size:
                raise JanusError(f"{path}: member {info.filename} is shorter than its header "
                                 f"says ({shape}); rerun 'janus extract'")
            members[name] = (shape, dtype, data)
    (pshape, pdtype, poff), (lshape, ldtype, loff) = members["packets"], members["lengths"]
    if len(pshape) != 3 or pshape[2] != N_CHANNELS or tuple(lshape) != tuple(pshape[:1]):
        raise JanusError(f"{path}: packets {pshape} / lengths {lshape} are not "
                         f"(N, T, {N_CHANNELS}) / (N,)")
    if pdtype.kind != "f" or ldtype.kind not in "iu":
        raise JanusError(f"{path}: packets {pdtype} / lengths {ldtype} are not float / integer")
    n, t = int(pshape[0]), int(pshape[1])
    row = t * N_CHANNELS * pdtype.itemsize
    segments = [_Segment(lo, min(n, lo + NPZ_WINDOW_ROWS), path, poff + lo * row, pdtype, path,
                         loff + lo * ldtype.itemsize, ldtype)
                for lo in range(0, n, NPZ_WINDOW_ROWS)]
    return PacketStore(path, "npz", n, t, segments)


def read_manifest(folder: Path) -> dict:
    """The checked manifest of the sharded store ``folder``."""
    mpath = folder / STORE_MANIFEST_FILE
    if not mpath.is_file():
        raise JanusError(f"{mpath}: not found: {folder}/ is an incomplete (interrupted) packet "
                         "store; rerun 'janus extract'")
    try:
        m = json.loads(mpath.read_text(encoding="utf-8"))
        if m["format"] != STORE_FORMAT or m["version"] != STORE_VERSION:
            raise ValueError(f"format {m['format']!r} version {m['version']!r}, expected "
                             f"{STORE_FORMAT!r} version {STORE_VERSION}")
        n, t = int(m["n_flows"]), int(m["T"])
        shards = m["shards"]
        total = 0
        for s in shards:
            for key in ("packets", "lengths", "rows", "encoding", "packets_bytes", "lengths_bytes"):
                if key not in s:
                    raise ValueError(f"shard entry {s!r} lacks {key!r}")
            if s["encoding"] not in ENCODINGS or Path(s["packets"]).name != s["packets"] \
                    or Path(s["lengths"]).name != s["lengths"]:
                raise ValueError(f"bad shard entry {s!r}")
            total += int(s["rows"])
        if total != n or t < 1:
            raise ValueError(f"shards hold {total} rows, n_flows is {n} (T = {t})")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise JanusError(f"{mpath}: not a valid packet-store manifest ({exc}); rerun "
                         "'janus extract'") from exc
    return m


def _open_sharded(folder: Path) -> PacketStore:
    m = read_manifest(folder)
    t, lo, segments = int(m["T"]), 0, []
    for s in m["shards"]:
        rows = int(s["rows"])
        opened = []
        for key, want in (("packets", None), ("lengths", (rows,))):
            path = folder / s[key]
            try:
                size = path.stat().st_size
                with open(path, "rb") as fh:
                    shape, dtype, offset = _npy_header(fh, path)
            except FileNotFoundError as exc:
                raise JanusError(f"{path}: shard file missing; rerun 'janus extract'") from exc
            if size != int(s[key + "_bytes"]):
                raise JanusError(f"{path}: {size} bytes, the manifest says {s[key + '_bytes']} "
                                 "(truncated or replaced); rerun 'janus extract'")
            if key == "packets":
                want = (rows, t) if s["encoding"] == "compact" else (rows, t, N_CHANNELS)
                ok = dtype.names == ("size", "iat", "win", "flags") if s["encoding"] == "compact" \
                    else dtype == np.float32
            else:
                ok = dtype.kind in "iu"
            if tuple(shape) != want or not ok:
                raise JanusError(f"{path}: array {shape} {dtype} does not match the manifest "
                                 f"({want}, {s['encoding']}); rerun 'janus extract'")
            if offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize != size:
                raise JanusError(f"{path}: {size} bytes do not hold a {shape} {dtype} array; "
                                 "rerun 'janus extract'")
            opened.append((path, offset, dtype))
        (pp, po, pd), (lp, lo_off, ld) = opened
        segments.append(_Segment(lo, lo + rows, pp, po, pd, lp, lo_off, ld))
        lo += rows
    return PacketStore(folder, "sharded", int(m["n_flows"]), t, segments)


# --------------------------------------------------------------------------- writing
class ShardWriter:
    """Append flows to a new sharded store at ``folder``; it appears whole on :meth:`close`.

    Memory: one float32 shard buffer (``shard_rows x T x 9 x 4`` bytes). Use as a context
    manager: leaving the block by an exception removes the temporary folder, and the final
    ``folder`` is replaced only after every shard and the manifest are on disk.
    """

    def __init__(self, folder: str | os.PathLike, T: int, shard_rows: int = DEFAULT_SHARD_ROWS,
                 encoding: str = "compact"):
        if shard_rows < 1:
            raise JanusError(f"shard size must be at least 1 flow, got {shard_rows}")
        if encoding not in ENCODINGS:
            raise JanusError(f"shard encoding {encoding!r} is not one of {list(ENCODINGS)}")
        self.folder, self.T, self.shard_rows, self.encoding = Path(folder), int(T), int(shard_rows), encoding
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.folder.name}.", suffix=".tmp",
                                         dir=self.folder.parent))
        self._buf = np.empty((self.shard_rows, self.T, N_CHANNELS), np.float32)
        self._len = np.empty(self.shard_rows, np.int32)
        self._fill = 0
        self.shards: list[dict] = []
        self.n_flows = 0

    def append(self, packets: np.ndarray, lengths: np.ndarray) -> None:
        """Add flows: float32 ``(k, T, 9)`` packets and their ``(k,)`` lengths, in flow_id order."""
        if packets.ndim != 3 or packets.shape[1:] != (self.T, N_CHANNELS) or len(lengths) != len(packets):
            raise ValueError(f"append: packets {packets.shape} / lengths {np.shape(lengths)} are not "
                             f"(k, {self.T}, {N_CHANNELS}) / (k,)")
        done = 0
        while done < len(packets):
            k = min(len(packets) - done, self.shard_rows - self._fill)
            self._buf[self._fill:self._fill + k] = packets[done:done + k]
            self._len[self._fill:self._fill + k] = lengths[done:done + k]
            self._fill += k
            done += k
            if self._fill == self.shard_rows:
                self._flush()

    def _flush(self) -> None:
        n = self._fill
        if n == 0:
            return
        index = len(self.shards)
        block = self._buf[:n]
        data = encode_shard(block) if self.encoding == "compact" else block
        names = {"packets": f"shard-{index:05d}.npy", "lengths": f"lengths-{index:05d}.npy"}
        for key, arr in (("packets", data), ("lengths", self._len[:n])):
            np.save(self.tmp / names[key], arr, allow_pickle=False)
        self.shards.append({
            **names, "rows": n, "encoding": "float32" if data is block else "compact",
            "packets_bytes": (self.tmp / names["packets"]).stat().st_size,
            "lengths_bytes": (self.tmp / names["lengths"]).stat().st_size,
        })
        self.n_flows += n
        self._fill = 0

    def close(self) -> dict:
        """Flush the last shard, write the manifest, move the store into place; the manifest."""
        self._flush()
        manifest = {"format": STORE_FORMAT, "version": STORE_VERSION, "n_flows": self.n_flows,
                    "T": self.T, "channels": N_CHANNELS, "shard_rows": self.shard_rows,
                    "shards": self.shards}
        (self.tmp / STORE_MANIFEST_FILE).write_text(json.dumps(manifest, indent=1) + "\n")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.tmp, 0o777 & ~umask)
        # Move an old store aside first: a rename cannot replace a non-empty folder.
        old = None
        if self.folder.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{self.folder.name}.", suffix=".old",
                                        dir=self.folder.parent))
            os.replace(self.folder, old / "x")
        os.replace(self.tmp, self.folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        self._buf = self._len = None
        return manifest

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> ShardWriter:  # noqa: PYI034 - not subclassed
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        elif self._buf is not None:
            self.close()


def write_store(folder: str | os.PathLike, packets: np.ndarray, lengths: np.ndarray,
                shard_rows: int = DEFAULT_SHARD_ROWS, encoding: str = "compact") -> dict:
    """Write the whole float32 ``(N, T, 9)`` tensor and ``(N,)`` lengths as a sharded store."""
    with ShardWriter(folder, packets.shape[1], shard_rows, encoding) as w:
        for lo in range(0, len(packets), shard_rows):
            w.append(packets[lo:lo + shard_rows], lengths[lo:lo + shard_rows])
        return w.close()


# --------------------------------------------------------------------------- flow features
class RowReader:
    """Rows of an ``(N, ...)`` on-disk array read on indexing: ``reader[rows]`` /
    ``reader[rows, cols]`` calls ``read(rows)`` for just those rows (a slice, an int array
    or an int); for code written against an in-memory array."""

    def __init__(self, read, shape: tuple[int, ...]):
        self._read, self.shape = read, tuple(shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        rows = key[0]
        rows = np.arange(*rows.indices(self.shape[0])) if isinstance(rows, slice) else np.asarray(rows)
        scalar = np.ndim(rows) == 0
        out = self._read(np.atleast_1d(rows).astype(np.int64))[(slice(None), *key[1:])]
        return out[0] if scalar else out


def feature_reader(path: str | os.PathLike, columns: list[str]) -> RowReader:
    """A :class:`RowReader` of the float64 ``(N, len(columns))`` columns of Parquet ``path``."""
    import pyarrow.parquet as pq

    path = Path(path)
    try:
        n = pq.ParquetFile(path).metadata.num_rows
    except Exception as exc:  # pyarrow raises several types for a non-Parquet file
        raise JanusError(f"{path}: not a readable Parquet file ({exc})") from exc
    return RowReader(lambda rows: read_feature_rows(path, columns, rows)[0], (n, len(columns)))


def read_feature_rows(path: str | os.PathLike, columns: list[str], rows: np.ndarray | None = None
                      ) -> tuple[np.ndarray, int]:
    """float64 ``(k, len(columns))`` of Parquet file ``path`` at ``rows`` (all when None) and the
    file's row count, read one row group at a time; ``flow_id`` of every row read must equal
    its row number (the contract's row alignment)."""
    import pyarrow.parquet as pq

    path = Path(path)
    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a non-Parquet file
        raise JanusError(f"{path}: not a readable Parquet file ({exc})") from exc
    missing = [c for c in ("flow_id", *columns) if c not in pf.schema_arrow.names]
    if missing:
        raise JanusError(f"{path}: missing columns {missing}")
    n = pf.metadata.num_rows
    rows = np.arange(n, dtype=np.int64) if rows is None else np.asarray(rows, np.int64)
    if rows.size and (rows.min() < 0 or rows.max() >= n):
        raise JanusError(f"{path}: flow id {int(rows.max())} is outside 0..{n - 1}; were the "
                         "splits made from this dataset?")
    order = np.argsort(rows, kind="stable")
    srt = rows[order]
    out = np.empty((len(rows), len(columns)), np.float64)
    bounds = np.zeros(pf.num_row_groups + 1, np.int64)
    bounds[1:] = np.cumsum([pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)])
    cuts = np.searchsorted(srt, bounds)
    for g in range(pf.num_row_groups):
        a, b = cuts[g], cuts[g + 1]
        if a == b:
            continue
        table = pf.read_row_group(g, columns=["flow_id", *columns]).take(srt[a:b] - bounds[g])
        flow_id = table.column("flow_id").to_numpy()
        if not np.array_equal(flow_id, srt[a:b]):
            i = int(np.flatnonzero(flow_id != srt[a:b])[0])
            raise JanusError(f"{path}: row {srt[a + i]} has flow_id {flow_id[i]}; flow_id must be "
                             f"arange({n}) (row-aligned with the packets)")
        block = np.stack([table.column(c).to_numpy().astype(np.float64) for c in columns], 1)
        bad = ~np.isfinite(block)
        if bad.any():
            i, j = (int(v) for v in np.argwhere(bad)[0])
            raise JanusError(f"{path}: non-finite value at flow_id {srt[a + i]} (column {columns[j]})")
        out[order[a:b]] = block
    return out, n
