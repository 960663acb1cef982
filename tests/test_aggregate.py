"""Tests for janus/aggregate.py: closed forms against direct sklearn / NumPy computations."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.covariance import OAS, LedoitWolf

from janus import aggregate, contract
from janus.errors import JanusError
from janus.io import write_npz, write_parquet


def _val_scores(n: int = 300, d: int = 4, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d))
    # Columns on very different scales, and correlated.
    return rng.normal(size=(n, d)) @ mix * np.array([1.0, 10.0, 0.01, 3.0])[:d] + 5.0


def test_oas_matches_sklearn_on_standardised_scores():
    val = _val_scores()
    new = _val_scores(50, seed=1) * 1.5
    agg = aggregate.fit_aggregator(val, "oas")
    mean, std = val.mean(0), val.std(0)
    est = OAS().fit((val - mean) / std)
    expected = np.sqrt(est.mahalanobis((new - mean) / std))  # sklearn returns the square
    np.testing.assert_allclose(agg.apply(new), expected, rtol=1e-9)
    assert agg.stats["shrinkage"] == pytest.approx(est.shrinkage_)
    assert 0.0 < agg.stats["shrinkage"] < 1.0


def test_ledoit_wolf_matches_sklearn():
    val = _val_scores()
    new = _val_scores(20, seed=2)
    agg = aggregate.fit_aggregator(val, "ledoit_wolf")
    mean, std = val.mean(0), val.std(0)
    est = LedoitWolf().fit((val - mean) / std)
    np.testing.assert_allclose(agg.apply(new), np.sqrt(est.mahalanobis((new - mean) / std)),
                               rtol=1e-9)


def test_mahalanobis_is_affine_invariant_closed_form():
    val = _val_scores()
    new = _val_scores(30, seed=3)
    agg = aggregate.fit_aggregator(val, "mahalanobis")
    mu = val.mean(0)
    cov = np.cov(val, rowvar=False, bias=True)
    diff = new - mu
    expected = np.sqrt(np.einsum("nd,de,ne->n", diff, np.linalg.inv(cov), diff))
    np.testing.assert_allclose(agg.apply(new), expected, rtol=1e-7)


def test_mahalanobis_survives_rank_deficiency():
    val = _val_scores(100, d=3)
    val = np.column_stack([val, val[:, 0] * 2.0])  # an exactly collinear column
    agg = aggregate.fit_aggregator(val, "mahalanobis")
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
    write_npz(splits, train=ids[:200], val=ids[200:300], test=ids[300:],
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
    expected = aggregate.fit_aggregator(mat[200:300], "oas").apply(mat)
    np.testing.assert_allclose(table.column("oas").to_numpy(), expected)
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
    expected = aggregate.fit_aggregator(mat[200:300], "oas").apply(mat)
    np.testing.assert_allclose(got.column("oas").to_numpy(), expected)


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
