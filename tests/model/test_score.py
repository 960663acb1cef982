"""Tests of janus/model/score.py: score definitions, determinism, padding invariance, detection."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from flowdata import mixed_dataset
from sklearn.metrics import roc_auc_score

from janus.contract import SCORE_COLUMNS
from janus.datasets import splits
from janus.errors import JanusError
from janus.model import score
from janus.model.checkpoint import load_checkpoint, model_from_checkpoint
from janus.model.data import FeatureStats, length_batches, load_dataset
from janus.model.flowmatch import MASK
from janus.model.network import JanusNet, ModelConfig
from janus.model.train import TrainOptions, fit

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
    # --splits: only the val, cal and test flows, sorted.
    sp = tmp_path / "splits.npz"
    assert splits.main(["--data", str(ds_dir), "--seed", "1", "--out", str(sp), "--n-train", "100",
                        "--n-val", "20", "--n-cal", "15", "--n-test-benign", "30",
                        "--n-test-attack", "30"]) == 0
    assert score.main(["--checkpoint", str(ckpt), "--data", str(ds_dir), "--out", str(out),
                       "--splits", str(sp)]) == 0
    z = splits.load_splits(sp)
    got = pq.read_table(out).column("flow_id").to_numpy()
    assert z["cal"].size == 15
    np.testing.assert_array_equal(got, np.union1d(np.union1d(z["val"], z["cal"]), z["test"]))


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
                        "--n-val", "10", "--n-cal", "0", "--n-test-benign", "20",
                        "--n-test-attack", "20"]) == 0
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


# --------------------------------------------------------------------------- ODE terminal
class _KnownField(torch.nn.Module):
    """Stand-in network: velocity ``field(x, t)`` for the FLOW token and the packets, zero flag
    logits; it records each call's times and flags."""

    def __init__(self, field) -> None:
        super().__init__()
        self.field = field
        self.cfg = TINY
        self.calls: list[tuple[float, float, torch.Tensor]] = []

    def forward(self, flow, cont, disc, lengths, t_c, t_d):
        self.calls.append((float(t_c[0]), float(t_d[0]), disc.clone()))
        tf, tp = t_c[:, None], t_c[:, None, None]
        return self.field(flow, tf), self.field(cont, tp), torch.zeros(disc.shape)


def _some_batch(tmp_path: Path, n: int = 40):
    """A batch of flows of many lengths (sparse ids), padded to T."""
    ds = load_dataset(mixed_dataset(tmp_path, 30, 20, T, seed=4))
    stats = FeatureStats.fit(ds, np.arange(30), T)
    ids = np.sort(np.random.default_rng(0).choice(50, n, replace=False))
    prep = stats.prepare(ds, ids, T)
    assert len(set(prep.lengths.tolist())) > 3
    return prep.batch(np.arange(n), pad_to=T)


@pytest.mark.parametrize("flags", ["hidden", "visible"])
@pytest.mark.parametrize("solver, steps", [("euler", 1), ("euler", 5), ("midpoint", 1), ("midpoint", 4)])
def test_ode_terminal_of_a_linear_field_is_the_solver_closed_form(solver: str, steps: int, flags: str,
                                                                 tmp_path: Path) -> None:
    a, h = 0.8, 1.0 / steps
    batch = _some_batch(tmp_path)
    model = _KnownField(lambda x, t: a * x)
    opts = score.ScoreOptions(mode="ode", solver=solver, steps=steps, ode_flags=flags)
    x0f, x0p, _ = score.terminal_point(model, batch, opts)
    factor = (1 - a * h) ** steps if solver == "euler" else (1 - a * h + (a * h) ** 2 / 2) ** steps
    torch.testing.assert_close(x0f, factor * batch.flow, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(x0p, factor * batch.cont * batch.mask[..., None], rtol=1e-5, atol=1e-6)
    per_step = 1 if solver == "euler" else 2
    assert len(model.calls) == opts.evaluations == per_step * steps + (flags == "visible")
    # The first call reads the flag logits: every flag MASK at (t_c, t_d) = (1, 0). The field
    # then sees MASK at t_d = 0 (hidden) or the observed flags at t_d = 1 (visible).
    assert model.calls[0][:2] == (1.0, 0.0) and bool((model.calls[0][2] == MASK).all())
    for _, t_d, disc in model.calls[1:]:
        if flags == "hidden":
            assert t_d == 0.0 and bool((disc == MASK).all())
        else:
            assert t_d == 1.0 and torch.equal(disc, batch.disc)


def test_ode_terminal_converges_to_the_exact_flow(tmp_path: Path) -> None:
    batch = _some_batch(tmp_path)
    x0f, _, _ = score.terminal_point(_KnownField(lambda x, t: 0.8 * x), batch,
                                     score.ScoreOptions(mode="ode", solver="midpoint", steps=64))
    torch.testing.assert_close(x0f, math.exp(-0.8) * batch.flow, rtol=1e-4, atol=1e-5)  # O(h^2)


@pytest.mark.parametrize("steps", [1, 3, 8])
def test_ode_evaluates_the_field_at_the_right_times(steps: int, tmp_path: Path) -> None:
    # v(x, t) = c t: x0 = x1 - c/2 exactly. Midpoint is exact for a field linear in t;
    # Euler from t = 1 samples t = 1, 1-h, ..., h and lands at x1 - c (1 + h) / 2.
    batch, c, h = _some_batch(tmp_path), 0.6, 1.0 / steps
    for solver, shift in (("midpoint", c / 2), ("euler", c * (1 + h) / 2)):
        model = _KnownField(lambda x, t: c * t * torch.ones_like(x))
        x0f, x0p, _ = score.terminal_point(model, batch, score.ScoreOptions("ode", steps, solver, "hidden"))
        torch.testing.assert_close(x0f, batch.flow - shift, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(x0p, (batch.cont - shift) * batch.mask[..., None], rtol=1e-5, atol=1e-5)
        times = [t for t, _, _ in model.calls]
        want = [1 - k * h for k in range(steps)]
        if solver == "midpoint":
            want = [t for k in want for t in (k, k - h / 2)]
        np.testing.assert_allclose(times, want, atol=1e-6)


@pytest.mark.parametrize("solver, steps", [("euler", 1), ("euler", 7), ("midpoint", 3)])
def test_onepass_and_ode_agree_for_a_constant_field(solver: str, steps: int, tmp_path: Path) -> None:
    batch = _some_batch(tmp_path)
    const = _KnownField(lambda x, t: torch.full_like(x, -1.3))
    one = score.score_batch(const, batch, score.ScoreOptions(mode="onepass"))
    ode = score.score_batch(const, batch, score.ScoreOptions("ode", steps, solver))
    torch.testing.assert_close(ode, one, rtol=1e-5, atol=1e-6)
    m = batch.mask.float()
    n = m.sum(1)
    want = ((((batch.cont + 1.3) ** 2).sum(2) * m).sum(1) / (3 * n))
    torch.testing.assert_close(one[:, 2], want, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- flags hidden
def _random_net() -> JanusNet:
    torch.manual_seed(0)
    net = JanusNet(TINY)
    with torch.no_grad():  # non-zero heads, so the observed flags could reach every output
        for p in net.parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.3)
    return net.eval()


@pytest.mark.parametrize("opts", [score.ScoreOptions(mode="onepass"),
                                  score.ScoreOptions("ode", 3, "euler", "hidden"),
                                  score.ScoreOptions("ode", 2, "midpoint", "visible")],
                         ids=["onepass", "ode-hidden", "ode-visible"])
def test_scoring_hides_every_flag_from_the_flag_head(opts: score.ScoreOptions, tmp_path: Path) -> None:
    """The disc_nll_* columns are the NLL of the observed flags under the logits the network
    gives with every flag MASK at (t_c, t_d) = (1, 0): flipping the observed flags changes the
    NLL exactly as that formula says, never the logits."""
    import dataclasses

    net, batch = _random_net(), _some_batch(tmp_path)
    ones = torch.ones(len(batch.lengths))
    with torch.no_grad():
        _, _, logits = net(batch.flow, batch.cont, torch.full_like(batch.disc, MASK), batch.lengths,
                           ones, 0 * ones)
    m = batch.mask.float()[..., None]
    got = []
    for flags in (batch.disc, (1 - batch.disc) * batch.mask[..., None]):
        s = score.score_batch(net, dataclasses.replace(batch, disc=flags), opts)
        nll = torch.nn.functional.binary_cross_entropy_with_logits(logits, flags.float(), reduction="none")
        want = (nll * m).sum(1) / m.sum(1)  # (B, 6)
        torch.testing.assert_close(s[:, 4:], want, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(s[:, 3], want.sum(1), rtol=1e-5, atol=1e-5)
        got.append(s)
    assert (got[0][:, 3] - got[1][:, 3]).abs().min() > 1e-3  # the NLL does move
    same_continuous = torch.equal(got[0][:, :3], got[1][:, :3])
    assert same_continuous == (opts.mode == "onepass" or opts.ode_flags == "hidden")


def test_discrete_loss_is_taken_on_masked_valid_flags_only() -> None:
    """A network whose flag logits are perfect wherever the flag is visible, 1/2 where it is
    MASK and confidently wrong on padding has a discrete loss of exactly log 2."""
    from janus.model.data import Prepared
    from janus.model.train import joint_loss

    rng = np.random.default_rng(3)
    n, L = 64, T
    lengths = rng.integers(1, L + 1, n)
    valid = np.arange(L)[None, :] < lengths[:, None]
    prep = Prepared(flow_id=np.arange(0, 3 * n, 3), flow=rng.normal(size=(n, 20)).astype(np.float32),
                    cont=(rng.normal(size=(n, L, 3)) * valid[..., None]).astype(np.float32),
                    disc=(rng.integers(0, 2, (n, L, 6)) * valid[..., None]).astype(np.int8),
                    lengths=lengths)
    batch = prep.batch(np.arange(n), pad_to=L)

    class Cheat(torch.nn.Module):
        def forward(self, flow, cont, disc, lengths, t_c, t_d):
            clean = (2.0 * batch.disc - 1.0) * 30.0  # (B, L, 6): certain and right
            logits = torch.where(disc == MASK, torch.zeros_like(clean), clean)
            logits = torch.where(batch.mask[..., None], logits, -clean)  # padding: certain, wrong
            return torch.zeros_like(flow), torch.zeros_like(cont), logits

    _, _, disc = joint_loss(Cheat(), batch, TINY, torch.Generator().manual_seed(0))
    assert abs(disc.item() - math.log(2)) < 1e-6, disc.item()


def test_ode_scores_are_deterministic_and_padding_free(trained: tuple[Path, Path]) -> None:
    ds_dir, ckpt = trained
    model, _, stats = model_from_checkpoint(load_checkpoint(ckpt))
    ds = load_dataset(ds_dir)
    opts = score.ScoreOptions("ode", 4, "midpoint", "visible")
    a = score.score_flows(model, stats, ds, np.arange(0, 320, 3), batch_size=7, disable_progress=True,
                          opts=opts)
    b = score.score_flows(model, stats, ds, np.arange(0, 320, 3), batch_size=7, disable_progress=True,
                          opts=opts)
    np.testing.assert_array_equal(a, b)
    prep = stats.prepare(ds, np.arange(64), T)
    for idx in length_batches(prep.lengths, 16):
        torch.testing.assert_close(score.score_batch(model, prep.batch(idx), opts),
                                   score.score_batch(model, prep.batch(idx, pad_to=T), opts),
                                   rtol=1e-5, atol=1e-6)


def test_cli_records_the_score_options(trained: tuple[Path, Path], tmp_path: Path) -> None:
    import json

    ds_dir, ckpt = trained
    out = tmp_path / "s.parquet"
    assert score.main(["--checkpoint", str(ckpt), "--data", str(ds_dir), "--out", str(out),
                       "--mode", "ode", "--steps", "3", "--solver", "euler", "--ode-flags",
                       "visible"]) == 0
    meta = json.loads(pq.read_table(out).schema.metadata[score.SCORE_OPTIONS_KEY.encode()])
    assert meta == {"mode": "ode", "steps": 3, "solver": "euler", "ode_flags": "visible",
                    "extended": False, "extended_steps": 4, "probes": 1, "probe_seed": 0}
    model, _, stats = model_from_checkpoint(load_checkpoint(ckpt))
    direct = score.score_flows(model, stats, load_dataset(ds_dir), np.arange(320), disable_progress=True,
                               opts=score.ScoreOptions("ode", 3, "euler", "visible"))
    table = pq.read_table(out)
    np.testing.assert_array_equal(np.stack([table.column(c).to_numpy() for c in SCORE_COLUMNS], 1), direct)
    with pytest.raises(JanusError, match="steps must be >= 1, got 0"):
        score.run(score.build_parser().parse_args(["--checkpoint", str(ckpt), "--data", str(ds_dir),
                                                   "--out", str(out), "--steps", "0"]))
