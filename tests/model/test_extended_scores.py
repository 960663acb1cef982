"""Tests of janus/model/extended_scores.py: each path score against a closed form on hand-built
velocity fields, Hutchinson's estimate against the exact Jacobian trace of a small JANUS
network, probes independent of batching, and the --extended scores file end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from flowdata import mixed_dataset

from janus.contract import AGGREGATE_COLUMNS_KEY, EXTENDED_SCORE_COLUMNS, SCORE_COLUMNS
from janus.datasets import splits
from janus.evaluation.aggregate import aggregate_file
from janus.model import score
from janus.model.data import FeatureStats, load_dataset
from janus.model.extended_scores import (
    extended_batch,
    field_divergence,
    model_field,
    path_scores,
    rademacher_probes,
)
from janus.model.network import JanusNet, ModelConfig

T = 8
TINY = ModelConfig(max_packets=T, d_model=32, n_layers=2, n_heads=2)
COL = {c: k for k, c in enumerate(EXTENDED_SCORE_COLUMNS)}
F_DIM, L, C = 4, 5, 3


@pytest.fixture()
def points():
    """Three flows of 5, 2 and 3 packets (padding 0), 4 'flow features' each: D = 19, 10, 13."""
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([5, 2, 3])
    mask = torch.arange(L)[None, :] < lengths[:, None]
    x1f = torch.randn(3, F_DIM, generator=g, dtype=torch.float64)
    x1p = torch.randn(3, L, C, generator=g, dtype=torch.float64) * mask[..., None]
    dim = (F_DIM + C * lengths).double()
    sq = (x1f ** 2).sum(1) + (x1p ** 2).sum((1, 2))
    return x1f, x1p, mask, dim, sq


def _run(field, points, **kw):
    x1f, x1p, mask, _, _ = points
    return path_scores(field, x1f, x1p, mask, np.array([11, 3, 7]), **kw)


@pytest.mark.parametrize("solver, steps, rtol", [("midpoint", 200, 1e-5), ("euler", 2000, 2e-3)])
def test_linear_field_closed_forms(points, solver, steps, rtol):
    """v(x, t) = a x: x(t) = x1 e^{a (t - 1)}, so x0 = x1 e^{-a}, |v|^2 = a^2 |x1|^2 e^{2a(t-1)},
    div v = a D, log p(x1) = log N(x0) - a D; the path is straight in direction but not in
    speed, so its curvature is KE - |x1 - x0|^2 / D > 0."""
    _, _, mask, dim, sq = points
    a = 0.7
    out = _run(lambda xf, xp, t: (a * xf, a * xp * mask[..., None]), points,
               steps=steps, solver=solver)
    terminal = sq * math.exp(-2 * a) / dim
    kinetic = a * sq * (1 - math.exp(-2 * a)) / 2 / dim
    expected = {
        "ode_terminal_norm": terminal,
        "kinetic_energy": kinetic,
        "path_curvature": kinetic - sq * (1 - math.exp(-a)) ** 2 / dim,
        "cnf_nll": 0.5 * terminal + 0.5 * math.log(2 * math.pi) + a,
        **{f"velocity_t{t:.1f}": a * a * sq * math.exp(2 * a * (t - 1)) / dim
           for t in (1.0, 0.5, 0.0)},
    }
    for name, value in expected.items():
        # The curvature is a small difference of two path integrals: relative error x50.
        tol = rtol * (50 if name == "path_curvature" else 1)
        torch.testing.assert_close(out[:, COL[name]], value, rtol=tol, atol=0, msg=name)


def test_constant_field_is_a_straight_path(points):
    """v = c: x0 = x1 - c after any number of steps, KE = |c|^2 / D, curvature 0, div 0."""
    x1f, x1p, mask, dim, _ = points
    cf = torch.linspace(-1, 1, F_DIM, dtype=torch.float64)
    cp = torch.tensor([0.5, -2.0, 1.0], dtype=torch.float64)
    m = mask[..., None].double()
    out = _run(lambda xf, xp, t: (cf.expand_as(xf), cp * m), points, steps=2)
    x0_sq = ((x1f - cf) ** 2).sum(1) + ((x1p - cp * m) ** 2).sum((1, 2))
    c_sq = (cf ** 2).sum() + (cp ** 2).sum() * mask.sum(1)
    torch.testing.assert_close(out[:, COL["ode_terminal_norm"]], x0_sq / dim)
    torch.testing.assert_close(out[:, COL["kinetic_energy"]], c_sq / dim)
    torch.testing.assert_close(out[:, COL["path_curvature"]], torch.zeros(3, dtype=torch.float64))
    torch.testing.assert_close(out[:, COL["cnf_nll"]], 0.5 * x0_sq / dim + 0.5 * math.log(2 * math.pi))
    for t in ("1.0", "0.5", "0.0"):
        torch.testing.assert_close(out[:, COL[f"velocity_t{t}"]], c_sq / dim)


def test_rotation_has_constant_speed_zero_divergence_and_known_curvature(points):
    """v = w J x with J a rotation generator in the plane of flow features 0 and 1 (and 0
    elsewhere): the flow turns by the angle w at radius r, so |v|^2 = w^2 r^2 all along,
    the chord is 2 r sin(w/2), the curvature is w^2 r^2 - 4 r^2 sin^2(w/2), div = 0 (the
    Hutchinson estimate of a skew-symmetric Jacobian is 0 for every probe)."""
    x1f, x1p, _, dim, _ = points
    w = 1.3

    def field(xf, xp, t):
        v = torch.zeros_like(xf)
        v[:, 0], v[:, 1] = -w * xf[:, 1], w * xf[:, 0]
        return v, torch.zeros_like(xp)

    out = _run(field, points, steps=200)  # midpoint keeps |x| to O(h^2): rtol 1e-4
    r2 = x1f[:, 0] ** 2 + x1f[:, 1] ** 2
    torch.testing.assert_close(out[:, COL["kinetic_energy"]], w * w * r2 / dim, rtol=1e-4, atol=0)
    torch.testing.assert_close(out[:, COL["path_curvature"]],
                               (w * w - 4 * math.sin(w / 2) ** 2) * r2 / dim, rtol=1e-4, atol=0)
    for t in ("1.0", "0.5", "0.0"):
        torch.testing.assert_close(out[:, COL[f"velocity_t{t}"]], w * w * r2 / dim, rtol=1e-4,
                                   atol=0)
    sq = (x1f ** 2).sum(1) + (x1p ** 2).sum((1, 2))  # a rotation keeps |x|
    torch.testing.assert_close(out[:, COL["ode_terminal_norm"]], sq / dim, rtol=1e-4, atol=0)
    torch.testing.assert_close(out[:, COL["cnf_nll"]], 0.5 * sq / dim + 0.5 * math.log(2 * math.pi),
                               rtol=1e-4, atol=0)


def test_odd_or_too_few_steps_are_refused(points):
    with pytest.raises(ValueError, match="even"):
        _run(lambda xf, xp, t: (xf, xp), points, steps=3)
    with pytest.raises(score.ConfigError, match="extended_steps"):
        score.ScoreOptions(extended=True, extended_steps=5)
    with pytest.raises(score.ConfigError, match="probes"):
        score.ScoreOptions(extended=True, probes=0)


def test_probes_are_signs_fixed_by_flow_and_value_not_by_padding():
    ef, ep = rademacher_probes(np.array([5, 9]), step=2, probe=0, n_flow=20, n_packets=3, n_cont=3)
    assert set(np.unique(np.r_[ef.ravel(), ep.ravel()])) == {-1.0, 1.0}
    ef2, ep2 = rademacher_probes(np.array([9, 5, 1]), 2, 0, 20, 6, 3)
    np.testing.assert_array_equal(ef2[[1, 0]], ef)
    np.testing.assert_array_equal(ep2[[1, 0], :3], ep)  # longer padding: same first packets
    for other in (rademacher_probes(np.array([5, 9]), 3, 0, 20, 3, 3),
                  rademacher_probes(np.array([5, 9]), 2, 1, 20, 3, 3),
                  rademacher_probes(np.array([5, 9]), 2, 0, 20, 3, 3, seed=1)):
        assert not np.array_equal(other[0], ef)
    # Roughly balanced: no constant or biased signs.
    big = rademacher_probes(np.arange(200), 0, 0, 20, 8, 3)[0]
    assert abs(big.mean()) < 0.05


def _random_net(seed: int = 0) -> JanusNet:
    """A JANUS network with every weight random (a fresh one has zero heads: v = 0)."""
    torch.manual_seed(seed)
    net = JanusNet(TINY)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 0.3)
    return net.eval()


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    ds_dir = mixed_dataset(tmp_path_factory.mktemp("ext") / "ds", n_benign=40, n_attack=8, t=T)
    ds = load_dataset(ds_dir)
    stats = FeatureStats.fit(ds, np.arange(40), T)
    return ds_dir, ds, stats


def _exact_jacobian(net, batch, b, t):
    """``dv/dx`` of flow ``b`` alone ``(D, D)`` over its 20 + 3n continuous values."""
    n = int(batch.lengths[b])
    one = type(batch)(**{k: v[b:b + 1] for k, v in batch.__dict__.items()})
    one = type(one)(**{k: (v[:, :n] if v.dim() > 1 and k != "flow" else v)
                       for k, v in one.__dict__.items()})
    field = model_field(net, one, "visible")

    def f(vec):
        vf, vp = field(vec[None, :20], vec[20:].reshape(1, n, 3), t)
        return torch.cat([vf[0], vp[0].reshape(-1)])

    x = torch.cat([one.flow[0], one.cont[0].reshape(-1)])
    return torch.autograd.functional.jacobian(f, x)


def test_hutchinson_matches_the_exact_jacobian_of_a_janus_network(small_data):
    """For every flow of a batch of mixed lengths: the one-probe estimate is exactly e^T J e
    of that flow's own Jacobian (autograd.functional.jacobian on the flow alone), and the
    mean over many probes is within 4 standard errors of tr J."""
    _, ds, stats = small_data
    net = _random_net()
    prep = stats.prepare(ds, np.arange(6), T)
    batch = prep.batch(np.arange(6))
    assert len(set(batch.lengths.tolist())) > 2
    field = model_field(net, batch, "visible")
    t = 0.37
    n_probes = 400
    mask = batch.mask[..., None].float()
    probes = []
    for j in range(n_probes):
        ef, ep = rademacher_probes(batch.flow_id.numpy(), 5, j, 20, batch.cont.shape[1], 3)
        probes.append((torch.from_numpy(ef), torch.from_numpy(ep) * mask))
    _, _, one = field_divergence(field, batch.flow, batch.cont, t, probes[:1])
    _, _, many = field_divergence(field, batch.flow, batch.cont, t, probes)
    for b in range(6):
        n = int(batch.lengths[b])
        jac = _exact_jacobian(net, batch, b, t).double()  # (D, D)
        e = torch.cat([probes[0][0][b], probes[0][1][b, :n].reshape(-1)]).double()
        torch.testing.assert_close(one[b], e @ jac @ e, rtol=1e-4, atol=1e-4)
        # Var(e^T J e) for Rademacher e: 1/2 sum_{i != j} (J_ij + J_ji)^2.
        sym = jac + jac.T
        var = 0.5 * ((sym ** 2).sum() - (sym.diagonal() ** 2).sum())
        assert abs(float(many[b] - jac.trace())) < 4 * math.sqrt(float(var) / n_probes) + 1e-4
        assert abs(float(jac.trace())) > 1e-2  # the check is not of a trivially zero trace


@pytest.mark.parametrize("solver", ["midpoint", "euler"])
@pytest.mark.parametrize("ode_flags", ["visible", "hidden"])
def test_ode_terminal_is_the_terminal_of_mode_ode(small_data, solver, ode_flags):
    _, ds, stats = small_data
    net = _random_net(1)
    batch = stats.prepare(ds, np.arange(12), T).batch(np.arange(12))
    opts = score.ScoreOptions(mode="ode", steps=4, solver=solver, ode_flags=ode_flags,
                              extended=True, extended_steps=4)
    s = score.score_batch(net, batch, opts)
    assert s.shape == (12, len(SCORE_COLUMNS) + len(EXTENDED_SCORE_COLUMNS))
    torch.testing.assert_close(s[:, len(SCORE_COLUMNS) + COL["ode_terminal_norm"]], s[:, 0],
                               rtol=1e-5, atol=1e-6)
    ext = extended_batch(net, batch, 4, solver, ode_flags)
    torch.testing.assert_close(s[:, len(SCORE_COLUMNS):], ext)


def test_extended_scores_do_not_depend_on_batching_and_the_probe_seed_matters(small_data):
    _, ds, stats = small_data
    net = _random_net(2)
    ids = np.arange(48)
    opts = score.ScoreOptions(extended=True)
    a = score.score_flows(net, stats, ds, ids, batch_size=5, disable_progress=True, opts=opts)
    b = score.score_flows(net, stats, ds, ids, batch_size=48, disable_progress=True, opts=opts)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    plain = score.score_flows(net, stats, ds, ids, batch_size=48, disable_progress=True)
    np.testing.assert_array_equal(b[:, :len(SCORE_COLUMNS)], plain)  # the 10 are untouched
    other = score.score_flows(net, stats, ds, ids, batch_size=48, disable_progress=True,
                              opts=score.ScoreOptions(extended=True, probe_seed=1))
    nll = len(SCORE_COLUMNS) + COL["cnf_nll"]
    assert not np.allclose(other[:, nll], b[:, nll])
    rest = [k for k in range(b.shape[1]) if k != nll]
    np.testing.assert_allclose(other[:, rest], b[:, rest], rtol=1e-6)


def test_cli_extended_file_keeps_the_aggregate_columns_and_passes_through(small_data, tmp_path):
    ds_dir, _, stats = small_data
    net = _random_net(3)
    out = tmp_path / "scores.parquet"
    opts = score.ScoreOptions(extended=True)
    score.score_dataset(net, stats, ds_dir, out, opts=opts)
    table = pq.read_table(out)
    assert table.column_names == ["flow_id", *SCORE_COLUMNS, *EXTENDED_SCORE_COLUMNS]
    meta = table.schema.metadata
    assert json.loads(meta[AGGREGATE_COLUMNS_KEY.encode()]) == list(SCORE_COLUMNS)
    assert json.loads(meta[score.SCORE_OPTIONS_KEY.encode()])["extended"] is True
    sp = tmp_path / "splits.npz"
    assert splits.main(["--data", str(ds_dir), "--seed", "1", "--out", str(sp), "--n-train", "20",
                        "--n-val", "10", "--n-cal", "0", "--n-test-benign", "10", "--n-test-attack", "8"]) == 0
    agg = tmp_path / "agg.parquet"
    aggregate_file(out, sp, agg)
    agg_table = pq.read_table(agg)
    assert agg_table.column_names[-len(EXTENDED_SCORE_COLUMNS):] == list(EXTENDED_SCORE_COLUMNS)
    for c in EXTENDED_SCORE_COLUMNS:
        np.testing.assert_array_equal(agg_table.column(c).to_numpy(), table.column(c).to_numpy())
    # The aggregators are fitted on the 10 scores only: the same as without the extra columns.
    ten = tmp_path / "ten.parquet"
    pq.write_table(table.drop_columns(list(EXTENDED_SCORE_COLUMNS)), ten)
    aggregate_file(ten, sp, tmp_path / "agg10.parquet")
    np.testing.assert_array_equal(pq.read_table(tmp_path / "agg10.parquet").column("oas"),
                                  agg_table.column("oas"))
