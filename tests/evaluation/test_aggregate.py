"""Tests for janus/evaluation/aggregate.py: closed forms against direct sklearn / NumPy computations."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.covariance import OAS, LedoitWolf

from janus import contract
from janus.errors import JanusError
from janus.evaluation import aggregate
from janus.io import write_npz, write_parquet


def _val_scores(n: int = 300, d: int = 4, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d))
    # Columns on very different scales, and correlated.
    return rng.normal(size=(n, d)) @ mix * np.array([1.0, 10.0, 0.01, 3.0])[:d] + 5.0


TWO_SIDED = aggregate.AggregateOptions(sided="two", collinear="keep", transform="none")


@pytest.mark.parametrize("method, options", [("oas", TWO_SIDED), ("oas_paper", None),
                                             ("oas_paper", aggregate.AggregateOptions())])
def test_oas_matches_sklearn_on_standardised_scores(method, options):
    val = _val_scores()
    new = _val_scores(50, seed=1) * 1.5
    agg = aggregate.fit_aggregator(val, method, options=options)
    mean, std = val.mean(0), val.std(0)
    est = OAS().fit((val - mean) / std)
    expected = np.sqrt(est.mahalanobis((new - mean) / std))  # sklearn returns the square
    np.testing.assert_allclose(agg.apply(new), expected, rtol=1e-9)
    assert agg.stats["shrinkage"] == pytest.approx(est.shrinkage_)
    assert 0.0 < agg.stats["shrinkage"] < 1.0


def test_ledoit_wolf_matches_sklearn():
    val = _val_scores()
    new = _val_scores(20, seed=2)
    agg = aggregate.fit_aggregator(val, "ledoit_wolf", options=TWO_SIDED)
    mean, std = val.mean(0), val.std(0)
    est = LedoitWolf().fit((val - mean) / std)
    np.testing.assert_allclose(agg.apply(new), np.sqrt(est.mahalanobis((new - mean) / std)),
                               rtol=1e-9)


def test_mahalanobis_is_affine_invariant_closed_form():
    val = _val_scores()
    new = _val_scores(30, seed=3)
    agg = aggregate.fit_aggregator(val, "mahalanobis", options=TWO_SIDED)
    mu = val.mean(0)
    cov = np.cov(val, rowvar=False, bias=True)
    diff = new - mu
    expected = np.sqrt(np.einsum("nd,de,ne->n", diff, np.linalg.inv(cov), diff))
    np.testing.assert_allclose(agg.apply(new), expected, rtol=1e-7)


def test_mahalanobis_survives_rank_deficiency():
    val = _val_scores(100, d=3)
    val = np.column_stack([val, val[:, 0] * 2.0])  # an exactly collinear column
    agg = aggregate.fit_aggregator(val, "mahalanobis", options=TWO_SIDED)
    out = agg.apply(val)
    assert np.isfinite(out).all()
    # Mean squared distance over the fit set equals the covariance rank (3, not 4).
    assert np.mean(out**2) == pytest.approx(3.0, rel=1e-6)


def test_maxz_closed_form_and_sign():
    val = np.array([[0.0, 10.0], [2.0, 30.0], [4.0, 20.0]])  # mean (2, 20), std (1.633, 8.165)
    agg = aggregate.fit_aggregator(val, "maxz")
    std = np.sqrt([8.0 / 3.0, 200.0 / 3.0])
    x = np.array([[2.0 + 3 * std[0], 20.0 + 1 * std[1]], [2.0 - 5 * std[0], 20.0 - 4 * std[1]]])
    # Signed: the second row is unusually LOW everywhere, so its max z is -4, not 5.
    np.testing.assert_allclose(agg.apply(x), [3.0, -4.0])


def test_constant_column_gets_unit_scale():
    val = np.column_stack([np.arange(10.0), np.full(10, 7.0)])
    agg = aggregate.fit_aggregator(val, "maxz")
    assert agg.std[1] == 1.0
    np.testing.assert_allclose(agg.apply(np.array([[4.5, 9.0]])), [2.0])


def test_bad_inputs_raise_janus_errors():
    with pytest.raises(JanusError, match="unknown aggregation"):
        aggregate.fit_aggregator(np.zeros((5, 2)), "median")
    with pytest.raises(JanusError, match="NaN"):
        aggregate.fit_aggregator(np.array([[0.0, np.nan], [1.0, 2.0]]), "oas", ["a", "b"])


def _write_scores(tmp_path, n=400, seed=0):
    rng = np.random.default_rng(seed)
    cols = {c: rng.gamma(2.0, 1.0 + j, size=n) for j, c in enumerate(contract.SCORE_COLUMNS)}
    scores = tmp_path / "scores.parquet"
    write_parquet(scores, pa.table({"flow_id": np.arange(n, dtype=np.int64), **cols}))
    splits = tmp_path / "splits.npz"
    ids = np.arange(n, dtype=np.int64)
    write_npz(splits, train=ids[:150], val=ids[150:200], cal=ids[200:300], test=ids[300:],
              meta=np.array('{"seed": 0}'))
    return scores, splits, cols


def test_cli_writes_methods_and_passes_scores_through(tmp_path):
    scores, splits, cols = _write_scores(tmp_path)
    out = tmp_path / "agg.parquet"
    assert aggregate.main(["--scores", str(scores), "--splits", str(splits),
                           "--out", str(out)]) == 0
    table = pq.read_table(out)
    assert table.column_names == ["flow_id", *aggregate.METHODS, *contract.SCORE_COLUMNS]
    mat = np.column_stack([cols[c] for c in contract.SCORE_COLUMNS])
    cal = mat[200:300]
    for method in aggregate.METHODS:
        # Fitted on 'cal' (not 'val'); every other flow gets the fit on all of cal ...
        expected = aggregate.fit_aggregator(cal, method, contract.SCORE_COLUMNS).apply(mat)
        # ... and each cal flow the fit on the other fold (alternate flows in id order).
        for k in (0, 1):
            fold = np.arange(100) % 2 == k
            expected[200:300][fold] = aggregate.fit_aggregator(
                cal[~fold], method, contract.SCORE_COLUMNS).apply(cal[fold])
        np.testing.assert_allclose(table.column(method).to_numpy(), expected)
    np.testing.assert_array_equal(table.column("terminal_norm").to_numpy(), cols["terminal_norm"])


def test_scores_file_can_declare_its_aggregate_columns(tmp_path):
    # janus score declares only the continuous columns for a lambda_disc = 0 model.
    scores, splits, cols = _write_scores(tmp_path)
    keep = list(contract.SCORE_COLUMNS[:3])
    table = pq.read_table(scores).replace_schema_metadata(
        {contract.AGGREGATE_COLUMNS_KEY: json.dumps(keep)})
    write_parquet(scores, table)
    out = tmp_path / "agg.parquet"
    aggregate.aggregate_file(scores, splits, out)
    got = pq.read_table(out)
    assert got.column_names == ["flow_id", *aggregate.METHODS, *keep]
    mat = np.column_stack([cols[c] for c in keep])
    expected = aggregate.fit_aggregator(mat[200:300], "oas", keep).apply(mat)
    # Rows outside cal (the cal rows are cross-fitted, checked above).
    outside = np.r_[0:200, 300:400]
    np.testing.assert_allclose(got.column("oas").to_numpy()[outside], expected[outside])


def test_cli_column_subset_and_missing_ids(tmp_path):
    scores, splits, _ = _write_scores(tmp_path)
    out = tmp_path / "agg.parquet"
    assert aggregate.main(["--scores", str(scores), "--splits", str(splits), "--out", str(out),
                           "--columns", "terminal_norm", "disc_nll_total",
                           "--methods", "oas"]) == 0
    assert pq.read_table(out).column_names == ["flow_id", "oas", "terminal_norm",
                                               "disc_nll_total"]
    far = tmp_path / "far.npz"
    write_npz(far, train=np.arange(3), val=np.array([5, 10_000]), test=np.arange(3))
    assert aggregate.main(["--scores", str(scores), "--splits", str(far),
                           "--out", str(tmp_path / "x.parquet")]) == 2
    assert not (tmp_path / "x.parquet").exists()


# --------------------------------------------------------------------------- issue 10, item 5
def _score_vectors(n: int, seed: int = 0, shift: float = 0.0) -> np.ndarray:
    """``(n, 10)`` scores in SCORE_COLUMNS order with the real structure: nonnegative, heavy
    right tails, ``disc_nll_total`` = the sum of the six channels and ``terminal_norm`` the
    length-weighted mean of ``terminal_flow`` (20 values) and ``terminal_packet`` (3n)."""
    rng = np.random.default_rng(seed)
    length = rng.integers(1, 17, size=n)
    common = rng.gamma(3.0, 1.0, size=n)  # a shared "difficulty" correlates the columns
    tf = (common + rng.gamma(2.0, 0.5, size=n)) * np.exp(shift)
    tp = (0.5 * common + rng.gamma(2.0, 0.3, size=n)) * np.exp(shift)
    tn = (20 * tf + 3 * length * tp) / (20 + 3 * length)
    parts = np.column_stack([(0.1 * common + rng.gamma(1.0 + j, 0.05, size=n)) * np.exp(shift)
                             for j in range(6)])
    return np.column_stack([tn, tf, tp, parts.sum(axis=1), parts])


COLS = contract.SCORE_COLUMNS


def test_default_is_one_sided_closed_form():
    val = _score_vectors(400)
    new = _score_vectors(60, seed=1, shift=0.5)
    agg = aggregate.fit_aggregator(val, "oas", COLS)
    keep = [COLS.index(c) for c in agg.used]
    mean, std = val[:, keep].mean(0), val[:, keep].std(0)
    est = OAS().fit((val[:, keep] - mean) / std)
    u = np.maximum((new[:, keep] - mean) / std - est.location_, 0.0)
    expected = np.sqrt(np.einsum("nd,de,ne->n", u, np.linalg.inv(est.covariance_), u))
    np.testing.assert_allclose(agg.apply(new), expected, rtol=1e-9)


def test_low_scores_are_not_anomalous_under_the_default():
    """A flow whose scores are all far BELOW the benign centre: the default scores it at 0
    (below every benign flow's median), the paper's two-sided OAS far above the benign P99."""
    val = _score_vectors(500)
    centre, spread = val.mean(0), val.std(0)
    low = (centre - 4.0 * spread)[None, :]
    high = (centre + 4.0 * spread)[None, :]
    default = aggregate.fit_aggregator(val, "oas", COLS)
    paper = aggregate.fit_aggregator(val, "oas_paper", COLS)
    v_default, v_paper = default.apply(val), paper.apply(val)
    assert default.apply(low)[0] == 0.0 < np.median(v_default)
    assert paper.apply(low)[0] > np.percentile(v_paper, 99)
    # The paper's form cannot tell the deficit from the mirror-image excess ...
    assert paper.apply(low)[0] == pytest.approx(paper.apply(high)[0], rel=1e-9)
    # ... the default scores the excess exactly as a two-sided form would (nothing clipped).
    two = aggregate.fit_aggregator(val, "oas", COLS, aggregate.AggregateOptions(sided="two"))
    assert default.apply(high)[0] == pytest.approx(two.apply(high)[0], rel=1e-9)
    assert default.apply(high)[0] > np.median(v_default)


@pytest.mark.parametrize("method", ["oas", "mahalanobis", "ledoit_wolf"])
def test_one_sided_ignores_how_far_below_the_centre_a_score_is(method):
    """Pushing every score that is below the benign centre much further down leaves the
    one-sided scalar unchanged to the last bit; under the two-sided form it moves."""
    val = _score_vectors(300)
    agg = aggregate.fit_aggregator(val, method, COLS)
    new = _score_vectors(80, seed=3, shift=0.2)
    keep = [COLS.index(c) for c in agg.used]
    centre = val[:, keep].mean(0)  # the centre of z = 0 (OAS's location is the mean)
    below = new[:, keep] < centre
    assert 0 < below.sum() < below.size
    pushed = new.copy()
    pushed[:, keep] = np.where(below, new[:, keep] - 10.0 * val[:, keep].std(0), new[:, keep])
    np.testing.assert_array_equal(agg.apply(pushed), agg.apply(new))
    two = aggregate.fit_aggregator(val, method, COLS, aggregate.AggregateOptions(sided="two"))
    moved = below.any(axis=1)
    assert (two.apply(pushed)[moved] > two.apply(new)[moved]).all()


def test_default_drops_the_exact_sum_and_keeps_the_length_weighted_mean():
    val = _score_vectors(300)
    agg = aggregate.fit_aggregator(val, "oas", COLS)
    assert agg.stats["dropped"] == ["disc_nll_total"]
    assert agg.used == tuple(c for c in COLS if c != "disc_nll_total")
    rest = [j for j, c in enumerate(COLS) if c != "disc_nll_total"]
    new = _score_vectors(40, seed=2, shift=0.3)
    alone = aggregate.fit_aggregator(val[:, rest], "oas", [COLS[j] for j in rest])
    np.testing.assert_allclose(agg.apply(new), alone.apply(new[:, rest]), rtol=1e-12)
    # float32 score files: the sum is exact only to ~1e-7 of its scale, and still found.
    val32 = val.astype(np.float32).astype(np.float64)
    assert aggregate.fit_aggregator(val32, "oas", COLS).stats["dropped"] == ["disc_nll_total"]


def test_derived_columns_are_dropped_by_name_when_their_parts_are_present():
    val = _score_vectors(300)
    drop = aggregate.AggregateOptions(collinear="drop")
    agg = aggregate.fit_aggregator(val, "oas", COLS, drop)
    assert set(COLS) - set(agg.used) == {"disc_nll_total", "terminal_norm"}
    assert agg.stats["dropped"] == ["disc_nll_total", "terminal_norm"]
    rest = [j for j, c in enumerate(COLS) if c not in ("disc_nll_total", "terminal_norm")]
    new = _score_vectors(40, seed=2, shift=0.3)
    alone = aggregate.fit_aggregator(val[:, rest], "oas", [COLS[j] for j in rest], drop)
    np.testing.assert_allclose(agg.apply(new), alone.apply(new[:, rest]), rtol=1e-12)
    # Without all its parts a derived column stays.
    sub = ["terminal_norm", "terminal_flow"]
    assert aggregate.fit_aggregator(val[:, :2], "oas", sub, drop).used == tuple(sub)
    # keep: every column is used.
    kept = aggregate.fit_aggregator(val, "oas", COLS, aggregate.AggregateOptions(
        collinear="keep"))
    assert kept.used == COLS


def test_exact_linear_combinations_are_detected_numerically():
    """Columns that are exact linear combinations of the others are dropped, the first
    first (a total listed before its parts goes); a merely correlated column stays."""
    rng = np.random.default_rng(4)
    a, b = rng.gamma(2.0, 1.0, 300), rng.gamma(3.0, 2.0, 300)
    near = a + 0.01 * rng.normal(size=300)
    val = np.column_stack([a + b, 2.0 * a - 0.5 * b + 3.0, a, b, near])
    agg = aggregate.fit_aggregator(val, "oas", ["sum", "lin", "a", "b", "near"])
    assert agg.used == ("a", "b", "near")
    assert agg.stats["dropped"] == ["sum", "lin"]
    assert np.isfinite(agg.stats["condition"])
    alone = aggregate.fit_aggregator(val[:, 2:], "oas", ["a", "b", "near"])
    np.testing.assert_allclose(agg.apply(val), alone.apply(val[:, 2:]), rtol=1e-12)


def test_collinear_check_needs_more_flows_than_columns():
    # 3 flows: a column regressed on an intercept and the 2 others fits 3 points exactly
    # whatever the data, so the check is skipped and no column is called collinear.
    val = np.array([[1.0, 5.0, 2.0], [2.0, 3.0, 7.0], [4.0, 4.0, 1.0]])
    assert aggregate.fit_aggregator(val, "oas", ["x", "y", "w"]).used == ("x", "y", "w")


@pytest.mark.parametrize("transform", ["log1p", "log"])
def test_transform_closed_form(transform):
    val = _score_vectors(300)
    new = _score_vectors(30, seed=5, shift=1.0)
    opts = aggregate.AggregateOptions(transform=transform)
    agg = aggregate.fit_aggregator(val, "maxz", COLS, opts)
    keep = [COLS.index(c) for c in agg.used]
    if transform == "log1p":
        t_val, t_new = np.log1p(val[:, keep]), np.log1p(new[:, keep])
    else:
        eps = 0.01 * np.median(val[:, keep], axis=0) + 1e-12
        t_val, t_new = np.log(val[:, keep] + eps), np.log(new[:, keep] + eps)
    z = (t_new - t_val.mean(0)) / t_val.std(0)
    np.testing.assert_allclose(agg.apply(new), z.max(axis=1), rtol=1e-10)
    with pytest.raises(JanusError, match="nonnegative"):
        agg.apply(-new)


def test_bad_options_are_janus_errors():
    with pytest.raises(JanusError, match="sided='three'"):
        aggregate.AggregateOptions(sided="three")
    with pytest.raises(JanusError, match="transform"):
        aggregate.AggregateOptions(transform="sqrt")


def test_cli_options_reach_the_fit_and_negative_scores_name_the_flow(tmp_path):
    scores, splits, cols = _write_scores(tmp_path)
    out = tmp_path / "agg.parquet"
    assert aggregate.main(["--scores", str(scores), "--splits", str(splits), "--out", str(out),
                           "--sided", "two", "--collinear", "keep", "--transform", "log1p"]) == 0
    mat = np.column_stack([cols[c] for c in contract.SCORE_COLUMNS])
    opts = aggregate.AggregateOptions("two", "keep", "log1p")
    expected = aggregate.fit_aggregator(mat[200:300], "oas", COLS, opts).apply(mat)
    outside = np.r_[0:200, 300:400]  # the cal rows are cross-fitted
    np.testing.assert_allclose(pq.read_table(out).column("oas").to_numpy()[outside],
                               expected[outside])
    cols["disc_nll_fin"][17] = -0.5
    write_parquet(scores, pa.table({"flow_id": np.arange(400, dtype=np.int64), **cols}))
    with pytest.raises(JanusError, match="'disc_nll_fin' is negative at flow_id 17"):
        aggregate.aggregate_file(scores, splits, out, options=opts)


def test_sparse_shuffled_flow_ids_are_looked_up_not_used_as_rows(tmp_path):
    """A real scores file: only the val and test flows of a larger dataset, in a shuffled
    order, with ids such as 7, 1000, 3. Each aggregated row must be the fit on exactly the val
    ids applied to that flow's own scores."""
    rng = np.random.default_rng(6)
    ids = rng.choice(5000, size=240, replace=False).astype(np.int64)
    ids[:3] = [7, 1000, 3]
    val_ids, test_ids = ids[:120], ids[120:]
    order = rng.permutation(len(ids))
    mat = _score_vectors(len(ids), seed=7)
    mat[120:] *= np.exp(rng.normal(0.5, 0.5, size=(120, 1)))  # the test flows differ
    table = {"flow_id": ids[order], **{c: mat[order, j] for j, c in enumerate(COLS)}}
    scores = tmp_path / "scores.parquet"
    write_parquet(scores, pa.table(table))
    splits = tmp_path / "splits.npz"
    write_npz(splits, train=np.array([11, 12], np.int64), val=np.array([13], np.int64),
              cal=np.sort(val_ids), test=np.sort(test_ids), meta=np.array('{"seed": 0}'))
    out = tmp_path / "agg.parquet"
    aggregate.aggregate_file(scores, splits, out)
    got = pq.read_table(out)
    np.testing.assert_array_equal(got.column("flow_id").to_numpy(), ids[order])
    is_test = order >= 120  # rows of the shuffled file that are test flows
    # The fit sees the cal flows in id order, whatever their order in the file.
    by_id = np.argsort(val_ids, kind="stable")
    for method in ("oas", "oas_paper"):
        fitted = aggregate.fit_aggregator(mat[:120][by_id], method, COLS)
        np.testing.assert_allclose(got.column(method).to_numpy()[is_test],
                                   fitted.apply(mat[order][is_test]), rtol=1e-9)


def test_cross_fitted_thresholds_hold_their_false_positive_rate():
    # In-sample Mahalanobis distances are smaller than those of fresh flows, so the P95 of
    # the fitted flows flags more than 5 % of new benign flows; the cross-fitted P95 does not.
    d, n_cal, fresh = 9, 120, 4000
    in_sample, crossed = [], []
    for seed in range(12):
        rng = np.random.default_rng(seed)
        cal, new = rng.normal(size=(n_cal, d)), rng.normal(size=(fresh, d))
        both = np.vstack([cal, new])
        out, agg = aggregate.cross_fitted(cal, both, np.arange(n_cal), "oas",
                                          [f"s{j}" for j in range(d)],
                                          aggregate.AggregateOptions(sided="two"))
        test = out[n_cal:]
        in_sample.append(np.mean(test > np.percentile(agg.apply(cal), 95)))
        crossed.append(np.mean(test > np.percentile(out[:n_cal], 95)))
    assert np.mean(in_sample) > 0.065  # the optimism the cross-fit removes
    assert 0.03 < np.mean(crossed) < 0.06


def test_source_fit_uses_the_source_calibration_and_stores_its_thresholds(tmp_path):
    scores, splits, cols = _write_scores(tmp_path, seed=1)
    src_dir = tmp_path / "src"
    src_dir.mkdir()
    src_scores, src_splits, src_cols = _write_scores(src_dir, seed=2)
    out = tmp_path / "agg.parquet"
    aggregate.aggregate_file(scores, splits, out, source=(src_scores, src_splits))
    table = pq.read_table(out)
    src = np.column_stack([src_cols[c] for c in contract.SCORE_COLUMNS])
    mat = np.column_stack([cols[c] for c in contract.SCORE_COLUMNS])
    agg = aggregate.fit_aggregator(src[200:300], "oas", contract.SCORE_COLUMNS)
    np.testing.assert_allclose(table.column(aggregate.SOURCE_COLUMN).to_numpy(), agg.apply(mat))
    crossed, _ = aggregate.cross_fitted(src[200:300], src[200:300], np.arange(100), "oas",
                                        contract.SCORE_COLUMNS)
    thr = aggregate.read_thresholds(out)[aggregate.SOURCE_COLUMN]
    assert thr["95"] == pytest.approx(np.percentile(crossed, 95))
    assert thr["99"] == pytest.approx(np.percentile(crossed, 99))
    assert str(src_splits) in thr["from"]
    # The calibrated column is unchanged by the source fit.
    plain = tmp_path / "plain.parquet"
    aggregate.aggregate_file(scores, splits, plain)
    np.testing.assert_array_equal(pq.read_table(plain).column("oas").to_numpy(),
                                  table.column("oas").to_numpy())
    assert aggregate.read_thresholds(plain) == {}


def test_feature_oas_control_is_oas_on_log_features_fitted_on_cal(tmp_path):
    from janus.contract import FEATURES_FILE, FLOW_FEATURES

    rng = np.random.default_rng(3)
    n = 300
    feats = {c: rng.gamma(2.0, 10.0 + j, size=n) for j, c in enumerate(FLOW_FEATURES)}
    feats["fwd_ratio"] = rng.uniform(0, 1, n)
    write_parquet(tmp_path / FEATURES_FILE, pa.table({"flow_id": np.arange(n, dtype=np.int64),
                                                      **feats}))
    ids = np.arange(n, dtype=np.int64)
    splits = tmp_path / "splits.npz"
    write_npz(splits, train=ids[:100], val=ids[100:150], cal=ids[150:250], test=ids[250:],
              meta=np.array("{}"))
    out = tmp_path / "control.parquet"
    aggregate.feature_oas_file(tmp_path / FEATURES_FILE, splits, out)
    table = pq.read_table(out)
    np.testing.assert_array_equal(table.column("flow_id").to_numpy(), ids[100:])
    x = np.column_stack([feats[c] for c in FLOW_FEATURES])
    scale = np.asarray(contract.FLOW_LOG_SCALE)
    z = np.where(scale > 0, np.log1p(x / np.where(scale > 0, scale, 1)), x)
    agg = aggregate.fit_aggregator(z[150:250], "oas", FLOW_FEATURES, aggregate.CONTROL_OPTIONS)
    got = table.column("oas").to_numpy()
    np.testing.assert_allclose(got[150:], agg.apply(z[250:]))  # test rows: fit on all of cal
    np.testing.assert_allclose(got[:50], agg.apply(z[100:150]))  # val rows
    assert aggregate.CONTROL_OPTIONS.sided == "two"
