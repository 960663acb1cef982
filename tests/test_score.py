"""Tests of janus/score.py: score definitions, determinism, padding invariance, detection."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from flowdata import mixed_dataset
from sklearn.metrics import roc_auc_score

from janus import score, splits
from janus.checkpoint import load_checkpoint, model_from_checkpoint
from janus.contract import SCORE_COLUMNS
from janus.data import FeatureStats, length_batches, load_dataset
from janus.errors import JanusError
from janus.model import JanusNet, ModelConfig
from janus.train import TrainOptions, fit

T = 8
TINY = ModelConfig(max_packets=T, d_model=32, n_layers=2, n_heads=2)
FAST = TrainOptions(epochs=25, batch_size=32, lr=3e-3, warmup_fraction=0.08, patience=25, seed=0, device="cpu",
                    disable_progress=True)


def _train(ds_dir: Path, run_dir: Path, seed: int = 0, n_train: int = 160) -> Path:
    ds = load_dataset(ds_dir)
    ids = np.arange(n_train)
    stats = FeatureStats.fit(ds, ids, T)
    opts = TrainOptions(**{**FAST.__dict__, "seed": seed})
    fit(stats.prepare(ds, ids, T), stats.prepare(ds, np.arange(n_train, n_train + 32), T), stats, TINY,
        opts, run_dir)
    return run_dir / "model.pt"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny model trained on 160 benign flows of a dataset whose flows 240.. are shuffled."""
    root = tmp_path_factory.mktemp("score")
    ds_dir = mixed_dataset(root / "ds", n_benign=240, n_attack=80, t=T)
    return ds_dir, _train(ds_dir, root / "run")


def test_fresh_model_scores_have_closed_form(tmp_path: Path) -> None:
    # A fresh network's heads are zero: v = 0 and logits = 0, so x0_hat = x1 and every flag
    # has probability 1/2.
    ds = load_dataset(mixed_dataset(tmp_path, 20, 4, T))
    ids = np.arange(24)
    stats = FeatureStats.fit(ds, ids[:20], T)
    s = score.score_flows(JanusNet(TINY), stats, ds, ids, batch_size=7, disable_progress=True)
    prep = stats.prepare(ds, ids, T)
    valid = np.arange(T)[None, :] < prep.lengths[:, None]
    sq_f = (prep.flow.astype(np.float64) ** 2).sum(1)
    sq_p = ((prep.cont.astype(np.float64) ** 2).sum(2) * valid).sum(1)
    n = prep.lengths
    np.testing.assert_allclose(s[:, 0], (sq_f + sq_p) / (20 + 3 * n), rtol=1e-5)
    np.testing.assert_allclose(s[:, 1], sq_f / 20, rtol=1e-5)
    np.testing.assert_allclose(s[:, 2], sq_p / (3 * n), rtol=1e-5)
    np.testing.assert_allclose(s[:, 4:], math.log(2), rtol=1e-6)
    np.testing.assert_allclose(s[:, 3], 6 * math.log(2), rtol=1e-6)


@pytest.mark.parametrize("lambda_disc, declared", [(1.0, SCORE_COLUMNS), (0.0, SCORE_COLUMNS[:3])])
def test_scores_file_declares_what_to_aggregate(lambda_disc: float, declared: tuple[str, ...],
                                                tmp_path: Path) -> None:
    import dataclasses
    import json

    from janus.contract import AGGREGATE_COLUMNS_KEY

    ds_dir = mixed_dataset(tmp_path / "ds", 20, 4, T)
    ds = load_dataset(ds_dir)
    stats = FeatureStats.fit(ds, np.arange(20), T)
    model = JanusNet(dataclasses.replace(TINY, lambda_disc=lambda_disc))
    out = tmp_path / "scores.parquet"
    score.score_dataset(model, stats, ds_dir, out)
    table = pq.read_table(out)
    assert table.column_names == ["flow_id", *SCORE_COLUMNS]  # always all ten
    assert json.loads(table.schema.metadata[AGGREGATE_COLUMNS_KEY.encode()]) == list(declared)


def test_bucketed_and_full_padding_give_same_scores(trained: tuple[Path, Path]) -> None:
    ds_dir, ckpt = trained
    model, _, stats = model_from_checkpoint(load_checkpoint(ckpt))
    prep = stats.prepare(load_dataset(ds_dir), np.arange(64), T)
    for idx in length_batches(prep.lengths, 16):
        short = score.score_batch(model, prep.batch(idx))
        full = score.score_batch(model, prep.batch(idx, pad_to=T))
        torch.testing.assert_close(short, full, rtol=1e-5, atol=1e-6)
    # Whole-dataset scoring does not depend on how flows are grouped into batches.
    a = score.score_flows(model, stats, load_dataset(ds_dir), np.arange(64), batch_size=5, disable_progress=True)
    b = score.score_flows(model, stats, load_dataset(ds_dir), np.arange(64), batch_size=64, disable_progress=True)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_tiny_model_scores_shuffled_flows_higher(trained: tuple[Path, Path]) -> None:
    ds_dir, ckpt = trained
    model, _, stats = model_from_checkpoint(load_checkpoint(ckpt))
    ids = np.arange(192, 320)  # 48 held-out benign + 80 shuffled
    y = (ids >= 240).astype(int)
    s = score.score_flows(model, stats, load_dataset(ds_dir), ids, disable_progress=True)
    auc = {c: roc_auc_score(y, s[:, k]) for k, c in enumerate(SCORE_COLUMNS)}
    assert auc["terminal_packet"] > 0.9, auc
    assert auc["disc_nll_total"] > 0.9, auc


def test_checkpoint_roundtrip_and_cli(trained: tuple[Path, Path], tmp_path: Path) -> None:
    ds_dir, ckpt = trained
    model, _, stats = model_from_checkpoint(load_checkpoint(ckpt))
    ids = np.arange(320)
    direct = score.score_flows(model, stats, load_dataset(ds_dir), ids, disable_progress=True)
    out = tmp_path / "scores.parquet"
    assert score.main(["--checkpoint", str(ckpt), "--data", str(ds_dir), "--out", str(out),
                       "--device", "cpu"]) == 0
    table = pq.read_table(out)
    assert table.column_names == ["flow_id", *SCORE_COLUMNS]
    np.testing.assert_array_equal(table.column("flow_id").to_numpy(), ids)
    np.testing.assert_array_equal(np.stack([table.column(c).to_numpy() for c in SCORE_COLUMNS], 1), direct)
    # --splits: only the val and test flows, sorted.
    sp = tmp_path / "splits.npz"
    assert splits.main(["--data", str(ds_dir), "--seed", "1", "--out", str(sp), "--n-train", "100",
                        "--n-val", "20", "--n-test-benign", "30", "--n-test-attack", "30"]) == 0
    assert score.main(["--checkpoint", str(ckpt), "--data", str(ds_dir), "--out", str(out),
                       "--splits", str(sp)]) == 0
    z = splits.load_splits(sp)
    got = pq.read_table(out).column("flow_id").to_numpy()
    np.testing.assert_array_equal(got, np.union1d(z["val"], z["test"]))


def test_same_seed_gives_bit_identical_scores(tmp_path: Path) -> None:
    ds_dir = mixed_dataset(tmp_path / "ds", n_benign=72, n_attack=8, t=T, seed=3)
    opts = {**FAST.__dict__, "epochs": 2}
    ds = load_dataset(ds_dir)
    stats = FeatureStats.fit(ds, np.arange(48), T)
    runs = []
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        fit(stats.prepare(ds, np.arange(48), T), stats.prepare(ds, np.arange(48, 72), T), stats, TINY,
            TrainOptions(**{**opts, "seed": seed}), tmp_path / name)
        model, _, st = model_from_checkpoint(load_checkpoint(tmp_path / name / "model.pt"))
        runs.append(score.score_flows(model, st, ds, np.arange(80), disable_progress=True))
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


def test_score_rejects_foreign_splits(trained: tuple[Path, Path], tmp_path: Path) -> None:
    ds_dir, ckpt = trained
    sp = tmp_path / "s.npz"
    np.savez(sp, train=np.arange(3), val=np.arange(3), test=np.array([10_000]), meta=np.array("{}"))
    with pytest.raises(JanusError, match="another dataset"):
        score.run(score.build_parser().parse_args(
            ["--checkpoint", str(ckpt), "--data", str(ds_dir), "--out", str(tmp_path / "o.parquet"),
             "--splits", str(sp)]))


def test_several_targets_in_one_process_match_single_runs(trained: tuple[Path, Path],
                                                          tmp_path: Path) -> None:
    """--data/--splits/--out as aligned lists give the files of one run per target."""
    ds_dir, ckpt = trained
    other = mixed_dataset(tmp_path / "other", n_benign=50, n_attack=30, t=T, seed=9)
    sp = tmp_path / "sp.npz"
    assert splits.main(["--data", str(other), "--seed", "2", "--out", str(sp), "--n-train", "20",
                        "--n-val", "10", "--n-test-benign", "20", "--n-test-attack", "20"]) == 0
    single = [tmp_path / "s1.parquet", tmp_path / "s2.parquet"]
    assert score.main(["--checkpoint", str(ckpt), "--data", str(ds_dir), "--out",
                       str(single[0]), "--device", "cpu"]) == 0
    assert score.main(["--checkpoint", str(ckpt), "--data", str(other), "--out", str(single[1]),
                       "--splits", str(sp), "--device", "cpu"]) == 0
    multi = [tmp_path / "m1.parquet", tmp_path / "m2.parquet"]
    # The same checkpoint per target (loaded once). --splits is all-or-none, so the first
    # target gets one whose val + test cover every flow: the rows of a run without --splits.
    full = tmp_path / "full.npz"
    np.savez(full, train=np.zeros(0, np.int64), val=np.arange(100), test=np.arange(100, 320),
             meta=np.array("{}"))
    assert score.main(["--checkpoint", str(ckpt), str(ckpt), "--data", str(ds_dir), str(other),
                       "--splits", str(full), str(sp), "--out", *map(str, multi),
                       "--device", "cpu"]) == 0
    assert pq.read_table(multi[0]).equals(pq.read_table(single[0]))
    assert pq.read_table(multi[1]).equals(pq.read_table(single[1]))


@pytest.mark.parametrize("extra, message", [
    (["--out", "a.parquet"], "--out has 1 values for 2 --data"),
    (["--out", "a.parquet", "a.parquet"], "same file twice"),
    (["--out", "a.parquet", "b.parquet", "--splits", "x.npz", "y.npz", "z.npz"],
     "--splits has 3 values for 2 --data"),
])
def test_misaligned_lists_are_errors(extra: list[str], message: str, tmp_path: Path) -> None:
    args = score.build_parser().parse_args(["--checkpoint", "m.pt", "--data", "d1", "d2", *extra])
    with pytest.raises(JanusError, match=message):
        score.run(args)
