"""Tests for janus/io.py: atomic writes leave the final name whole or absent."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from janus import io


def test_failed_write_leaves_nothing_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "out.json"
    io.write_json(target, {"v": 1})
    with pytest.raises(RuntimeError), io.atomic_path(target) as tmp:
        tmp.write_text('{"v": 2, "half')
        raise RuntimeError("killed mid-write")
    assert json.loads(target.read_text()) == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_outputs_get_the_usual_file_mode(tmp_path):
    old = os.umask(0o022)
    try:
        io.write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644


def test_npz_round_trip_matches_numpy_savez(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {
        "packets": rng.normal(size=(5, 4, 9)).astype(np.float32),
        "lengths": np.array([1, 4, 2, 3, 4], np.int32),
        "empty": np.zeros((0, 3), np.int64),
        "meta": np.array('{"seed": 1}'),  # 0-d string, as splits files carry
        "strided": np.arange(20, dtype=np.int16)[::2],  # not C-contiguous in memory
    }
    ours, ref = tmp_path / "ours.npz", tmp_path / "ref.npz"
    io.write_npz(ours, **arrays)
    np.savez(ref, **arrays)
    with np.load(ours) as a, np.load(ref) as b:
        assert a.files == b.files == list(arrays)
        for name in arrays:
            assert a[name].dtype == b[name].dtype
            np.testing.assert_array_equal(a[name], b[name])


def test_parquet_accepts_arrow_and_polars(tmp_path):
    import polars as pl

    io.write_parquet(tmp_path / "a.parquet", pa.table({"x": [1, 2]}))
    io.write_parquet(tmp_path / "b.parquet", pl.DataFrame({"x": [1, 2]}))
    assert pq.read_table(tmp_path / "a.parquet").column("x").to_pylist() == [1, 2]
    assert pq.read_table(tmp_path / "b.parquet").column("x").to_pylist() == [1, 2]


def test_npz_stream_gives_the_same_bytes_as_the_whole_array(tmp_path):
    rng = np.random.default_rng(1)
    packets = rng.normal(size=(7, 4, 9)).astype(np.float32)
    lengths = np.arange(7, dtype=np.int32)
    stream = io.ArrayStream(packets.shape, np.dtype(np.float32),
                            lambda: (packets[lo: lo + 3] for lo in range(0, 7, 3)))  # 3 + 3 + 1 rows
    io.write_npz(tmp_path / "whole.npz", packets=packets, lengths=lengths)
    io.write_npz(tmp_path / "stream.npz", packets=stream, lengths=lengths)
    assert (tmp_path / "whole.npz").read_bytes() == (tmp_path / "stream.npz").read_bytes()
    with np.load(tmp_path / "stream.npz") as z:
        np.testing.assert_array_equal(z["packets"], packets)


def test_npz_stream_of_the_wrong_length_is_refused_and_leaves_nothing(tmp_path):
    short = io.ArrayStream((4, 2), np.dtype(np.float32), lambda: [np.zeros((3, 2), np.float32)])
    with pytest.raises(ValueError, match="gave 24 bytes, expected 32"):
        io.write_npz(tmp_path / "x.npz", packets=short)
    assert list(tmp_path.iterdir()) == []


def test_read_path_list_skips_blanks_and_comments_and_names_an_unreadable_file(tmp_path) -> None:
    from janus.errors import JanusError
    from janus.io import read_path_list

    listing = tmp_path / "list.txt"
    listing.write_text("# captures\n  a/one.pcap  \n\nb two.pcap\n#c.pcap\n/abs/three.pcapng\n")
    assert read_path_list(listing, "captures list") == [
        Path("a/one.pcap"), Path("b two.pcap"), Path("/abs/three.pcapng")]
    with pytest.raises(JanusError, match=r"missing\.txt: cannot read the parts list"):
        read_path_list(tmp_path / "missing.txt", "parts list")
