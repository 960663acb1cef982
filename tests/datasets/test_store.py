"""The packet stores and the row-reading dataset API (janus/datasets/store.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from janus.contract import (
    BINARY,
    FEATURES_FILE,
    FLOW_FEATURES,
    IAT,
    N_CHANNELS,
    PACKETS_FILE,
    PACKETS_STORE_DIR,
    SIZE,
    STATS_FILE,
    STORE_MANIFEST_FILE,
    WIN,
)
from janus.datasets import store
from janus.errors import JanusError
from janus.io import write_npz

T = 6


def extracted_like(n: int, seed: int = 0, big_frame_at: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Packets as extraction makes them: integer sizes and windows, 0/1 flags, float32 gaps
    of many magnitudes, flows of every length 1..T, zero padding."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, T + 1, n).astype(np.int32)
    p = np.zeros((n, T, N_CHANNELS), np.float32)
    p[..., SIZE] = rng.integers(40, 1515, (n, T))
    p[..., IAT] = (rng.exponential(1.0, (n, T)) * 10.0 ** rng.integers(-7, 3, (n, T))).astype(np.float32)
    p[:, 0, IAT] = 0
    p[..., WIN] = rng.integers(0, 65536, (n, T))
    p[..., list(BINARY)] = rng.integers(0, 2, (n, T, len(BINARY)))
    if big_frame_at is not None:
        p[big_frame_at, 0, SIZE] = 70_000  # a jumbo/TSO frame: does not fit uint16
    p *= (np.arange(T)[None, :] < lengths[:, None])[..., None]
    return p, lengths


def bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, np.float32).view(np.uint32)


@pytest.fixture()
def both(tmp_path):
    """The same 22 flows as packets.npz (folder a) and as 7-row shards (folder b: 7+7+7+1)."""
    p, lengths = extracted_like(22)
    write_npz(tmp_path / "a" / PACKETS_FILE, packets=p, lengths=lengths)
    manifest = store.write_store(tmp_path / "b" / PACKETS_STORE_DIR, p, lengths, shard_rows=7)
    return tmp_path / "a", tmp_path / "b", p, lengths, manifest


def test_manifest_describes_the_shards(both):
    _, b, _, _, m = both
    assert [s["rows"] for s in m["shards"]] == [7, 7, 7, 1]
    assert m["n_flows"] == 22 and m["T"] == T and m["shard_rows"] == 7
    assert json.loads((b / PACKETS_STORE_DIR / STORE_MANIFEST_FILE).read_text()) == m
    for s in m["shards"]:
        assert (b / PACKETS_STORE_DIR / s["packets"]).stat().st_size == s["packets_bytes"]
        # Every shard is a plain .npy a memory map opens without reading.
        arr = np.load(b / PACKETS_STORE_DIR / s["packets"], mmap_mode="r")
        assert isinstance(arr, np.memmap) and arr.shape == (s["rows"], T)
    assert {s["encoding"] for s in m["shards"]} == {"compact"}


@pytest.mark.parametrize("rows", [
    [6, 7],  # the last row of shard 0 and the first of shard 1
    [20, 21],  # the last full shard's end and the one-row shard
    [21, 0, 14, 13, 7, 6],  # unsorted, every boundary
    [3, 3, 3, 8],  # repeats
    [],
    list(range(22)),
])
def test_rows_equal_the_array_in_both_layouts(both, rows):
    a, b, p, lengths, _ = both
    rows = np.array(rows, np.int64)
    for folder in (a, b):
        s = store.open_packets(folder)
        assert s.shape == (22, T, N_CHANNELS)
        np.testing.assert_array_equal(bits(s.packets(rows)), bits(p[rows]))
        np.testing.assert_array_equal(s.lengths(rows), lengths[rows])
        np.testing.assert_array_equal(bits(s.packets(rows, t=2)), bits(p[rows, :2]))


def test_npz_windows_cross_boundaries(both, monkeypatch):
    a, _, p, lengths, _ = both
    monkeypatch.setattr(store, "NPZ_WINDOW_ROWS", 5)
    s = store.open_packets(a)
    assert len(s._segments) == 5
    rows = np.array([4, 5, 9, 10, 21, 0])
    np.testing.assert_array_equal(bits(s.packets(rows)), bits(p[rows]))
    np.testing.assert_array_equal(s.lengths(rows), lengths[rows])


@pytest.mark.parametrize("shard_rows", [1, 5, 22, 1000])
def test_one_shard_and_many(tmp_path, shard_rows):
    p, lengths = extracted_like(22, seed=3)
    m = store.write_store(tmp_path / PACKETS_STORE_DIR, p, lengths, shard_rows=shard_rows)
    assert len(m["shards"]) == -(-22 // shard_rows)
    s = store.open_packets(tmp_path)
    np.testing.assert_array_equal(bits(s.packets()), bits(p))
    chunks = list(s.chunks(chunk_rows=4))
    np.testing.assert_array_equal(np.concatenate([c[0] for c in chunks]), np.arange(22))
    np.testing.assert_array_equal(bits(np.concatenate([c[1] for c in chunks])), bits(p))
    np.testing.assert_array_equal(np.concatenate([c[2] for c in chunks]), lengths)
    np.testing.assert_array_equal(bits(s[:, :3, SIZE]), bits(p[:, :3, SIZE]))
    np.testing.assert_array_equal(bits(s[21]), bits(p[21]))


def test_encoding_is_chosen_per_shard_and_exact(tmp_path):
    p, lengths = extracted_like(30, big_frame_at=12)
    p[25, 0, SIZE] = 60.5  # not an integer: that shard must stay float32
    m = store.write_store(tmp_path / PACKETS_STORE_DIR, p, lengths, shard_rows=10)
    assert [s["encoding"] for s in m["shards"]] == ["compact", "compact", "float32"]
    folder = tmp_path / PACKETS_STORE_DIR
    sizes = [np.load(folder / s["packets"], mmap_mode="r").dtype["size"].str
             if s["encoding"] == "compact" else None for s in m["shards"]]
    assert sizes == ["<u2", "<u4", None]
    # 9 bytes a packet (uint16 sizes), 11 (uint32 sizes), 36 for float32.
    assert [np.load(folder / s["packets"], mmap_mode="r").nbytes for s in m["shards"]] == \
        [10 * T * 9, 10 * T * 11, 10 * T * 36]
    np.testing.assert_array_equal(bits(store.open_packets(tmp_path).packets()), bits(p))


@pytest.mark.parametrize("channel, value", [
    (SIZE, -0.0),  # compact would give +0.0 back: not bit-exact
    (SIZE, -1.0), (SIZE, 2.0**32), (SIZE, np.nan),
    (WIN, 65536.0), (WIN, 0.5),
    (BINARY[0], 2.0), (BINARY[-1], 0.5), (BINARY[3], -0.0),
])
def test_values_compact_cannot_hold_stay_float32(channel, value):
    p, _ = extracted_like(8)
    assert store.encode_shard(p).dtype.names is not None
    p[2, 0, channel] = value
    assert store.encode_shard(p) is p


def test_float32_encoding_on_request(tmp_path):
    p, lengths = extracted_like(8)
    m = store.write_store(tmp_path / PACKETS_STORE_DIR, p, lengths, encoding="float32")
    assert m["shards"][0]["encoding"] == "float32"


def test_an_exception_mid_write_leaves_no_store_and_keeps_the_old_one(tmp_path):
    p, lengths = extracted_like(22)
    store.write_store(tmp_path / PACKETS_STORE_DIR, p, lengths, shard_rows=7)
    with pytest.raises(RuntimeError), store.ShardWriter(tmp_path / PACKETS_STORE_DIR, T,
                                                        shard_rows=4) as w:
        w.append(p[::-1].copy()[:9], lengths[:9])  # two shards on disk already
        raise RuntimeError("disk full")
    assert sorted(x.name for x in tmp_path.iterdir()) == [PACKETS_STORE_DIR]
    np.testing.assert_array_equal(bits(store.open_packets(tmp_path).packets()), bits(p))


def test_a_killed_writer_is_never_read_as_whole(tmp_path):
    p, lengths = extracted_like(22)
    np.save(tmp_path / "p.npy", p)
    np.save(tmp_path / "l.npy", lengths)
    code = (
        "import os, numpy as np\n"
        "from janus.datasets.store import ShardWriter\n"
        f"p = np.load({str(tmp_path / 'p.npy')!r}); l = np.load({str(tmp_path / 'l.npy')!r})\n"
        f"w = ShardWriter({str(tmp_path / 'ds' / PACKETS_STORE_DIR)!r}, {T}, shard_rows=5)\n"
        "w.append(p[:12], l[:12])\n"
        "os._exit(9)  # killed between shards: no cleanup runs\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    assert subprocess.run([sys.executable, "-c", code], env=env, check=False).returncode == 9
    leftovers = list((tmp_path / "ds").iterdir())
    assert len(leftovers) == 1 and leftovers[0].name.startswith(f".{PACKETS_STORE_DIR}.")
    assert len(list(leftovers[0].glob("shard-*.npy"))) == 2
    with pytest.raises(JanusError, match="not found"):
        store.open_packets(tmp_path / "ds")
    # A store folder whose manifest never came (e.g. copied half) is named as incomplete.
    os.replace(leftovers[0], tmp_path / "ds" / PACKETS_STORE_DIR)
    with pytest.raises(JanusError, match=r"manifest.json: not found.*incomplete"):
        store.open_packets(tmp_path / "ds")


def _one_line(exc: pytest.ExceptionInfo, name: str) -> str:
    """The message after the file name (tmp_path names hold the test's own words)."""
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(name + ":"), msg
    return msg[len(name) + 1:]


def test_truncated_missing_and_foreign_shards_name_the_file(both):
    _, b, _, _, m = both
    folder = b / PACKETS_STORE_DIR
    shard = folder / m["shards"][1]["packets"]
    data = shard.read_bytes()
    shard.write_bytes(data[:-9])
    with pytest.raises(JanusError) as exc:
        store.open_packets(b)
    assert "the manifest says" in _one_line(exc, str(shard))
    shard.write_bytes(data + b"\0" * 9)  # a longer file is not the shard either
    with pytest.raises(JanusError) as exc:
        store.open_packets(b)
    assert "the manifest says" in _one_line(exc, str(shard))
    shard.write_bytes(b"\x93NUMPY garbage" + data[14:])
    with pytest.raises(JanusError) as exc:
        store.open_packets(b)
    assert "not a .npy array" in _one_line(exc, str(shard))
    # Another array under the shard's name (the manifest's size fixed to match): its header
    # does not describe the shard.
    mpath = folder / STORE_MANIFEST_FILE
    for other in (np.zeros((7, T, N_CHANNELS), np.float32), np.zeros((8, T), store.compact_dtype("<u2")),
                  np.zeros(7 * T * 9, np.uint8)):
        np.save(shard, other)
        m["shards"][1]["packets_bytes"] = shard.stat().st_size
        mpath.write_text(json.dumps(m))
        with pytest.raises(JanusError) as exc:
            store.open_packets(b)
        assert "does not match the manifest" in _one_line(exc, str(shard))
    shard.unlink()
    with pytest.raises(JanusError) as exc:
        store.open_packets(b)
    assert "missing" in _one_line(exc, str(shard))


@pytest.mark.parametrize("edit", [
    lambda m: m.update(n_flows=23),
    lambda m: m["shards"][0].pop("rows"),
    lambda m: m["shards"][0].update(packets="../elsewhere.npy"),
    lambda m: m.update(format="something else"),
    None,  # not JSON at all
])
def test_a_bad_manifest_is_one_line(both, edit):
    _, b, _, _, m = both
    path = b / PACKETS_STORE_DIR / STORE_MANIFEST_FILE
    if edit is None:
        path.write_text(path.read_text()[:40])
    else:
        edit(m)
        path.write_text(json.dumps(m))
    with pytest.raises(JanusError) as exc:
        store.open_packets(b)
    assert "not a valid packet-store manifest" in _one_line(exc, str(path))


def test_npz_problems_are_one_line(tmp_path):
    p, lengths = extracted_like(4)
    np.savez_compressed(tmp_path / PACKETS_FILE, packets=p, lengths=lengths)
    with pytest.raises(JanusError, match="compressed"):
        store.open_packets(tmp_path)
    write_npz(tmp_path / PACKETS_FILE, packets=p)
    with pytest.raises(JanusError, match="missing array 'lengths'"):
        store.open_packets(tmp_path)
    write_npz(tmp_path / PACKETS_FILE, packets=p, lengths=lengths)
    (tmp_path / PACKETS_FILE).write_bytes((tmp_path / PACKETS_FILE).read_bytes()[:300])
    with pytest.raises(JanusError) as exc:
        store.open_packets(tmp_path)
    assert "cannot read" in _one_line(exc, str(tmp_path / PACKETS_FILE))
    write_npz(tmp_path / PACKETS_FILE, packets=p, lengths=lengths)
    store.write_store(tmp_path / PACKETS_STORE_DIR, p, lengths)
    with pytest.raises(JanusError, match="both"):
        store.open_packets(tmp_path)


def test_bad_rows_and_values_name_the_flow(both):
    a, b, p, lengths, _ = both
    for folder in (a, b):
        with pytest.raises(JanusError, match="flow id 22 is outside 0..21"):
            store.open_packets(folder).packets(np.array([0, 22]))
    lengths = lengths.copy()
    lengths[9] = T + 1
    store.write_store(b / PACKETS_STORE_DIR, p, lengths, shard_rows=7)
    s = store.open_packets(b)
    s.lengths(np.array([8, 10]))  # only rows read are checked
    with pytest.raises(JanusError, match=rf"lengths-00001.npy: lengths\[9\] = {T + 1} is outside"):
        s.lengths(np.array([9]))
    q = p.copy()
    q[15, 1, IAT] = np.nan
    store.write_store(b / PACKETS_STORE_DIR, q, np.minimum(lengths, T), shard_rows=7)
    with pytest.raises(JanusError, match="shard-00002.npy: non-finite packet value at flow_id 15"):
        store.open_packets(b).packets(np.array([3, 15]))


def _features_file(path: Path, n: int, row_group_size: int, shift: int = 0) -> np.ndarray:
    x = np.random.default_rng(1).normal(size=(n, len(FLOW_FEATURES))).astype(np.float32)
    cols = {"flow_id": pa.array(np.arange(n) + (np.arange(n) >= n - 1) * shift, pa.int64())}
    cols.update({c: pa.array(x[:, j]) for j, c in enumerate(FLOW_FEATURES)})
    pq.write_table(pa.table(cols), path, row_group_size=row_group_size)
    return x.astype(np.float64)


def test_feature_rows_across_row_groups(tmp_path):
    x = _features_file(tmp_path / FEATURES_FILE, 23, row_group_size=5)
    assert pq.ParquetFile(tmp_path / FEATURES_FILE).num_row_groups == 5
    rows = np.array([22, 4, 5, 4, 0, 19, 20])
    got, n = store.read_feature_rows(tmp_path / FEATURES_FILE, list(FLOW_FEATURES), rows)
    assert n == 23
    np.testing.assert_array_equal(got, x[rows])
    reader = store.feature_reader(tmp_path / FEATURES_FILE, list(FLOW_FEATURES))
    np.testing.assert_array_equal(reader[rows, 3], x[rows, 3])
    _features_file(tmp_path / FEATURES_FILE, 23, row_group_size=5, shift=5)
    store.read_feature_rows(tmp_path / FEATURES_FILE, list(FLOW_FEATURES), rows[1:-1])
    with pytest.raises(JanusError, match="row 22 has flow_id 27"):
        store.read_feature_rows(tmp_path / FEATURES_FILE, list(FLOW_FEATURES), rows)


def test_choose_store():
    assert store.choose_store("auto", 999, 1000) == "npz"
    assert store.choose_store("auto", 1000, 1000) == "sharded"
    assert store.choose_store("npz", 10**9) == "npz"
    with pytest.raises(JanusError, match="not one of"):
        store.choose_store("zarr", 1)


# --------------------------------------------------------------------------- the readers
def _dataset_pair(tmp_path, compact: bool = False):
    """The same dataset in both layouts (fractional sizes: float32 shards, unless ``compact``)."""
    from flowdata import benign_packets, write_dataset

    p, lengths = benign_packets(40, T, np.random.default_rng(5))
    if compact:
        p = np.round(p)
        p[..., IAT] = np.random.default_rng(6).random((40, T)) * (p[..., SIZE] > 0)
    a = write_dataset(tmp_path / "a", p, lengths, labels=np.zeros(40, np.int8))
    b = write_dataset(tmp_path / "b", p, lengths, labels=np.zeros(40, np.int8))
    (b / PACKETS_FILE).unlink()
    m = store.write_store(b / PACKETS_STORE_DIR, p, lengths, shard_rows=9)
    assert {s["encoding"] for s in m["shards"]} == {"compact" if compact else "float32"}
    return a, b, p, lengths


@pytest.mark.parametrize("compact", [False, True])
def test_model_inputs_are_the_same_from_both_layouts(tmp_path, compact):
    from janus.contract import DIRECTION
    from janus.model.data import FeatureStats, load_dataset

    a, b, p, lengths = _dataset_pair(tmp_path, compact)
    da, db = load_dataset(a), load_dataset(b)
    assert db.packets.kind == "sharded" and da.packets.kind == "npz"
    ids = np.array([39, 8, 9, 0, 18, 17])  # unsorted, across shard boundaries
    sa, sb = FeatureStats.fit(da, ids, T), FeatureStats.fit(db, ids, T)
    np.testing.assert_array_equal(sa.packet_mean, sb.packet_mean)
    pa_, pb_ = sa.prepare(da, ids, T - 1), sb.prepare(db, ids, T - 1)
    for field in ("flow", "cont", "disc", "lengths"):
        np.testing.assert_array_equal(getattr(pa_, field), getattr(pb_, field))
    # ... and they are the rows asked for, in the order asked for.
    np.testing.assert_array_equal(pb_.flow_id, ids)
    np.testing.assert_array_equal(pb_.lengths, np.minimum(lengths[ids], T - 1))
    valid = np.arange(T - 1)[None, :] < pb_.lengths[:, None]
    np.testing.assert_array_equal(pb_.disc[..., 0][valid], p[ids, :T - 1, DIRECTION][valid])
    np.testing.assert_array_equal(db.features[ids], da.features[:][ids])


def test_features_step_recomputes_from_the_shards(tmp_path, capsys, monkeypatch):
    from janus.capture.features import compute_flow_features, features_table, main

    a, b, p, lengths = _dataset_pair(tmp_path, compact=True)
    monkeypatch.setattr(store, "DEFAULT_SHARD_ROWS", 16)  # chunks of 16, shards of 9
    assert main([str(a)]) == 0 and main([str(b)]) == 0
    ta, tb = pq.read_table(a / FEATURES_FILE), pq.read_table(b / FEATURES_FILE)
    assert ta.equals(tb) and ta.num_rows == 40
    assert pq.ParquetFile(b / FEATURES_FILE).num_row_groups == 3  # written chunk by chunk
    assert tb.equals(features_table(compute_flow_features(p, lengths)))
    shard = b / PACKETS_STORE_DIR / "shard-00001.npy"
    shard.write_bytes(shard.read_bytes()[:-1])
    assert main([str(b)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(shard) in err and "Traceback" not in err


def test_baseline_features_read_only_their_rows(tmp_path):
    from janus.detectors import read_flow_features

    a, _, _, _ = _dataset_pair(tmp_path)
    full = read_flow_features(a)
    np.testing.assert_array_equal(read_flow_features(a, np.array([30, 2])), full[[30, 2]])


def test_extract_writes_the_sharded_store_and_replaces_the_other(tmp_path):
    from janus.capture.extract import extract
    from janus.capture.pcapwrite import ACK, SYN, tcp_frame, write_pcap

    frames = []
    for k in range(11):  # 11 flows of 1..3 packets
        for j in range(k % 3 + 1):
            frames.append((1.6e9 + k + j * 1e-3,
                           tcp_frame("10.0.0.1", "10.0.0.2", 40000 + k, 80, flags=SYN if j == 0 else ACK,
                                     payload=17 * k)))
    cap = tmp_path / "c.pcap"
    write_pcap(cap, [t for t, _ in frames], [f for _, f in frames])
    extract([cap], tmp_path / "n", store="npz")
    extract([cap], tmp_path / "s", store="auto", store_min_flows=12)
    assert (tmp_path / "s" / PACKETS_FILE).is_file()  # 11 flows: under the threshold
    s1 = extract([cap], tmp_path / "s", store="auto", store_min_flows=11, shard_rows=4)
    assert s1["parameters"]["store"] == "sharded" and s1["parameters"]["shard_flows"] == 4
    assert not (tmp_path / "s" / PACKETS_FILE).exists()  # the earlier run's npz is gone
    n, s = store.open_packets(tmp_path / "n"), store.open_packets(tmp_path / "s")
    assert s.kind == "sharded" and n.n_flows == s.n_flows == 11
    np.testing.assert_array_equal(bits(n.packets()), bits(s.packets()))
    np.testing.assert_array_equal(n.lengths(), s.lengths())
    m = store.read_manifest(tmp_path / "s" / PACKETS_STORE_DIR)
    assert [x["rows"] for x in m["shards"]] == [4, 4, 3] and {x["encoding"] for x in m["shards"]} == {"compact"}
    extract([cap], tmp_path / "s", store="npz")
    assert not (tmp_path / "s" / PACKETS_STORE_DIR).exists() and (tmp_path / "s" / STATS_FILE).is_file()
    assert store.open_packets(tmp_path / "s").kind == "npz"


def test_packet_baselines_take_the_same_rows_from_both_layouts(tmp_path):
    from janus.detectors import read_flow_data

    a, b, p, lengths = _dataset_pair(tmp_path, compact=True)
    ids = np.array([30, 2, 9, 8])
    xa, xb = read_flow_data(a, packets=True).take(ids), read_flow_data(b, packets=True).take(ids)
    assert len(read_flow_data(b, packets=False)) == 40
    np.testing.assert_array_equal(bits(xb.packets), bits(p[ids]))
    np.testing.assert_array_equal(xb.lengths, lengths[ids])
    np.testing.assert_array_equal(xb.features, xa.features)
    np.testing.assert_array_equal(read_flow_data(b, packets=False).take(ids).features, xa.features)
