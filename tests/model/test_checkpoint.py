"""Tests of janus/model/checkpoint.py: one-line errors for every damaged or foreign file, the
``finished`` flag written by ``janus train`` and required by ``janus score``."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from flowdata import mixed_dataset

from janus.errors import JanusError
from janus.model import checkpoint, score, train
from janus.model.checkpoint import (
    FORMAT,
    load_checkpoint,
    mark_finished,
    model_from_checkpoint,
    save_checkpoint,
)
from janus.model.data import FeatureStats, load_dataset
from janus.model.network import JanusNet, ModelConfig
from janus.model.train import TrainOptions, fit

T = 8
TINY = ModelConfig(max_packets=T, d_model=16, n_layers=1, n_heads=2)
#: Set by Payload.__reduce__'s callable if an unpickler ever runs it.
RAN: list[str] = []


def _stats() -> FeatureStats:
    return FeatureStats(flow_mean=np.arange(20.0), flow_std=np.ones(20),
                        packet_mean=np.array([1.0, 2.0, 3.0]), packet_std=np.array([4.0, 5.0, 6.0]))


def _model(seed: int = 0) -> JanusNet:
    torch.manual_seed(seed)
    model = JanusNet(TINY)
    with torch.no_grad():  # fresh heads are zero; give every weight a distinct value
        for p in model.parameters():
            p.normal_()
    return model


@pytest.fixture
def ckpt_path(tmp_path: Path) -> Path:
    path = tmp_path / "run" / "model.pt"
    save_checkpoint(path, _model(), None, TINY, 3, 7, _stats(), {"best_epoch": 3})
    return path


def _rewrite(path: Path, **changes) -> Path:
    """Save the checkpoint at ``path`` again with some keys changed (None = removed)."""
    ckpt = torch.load(path, weights_only=True)
    for key, value in changes.items():
        if value is None:
            ckpt.pop(key)
        else:
            ckpt[key] = value
    torch.save(ckpt, path)
    return path


def _error(path: Path, **kwargs) -> str:
    with pytest.raises(JanusError) as info:
        load_checkpoint(path, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(str(path)), msg
    return msg


def test_round_trip_and_finished_flag(ckpt_path: Path) -> None:
    ckpt = load_checkpoint(ckpt_path)
    assert ckpt["finished"] is False and ckpt["format"] == FORMAT
    assert ckpt["epoch"] == 3 and ckpt["seed"] == 7 and ckpt["train_state"] == {"best_epoch": 3}
    model, cfg, stats = model_from_checkpoint(ckpt)
    assert cfg == TINY
    np.testing.assert_array_equal(stats.packet_std, [4.0, 5.0, 6.0])
    for k, v in _model().state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    assert "did not finish (killed?); rerun janus train" in _error(ckpt_path, require_finished=True)

    before = {k: v.clone() for k, v in ckpt["model"].items()}
    mark_finished(ckpt_path)
    done = load_checkpoint(ckpt_path, require_finished=True)
    assert done["finished"] is True and done["epoch"] == 3 and done["train_state"] == {"best_epoch": 3}
    for k, v in before.items():
        assert torch.equal(done["model"][k], v), k
    assert [p.name for p in ckpt_path.parent.iterdir()] == ["model.pt"]  # no temporary left


def test_checkpoint_from_before_the_finished_field(ckpt_path: Path) -> None:
    _rewrite(ckpt_path, format=None, finished=None)
    ckpt = load_checkpoint(ckpt_path)  # still readable (e.g. to resume) ...
    assert ckpt["finished"] is False and ckpt["format"] == 1
    msg = _error(ckpt_path, require_finished=True)  # ... but never scored as if finished
    assert "before checkpoints recorded whether training finished; rerun janus train" in msg


def test_newer_format_is_refused(ckpt_path: Path) -> None:
    _rewrite(ckpt_path, format=FORMAT + 1, janus_version="9.0")
    msg = _error(ckpt_path)
    assert f"format {FORMAT + 1} is newer" in msg and "'9.0'" in msg and "upgrade janus" in msg


@pytest.mark.parametrize("change,expected", [
    (lambda c: {**c, "n_experts": 4}, "unknown keys ['n_experts'], missing keys []"),
    (lambda c: {k: v for k, v in c.items() if k != "sigma"}, "unknown keys [], missing keys ['sigma']"),
    (lambda c: {**c, "d_model": "wide"}, "checkpoint config is invalid"),
    (lambda c: {**c, "d_model": 15}, "checkpoint config is invalid"),
    (lambda c: [1, 2], "checkpoint config is a list"),
])
def test_config_that_is_not_this_januses_is_one_line(ckpt_path: Path, change, expected) -> None:
    config = torch.load(ckpt_path, weights_only=True)["config"]
    _rewrite(ckpt_path, config=change(config))
    assert expected in _error(ckpt_path)


def test_state_dict_that_does_not_fit_the_config(ckpt_path: Path) -> None:
    state = torch.load(ckpt_path, weights_only=True)["model"]
    key = next(iter(state))
    wider = {**state, key: torch.zeros(*state[key].shape[:-1], state[key].shape[-1] + 1)}
    _rewrite(ckpt_path, model=wider)
    msg = _error(ckpt_path)
    assert "do not fit the checkpoint's own config" in msg and key in msg
    assert f"{tuple(wider[key].shape)} vs {tuple(state[key].shape)}" in msg

    _rewrite(ckpt_path, model={k: v for k, v in state.items() if k != key} | {"extra.w": torch.ones(1)})
    msg = _error(ckpt_path)
    assert f"missing ['{key}']" in msg and "unexpected ['extra.w']" in msg

    # The same weights under a config of another size: the classic load_state_dict traceback.
    _rewrite(ckpt_path, model=state, config={**TINY.to_dict(), "d_model": 32})
    assert "shape (checkpoint vs config)" in _error(ckpt_path)


def test_incomplete_feature_stats(ckpt_path: Path) -> None:
    stats = torch.load(ckpt_path, weights_only=True)["feature_stats"]
    del stats["packet_std"]
    _rewrite(ckpt_path, feature_stats=stats)
    assert "feature_stats are incomplete" in _error(ckpt_path)


def test_missing_keys_and_non_dict(ckpt_path: Path) -> None:
    _rewrite(ckpt_path, seed=None)
    assert "checkpoint lacks keys ['seed']" in _error(ckpt_path)
    torch.save([torch.zeros(2)], ckpt_path)
    assert "holds a list, not a dict" in _error(ckpt_path)


def _mark(tag: str) -> None:
    RAN.append(tag)


class Payload:
    """A pickled object whose unpickling calls :func:`_mark`: code riding in a file."""

    def __reduce__(self):
        return (_mark, ("code ran",))


class Plain:
    pass


@pytest.mark.parametrize("obj,named", [
    (Payload(), "_mark"),
    ({"model": Plain()}, "Plain"),
])
def test_pickled_objects_are_refused_without_running_them(ckpt_path: Path, obj, named) -> None:
    ckpt = torch.load(ckpt_path, weights_only=True)
    ckpt["optimizer"] = obj
    torch.save(ckpt, ckpt_path)
    RAN.clear()
    msg = _error(ckpt_path)
    assert "refused for safety" in msg and "Python objects or code" in msg and named in msg
    assert "weights_only" not in msg  # not torch's advice to switch the protection off
    assert RAN == []


def test_truncated_and_foreign_files(ckpt_path: Path, tmp_path: Path) -> None:
    data = ckpt_path.read_bytes()
    for cut in (len(data) // 2, len(data) - 10, 30):
        part = tmp_path / f"cut{cut}.pt"
        part.write_bytes(data[:cut])
        assert "truncated or corrupt checkpoint" in _error(part)
    for name, content in (("text.pt", b"not a checkpoint"), ("empty.pt", b""),
                          ("pickle.pt", b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00}\x94.")):
        (tmp_path / name).write_bytes(content)
        assert "not a readable JANUS checkpoint" in _error(tmp_path / name)
        assert "not a zip archive" in _error(tmp_path / name)
    # A whole zip with a damaged member (a flipped byte in a tensor's storage record).
    bad = tmp_path / "member.pt"
    with zipfile.ZipFile(ckpt_path) as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            body = src.read(info)
            if info.filename.endswith("data.pkl"):
                body = body[:len(body) // 2]
            dst.writestr(info, body)
    assert "corrupt checkpoint" in _error(bad)
    assert "checkpoint not found; run 'janus train' first" in _error(tmp_path / "none.pt")


def _prepared(root: Path):
    """A tiny dataset folder and its prepared benign train / val flows."""
    ds_dir = mixed_dataset(root / "ds", n_benign=80, n_attack=16, t=T)
    ds = load_dataset(ds_dir)
    stats = FeatureStats.fit(ds, np.arange(48), T)
    return ds_dir, stats, stats.prepare(ds, np.arange(48), T), stats.prepare(ds, np.arange(48, 64), T)


def _opts(epochs: int, **kw) -> TrainOptions:
    return TrainOptions(epochs=epochs, batch_size=16, seed=0, device="cpu", disable_progress=True,
                        **kw)


def test_killed_training_is_not_scored_and_a_finished_one_is(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    ds, stats, tr, va = _prepared(tmp_path)
    real = train.validation_loss
    calls = {"n": 0}

    def killed_in_epoch_1(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # what a kill between two epochs leaves behind
        return real(*args, **kwargs)

    monkeypatch.setattr(train, "validation_loss", killed_in_epoch_1)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        fit(tr, va, stats, TINY, _opts(3, patience=10), run)
    monkeypatch.setattr(train, "validation_loss", real)
    assert load_checkpoint(run / "model.pt")["finished"] is False  # looks whole, is not done
    out = tmp_path / "scores.parquet"
    capsys.readouterr()
    rc = score.main(["--checkpoint", str(run / "model.pt"), "--data", str(ds), "--out", str(out),
                     "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2 and not out.exists()
    assert f"training of {run} did not finish (killed?); rerun janus train" in err
    assert "Traceback" not in err

    # Resuming finishes the run: both files now say so, and scoring works.
    fit(tr, va, stats, TINY, _opts(3, patience=10), run, resume=True)
    for name in ("model.pt", "last.pt"):
        assert load_checkpoint(run / name, require_finished=True)["finished"] is True
    assert score.main(["--checkpoint", str(run / "model.pt"), "--data", str(ds), "--out",
                       str(out), "--device", "cpu"]) == 0
    assert out.is_file()


def test_fit_marks_the_best_epoch_finished(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``model.pt`` keeps the best epoch's weights when the loop ends and is rewritten with
    ``finished`` only then (early stopping: patience 1 at a learning rate that overshoots)."""
    _, stats, tr, va = _prepared(tmp_path)
    run = tmp_path / "run"
    saves: list[tuple[str, int, bool, dict]] = []
    real = checkpoint.save_checkpoint

    def spy(path, model, *args, **kwargs):
        saves.append((Path(path).name, args[2], kwargs.get("finished", False),
                      {k: v.clone() for k, v in model.state_dict().items()}))
        return real(path, model, *args, **kwargs)

    monkeypatch.setattr(train, "save_checkpoint", spy)
    fit(tr, va, stats, TINY, _opts(6, patience=1, lr=0.3), run)
    # Every save during the loop was unfinished; the finished files came after it.
    assert saves and all(not finished for _, _, finished, _ in saves)
    _, best, _, weights = [s for s in saves if s[0] == "model.pt"][-1]
    ckpt = load_checkpoint(run / "model.pt", require_finished=True)
    assert ckpt["epoch"] == best == ckpt["train_state"]["best_epoch"]
    for k, v in weights.items():
        assert torch.equal(ckpt["model"][k], v), k
    last = load_checkpoint(run / "last.pt", require_finished=True)
    assert last["epoch"] == saves[-1][1] > best  # early stopped after a worse epoch
    assert any(not torch.equal(last["model"][k], v) for k, v in weights.items())


def test_fresh_run_killed_before_its_first_epoch_leaves_no_earlier_model(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh ``fit`` into a folder holding a finished run removes that run's files first:
    killed before its first epoch, the folder must not offer the old model as this run's."""
    _, stats, tr, va = _prepared(tmp_path)
    run = tmp_path / "run"
    fit(tr, va, stats, TINY, _opts(2, patience=10), run)
    assert load_checkpoint(run / "model.pt", require_finished=True)["finished"] is True

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "train_step", killed)
    with pytest.raises(KeyboardInterrupt):
        fit(tr, va, stats, TINY, _opts(2, patience=10), run)
    for name in ("model.pt", "last.pt", "train_summary.json"):
        assert not (run / name).exists(), name
