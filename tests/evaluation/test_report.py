"""Tests of janus.evaluation.report: tables from hand-written METRICS.json files, values checked."""

from __future__ import annotations

import hashlib
import json
import math
import platform
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import janus
from janus import contract, provenance
from janus.errors import JanusError
from janus.evaluation import report

# janus (oas / terminal_norm) AUROC per (source, target) -> per seed 1, 2, 3.
OAS = {("A", "A"): [0.90, 0.92, 0.94], ("A", "B"): [0.70, 0.75, 0.80],
       ("B", "A"): [0.60, 0.60, 0.60], ("B", "B"): [0.99, 0.97, 0.98]}
TN = {("A", "A"): [0.80, 0.84, 0.82], ("A", "B"): [0.72, 0.71, 0.73],
      ("B", "A"): [0.50, 0.55, 0.60], ("B", "B"): [0.95, 0.95, 0.95]}
IFOREST = {("A", "A"): [0.85, 0.87, 0.89], ("A", "B"): [0.55, 0.55, 0.55],
           ("B", "A"): [0.50, 0.52, 0.54], ("B", "B"): [0.91, 0.93, 0.95]}
SEEDS = (1, 2, 3)


def _col(auroc: float, per_attack: dict | None = None) -> dict:
    """A metrics entry whose thresholded values are simple functions of the AUROC."""
    return {"auroc": auroc, "auprc": auroc, "tpr_at_1fpr": auroc / 2,
            "p95": {"threshold": 1.0, "precision": auroc, "recall": auroc - 0.1,
                    "f1": auroc - 0.05, "fpr": 0.05, "flagged": 10},
            "p99": {"threshold": 2.0, "precision": auroc, "recall": auroc - 0.2,
                    "f1": auroc - 0.1, "fpr": 0.01, "flagged": 5},
            "per_attack": per_attack if per_attack is not None else {"dos": auroc,
                                                                      "scan": 1 - auroc},
            "n_benign": 100, "n_attack": 100}


def _write(tmp: Path, detector: str, source: str, target: str, seed: int, columns: dict,
           **extra) -> Path:
    path = tmp / f"{detector}_{source}_{target}_{seed}.json"
    path.write_text(json.dumps({"detector": detector, "source": source, "target": target,
                                "seed": seed, "janus_version": "0.1.0", "columns": columns,
                                **extra}))
    return path


@pytest.fixture()
def metrics(tmp_path: Path) -> list[Path]:
    paths = []
    for (s, t), values in OAS.items():
        for i, seed in enumerate(SEEDS):
            cols = {"oas": _col(values[i]), "oas_paper": _col(values[i] - 0.03),
                    "maxz": _col(values[i] - 0.01),
                    "mahalanobis": _col(values[i] - 0.02), "ledoit_wolf": _col(values[i]),
                    "terminal_norm": _col(TN[(s, t)][i])}
            paths.append(_write(tmp_path, "janus", s, t, seed, cols))
            paths.append(_write(tmp_path, "iforest", s, t, seed,
                                {"score": _col(IFOREST[(s, t)][i])}))
    return paths


def _row(text: str, first: str) -> list[str]:
    """The cells of the markdown table row whose first cell is ``first``."""
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == first:
            return cells
    raise AssertionError(f"no row {first!r} in\n{text}")


@pytest.mark.parametrize("values, expected", [
    ([0.90, 0.92, 0.94], "0.920 ± 0.020"),       # sample std (ddof=1): sqrt(0.0008/2)
    ([0.5], "0.500"),                              # one seed: no ± part
    ([], report.MISSING),
    ([0.7, None, 0.9, math.nan], "0.800 ± 0.141"),  # missing values dropped; sqrt(0.02)
])
def test_fmt_mean_std(values, expected):
    assert report.fmt(report.mean_std(values)) == expected


def test_cross_matrix_values(metrics, tmp_path):
    res = report.Results(report.load_runs(metrics), ["A", "B"], ["janus", "iforest"])
    text = report.cross_matrix_md(res)
    # Columns: train, then per target OAS, terminal_norm, Δ.
    row_a = _row(text, "A")
    assert row_a[1:4] == ["0.920 ± 0.020", "0.820 ± 0.020", "+0.100 ± 0.020"]
    # A -> B: OAS 0.75 ± 0.05; TN 0.72 ± 0.01; paired Δ (-0.02, 0.04, 0.07) -> 0.03 ± 0.0458.
    assert row_a[4:7] == ["0.750 ± 0.050", "0.720 ± 0.010", "+0.030 ± 0.046"]
    row_b = _row(text, "B")
    # B -> A: OAS constant 0.6 (std 0); Δ (0.10, 0.05, 0.00) -> 0.05 ± 0.05.
    assert row_b[1:4] == ["0.600 ± 0.000", "0.550 ± 0.050", "+0.050 ± 0.050"]
    # The baseline matrix follows the JANUS one: find its B row after its heading.
    baseline = text.split("## iforest")[1]
    assert _row(baseline, "B")[1:] == ["0.520 ± 0.020", "0.930 ± 0.020"]
    # Averages: janus-OAS within = mean(0.92, 0.98), cross = mean(0.75, 0.60).
    avg = text.split("## Averages")[1]
    # AUROC within / cross, then TPR@1%FPR (= auroc / 2 here) within / cross.
    assert _row(avg, "janus-OAS (target-cal.)")[1:] == ["0.950", "0.675", "0.475", "0.338"]
    tpr = text.split("\n## TPR at 1 % FPR\n")[1].split("## Averages")[0]
    assert _row(tpr.split("### TPR at 1 % FPR: iforest")[1], "B")[1:] == ["0.260 ± 0.010", "0.465 ± 0.010"]


def test_negative_delta_is_signed(tmp_path):
    paths = [_write(tmp_path, "janus", "A", "A", seed,
                    {"oas": _col(0.6), "terminal_norm": _col(0.7)}) for seed in (1, 2)]
    res = report.Results(report.load_runs(paths))
    assert _row(report.cross_matrix_md(res), "A")[3] == "-0.100 ± 0.000"


def test_within_thresholded_per_attack_aggregators(metrics):
    res = report.Results(report.load_runs(metrics), ["A", "B"], ["janus", "iforest"])
    within = report.within_md(res)
    assert _row(within, "`oas`")[1:] == ["0.920 ± 0.020", "0.980 ± 0.010"]
    assert _row(within, "`terminal_norm`")[1:] == ["0.820 ± 0.020", "0.950 ± 0.000"]
    assert _row(within.split("## Other detectors")[1], "iforest")[1:] == [
        "0.870 ± 0.020", "0.930 ± 0.020"]

    thr = report.thresholded_md(res)
    within_part = thr.split("## Cross-dataset")[0]
    cells = _row(within_part, "A → A")
    assert cells[1] == "janus-OAS (target-cal.)"
    # fpr@P95 = 0.05, precision = auroc, recall@P95 = auroc - 0.1, f1@P95 = auroc - 0.05,
    # fpr@P99 = 0.01, f1@P99 = auroc - 0.1, tpr@1% = auroc / 2 (no 0.1 % value here).
    assert cells[2:6] == ["0.050 ± 0.000", "0.920 ± 0.020", "0.820 ± 0.020", "0.870 ± 0.020"]
    assert cells[6] == "0.010 ± 0.000" and cells[9] == "0.820 ± 0.020"
    assert cells[10] == report.MISSING and cells[11] == "0.460 ± 0.010"

    per_attack = report.per_attack_md(res)
    section_a = per_attack.split("## A")[1].split("## B")[0]
    # Columns: n (no counts in these files), janus-OAS, janus (terminal_norm), iforest.
    assert _row(section_a, "scan")[1:] == [report.MISSING, "0.080 ± 0.020", "0.180 ± 0.020",
                                           "0.130 ± 0.020"]

    agg = report.aggregators_md(res)
    assert _row(agg, "train → test")[1:] == ["`oas`", "`oas_paper`", "`maxz`",
                                               "`mahalanobis`", "`ledoit_wolf`",
                                               "`terminal_norm`"]
    assert _row(agg, "B → B")[1:] == ["0.980 ± 0.010", "0.950 ± 0.010", "0.970 ± 0.010",
                                      "0.960 ± 0.010", "0.980 ± 0.010", "0.950 ± 0.000"]

    base = report.baselines_md(res)
    assert _row(base, "iforest")[1:] == ["0.870 ± 0.020", "0.930 ± 0.020", "0.900", "0.535"]
    assert "n = 3 seeds" in base
    cross = base.split("## Cross-dataset")[1]
    # Columns: janus-OAS, janus (terminal_norm), iforest; rows: the off-diagonal pairs.
    assert _row(cross, "A → B")[1:] == ["0.750 ± 0.050", "0.720 ± 0.010", "0.550 ± 0.000"]
    assert _row(cross, "B → A")[1:] == ["0.600 ± 0.000", "0.550 ± 0.050", "0.520 ± 0.020"]
    assert _row(cross.split("### Cross-dataset TPR")[0], "mean")[1:] == ["0.675", "0.635", "0.535"]
    assert "A → A" not in cross


def test_provenance_and_files(metrics, tmp_path):
    out = tmp_path / "results"
    git = provenance.git_commit()
    digest = provenance.inputs_digest(
        {"path": str(p), "size": p.stat().st_size,
         "sha256": hashlib.sha256(p.read_bytes()).hexdigest()} for p in metrics)
    assert report.main(["--metrics", *map(str, metrics), "--out-dir", str(out),
                        "--config-hash", "abc123def456", "--figures", "matrix"]) == 0
    for name in report.TABLES:
        text = (out / name).read_text()
        assert "config hash: `abc123def456`" in text
        assert "seeds: 1, 2, 3" in text
        # Provenance: the code, software and the very metrics files the table was made from.
        assert f"git commit: `{git['commit']}`" in text
        assert f"janus {janus.__version__}, python {platform.python_version()}" in text
        assert f"numpy {np.__version__}" in text
        assert (f"inputs: {len(metrics)} files, {sum(p.stat().st_size for p in metrics):,} "
                f"bytes, sha256 of their (path, size, sha256) list: `{digest}`") in text
    png = (out / "figures" / "cross_matrix.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob("**/.*.tmp"))  # atomic writes leave no temporary files


def test_dataset_figures_read_per_flow_scores(tmp_path):
    """ROC/histogram figures read the scores, labels and splits a METRICS.json names."""
    n = 40
    flow_id = np.arange(n, dtype=np.int64)
    label = np.array([0] * 30 + [1] * 10, dtype=np.int8)
    score = np.where(label == 1, 5.0, 0.0) + np.linspace(0, 1, n)
    pq.write_table(pa.table({"flow_id": flow_id, "oas": score, "terminal_norm": score}),
                   tmp_path / "agg.parquet")
    pq.write_table(pa.table({"flow_id": flow_id, "label": label,
                             "attack": ["benign" if y == 0 else "dos" for y in label],
                             "label_source": ["csv"] * n}), tmp_path / "labels.parquet")
    np.savez(tmp_path / "splits.npz", train=np.arange(0, 10), val=np.arange(10, 20),
             test=np.arange(20, 40))
    m = _write(tmp_path, "janus", "A", "A", 7, {"oas": _col(1.0), "terminal_norm": _col(1.0)},
               scores_file=str(tmp_path / "agg.parquet"),
               labels_file=str(tmp_path / "labels.parquet"),
               splits_file=str(tmp_path / "splits.npz"))
    run = report.load_run(m)
    s, y = report.flow_scores(run, "oas")
    np.testing.assert_array_equal(y, label[20:])
    np.testing.assert_allclose(s, score[20:])
    out = tmp_path / "out"
    assert report.main(["--metrics", str(m), "--out-dir", str(out), "--no-tables",
                        "--figures", "datasets"]) == 0
    assert sorted(p.name for p in (out / "figures").iterdir()) == ["hist_A.png", "roc_A.png"]
    assert report.main(["--metrics", str(m), "--out-dir", str(out), "--no-tables",
                        "--figures", "datasets", "--pdf"]) == 0
    assert sorted(p.name for p in (out / "figures").iterdir()) == [
        "hist_A.pdf", "hist_A.png", "roc_A.pdf", "roc_A.png"]
    assert not (out / "cross_matrix.md").exists()


def test_flow_scores_look_up_sparse_shuffled_flow_ids(tmp_path):
    """Score rows of only the val and test flows, shuffled, with ids like 7, 1000, 3: the
    figure data are each test flow's own score and label, in the splits' test order."""
    rng = np.random.default_rng(2)
    n_all = 2000
    label = (rng.random(n_all) < 0.5).astype(np.int8)
    label[[3, 7, 1000]] = [1, 0, 0]
    pool = np.setdiff1d(np.arange(n_all), [3, 7, 1000])
    val = np.sort(np.append(rng.choice(pool, 50, replace=False), [7, 1000]))
    test = np.sort(np.append(rng.choice(np.setdiff1d(pool, val), 80, replace=False), 3))
    ids = np.concatenate([val, test])[rng.permutation(len(val) + len(test))]
    score = rng.normal(size=n_all) + 2.0 * label
    pq.write_table(pa.table({"flow_id": ids, "oas": score[ids]}), tmp_path / "agg.parquet")
    pq.write_table(pa.table({"flow_id": np.arange(n_all), "label": label,
                             "attack": ["benign" if y == 0 else "dos" for y in label],
                             "label_source": ["csv"] * n_all}), tmp_path / "labels.parquet")
    np.savez(tmp_path / "splits.npz", train=np.array([1, 2]), val=val, test=test)
    m = _write(tmp_path, "janus", "A", "A", 7, {"oas": _col(1.0)},
               scores_file=str(tmp_path / "agg.parquet"),
               labels_file=str(tmp_path / "labels.parquet"),
               splits_file=str(tmp_path / "splits.npz"))
    s, y = report.flow_scores(report.load_run(m), "oas")
    np.testing.assert_array_equal(y, label[test])
    np.testing.assert_array_equal(s, score[test])


def test_errors_name_file_and_key(tmp_path, metrics):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"detector": "janus", "source": "A", "target": "A",
                               "columns": {"oas": _col(0.5)}}))
    with pytest.raises(JanusError, match=r"bad\.json: key 'seed'"):
        report.load_run(bad)
    dup = tmp_path / "dup.json"
    dup.write_text(metrics[0].read_text())
    with pytest.raises(JanusError, match="dup.json and .*both detector=janus"):
        report.load_runs([metrics[0], dup])
    with pytest.raises(JanusError, match=r"datasets \['B'\]"):
        report.Results(report.load_runs(metrics), ["A"], None)
    assert report.main(["--metrics", str(bad), "--out-dir", str(tmp_path / "o")]) == 2


def test_within_lists_the_extended_path_scores_after_the_ten(tmp_path):
    """Files scored with --extended: each path score gets its own within.md row, after the
    10 scores, in EXTENDED_SCORE_COLUMNS order."""
    ext = {c: _col(0.6 + 0.01 * k) for k, c in enumerate(contract.EXTENDED_SCORE_COLUMNS)}
    paths = [_write(tmp_path, "janus", "A", "A", seed,
                    {"oas": _col(0.9), "terminal_norm": _col(0.8), **ext}) for seed in (1, 2)]
    within = report.within_md(report.Results(report.load_runs(paths)))
    for k, c in enumerate(contract.EXTENDED_SCORE_COLUMNS):
        assert _row(within, f"`{c}`")[1:] == [f"{0.6 + 0.01 * k:.3f} ± 0.000"]
    auroc_table = within.split("## janus: TPR")[0]  # the TPR table repeats the rows
    order = [line.split("|")[1].strip() for line in auroc_table.splitlines()
             if line.startswith("| `")]
    assert order == ["`oas`", "`terminal_norm`"] + [f"`{c}`" for c in contract.EXTENDED_SCORE_COLUMNS]


def test_control_cells_show_the_target_value_and_both_transfer_modes(tmp_path):
    paths = []
    for seed in (1, 2):
        for s, t in (("A", "A"), ("A", "B"), ("B", "A"), ("B", "B")):
            cols = {"oas": _col(0.9 if s == t else 0.8), "oas_source": _col(0.9 if s == t else 0.6),
                    "terminal_norm": _col(0.7)}
            paths.append(_write(tmp_path, "janus", s, t, seed, cols))
        paths.append(_write(tmp_path, "feature_oas", "A", "A", seed, {"oas": _col(0.75)}))
        paths.append(_write(tmp_path, "feature_oas", "B", "B", seed, {"oas": _col(0.65 + seed / 100)}))
        paths.append(_write(tmp_path, "kitnet", "A", "A", seed, {"score": _col(0.5)}))
    res = report.Results(report.load_runs(paths), ["A", "B"], ["feature_oas", "janus", "kitnet"])
    labels = [e.label for e in res.entries()]
    assert labels == ["feature-OAS control", "janus-OAS (target-cal.)", "janus-OAS (source-cal.)",
                      "janus (terminal_norm)", "kitnet (20 flow features)"]
    base = report.baselines_md(res)
    cross = base.split("## Cross-dataset")[1].split("###")[0]
    # A -> B: the control's cell is its B value (0.66, 0.67); calibrated 0.8, uncalibrated 0.6.
    assert _row(cross, "A → B")[1:4] == ["0.665 ± 0.007", "0.800 ± 0.000", "0.600 ± 0.000"]
    assert _row(cross, "B → A")[1] == "0.750 ± 0.000"
    assert "calibrated cross-domain transfer" in base and "not zero-shot" in base
    assert "115 AfterImage" in base
    # The control adds no pair the models lack: kitnet has A -> A only, and no B -> B column.
    assert res.pairs(cross=True) == [("A", "B"), ("B", "A")]


def test_bootstrap_interval_is_of_the_mean_over_seeds_and_pairs(tmp_path):
    paths = []
    for seed, shift in ((1, 0.0), (2, 0.02)):
        col = _col(0.8 + shift)
        col["auroc_boot"] = list(0.8 + shift + np.linspace(-0.05, 0.05, 101))
        paths.append(_write(tmp_path, "iforest", "A", "A", seed, {"score": col}))
    res = report.Results(report.load_runs(paths))
    lo, hi = res.boot_ci("iforest", [("A", "A")], "score")
    # Replicate b is the mean over seeds: 0.81 + linspace(-0.05, 0.05).
    grid = 0.81 + np.linspace(-0.05, 0.05, 101)
    assert lo == pytest.approx(np.percentile(grid, 2.5)) and hi == pytest.approx(np.percentile(grid, 97.5))
    assert f"[{lo:.3f}, {hi:.3f}]" in _row(report.baselines_md(res), "iforest")[-2]
    # A run without replicates: no interval rather than a wrong one.
    paths.append(_write(tmp_path, "iforest", "A", "A", 3, {"score": _col(0.8)}))
    assert report.Results(report.load_runs(paths)).boot_ci("iforest", [("A", "A")], "score") is None


def test_html_copy_of_a_table_keeps_every_cell(metrics, tmp_path):
    res = report.Results(report.load_runs(metrics), ["A", "B"], ["janus", "iforest"])
    text = report.baselines_md(res)
    page = report.md_to_html(text, "baselines.md")
    assert page.count("<table>") == text.count("|:---|")
    assert "<td>0.870 ± 0.020</td>" in page and "<b>feature-OAS control</b>" in page
    assert "<i>calibrated cross-domain transfer</i>" in page
