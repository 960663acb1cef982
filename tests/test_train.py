"""Tests of janus/train.py, janus/data.py and janus/checkpoint.py."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from flowdata import benign_packets, mixed_dataset, write_dataset

from janus import splits, train
from janus.checkpoint import REQUIRED_KEYS, load_checkpoint
from janus.contract import DIRECTION
from janus.data import FeatureStats, length_batches, load_dataset
from janus.errors import JanusError
from janus.model import ModelConfig
from janus.train import TrainOptions, fit, joint_loss, lr_at

T = 8
TINY = ModelConfig(max_packets=T, d_model=16, n_layers=1, n_heads=2)


def test_lr_schedule_closed_form() -> None:
    o = TrainOptions(lr=1.0, warmup_fraction=0.05)  # 200 steps: ceil(10.0) = 10 of warm-up
    assert lr_at(0, 200, o) == pytest.approx(0.1)
    assert lr_at(9, 200, o) == pytest.approx(1.0)
    assert lr_at(10, 200, o) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 190)))
    assert lr_at(104, 200, o) == pytest.approx(0.1 + 0.9 * 0.5)  # half-way through the cosine
    assert lr_at(199, 200, o) == pytest.approx(0.1)  # the last step reaches the floor
    assert lr_at(250, 200, o) == pytest.approx(0.1)


def test_length_batches_cover_every_flow_once() -> None:
    lengths = np.random.default_rng(0).integers(1, 9, 103)
    for rng in (None, np.random.default_rng(1)):
        batches = length_batches(lengths, 10, rng)
        np.testing.assert_array_equal(np.sort(np.concatenate(batches)), np.arange(103))
        # Sorted by length: batches overlap in length range by at most one value.
        spans = sorted((lengths[b].min(), lengths[b].max()) for b in batches)
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))
    capped = length_batches(lengths, 10, max_tokens=30)
    np.testing.assert_array_equal(np.sort(np.concatenate(capped)), np.arange(103))
    assert all(len(b) * (lengths[b].max() + 1) <= 30 for b in capped)
    assert max(len(b) for b in capped) == 10  # short flows still fill whole batches


def test_feature_stats_standardise_the_training_flows(tmp_path: Path) -> None:
    ds = load_dataset(mixed_dataset(tmp_path, 50, 0, T))
    ids = np.arange(50)
    stats = FeatureStats.fit(ds, ids, T)
    prep = stats.prepare(ds, ids, T)
    valid = np.arange(T)[None, :] < prep.lengths[:, None]
    np.testing.assert_allclose(prep.cont[valid].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(prep.cont[valid].std(0)[:2], 1, atol=1e-4)  # size, iat (win may be flat)
    varying = ds.features.std(0) > 0
    np.testing.assert_allclose(prep.flow.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(prep.flow.std(0)[varying], 1, atol=1e-4)
    assert np.all(prep.cont[~valid] == 0) and np.all(prep.disc[~valid] == 0)
    np.testing.assert_array_equal(prep.disc[..., 0][valid], ds.packets[:, :T, DIRECTION][valid])
    again = FeatureStats.from_state(stats.to_state())
    np.testing.assert_array_equal(again.flow_std, stats.flow_std)


def test_joint_loss_ignores_padding_values(tmp_path: Path) -> None:
    ds = load_dataset(mixed_dataset(tmp_path, 16, 0, T))
    stats = FeatureStats.fit(ds, np.arange(16), T)
    prep = stats.prepare(ds, np.arange(16), T)
    torch.manual_seed(0)
    net = train.JanusNet(TINY)
    batch = prep.batch(np.arange(16), pad_to=T)
    dirty = prep.batch(np.arange(16), pad_to=T)
    dirty.cont[~dirty.mask] = 50.0
    dirty.disc[~dirty.mask] = 1
    a = joint_loss(net, batch, TINY, torch.Generator().manual_seed(1))
    b = joint_loss(net, dirty, TINY, torch.Generator().manual_seed(1))
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y)
    assert a[2] == pytest.approx(math.log(2), rel=1e-6)  # zero-initialised flag head


@pytest.mark.parametrize("overrides", [{"lambda_disc": 0.0}, {"ot": "none"}, {"ot": "sinkhorn"},
                                       {"causal": False}])
def test_ablation_switches_train(tmp_path: Path, overrides: dict) -> None:
    ds = load_dataset(mixed_dataset(tmp_path, 16, 0, T))
    stats = FeatureStats.fit(ds, np.arange(16), T)
    cfg = ModelConfig(**{**TINY.to_dict(), **overrides})
    torch.manual_seed(0)
    net = train.JanusNet(cfg)
    loss, cont, disc = joint_loss(net, stats.prepare(ds, np.arange(16), T).batch(np.arange(16)), cfg,
                                  torch.Generator().manual_seed(1))
    loss.backward()
    if cfg.lambda_disc == 0:
        assert disc == 0 and loss.item() == pytest.approx(cont.item())
        assert net.flag_head.weight.grad is None  # the flag head takes no part
    else:
        assert loss.item() == pytest.approx(cont.item() + disc.item())
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


def test_cli_trains_and_writes_run_folder(tmp_path: Path) -> None:
    ds_dir = mixed_dataset(tmp_path / "ds", 80, 20, T)
    sp = tmp_path / "splits.npz"
    assert splits.main(["--data", str(ds_dir), "--seed", "0", "--out", str(sp), "--n-train", "48",
                        "--n-val", "16", "--n-test-benign", "16", "--n-test-attack", "16"]) == 0
    run = tmp_path / "run"
    assert train.main(["--data", str(ds_dir), "--splits", str(sp), "--seed", "0", "--out", str(run),
                       "--max-packets", str(T), "--d-model", "16", "--n-layers", "1", "--n-heads", "2",
                       "--epochs", "2", "--batch-size", "16", "--warmup-fraction", "0.5", "--device", "cpu",
                       "--max-train-flows", "40", "--threads", "1"]) == 0
    for name in ("model.pt", "last.pt", "loss.csv", "loss.png"):
        assert (run / name).is_file(), name
    lines = (run / "loss.csv").read_text().splitlines()
    assert lines[0].split(",") == list(train.LOSS_COLUMNS) and len(lines) == 3
    ckpt = torch.load(run / "model.pt", weights_only=True)  # plain types only
    assert set(REQUIRED_KEYS) <= set(ckpt)
    assert ckpt["config"]["d_model"] == 16 and ckpt["seed"] == 0
    assert ckpt["feature_stats"]["transform"] == "log1p-v1"


def test_resume_after_interruption_matches_an_uninterrupted_run(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    ds = load_dataset(write_dataset(tmp_path / "ds", *benign_packets(64, T, rng)))
    stats = FeatureStats.fit(ds, np.arange(48), T)
    tr, va = stats.prepare(ds, np.arange(48), T), stats.prepare(ds, np.arange(48, 64), T)
    opts = TrainOptions(epochs=3, batch_size=16, warmup_fraction=0.2, patience=10, device="cpu",
                        disable_progress=True)
    fit(tr, va, stats, TINY, opts, tmp_path / "whole")

    real = train.validation_loss
    calls = {"n": 0}

    def interrupt_in_epoch_1(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train, "validation_loss", interrupt_in_epoch_1)
    with pytest.raises(KeyboardInterrupt):
        fit(tr, va, stats, TINY, opts, tmp_path / "split")
    monkeypatch.setattr(train, "validation_loss", real)
    assert load_checkpoint(tmp_path / "split" / "last.pt")["epoch"] == 0
    fit(tr, va, stats, TINY, opts, tmp_path / "split", resume=True)
    a = load_checkpoint(tmp_path / "whole" / "last.pt")
    b = load_checkpoint(tmp_path / "split" / "last.pt")
    assert a["epoch"] == b["epoch"] == 2
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k


def test_unreadable_inputs_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(JanusError, match="packets.npz: not found"):
        load_dataset(tmp_path)
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(JanusError, match="bad.pt: not a readable JANUS checkpoint"):
        load_checkpoint(tmp_path / "bad.pt")
    ds_dir = mixed_dataset(tmp_path / "ds", 10, 0, T)
    np.savez(tmp_path / "s.npz", train=np.arange(5), val=np.array([50]), test=np.arange(0),
             meta=np.array("{}"))
    with pytest.raises(JanusError, match="another dataset"):
        train.run(train.build_parser().parse_args(["--data", str(ds_dir), "--splits", str(tmp_path / "s.npz"),
                                                    "--out", str(tmp_path / "run")]))
