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
