"""Values of the tiny end-to-end run (config/test.yaml; the run is conftest.tiny_workflow,
shared with tests/test_workflow.py).

The tiny run has 2 sites, 1 seed, 150 benign + 150 attack test flows per site and a model
trained for 2 epochs, so an AUROC has a standard error of about 0.03. The bounds below are
chosen to catch broken wiring, not to rank methods: a misaligned flow id, a flipped sign or
a label leak moves an AUROC to about 0.5, below it, or to 1.0 everywhere.

* every headline AUROC (``cross_matrix.md``: every detector, within and cross) is finite and
  above chance; the smallest in the reference run was 0.58 (kitnet, iot -> office), the
  JANUS-OAS cells 0.88-1.00, so JANUS-OAS must clear 0.75;
* every cell a table shows equals the metric recomputed from the per-flow files the run
  wrote (AGG Parquet, labels, splits, matched by flow_id), to the table's 3 decimals;
* raw single scores are only required to be finite: one of them can legitimately sit below
  0.5 (``disc_nll_direction`` on iot, 0.24: flood flows are one-directional, so their
  direction flags are *easier* to predict than benign ones), which is why the default
  aggregator is one-sided;
* no table has an empty or NaN cell; the only "—" allowed is a precision at a threshold
  that flags no flow (0/0), and each one is checked against its METRICS.json.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from janus import contract
from janus.datasets.splits import load_splits
from janus.evaluation.aggregate import rows_of
from janus.evaluation.evaluate import read_labels
from janus.evaluation.metrics import auroc, per_attack_auroc

pytestmark = pytest.mark.slow

SITES = ("office", "iot")
SEED = 42
MISSING = "—"


def _tables(text: str) -> list[tuple[str, list[str], list[list[str]]]]:
    """Every markdown table of ``text``: ``(the heading above it, header cells, rows)``."""
    out, heading, lines = [], "", text.splitlines()
    k = 0
    while k < len(lines):
        line = lines[k]
        if line.startswith("#"):
            heading = line.lstrip("# ").strip()
        if line.startswith("|") and k + 1 < len(lines) and lines[k + 1].startswith("|:"):
            header = _cells(line)
            rows = []
            k += 2
            while k < len(lines) and lines[k].startswith("|"):
                rows.append(_cells(lines[k]))
                k += 1
            out.append((heading, header, rows))
            continue
        k += 1
    return out


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _value(cell: str) -> float:
    """'0.889' or '+0.050' (one seed: no ± part) -> float; anything else fails the test."""
    assert cell and "±" not in cell, f"unexpected cell {cell!r} for a one-seed run"
    return float(cell)


@pytest.fixture(scope="module")
def results(tiny_workflow) -> Path:
    return tiny_workflow[0] / "results"


@pytest.fixture(scope="module")
def truth(tiny_workflow):
    """Per target: test ids with a 0/1 label, their labels and attack classes."""
    wf = tiny_workflow[0]
    out = {}
    for site in SITES:
        lab_id, label, attack = read_labels(wf / "data" / site / contract.LABELS_FILE)
        test = load_splits(wf / "data" / site / "splits" / f"seed{SEED}.npz")["test"]
        rows = rows_of(lab_id, test, site)
        known = label[rows] >= 0
        out[site] = (test[known], label[rows][known], attack[rows][known])
    return out


def _flow_auroc(wf: Path, truth, detector: str, src: str, tgt: str, column: str,
                per_attack: bool = False):
    """AUROC recomputed from the per-flow file the run wrote (flow ids looked up)."""
    sub = "agg" if detector in ("janus", "feature_oas") else "scores"
    table = pq.read_table(wf / "results" / sub / detector / src / tgt / f"seed{SEED}.parquet")
    ids, y, att = truth[tgt]
    flow_id = table.column("flow_id").to_numpy()
    s = table.column(column).to_numpy()[rows_of(flow_id, ids, f"{detector} {src}->{tgt}")]
    return per_attack_auroc(att, y, s) if per_attack else auroc(y, s)


def test_cross_matrix_values(results, truth, tiny_workflow):
    wf = tiny_workflow[0]
    tables = _tables((results / "cross_matrix.md").read_text())
    seen = 0
    for heading, header, rows in tables:
        for row in rows:
            for head, cell in zip(header[1:], row[1:]):
                v = _value(cell)
                assert math.isfinite(v), (heading, row[0], head)
                # A TPR at 1 % FPR of a tiny run can sit anywhere in [0, 1].
                if "TPR" in heading or "TPR" in head:
                    assert 0.0 <= v <= 1.0, (heading, row[0], head)
                elif not head.endswith("Δ"):
                    assert v > 0.5, f"{heading}: {row[0]} / {head} = {v} is not above chance"
                seen += 1
        if heading.startswith("janus: Mahalanobis-OAS"):
            for row in rows:
                src = row[0]
                for k, tgt in enumerate(SITES):
                    oas, tn, delta = (_value(c) for c in row[1 + 3 * k: 4 + 3 * k])
                    assert oas > 0.75, (src, tgt, oas)
                    assert oas == pytest.approx(
                        _flow_auroc(wf, truth, "janus", src, tgt, "oas"), abs=5e-4)
                    assert tn == pytest.approx(
                        _flow_auroc(wf, truth, "janus", src, tgt, "terminal_norm"), abs=5e-4)
                    assert delta == pytest.approx(oas - tn, abs=1.5e-3)
        elif heading.startswith("feature-OAS control"):
            # The model-free control: a (source, target) cell is its value on the target.
            for row in rows:
                for tgt, cell in zip(SITES, row[1:]):
                    assert _value(cell) == pytest.approx(
                        _flow_auroc(wf, truth, "feature_oas", tgt, tgt, "oas"), abs=5e-4)
        elif heading.startswith("janus-OAS (source-cal.)"):
            for row in rows:
                for tgt, cell in zip(SITES, row[1:]):
                    assert _value(cell) == pytest.approx(
                        _flow_auroc(wf, truth, "janus", row[0], tgt, "oas_source"), abs=5e-4)
        elif heading.startswith(("iforest", "kitnet")):
            det = heading.split()[0]
            for row in rows:
                for tgt, cell in zip(SITES, row[1:]):
                    assert _value(cell) == pytest.approx(
                        _flow_auroc(wf, truth, det, row[0], tgt, "score"), abs=5e-4)
    # janus (2 sources x 2 targets x 3 cells); the control, janus-OAS (source-cal.), iforest
    # and kitnet (2 x 2 each); the TPR matrices of all 6 entries (2 x 2); averages (6 x 4).
    assert seen == 12 + 4 * 4 + 6 * 4 + 6 * 4


def test_within_values(results, truth, tiny_workflow):
    wf = tiny_workflow[0]
    tables = {h: (hd, rows) for h, hd, rows in _tables((results / "within.md").read_text())}
    header, rows = tables["janus: AUROC"]
    assert header[1:] == list(SITES)
    assert [r[0] for r in rows] == [f"`{c}`" for c in ("oas",) + contract.SCORE_COLUMNS]
    for row in rows:
        for site, cell in zip(SITES, row[1:]):
            v = _value(cell)
            assert 0.0 <= v <= 1.0
            assert v == pytest.approx(
                _flow_auroc(wf, truth, "janus", site, site, row[0].strip("`")), abs=5e-4)
    oas = [_value(c) for c in rows[0][1:]]
    assert min(oas) > 0.75
    # The OAS scalar is at least as good as the average raw score on each site.
    for k in range(len(SITES)):
        assert oas[k] > np.mean([_value(r[1 + k]) for r in rows[1:]])


def test_per_attack_rows_present_and_recomputed(results, truth, tiny_workflow):
    wf = tiny_workflow[0]
    tables = {h: (hd, rows) for h, hd, rows in _tables((results / "per_attack.md").read_text())}
    for site in SITES:
        header, rows = tables[site]
        _, y, att = truth[site]
        classes = sorted(set(att[y == 1].tolist()))
        assert [r[0] for r in rows] == classes and len(classes) >= 3
        assert header[1:] == ["n", "feature-OAS control", "janus-OAS (target-cal.)",
                              "janus-OAS (source-cal.)", "janus (terminal_norm)", "iforest",
                              "kitnet (20 flow features)"]
        expected = _flow_auroc(wf, truth, "janus", site, site, "oas", per_attack=True)
        for row in rows:
            assert all(math.isfinite(_value(c)) for c in row[1:])
            assert int(row[1]) == int(((y == 1) & (att == row[0])).sum())
            assert _value(row[3]) == pytest.approx(expected[row[0]], abs=5e-4)
        assert np.mean([_value(r[3]) for r in rows]) > 0.75


def test_every_table_is_filled(results):
    metrics = {}
    for path in (results / "metrics").rglob("*.json"):
        m = json.loads(path.read_text())
        metrics[(m["detector"], m["source"], m["target"])] = m
        for col, vals in m["columns"].items():
            assert vals["auroc"] is not None and math.isfinite(vals["auroc"]), (path, col)
    assert len(metrics) == 3 * len(SITES) ** 2 + len(SITES)  # + the control, per site
    for name in ("cross_matrix.md", "within.md", "thresholded.md", "per_attack.md",
                 "aggregators.md", "baselines.md"):
        text = (results / name).read_text()
        assert "nan" not in text.lower(), name
        tables = _tables(text)
        assert tables, name
        for heading, header, rows in tables:
            assert rows, (name, heading)
            for row in rows:
                assert len(row) == len(header) and all(row), (name, heading, row)
                for head, cell in zip(header, row):
                    if cell != MISSING:
                        continue
                    # 0/0: a precision at a threshold that flags nothing.
                    assert name == "thresholded.md" and head.startswith("P@"), (name, row)
                    src, tgt = (s.strip() for s in row[0].split("→"))
                    det = ("feature_oas" if row[1].startswith("feature-OAS")
                           else row[1].split("-")[0].split(" ")[0])
                    col = ("oas_source" if "source-cal" in row[1] else "oas" if "OAS" in row[1]
                           else "terminal_norm" if "terminal_norm" in row[1] else "score")
                    level = head.split("@")[1].lower()
                    assert metrics[(det, src, tgt)]["columns"][col][level]["flagged"] == 0


def test_aggregators_table_keeps_the_paper_oas(results, tiny_workflow):
    wf = tiny_workflow[0]
    (heading, header, rows), = _tables((results / "aggregators.md").read_text())
    assert heading == "janus"
    assert header[1:] == ["`oas`", "`oas_paper`", "`maxz`", "`mahalanobis`", "`ledoit_wolf`",
                          "`terminal_norm`"]
    assert len(rows) == len(SITES) ** 2
    for row in rows:
        src, tgt = (s.strip() for s in row[0].split("→"))
        agg = pq.read_table(wf / "results" / "agg" / "janus" / src / tgt / f"seed{SEED}.parquet")
        # oas (one-sided, 9 columns) and oas_paper (two-sided, 10) are different scalars.
        assert not np.allclose(agg.column("oas").to_numpy(), agg.column("oas_paper").to_numpy())
        assert all(0.5 < _value(c) <= 1.0 for c in row[1:])
