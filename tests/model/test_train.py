"""Tests of janus/model/train.py, janus/model/data.py and janus/model/checkpoint.py."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from flowdata import benign_packets, mixed_dataset, write_dataset

import janus
from janus import provenance
from janus.contract import DIRECTION
from janus.datasets import splits
from janus.errors import ConfigError, JanusError
from janus.model import train
from janus.model.checkpoint import REQUIRED_KEYS, load_checkpoint
from janus.model.data import FeatureStats, length_batches, load_dataset
from janus.model.flowmatch import exact_assignment, masked_sq_cost
from janus.model.network import ModelConfig
from janus.model.train import TrainOptions, fit, joint_loss, lr_at, warmup_steps

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
    # An explicit step count is honoured even past the end (the schedule before the fraction).
    old = TrainOptions(lr=1.0, warmup_steps=200)
    assert lr_at(179, 180, old) == pytest.approx(180 / 200)


@pytest.mark.parametrize("total,fraction,expected", [(180, 0.05, 9), (200, 0.05, 10), (201, 0.05, 11),
                                                     (10, 0.01, 1), (7, 1.0, 7), (3, 0.5, 2)])
def test_warmup_is_a_fraction_of_the_total_steps(total: int, fraction: float, expected: int) -> None:
    assert warmup_steps(total, TrainOptions(warmup_fraction=fraction)) == expected
    assert warmup_steps(total, TrainOptions(warmup_fraction=fraction, warmup_steps=500)) == 500


@pytest.mark.parametrize("bad", [{"warmup_fraction": 0.0}, {"warmup_fraction": 1.5}, {"min_delta": -0.1},
                                 {"warmup_steps": 0}, {"patience": 0}, {"schedule": "step"}])
def test_bad_train_options_are_config_errors(bad: dict) -> None:
    with pytest.raises(ConfigError, match="--"):
        TrainOptions(**bad)


def test_model_config_ot_is_a_method_name() -> None:
    assert ModelConfig().ot == "exact"
    assert ModelConfig(ot=True).ot == "sinkhorn" and ModelConfig(ot=False).ot == "none"  # old checkpoints
    with pytest.raises(ConfigError, match="ot must be one of exact, sinkhorn, none"):
        ModelConfig(ot="hungarian")


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
    varying = ds.features[:].std(0) > 0
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
                                       {"causal": False}, {"packets_see_flow": True}])
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


@pytest.mark.parametrize("flags, expected", [([], False), (["--packets-see-flow"], True)])
def test_cli_flag_head_switch_reaches_the_model_config(flags: list[str], expected: bool) -> None:
    """``--packets-see-flow`` (the old flag head, for the ablation) is off unless asked for,
    and it reaches the config the checkpoint stores and scoring rebuilds the model from."""
    args = train.build_parser().parse_args(["--data", "d", "--splits", "s", "--out", "o", *flags])
    cfg = train.model_config_from_args(args)
    assert cfg.packets_see_flow is expected
    assert ModelConfig.from_dict(cfg.to_dict()).packets_see_flow is expected
    net = train.JanusNet(cfg)
    assert net.attention(torch.tensor([3]), 3) == ("causal" if expected else "flow_apart")


def _structured_batch(tmp_path: Path, n: int = 24) -> tuple[train.Prepared, train.Batch]:
    """A batch of flows of many lengths (the flow token plus 3..T packets each)."""
    rng = np.random.default_rng(5)
    ds = load_dataset(write_dataset(tmp_path / "ds", *benign_packets(n, T, rng)))
    stats = FeatureStats.fit(ds, np.arange(n), T)
    prep = stats.prepare(ds, np.arange(n), T)
    return prep, prep.batch(np.arange(n))


@pytest.mark.parametrize("ot", ["exact", "sinkhorn", "none"])
def test_joint_loss_pairs_the_noise_by_the_chosen_coupling(tmp_path: Path, ot: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The x0 that reaches the CFM path is the batch's noise re-paired by OT (exact: the
    minimum-cost permutation of the masked cost), not the independent draw."""
    _, batch = _structured_batch(tmp_path)
    cfg = ModelConfig(**{**TINY.to_dict(), "ot": ot})
    seen = []
    real_path = train.cfm_path

    def spy(x0, x1, *args):
        seen.append((x0.clone(), x1.clone()))
        return real_path(x0, x1, *args)

    monkeypatch.setattr(train, "cfm_path", spy)
    torch.manual_seed(0)
    joint_loss(train.JanusNet(cfg), batch, cfg, torch.Generator().manual_seed(7))
    # The independent draw, replayed from the same generator (flow noise first, then packets).
    g = torch.Generator().manual_seed(7)
    b = batch.flow.shape[0]
    raw_f, raw_p = torch.randn(batch.flow.shape, generator=g), torch.randn(batch.cont.shape, generator=g)
    (used_f, x1f), (used_p, x1p) = seen
    assert torch.equal(x1f, batch.flow) and torch.equal(x1p, batch.cont)
    mask = torch.cat([torch.ones_like(batch.flow, dtype=torch.bool),
                      batch.mask[:, :, None].expand(-1, -1, 3).reshape(b, -1)], 1)
    raw = torch.cat([raw_f, raw_p.reshape(b, -1)], 1)
    used = torch.cat([used_f, used_p.reshape(b, -1)], 1)
    x1 = torch.cat([x1f, x1p.reshape(b, -1)], 1)
    cost = masked_sq_cost(raw, x1, mask)  # (B, B)
    # Each used row is one of the raw rows, flow and packet parts together.
    match = (used[:, None, :] == raw[None, :, :]).all(-1)  # (B, B)
    assert match.sum(1).eq(1).all()
    idx = match.float().argmax(1)
    paired = cost[idx, torch.arange(b)].sum()
    independent = cost.diagonal().sum()
    if ot == "none":
        np.testing.assert_array_equal(idx.numpy(), np.arange(b))
    elif ot == "exact":
        np.testing.assert_array_equal(idx.numpy(), exact_assignment(cost).numpy())
        assert len(set(idx.tolist())) == b  # a permutation
        assert paired < 0.9 * independent
    else:
        assert paired < independent


def _tiny_fit_data(tmp_path: Path, n_train: int = 48, n_val: int = 16):
    rng = np.random.default_rng(0)
    ds = load_dataset(write_dataset(tmp_path / "ds", *benign_packets(n_train + n_val, T, rng)))
    stats = FeatureStats.fit(ds, np.arange(n_train), T)
    return (stats.prepare(ds, np.arange(n_train), T),
            stats.prepare(ds, np.arange(n_train, n_train + n_val), T), stats)


def _read_loss_csv(path: Path) -> list[dict[str, float]]:
    lines = path.read_text().splitlines()
    head = lines[0].split(",")
    return [dict(zip(head, map(float, line.split(",")))) for line in lines[1:]]


def test_early_stopping_fires_when_the_validation_loss_cannot_improve(tmp_path: Path) -> None:
    # lr = 0: the weights never move, the validation noise is fixed, so every epoch after the
    # first has exactly the first epoch's loss: no improvement, stop after `patience` epochs.
    tr, va, stats = _tiny_fit_data(tmp_path)
    opts = TrainOptions(epochs=12, batch_size=16, lr=0.0, patience=2, device="cpu", disable_progress=True)
    summary = fit(tr, va, stats, TINY, opts, tmp_path / "run")
    assert summary["early_stopped"] and summary["stop_epoch"] == 2 and summary["epochs"] == 3
    assert summary["best_epoch"] == 0 and summary["steps"] == 3 * 3
    rows = _read_loss_csv(tmp_path / "run" / "loss.csv")
    assert [r["val_loss"] for r in rows] == [rows[0]["val_loss"]] * 3
    assert [r["early_stop"] for r in rows] == [0, 0, 1] and [r["best"] for r in rows] == [1, 0, 0]
    saved = json.loads((tmp_path / "run" / "train_summary.json").read_text())
    assert saved["stop_epoch"] == 2 and saved["early_stopped"] is True
    assert load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 2


def _scripted_fit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, losses: list[float], **kw):
    """fit() with the validation losses replaced by ``losses``; returns the summary and the
    weights the model had at each validation."""
    tr, va, stats = _tiny_fit_data(tmp_path)
    script = iter(losses)
    weights = []

    def scripted(model, *args, **kwargs):
        weights.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        v = next(script)
        return v, v, 0.0

    monkeypatch.setattr(train, "validation_loss", scripted)
    opts = TrainOptions(**{"epochs": len(losses), "batch_size": 16, "lr": 3e-3, "device": "cpu",
                           "disable_progress": True, **kw})
    return fit(tr, va, stats, TINY, opts, tmp_path / "run"), weights


def test_model_pt_holds_the_best_epoch_not_the_last(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    summary, weights = _scripted_fit(tmp_path, monkeypatch, [1.0, 0.8, 0.9, 0.85, 0.95, 0.7, 0.6],
                                     patience=3)
    assert summary["best_epoch"] == 1 and summary["stop_epoch"] == 4 and len(weights) == 5
    best = load_checkpoint(tmp_path / "run" / "model.pt")
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    assert best["epoch"] == 1 and last["epoch"] == 4
    for k, v in best["model"].items():
        assert torch.equal(v, weights[1][k]), k
        assert torch.equal(last["model"][k], weights[4][k]), k
    assert any(not torch.equal(best["model"][k], last["model"][k]) for k in best["model"])
    rows = _read_loss_csv(tmp_path / "run" / "loss.csv")
    assert [r["best"] for r in rows] == [0, 1, 0, 0, 0]


def test_min_delta_gains_do_not_reset_the_patience(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Epochs 1-3 each gain 0.05 %: below min_delta = 1 %, so they count as bad epochs, yet
    # model.pt still follows the lowest loss (epoch 3).
    losses = [1.0, 0.9995, 0.999, 0.9985, 0.5, 0.4]
    summary, _ = _scripted_fit(tmp_path, monkeypatch, losses, patience=3, min_delta=0.01)
    assert summary["stop_epoch"] == 3 and summary["best_epoch"] == 3 and summary["epochs"] == 4
    assert load_checkpoint(tmp_path / "run" / "model.pt")["epoch"] == 3
    summary, _ = _scripted_fit(tmp_path / "b", monkeypatch, losses, patience=3, min_delta=0.0)
    assert not summary["early_stopped"] and summary["best_epoch"] == 5


def test_plateau_schedule_cuts_the_lr_at_each_plateau_and_stops_on_the_floor(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Plateaus (2 epochs without a gain) end epochs 3, 7 and 11: two cuts by sqrt(10) reach
    # the 10 % floor, and the third plateau, on the floor, stops the run. The epoch after each
    # cut gains nothing, so a cut that did not restart the count would cut again at once.
    losses = [1.0, 0.9, 0.95, 0.95, 0.92, 0.8, 0.85, 0.85, 0.82, 0.7, 0.75, 0.75, 0.6, 0.5,
              0.4, 0.3]
    summary, _ = _scripted_fit(tmp_path, monkeypatch, losses, patience=2, schedule="plateau",
                               lr=1e-3, warmup_fraction=0.05)  # 3 of 48 steps: epoch 0
    assert summary["stop_epoch"] == 11 and summary["best_epoch"] == 9 and summary["epochs"] == 12
    rows = _read_loss_csv(tmp_path / "run" / "loss.csv")
    expected = [1e-3] * 4 + [1e-3 / math.sqrt(10)] * 4 + [1e-4] * 4
    np.testing.assert_allclose([r["lr"] for r in rows], expected, rtol=1e-5)
    assert [r["early_stop"] for r in rows] == [0] * 11 + [1]
    assert summary["last_lr"] == pytest.approx(1e-4) and summary["schedule"] == "plateau"
    # The same losses under the cosine: the first plateau ends the run.
    summary, _ = _scripted_fit(tmp_path / "c", monkeypatch, losses, patience=2, schedule="cosine")
    assert summary["stop_epoch"] == 3 and summary["best_epoch"] == 1


def test_plateau_lr_is_constant_after_the_warm_up() -> None:
    o = TrainOptions(lr=1.0, warmup_fraction=0.05, schedule="plateau")
    assert lr_at(0, 200, o) == pytest.approx(0.1) and lr_at(9, 200, o) == pytest.approx(1.0)
    assert lr_at(10, 200, o) == lr_at(199, 200, o) == lr_at(500, 200, o) == 1.0
    assert lr_at(150, 200, o, scale=0.1) == pytest.approx(0.1)
    assert lr_at(5, 200, o, scale=0.1) == pytest.approx(0.6)  # the warm-up ignores the scale


def test_lr_schedule_warms_up_over_the_fraction_and_decays_by_the_end(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tr, va, stats = _tiny_fit_data(tmp_path)  # 48 flows / 16 = 3 steps per epoch
    used = []
    real_step = train.train_step

    def spy(model, optimizer, batch, cfg, gen, lr, grad_clip):
        out = real_step(model, optimizer, batch, cfg, gen, lr, grad_clip)
        used.append(optimizer.param_groups[0]["lr"])
        return out

    monkeypatch.setattr(train, "train_step", spy)
    opts = TrainOptions(epochs=8, batch_size=16, lr=1e-3, warmup_fraction=0.2, patience=100,
                        device="cpu", disable_progress=True)
    summary = fit(tr, va, stats, TINY, opts, tmp_path / "run")
    assert summary["total_steps"] == 24 and summary["warmup_steps"] == 5  # ceil(0.2 * 24)
    assert len(used) == 24
    np.testing.assert_allclose(used[:5], [1e-3 * (k + 1) / 5 for k in range(5)], rtol=1e-12)
    assert all(a > b for a, b in itertools.pairwise(used[4:]))  # the cosine runs to the end
    assert used[-1] == pytest.approx(1e-4)
    rows = _read_loss_csv(tmp_path / "run" / "loss.csv")
    # loss.csv's lr is the lr of each epoch's last step, as the optimiser used it.
    np.testing.assert_allclose([r["lr"] for r in rows], used[2::3], rtol=1e-5)
    assert rows[-1]["lr"] < rows[-2]["lr"] < rows[-3]["lr"]


def test_cli_trains_and_writes_run_folder(tmp_path: Path) -> None:
    ds_dir = mixed_dataset(tmp_path / "ds", 80, 20, T)
    sp = tmp_path / "splits.npz"
    assert splits.main(["--data", str(ds_dir), "--seed", "0", "--out", str(sp), "--n-train", "48",
                        "--n-val", "16", "--n-cal", "0", "--n-test-benign", "16", "--n-test-attack", "16"]) == 0
    run = tmp_path / "run"
    argv = ["--data", str(ds_dir), "--splits", str(sp), "--seed", "0", "--out", str(run),
            "--max-packets", str(T), "--d-model", "16", "--n-layers", "1", "--n-heads", "2",
            "--epochs", "2", "--batch-size", "16", "--warmup-fraction", "0.5", "--device", "cpu",
            "--max-train-flows", "40", "--threads", "1", "--ot", "sinkhorn"]
    assert train.main(argv) == 0
    for name in ("model.pt", "last.pt", "loss.csv", "loss.png", "train_summary.json"):
        assert (run / name).is_file(), name
    lines = (run / "loss.csv").read_text().splitlines()
    assert lines[0].split(",") == list(train.LOSS_COLUMNS) and len(lines) == 3
    ckpt = torch.load(run / "model.pt", weights_only=True)  # plain types only
    assert set(REQUIRED_KEYS) <= set(ckpt)
    assert ckpt["config"]["d_model"] == 16 and ckpt["seed"] == 0 and ckpt["config"]["ot"] == "sinkhorn"
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["total_steps"] == 2 * 3 and summary["warmup_steps"] == 3 and summary["epochs"] == 2
    assert ckpt["feature_stats"]["transform"] == "log1p-v1"
    # Provenance of the run: the same in model.pt and last.pt (collected once), naming the
    # three input files with their sizes and hashes, and the options the run was given.
    prov = ckpt["provenance"]
    assert prov == torch.load(run / "last.pt", weights_only=True)["provenance"]
    assert [r["path"] for r in prov["inputs"]] == [str(ds_dir / "packets.npz"),
                                                   str(ds_dir / "flow_features.parquet"), str(sp)]
    for r in prov["inputs"]:
        data = Path(r["path"]).read_bytes()
        assert r["size"] == len(data) and r["sha256"] == hashlib.sha256(data).hexdigest()
    assert prov["janus_version"] == janus.__version__
    assert prov["dependencies"]["torch"] == torch.__version__
    options = {**vars(train.build_parser().parse_args(argv)), "verbose": 0}
    assert prov["config_sha256"] == provenance.config_sha256(
        {k: str(v) if isinstance(v, Path) else v for k, v in options.items()})


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
    ra, rb = (_read_loss_csv(tmp_path / d / "loss.csv") for d in ("whole", "split"))
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in ra] == \
        [{k: v for k, v in r.items() if k != "seconds"} for r in rb]
    sa, sb = (json.loads((tmp_path / d / "train_summary.json").read_text()) for d in ("whole", "split"))
    timing = {"seconds", "flows_per_s"}
    assert {k: v for k, v in sa.items() if k not in timing} == {k: v for k, v in sb.items() if k not in timing}
    # Resuming a run that stopped early trains no further.
    opts_stop = TrainOptions(epochs=6, batch_size=16, lr=0.0, patience=1, device="cpu", disable_progress=True)
    fit(tr, va, stats, TINY, opts_stop, tmp_path / "stopped")
    again = fit(tr, va, stats, TINY, opts_stop, tmp_path / "stopped", resume=True)
    assert again["stop_epoch"] == 1 and again["epochs"] == 2


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
