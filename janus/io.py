"""Atomic writes: every output appears whole under its final name, or not at all.

A writer writes to a temporary file in the destination folder and renames it over the
final name only after the write succeeded, so an interrupted job (Ctrl-C, a killed
Snakemake job, a full disk) never leaves a half file that looks whole.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` if the block succeeds.

    ``suffix`` defaults to the final name's suffix, for writers that insist on one
    (``np.savez`` appends ``.npz`` otherwise).
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{final.name}.", suffix=(final.suffix if suffix is None else suffix) + ".tmp",
        dir=final.parent,
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600 files; outputs get the usual mode (0666 less the umask).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, final)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@dataclass(frozen=True)
class ArrayStream:
    """An array that :func:`write_npz` writes block by block instead of from memory.

    ``blocks()`` yields C-contiguous arrays of ``dtype`` whose bytes, concatenated, are the
    C-order bytes of the whole ``shape`` array (for example consecutive row blocks). Used for
    the padded packet tensor: a reused block buffer is refilled and written, so the ~0.3 GB
    tensor of a 2 GB capture never exists in memory (nor its freshly faulted pages).
    """

    shape: tuple[int, ...]
    dtype: np.dtype
    blocks: Callable[[], Iterable[np.ndarray]]


def write_npz(path: str | os.PathLike, **arrays: np.ndarray | ArrayStream) -> None:
    """Write arrays to an uncompressed ``.npz`` atomically.

    The same archive layout as ``np.savez`` (one stored, zip64 ``NAME.npy`` member per array,
    ``.npy`` format 1.0 headers), but a C-contiguous array's bytes go to the zip member as
    one buffer instead of ``np.savez``'s 16 MiB ``tobytes`` copies, which matters for the
    ~0.3 GB packet tensor of a 2 GB capture. An :class:`ArrayStream` value is written block
    by block under the header of its final shape: the file is byte for byte the one its
    whole array would give.
    """
    import zipfile

    from numpy.lib import format as npy_format

    with atomic_path(path) as tmp:  # noqa: SIM117 -- the zip needs the temp path first
        with open(tmp, "wb") as fh, zipfile.ZipFile(fh, mode="w", compression=zipfile.ZIP_STORED,
                                                   allowZip64=True) as zf:
            for name, value in arrays.items():
                with zf.open(name + ".npy", "w", force_zip64=True) as member:
                    if isinstance(value, ArrayStream):
                        _write_stream(member, value, npy_format)
                        continue
                    value = np.asanyarray(value)
                    if value.dtype.hasobject or not value.flags.c_contiguous or value.ndim == 0:
                        npy_format.write_array(member, value, allow_pickle=False)
                        continue
                    header = npy_format.header_data_from_array_1_0(value)
                    try:
                        npy_format.write_array_header_1_0(member, header)
                    except ValueError:  # a header too long for format 1.0 (huge structured dtypes)
                        npy_format.write_array_header_2_0(member, header)
                    if value.size:
                        member.write(memoryview(value.reshape(-1).view(np.uint8)))


def _write_stream(member, stream: ArrayStream, npy_format) -> None:
    dtype = np.dtype(stream.dtype)
    if dtype.hasobject:
        raise ValueError("an ArrayStream cannot hold Python objects")
    # What header_data_from_array_1_0 gives for a C-contiguous array of this shape and dtype.
    header = {"descr": npy_format.dtype_to_descr(dtype), "fortran_order": False,
              "shape": tuple(int(d) for d in stream.shape)}
    try:
        npy_format.write_array_header_1_0(member, header)
    except ValueError:
        npy_format.write_array_header_2_0(member, header)
    expected = int(np.prod(stream.shape, dtype=np.int64)) * dtype.itemsize
    written = 0
    for block in stream.blocks():
        block = np.asarray(block)
        if block.dtype != dtype or not block.flags.c_contiguous:
            raise ValueError(f"ArrayStream block of {block.dtype} (contiguous: "
                             f"{block.flags.c_contiguous}), expected C-contiguous {dtype}")
        if block.size:
            member.write(memoryview(block.reshape(-1).view(np.uint8)))
            written += block.nbytes
    if written != expected:
        # The header already promised the shape: a short or long stream is a bug upstream.
        raise ValueError(f"ArrayStream of shape {stream.shape} gave {written} bytes, expected {expected}")


def read_parquet(path: str | os.PathLike, what: str = "file", missing_hint: str = "") -> Any:
    """Read a Parquet file into a pyarrow Table; a missing or unreadable file is a
    :class:`janus.errors.JanusError` naming it and ``what`` it is (``missing_hint`` says how
    to make it)."""
    import pyarrow.parquet as pq

    from janus.errors import JanusError

    path = Path(path)
    if not path.is_file():
        hint = f" ({missing_hint})" if missing_hint else ""
        raise JanusError(f"{path}: {what} not found{hint}")
    try:
        return pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a non-Parquet file
        raise JanusError(f"{path}: not a readable Parquet file ({exc})") from exc


def write_parquet(path: str | os.PathLike, table: Any, use_dictionary: bool | list[str] = True) -> None:
    """Write a pyarrow Table, a polars DataFrame or a pandas DataFrame to Parquet atomically.

    ``use_dictionary``: pyarrow's option, all columns or the named ones. Dictionary-encoding
    float columns of distinct values is most of a write's time and makes no smaller file.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not isinstance(table, pa.Table):
        to_arrow = getattr(table, "to_arrow", None)
        table = to_arrow() if to_arrow is not None else pa.Table.from_pandas(table)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, use_dictionary=use_dictionary)


def read_path_list(path: str | os.PathLike, what: str) -> list[Path]:
    """The paths listed in the text file ``path``, one per line (surrounding blanks stripped;
    blank lines and lines starting with '#' ignored; relative paths kept as given). ``what``
    names the list in the error, e.g. "captures list"."""
    from janus.errors import JanusError

    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise JanusError(f"{path}: cannot read the {what} ({exc.strerror})") from exc
    return [Path(line.strip()) for line in lines if line.strip() and not line.startswith("#")]


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write text atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


#: Rows per batch of :func:`iter_parquet` and :func:`iter_labels` (a few MiB of columns).
BATCH_ROWS = 1 << 16


def iter_parquet_tables(path: str | os.PathLike, columns: list[str],
                        batch_rows: int = BATCH_ROWS) -> Iterator[Any]:
    """Yield pyarrow Tables of exactly ``batch_rows`` rows (the last may be shorter) of
    ``columns``, read batch by batch whatever the file's row-group size, so two row-aligned
    files read with one ``batch_rows`` give aligned batches. Memory: a read buffer and a
    batch, whatever the file's size."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pending: list[Any] = []
    held = 0
    # pre_buffer (pyarrow's default) keeps the coalesced reads of past row groups: measured
    # +100 MiB over a 5 M-flow table; a buffered stream keeps one page at a time.
    with pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20) as pf:
        for batch in pf.iter_batches(batch_size=batch_rows, columns=columns, use_threads=False):
            pending.append(batch)
            held += batch.num_rows
            while held >= batch_rows:
                table = pa.Table.from_batches(pending)
                yield table.slice(0, batch_rows)
                rest = table.slice(batch_rows)
                pending, held = rest.to_batches(), rest.num_rows
    if held:
        yield pa.Table.from_batches(pending)


def iter_parquet(path: str | os.PathLike, columns: list[str], batch_rows: int = BATCH_ROWS
                 ) -> Iterator[dict[str, np.ndarray]]:
    """:func:`iter_parquet_tables` as ``{column: array}`` (strings as object arrays)."""
    for table in iter_parquet_tables(path, columns, batch_rows):
        yield {c: table.column(c).to_numpy() for c in columns}


@contextlib.contextmanager
def parquet_writer(path: str | os.PathLike, schema: Any,
                   use_dictionary: bool | list[str] = True) -> Iterator[Callable[[Any], None]]:
    """Yield ``write(table)`` appending pyarrow Tables of ``schema`` to a Parquet file as row
    groups; the file appears under ``path`` when the block succeeds (atomic, as
    :func:`write_parquet`), with the schema and no rows if nothing was written."""
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        writer = pq.ParquetWriter(tmp, schema, use_dictionary=use_dictionary)
        try:
            yield writer.write_table
        finally:
            writer.close()


def iter_labels(data_dir: str | Path, batch_rows: int = BATCH_ROWS
                ) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(first flow_id, int8 labels (n,))`` of ``labels.parquet`` batch by batch
    (0 benign, 1 attack, -1 unknown), checking that flow_id is ``arange(N)`` and every label
    is valid. Memory is one batch, not the dataset."""
    from janus.contract import LABELS_FILE
    from janus.errors import JanusError

    path = Path(data_dir) / LABELS_FILE
    if not path.is_file():
        raise JanusError(f"{path}: not found; run 'janus labels' for {data_dir} first")
    first = 0
    try:
        batches = iter_parquet(path, ["flow_id", "label"], batch_rows)
        for batch in batches:
            flow_id, labels = batch["flow_id"], batch["label"].astype(np.int8)
            if not np.array_equal(flow_id, np.arange(first, first + flow_id.shape[0])):
                raise JanusError(f"{path}: flow_id is not arange(N)")
            bad = np.flatnonzero(~np.isin(labels, (-1, 0, 1)))
            if bad.size:
                raise JanusError(f"{path}: label {labels[bad[0]]} at flow_id {first + bad[0]}; "
                                 "expected 0, 1 or -1")
            yield first, labels
            first += labels.shape[0]
    except (OSError, KeyError, ValueError) as exc:  # pyarrow's errors subclass these
        raise JanusError(f"{path}: not a readable labels file ({exc})") from exc


def load_labels(data_dir: str | Path) -> np.ndarray:
    """int8 ``(N,)`` labels (0 benign, 1 attack, -1 unknown) from ``labels.parquet``
    (all of them in memory; :func:`iter_labels` streams them)."""
    parts = [labels for _, labels in iter_labels(data_dir)]
    return np.concatenate(parts) if parts else np.zeros(0, np.int8)
