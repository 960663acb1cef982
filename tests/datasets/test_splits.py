"""Tests of janus/datasets/splits.py: determinism, disjointness, label rules, clipping, file format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from janus.contract import LABELS_FILE
from janus.datasets import splits
from janus.errors import ConfigError, JanusError
from janus.io import write_parquet


def _labels(n_benign: int, n_attack: int, n_unknown: int, seed: int = 0) -> np.ndarray:
    lab = np.r_[np.zeros(n_benign), np.ones(n_attack), -np.ones(n_unknown)].astype(np.int8)
    return np.random.default_rng(seed).permutation(lab)


def test_splits_are_deterministic_disjoint_and_label_clean() -> None:
    labels = _labels(500, 120, 40)
    a, meta = splits.make_splits(labels, seed=7, n_train=200, n_val=50, n_test_benign=100, n_test_attack=100)
    b, _ = splits.make_splits(labels, seed=7, n_train=200, n_val=50, n_test_benign=100, n_test_attack=100)
    c, _ = splits.make_splits(labels, seed=8, n_train=200, n_val=50, n_test_benign=100, n_test_attack=100)
    for k in ("train", "val", "test"):
        np.testing.assert_array_equal(a[k], b[k])
        assert a[k].dtype == np.int64 and np.all(np.diff(a[k]) > 0)
    assert not np.array_equal(a["train"], c["train"])
    assert len(a["train"]) == 200 and len(a["val"]) == 50
    assert not (set(a["train"]) & set(a["val"])) and not (set(a["test"]) & (set(a["train"]) | set(a["val"])))
    assert np.all(labels[a["train"]] == 0) and np.all(labels[a["val"]] == 0)
    assert np.all(labels[a["test"]] >= 0)  # unknown never enters test
    assert (labels[a["test"]] == 0).sum() == (labels[a["test"]] == 1).sum() == 100
    assert meta["sizes"] == {"train": 200, "val": 50, "cal": 0, "test_benign": 100, "test_attack": 100}
    assert meta["available"] == {"benign": 500, "attack": 120, "unknown": 40}


def test_test_split_is_balanced_to_the_smaller_class() -> None:
    labels = _labels(1000, 30, 0)
    s, _ = splits.make_splits(labels, 0, n_train=100, n_val=50, n_test_benign=200, n_test_attack=200)
    assert (labels[s["test"]] == 1).sum() == 30 and (labels[s["test"]] == 0).sum() == 30
    u, _ = splits.make_splits(labels, 0, n_train=100, n_val=50, n_test_benign=200, n_test_attack=200,
                              balance=False)
    assert (labels[u["test"]] == 0).sum() == 200 and (labels[u["test"]] == 1).sum() == 30


def test_scarce_benign_flows_are_shared_in_proportion() -> None:
    labels = _labels(170, 500, 0)
    s, meta = splits.make_splits(labels, 0, n_train=1000, n_val=200, n_test_benign=500, n_test_attack=500)
    # 170 / 1700 of each request: val 20, test 50, train 100.
    assert meta["sizes"] == {"train": 100, "val": 20, "cal": 0, "test_benign": 50, "test_attack": 50}
    assert len(s["train"]) == 100 and len(s["val"]) == 20 and len(s["test"]) == 100


def test_cal_is_benign_disjoint_and_leaves_test_and_train_as_before() -> None:
    labels = _labels(500, 120, 40)
    old, _ = splits.make_splits(labels, 7, n_train=200, n_val=80, n_test_benign=100, n_test_attack=100)
    new, meta = splits.make_splits(labels, 7, n_train=200, n_val=30, n_test_benign=100,
                                   n_test_attack=100, n_cal=50)
    assert len(new["val"]) == 30 and len(new["cal"]) == 50 and meta["sizes"]["cal"] == 50
    assert np.all(labels[new["cal"]] == 0)
    parts = [set(new[k]) for k in ("train", "val", "cal", "test")]
    assert sum(map(len, parts)) == len(set().union(*parts))
    # val + cal of the new split is the old val: test and train do not move.
    np.testing.assert_array_equal(np.union1d(new["val"], new["cal"]), old["val"])
    for k in ("train", "test"):
        np.testing.assert_array_equal(new[k], old[k])


def test_calibration_ids_fall_back_to_val_for_files_without_cal(tmp_path: Path) -> None:
    labels = _labels(300, 80, 0)
    s, _ = splits.make_splits(labels, 1, n_train=100, n_val=30, n_test_benign=50, n_test_attack=50)
    path = tmp_path / "old.npz"
    np.savez(path, train=s["train"], val=s["val"], test=s["test"])  # a pre-cal file
    old = splits.load_splits(path)
    assert old["cal"].size == 0
    np.testing.assert_array_equal(splits.calibration_ids(old), s["val"])
    s2, _ = splits.make_splits(labels, 1, n_train=100, n_val=30, n_test_benign=50,
                               n_test_attack=50, n_cal=20)
    np.testing.assert_array_equal(splits.calibration_ids(s2), s2["cal"])


def test_negative_size_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="--n-val"):
        splits.make_splits(_labels(10, 0, 0), 0, n_val=-1)


def test_cli_writes_the_documented_format(tmp_path: Path) -> None:
    labels = _labels(300, 80, 10, seed=3)
    n = len(labels)
    write_parquet(tmp_path / LABELS_FILE, pa.table({
        "flow_id": pa.array(np.arange(n), pa.int64()), "label": pa.array(labels, pa.int8()),
        "attack": pa.array(["x"] * n), "label_source": pa.array(["file"] * n)}))
    out = tmp_path / "splits.npz"
    assert splits.main(["--data", str(tmp_path), "--seed", "2", "--out", str(out), "--n-train", "150",
                        "--n-val", "40", "--n-cal", "25", "--n-test-benign", "60",
                        "--n-test-attack", "60"]) == 0
    with np.load(out) as z:
        assert sorted(z.files) == ["cal", "meta", "test", "train", "val"]
        assert z["meta"].shape == () and z["train"].dtype == np.int64
        meta = json.loads(str(z["meta"]))
    assert meta["seed"] == 2 and meta["data"] == str(tmp_path)
    got = splits.load_splits(out)
    ref, _ = splits.make_splits(labels, 2, 150, 40, 60, 60, n_cal=25)
    for k in ("train", "val", "cal", "test"):
        np.testing.assert_array_equal(got[k], ref[k])


def test_missing_labels_file_names_the_path(tmp_path: Path) -> None:
    assert splits.main(["--data", str(tmp_path), "--seed", "0", "--out", str(tmp_path / "s.npz")]) == 2
    with pytest.raises(JanusError, match="labels.parquet"):
        splits.run(splits.build_parser().parse_args(["--data", str(tmp_path), "--seed", "0",
                                                     "--out", str(tmp_path / "s.npz")]))


# --------------------------------------------------------------------------- streamed sampling
def _write_labels(folder: Path, labels: np.ndarray, row_group: int) -> None:
    import pyarrow.parquet as pq

    n = len(labels)
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({
        "flow_id": pa.array(np.arange(n), pa.int64()), "label": pa.array(labels, pa.int8()),
        "attack": pa.array(["x"] * n), "label_source": pa.array(["file"] * n)}),
        folder / LABELS_FILE, row_group_size=row_group)


def _write_starts(folder: Path, start: np.ndarray, row_group: int) -> None:
    import pyarrow.parquet as pq

    from janus.contract import FLOWS_FILE
    pq.write_table(pa.table({"flow_id": pa.array(np.arange(len(start)), pa.int64()),
                             "start_time": pa.array(start, pa.float64())}),
                   folder / FLOWS_FILE, row_group_size=row_group)


@pytest.mark.parametrize("order", ["random", "time"])
def test_splits_do_not_depend_on_row_groups_or_batches(tmp_path: Path, order: str) -> None:
    labels = _labels(400, 150, 30, seed=5)
    start = np.random.default_rng(1).uniform(0, 1e4, len(labels))
    sizes = {"n_train": 120, "n_val": 20, "n_cal": 30, "n_test_benign": 60, "n_test_attack": 60}
    got = []
    for row_group, batch in ((7, 5), (10**6, 10**6), (64, 13)):
        d = tmp_path / f"rg{row_group}"
        _write_labels(d, labels, row_group)
        _write_starts(d, start, row_group)
        got.append(splits.split_dataset(d, 3, order=order, batch_rows=batch, **sizes)[0])
    ref = splits.make_splits(labels, 3, balance=True, order=order, start_time=start, **sizes)[0]
    for s in got:
        for k in ("train", "val", "cal", "test"):
            np.testing.assert_array_equal(s[k], ref[k])


def test_bottom_k_is_the_smallest_keys_in_key_order() -> None:
    ids = np.arange(1000)
    keys = splits.flow_keys(ids, 11)
    assert np.unique(keys).size == ids.size  # a bijection of the id: no ties
    bk = splits.BottomK(25)
    for lo in range(0, 1000, 37):
        bk.add(ids[lo:lo + 37], keys[lo:lo + 37])
    np.testing.assert_array_equal(bk.ordered(), np.argsort(keys)[:25])
    s, _ = splits.make_splits(np.zeros(1000, np.int8), 11, n_train=10, n_val=5, n_cal=3,
                              n_test_benign=4, n_test_attack=0, balance=False)
    order = np.argsort(keys)  # val first, then cal, test, train
    np.testing.assert_array_equal(s["val"], np.sort(order[:5]))
    np.testing.assert_array_equal(s["cal"], np.sort(order[5:8]))
    np.testing.assert_array_equal(s["test"], np.sort(order[8:12]))
    np.testing.assert_array_equal(s["train"], np.sort(order[12:22]))


def test_every_benign_flow_is_equally_likely_over_seeds() -> None:
    """Inclusion counts of 30 benign flows (5 of them drawn per seed, 3000 seeds) against
    the uniform 500 each: chi-square with 29 degrees of freedom, p = 0.001 at 58.3."""
    labels = np.zeros(40, np.int8)
    labels[::4] = 1  # attacks interleaved: the benign ids are not a contiguous range
    benign = np.flatnonzero(labels == 0)
    hits = np.zeros(labels.size)
    first = np.zeros(labels.size)
    for seed in range(3000):
        s, _ = splits.make_splits(labels, seed, n_train=5, n_val=0, n_test_benign=0,
                                  n_test_attack=0)
        hits[s["train"]] += 1
        first[s["train"][0]] += 1
    expected = 3000 * 5 / benign.size
    chi2 = ((hits[benign] - expected) ** 2 / expected).sum()
    assert chi2 < 58.3, chi2
    assert hits[labels == 1].sum() == 0
    # The seeds are not one shifted sequence: pairs of seeds share few draws.
    a = splits.flow_keys(np.arange(10_000), 1)
    b = splits.flow_keys(np.arange(10_000), 2)
    assert np.intersect1d(np.argsort(a)[:100], np.argsort(b)[:100]).size < 10


def test_time_order_puts_every_test_flow_after_every_training_flow(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    labels = _labels(3000, 900, 100, seed=4)
    start = rng.uniform(1.5e9, 1.5e9 + 86400, labels.size)
    start[rng.integers(0, labels.size, 200)] = 1.5e9 + 40000.0  # ties at one time
    sizes = {"n_train": 600, "n_val": 100, "n_cal": 100, "n_test_benign": 400, "n_test_attack": 250}
    s, meta = splits.make_splits(labels, 0, order="time", start_time=start, **sizes)
    early = np.concatenate([s["train"], s["val"], s["cal"]])
    assert start[early].max() < start[s["test"]].min()
    assert np.all(labels[early] == 0) and np.all(labels[s["test"]] >= 0)
    # ~300 attacks start after the cut: 250 of them, and 250 benign to balance.
    assert meta["sizes"] == {"train": 600, "val": 100, "cal": 100, "test_benign": 250,
                             "test_attack": 250}
    # The cut is the benign start time of rank round(800 / 1200 * 3000) = 2000.
    cut = np.sort(start[labels == 0])[2000]
    assert meta["time_cut"]["start_time"] == cut
    assert meta["time_cut"]["benign_before"] == int((start[labels == 0] < cut).sum())
    assert meta["time_cut"]["attack_after"] == int((start[labels == 1] >= cut).sum())
    parts = [set(s[k]) for k in ("train", "val", "cal", "test")]
    assert sum(map(len, parts)) == len(set().union(*parts))
    # The histogram passes find the same cut as the gathering one.
    old = splits._CUT_GATHER
    try:
        splits._CUT_GATHER = 10
        s2, meta2 = splits.make_splits(labels, 0, order="time", start_time=start, **sizes)
    finally:
        splits._CUT_GATHER = old
    assert meta2["time_cut"] == meta["time_cut"]
    for k in s:
        np.testing.assert_array_equal(s2[k], s[k])


def test_time_order_scales_each_side_and_cli_needs_flows(tmp_path: Path) -> None:
    labels = np.tile(np.array([0, 1], np.int8), 100)  # benign at even times, attacks at odd
    start = np.arange(labels.size, dtype=np.float64)
    s, meta = splits.make_splits(labels, 1, order="time", start_time=start, n_train=300,
                                 n_val=50, n_cal=50, n_test_benign=100, n_test_attack=100)
    # q = 400 / 500: 80 benign before the cut, scaled 300:50:50 -> 60, 10, 10.
    assert meta["time_cut"]["benign_before"] == 80 and meta["time_cut"]["start_time"] == 160
    assert meta["time_cut"]["attack_after"] == 20  # 161, 163, ..., 199
    assert (meta["sizes"]["train"], meta["sizes"]["val"], meta["sizes"]["cal"]) == (60, 10, 10)
    assert meta["sizes"]["test_benign"] == meta["sizes"]["test_attack"] == 20
    _write_labels(tmp_path, labels, 50)
    out = tmp_path / "s.npz"
    args = ["--data", str(tmp_path), "--seed", "1", "--out", str(out), "--order", "time"]
    with pytest.raises(JanusError, match="flows.parquet"):
        splits.run(splits.build_parser().parse_args(args))
    _write_starts(tmp_path, start, 30)
    assert splits.main(args + ["--n-train", "300", "--n-val", "50", "--n-cal", "50",
                               "--n-test-benign", "100", "--n-test-attack", "100"]) == 0
    got = splits.load_splits(out)
    for k in ("train", "val", "cal", "test"):
        np.testing.assert_array_equal(got[k], s[k])
    assert got["meta"]["order"] == "time"
    _write_starts(tmp_path, start[:-1], 30)
    with pytest.raises(JanusError, match="row-aligned"):
        splits.run(splits.build_parser().parse_args(args))
