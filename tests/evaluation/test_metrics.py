"""Tests for janus/evaluation/metrics.py: hand-computed values and sklearn cross-checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from janus.evaluation import metrics


def test_auroc_hand_computed_four_points():
    # Pairs (attack, benign): (0.8,0.1) win, (0.8,0.7) win, (0.4,0.1) win, (0.4,0.7) loss.
    assert metrics.auroc([0, 1, 1, 0], [0.1, 0.8, 0.4, 0.7]) == pytest.approx(0.75)
    # A tie counts one half: (0.5 vs 0.5) = 0.5, (0.5 vs 0.2) = 1 -> 0.75.
    assert metrics.auroc([0, 0, 1], [0.5, 0.2, 0.5]) == pytest.approx(0.75)


def test_auroc_matches_sklearn_and_returns_float():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    s = rng.normal(size=500) + y
    value = metrics.auroc(y, s)
    assert type(value) is float
    assert value == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    # Heavy ties (rounded scores, as count-like scores are), unbalanced classes, +-inf.
    for seed in range(20):
        r = np.random.default_rng(seed)
        n = int(r.integers(5, 400))
        y = (r.random(n) < r.uniform(0.02, 0.9)).astype(int)
        y[:2] = [0, 1]
        s = np.round(r.normal(size=n) + 0.7 * y, int(r.integers(0, 3)))
        assert metrics.auroc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    s = np.array([-np.inf, 0.0, np.inf, 1.0])
    assert metrics.auroc([0, 0, 1, 1], s) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="NaN"):
        metrics.auroc([0, 1], [0.0, np.nan])


@pytest.mark.parametrize("y", [[0, 0, 0], [1, 1], []])
def test_degenerate_cases_are_nan(y):
    s = np.arange(len(y), dtype=float)
    assert math.isnan(metrics.auroc(y, s))
    assert math.isnan(metrics.tpr_at_fpr(y, s))
    assert math.isnan(metrics.average_precision(y, s))


def test_unknown_labels_are_rejected():
    with pytest.raises(ValueError, match="drop unknown"):
        metrics.auroc([0, 1, -1], [0.0, 1.0, 2.0])


def test_per_attack_auroc_each_class_against_benign():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    s = np.array([0.0, 1.0, 2.0, 3.0, 10.0, 11.0, 0.5, 1.5])
    attack = np.array(["benign"] * 4 + ["dos", "dos", "scan", "scan"])
    out = metrics.per_attack_auroc(attack, y, s)
    assert out == {"dos": 1.0, "scan": pytest.approx((1 + 2) / 8)}


def test_thresholds_at_percentiles():
    val = np.arange(101.0)  # 0..100: the q-th percentile is q
    assert metrics.threshold_at_percentile(val, 95) == 95.0
    assert metrics.threshold_at_percentile(val, 99) == 99.0
    assert metrics.threshold_at_percentile(np.array([0.0, 10.0]), 95) == pytest.approx(9.5)
    assert math.isnan(metrics.threshold_at_percentile([], 95))


def test_prf_at_threshold_hand_computed():
    y = np.array([0, 0, 0, 0, 1, 1, 1])
    s = np.array([1.0, 2.0, 3.0, 9.0, 5.0, 8.0, 2.0])
    out = metrics.prf_at_threshold(y, s, 4.0)  # flags 9 (benign), 5, 8 (attacks)
    assert out["precision"] == pytest.approx(2 / 3)
    assert out["recall"] == pytest.approx(2 / 3)
    assert out["f1"] == pytest.approx(2 / 3)
    assert out["fpr"] == pytest.approx(1 / 4)
    assert out["flagged"] == 3.0
    # Strict ">": a score equal to the threshold is not flagged.
    assert metrics.prf_at_threshold(y, s, 9.0)["flagged"] == 0.0
    assert math.isnan(metrics.prf_at_threshold(y, s, 9.0)["precision"])


def test_tpr_at_fpr_constructed_case():
    benign = np.arange(100.0)  # FPR steps of 1%
    attack = np.concatenate([np.full(30, 150.0),  # above every benign flow
                             np.full(20, 98.5),  # between benign 98 and 99
                             np.full(50, -1.0)])  # below every benign flow
    y = np.r_[np.zeros(100), np.ones(100)].astype(int)
    s = np.r_[benign, attack]
    # ROC: (0, .3) -> (.01, .3) [benign 99] -> (.01, .5) [the 98.5 block] -> (.02, .5) ...
    assert metrics.tpr_at_fpr(y, s, 0.01) == pytest.approx(0.5)  # top of the vertical step
    assert metrics.tpr_at_fpr(y, s, 0.005) == pytest.approx(0.3)
    assert metrics.tpr_at_fpr(y, s, 0.0) == pytest.approx(0.3)


def test_tpr_at_fpr_interpolates_a_diagonal_segment():
    # 2 benign and 2 attacks tied at 1.0, 98 benign below: from (0, 0) to (.02, 1.0) in one
    # diagonal step (the tie), so at FPR 1% the interpolated TPR is 0.5.
    y = np.r_[np.zeros(100), np.ones(2)].astype(int)
    s = np.r_[np.full(2, 1.0), np.zeros(98), np.full(2, 1.0)]
    assert metrics.tpr_at_fpr(y, s, 0.01) == pytest.approx(0.5)


def test_nan_to_none_makes_strict_json():
    assert metrics.nan_to_none({"a": float("nan"), "b": [1.0, float("inf")], "c": 2}) == \
        {"a": None, "b": [1.0, None], "c": 2}


def test_at_prevalence_closed_form():
    # TPR 0.8, FPR 0.05 at 1 % attacks: 0.008 true alarms against 0.0495 false ones.
    got = metrics.at_prevalence(0.8, 0.05, 0.01)
    assert got["precision"] == pytest.approx(0.008 / (0.008 + 0.0495))
    p = got["precision"]
    assert got["f1"] == pytest.approx(2 * p * 0.8 / (p + 0.8))
    assert metrics.at_prevalence(0.8, 0.05, 0.5)["precision"] == pytest.approx(0.8 / 0.85)
    assert math.isnan(metrics.at_prevalence(0.0, 0.0, 0.1)["precision"])


def test_bootstrap_auroc_replicates_are_aurocs_of_stratified_resamples():
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(50, int), np.ones(30, int)]
    s = np.round(rng.normal(size=80) + y, 1)  # ties included
    boot = metrics.bootstrap_auroc(y, s, n_boot=5, seed=3)
    r = np.random.default_rng(3)
    neg, pos = s[y == 0], s[y == 1]
    bi, ai = r.integers(0, 50, (5, 50)), r.integers(0, 30, (5, 30))
    for k in range(5):
        yy = np.r_[np.zeros(50, int), np.ones(30, int)]
        assert boot[k] == pytest.approx(metrics.auroc(yy, np.r_[neg[bi[k]], pos[ai[k]]]))
    assert metrics.bootstrap_auroc(np.zeros(5, int), np.arange(5.0)).size == 0
