"""Tests for janus/evaluation/evaluate.py, including the proof that aggregation never sees a label."""

from __future__ import annotations

import builtins
import json
import math
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from janus import contract
from janus.evaluation import aggregate, evaluate, metrics
from janus.io import write_npz, write_parquet

N = 600
TRAIN, VAL = np.arange(0, 200), np.arange(200, 300)
TEST = np.arange(300, N)


_WATCH: dict = {"installed": False, "list": None}


def _audit(event, args):
    if event == "open" and args and _WATCH["list"] is not None:
        _WATCH["list"].append(str(args[0]))


@pytest.fixture()
def dataset(tmp_path):
    """A scores file with the 10 JANUS columns, labels with 2 attack classes, and splits."""
    rng = np.random.default_rng(0)
    label = np.zeros(N, np.int8)
    attack = np.array(["benign"] * N, dtype=object)
    label[450:520], attack[450:520] = 1, "dos"
    label[520:580], attack[520:580] = 1, "portscan"
    label[580:], attack[580:] = -1, "unknown"
    shift = np.where(attack == "dos", 3.0, np.where(attack == "portscan", 1.0, 0.0))
    cols = {c: rng.normal(size=N) + shift * (j % 3) for j, c in enumerate(contract.SCORE_COLUMNS)}
    folder = tmp_path / "ds"
    write_parquet(tmp_path / "scores.parquet",
                  pa.table({"flow_id": np.arange(N, dtype=np.int64), **cols}))
    write_parquet(folder / contract.LABELS_FILE, pa.table({
        "flow_id": np.arange(N, dtype=np.int64), "label": pa.array(label, pa.int8()),
        "attack": pa.array(attack.tolist(), pa.string()),
        "label_source": pa.array(["csv"] * N, pa.string())}))
    write_npz(tmp_path / "splits.npz", train=TRAIN, val=VAL, test=TEST,
              meta=np.array(json.dumps({"seed": 0})))
    return tmp_path, label, attack


def _aggregate(tmp_path, out_name):
    out = tmp_path / out_name
    assert aggregate.main(["--scores", str(tmp_path / "scores.parquet"),
                           "--splits", str(tmp_path / "splits.npz"), "--out", str(out)]) == 0
    return out


def _evaluate(tmp_path, agg, out_name, *extra):
    out = tmp_path / out_name
    assert evaluate.main(["--scores", str(agg), "--labels", str(tmp_path / "ds" / "labels.parquet"),
                          "--splits", str(tmp_path / "splits.npz"), "--out", str(out),
                          *extra]) == 0
    return json.loads(out.read_text())


def test_metrics_file_values_and_metadata(dataset):
    tmp_path, label, _ = dataset
    agg = _aggregate(tmp_path, "agg.parquet")
    m = _evaluate(tmp_path, agg, "m.json", "--detector", "janus", "--source", "A",
                  "--target", "B", "--seed", "3")
    assert (m["detector"], m["source"], m["target"], m["seed"]) == ("janus", "A", "B", 3)
    assert (m["n_benign"], m["n_attack"], m["n_unknown"], m["n_val"]) == (150, 130, 20, 100)
    assert list(m["columns"]) == [*aggregate.METHODS, *contract.SCORE_COLUMNS]
    # Recompute one column by hand from the files.
    table = pq.read_table(agg)
    s = table.column("oas").to_numpy()
    known = label[TEST] >= 0
    y, st = label[TEST][known], s[TEST][known]
    col = m["columns"]["oas"]
    assert col["auroc"] == pytest.approx(metrics.auroc(y, st))
    thr = np.percentile(s[VAL], 99)
    assert col["p99"]["threshold"] == pytest.approx(thr)
    assert col["p99"]["recall"] == pytest.approx(((st > thr) & (y == 1)).sum() / (y == 1).sum())
    assert set(col["per_attack"]) == {"dos", "portscan"}
    assert col["per_attack"]["dos"] > col["per_attack"]["portscan"] > 0.5
    # A column with no signal is near 0.5; one with the shift is clearly above.
    assert abs(m["columns"]["terminal_norm"]["auroc"] - 0.5) < 0.1
    assert m["columns"]["terminal_packet"]["auroc"] > 0.9


def test_single_class_test_set_writes_null_not_nan(dataset, tmp_path):
    root, _, _ = dataset
    write_npz(root / "splits.npz", train=TRAIN, val=VAL, test=np.arange(300, 450),
              meta=np.array("{}"))
    m = _evaluate(root, root / "scores.parquet", "m1.json")
    col = m["columns"]["terminal_norm"]
    assert col["auroc"] is None and col["tpr_at_1fpr"] is None and col["per_attack"] == {}
    assert "NaN" not in (root / "m1.json").read_text()


def test_permuting_attack_labels_leaves_aggregation_byte_identical(dataset, monkeypatch):
    """Proof that no attack label is used before evaluation.

    1. Aggregating with the real labels beside the data and with the labels permuted gives
       byte-identical files, while evaluation of the same files does change.
    2. While aggregation runs, every Python-level way of opening a file (builtins.open,
       io.open via the audit hook, pyarrow/polars/numpy readers) is watched, and none of
       them is pointed at labels.parquet.
    3. Aggregation succeeds with no labels file anywhere.
    """
    tmp_path, label, attack = dataset
    labels_path = tmp_path / "ds" / contract.LABELS_FILE

    opened: list[str] = []
    _WATCH["list"] = opened
    if not _WATCH["installed"]:  # an audit hook cannot be removed: install it once
        sys.addaudithook(_audit)
        _WATCH["installed"] = True
    import polars as pl

    def spy(fn):
        def wrapped(source, *a, **k):
            opened.append(str(source))
            return fn(source, *a, **k)
        return wrapped

    monkeypatch.setattr(pq, "read_table", spy(pq.read_table))
    monkeypatch.setattr(pq, "ParquetFile", spy(pq.ParquetFile))
    monkeypatch.setattr(pl, "read_parquet", spy(pl.read_parquet))
    monkeypatch.setattr(pl, "scan_parquet", spy(pl.scan_parquet))
    monkeypatch.setattr(np, "load", spy(np.load))
    monkeypatch.setattr(builtins, "open", spy(builtins.open))

    opened.clear()
    first = _aggregate(tmp_path, "agg_real.parquet").read_bytes()
    assert not any(p.endswith(contract.LABELS_FILE) for p in opened), opened
    assert any("scores.parquet" in p for p in opened)  # the spies do see the reads

    rng = np.random.default_rng(1)
    perm = rng.permutation(N)
    write_parquet(labels_path, pa.table({
        "flow_id": np.arange(N, dtype=np.int64), "label": pa.array(label[perm], pa.int8()),
        "attack": pa.array(attack[perm].tolist(), pa.string()),
        "label_source": pa.array(["csv"] * N, pa.string())}))
    opened.clear()
    second = _aggregate(tmp_path, "agg_perm.parquet").read_bytes()
    assert second == first
    assert not any(p.endswith(contract.LABELS_FILE) for p in opened), opened

    labels_path.unlink()
    assert _aggregate(tmp_path, "agg_none.parquet").read_bytes() == first
    monkeypatch.undo()
    _WATCH["list"] = None

    # The permutation is not a no-op: evaluation of the same aggregated file moves.
    write_parquet(labels_path, pa.table({
        "flow_id": np.arange(N, dtype=np.int64), "label": pa.array(label[perm], pa.int8()),
        "attack": pa.array(attack[perm].tolist(), pa.string()),
        "label_source": pa.array(["csv"] * N, pa.string())}))
    permuted = _evaluate(tmp_path, tmp_path / "agg_real.parquet", "perm.json")
    assert abs(permuted["columns"]["oas"]["auroc"] - 0.5) < 0.15
    assert not math.isclose(permuted["columns"]["terminal_packet"]["auroc"], 1.0)


def test_aggregate_takes_no_labels_option():
    options = {a for act in aggregate.build_parser()._actions for a in act.option_strings}
    assert not any("label" in o for o in options)


def test_missing_labels_file_is_a_clear_error(dataset, capsys):
    tmp_path, _, _ = dataset
    rc = evaluate.main(["--scores", str(tmp_path / "scores.parquet"), "--labels",
                        str(tmp_path / "nope.parquet"), "--splits", str(tmp_path / "splits.npz"),
                        "--out", str(tmp_path / "m.json")])
    assert rc == 2
    assert "nope.parquet: labels file not found" in capsys.readouterr().err


def test_batched_aggregate_then_evaluate_matches_single_steps(dataset, monkeypatch):
    """One process: --aggregate writes the same AGG bytes as 'janus aggregate', every AGG is
    written before any labels file is opened, and each METRICS.json equals a single run's."""
    tmp_path, _, _ = dataset
    agg_single = _aggregate(tmp_path, "agg_single.parquet")
    single = _evaluate(tmp_path, agg_single, "single.json", "--detector", "janus", "--source",
                       "A", "--target", "B", "--seed", "3")
    base = _evaluate(tmp_path, tmp_path / "scores.parquet", "base.json", "--detector", "raw",
                     "--source", "A", "--target", "B", "--seed", "3")

    events: list[str] = []
    real_write, real_read = aggregate.write_parquet, evaluate.read_labels
    monkeypatch.setattr(aggregate, "write_parquet",
                        lambda path, table: (events.append("agg"), real_write(path, table)))
    monkeypatch.setattr(evaluate, "read_labels",
                        lambda path: (events.append("labels"), real_read(path))[1])
    agg = tmp_path / "agg_batch.parquet"
    labels, sp = tmp_path / "ds" / "labels.parquet", tmp_path / "splits.npz"
    outs = [tmp_path / "b1.json", tmp_path / "b2.json"]
    assert evaluate.main(["--aggregate", str(tmp_path / "scores.parquet"), str(agg),
                          "--scores", str(agg), str(tmp_path / "scores.parquet"),
                          "--labels", str(labels), "--splits", str(sp), str(sp),
                          "--out", *map(str, outs), "--detector", "janus", "raw",
                          "--target", "B", "--source", "A", "--seed", "3"]) == 0
    assert events == ["agg", "labels"]  # labels read once, after the aggregation
    assert agg.read_bytes() == agg_single.read_bytes()
    first, second = (json.loads(out.read_text()) for out in outs)
    assert first.pop("scores_file") == str(agg) and single.pop("scores_file") == str(agg_single)
    assert first == single and second == base


@pytest.mark.parametrize("extra, message", [
    (["--out", "a.json"], "--out has 1 values for 2 --scores"),
    (["--out", "a.json", "a.json"], "same METRICS.json twice"),
    (["--out", "a.json", "b.json", "--detector", "x", "y", "z"], "--detector has 3 values"),
    (["--out", "a.json", "b.json", "--aggregate", "raw.parquet", "c.parquet"],
     "c.parquet is not one of --scores"),
])
def test_misaligned_lists_are_errors(dataset, extra, message, capsys):
    tmp_path, _, _ = dataset
    rc = evaluate.main(["--scores", "s1.parquet", "s2.parquet", "--labels", "l.parquet",
                        "--splits", "x.npz", *extra])
    assert rc == 2
    assert message in capsys.readouterr().err


def test_infinite_scores_keep_their_rank(dataset):
    tmp_path, label, _ = dataset
    rng = np.random.default_rng(5)
    s = rng.normal(size=N) + (label == 1) * 2.0
    s[label == 1] = np.where(np.arange(int((label == 1).sum())) % 4 == 0, np.inf,
                             s[label == 1])
    path = tmp_path / "inf.parquet"
    write_parquet(path, pa.table({"flow_id": np.arange(N, dtype=np.int64), "score": s}))
    m = _evaluate(tmp_path, path, "inf.json")["columns"]["score"]
    known = label[TEST] >= 0
    y, t = label[TEST][known], s[TEST][known]
    expected = metrics.auroc(y, np.where(np.isinf(t), 1e9, t))  # any value above the rest
    assert m["auroc"] == pytest.approx(expected)
    assert m["n_infinite"] == int(np.isinf(t).sum()) > 0
    s[TEST[0]] = np.nan
    write_parquet(path, pa.table({"flow_id": np.arange(N, dtype=np.int64), "score": s}))
    out = evaluate.main(["--scores", str(path), "--labels", str(tmp_path / "ds" / "labels.parquet"),
                         "--splits", str(tmp_path / "splits.npz"), "--out",
                         str(tmp_path / "nan.json")])
    assert out == 2


def test_sparse_shuffled_flow_ids_are_looked_up_not_used_as_rows(tmp_path):
    """A scores file holding only the val and test flows of a 5,000-flow dataset in a
    shuffled order (ids like 7, 1000, 3), labels in another order: every metric is the one of
    the flows the splits name, matched by flow_id."""
    rng = np.random.default_rng(11)
    n_all = 5000
    label = (rng.random(n_all) < 0.4).astype(np.int8)
    attack = np.where(label == 1, np.where(rng.random(n_all) < 0.5, "dos", "scan"), "benign")
    label[rng.random(n_all) < 0.05] = -1
    label[[7, 1000]], attack[[7, 1000]], label[3], attack[3] = 0, "benign", 1, "dos"
    pool = np.setdiff1d(np.arange(n_all), [3, 7, 1000])
    val_ids = np.append(rng.choice(np.intersect1d(pool, np.flatnonzero(label == 0)), 148,
                                   replace=False), [7, 1000])
    test_ids = np.append(rng.choice(np.setdiff1d(pool, val_ids), 399, replace=False), 3)
    # A score that depends on the flow's own label: wrong rows give a visibly different AUROC.
    s = rng.normal(size=n_all) + 1.5 * (label == 1) * (1 + (attack == "dos"))
    ids = np.concatenate([val_ids, test_ids])
    order = rng.permutation(len(ids))
    scores = tmp_path / "scores.parquet"
    write_parquet(scores, pa.table({"flow_id": ids[order], "score": s[ids[order]]}))
    lab_order = rng.permutation(n_all)
    labels = tmp_path / "labels.parquet"
    write_parquet(labels, pa.table({
        "flow_id": lab_order.astype(np.int64), "label": pa.array(label[lab_order], pa.int8()),
        "attack": pa.array(attack[lab_order].tolist(), pa.string()),
        "label_source": pa.array(["csv"] * n_all, pa.string())}))
    splits = tmp_path / "splits.npz"
    write_npz(splits, train=np.array([1, 2], np.int64), val=np.sort(val_ids),
              test=np.sort(test_ids), meta=np.array("{}"))
    out = tmp_path / "m.json"
    assert evaluate.main(["--scores", str(scores), "--labels", str(labels), "--splits",
                          str(splits), "--out", str(out)]) == 0
    col = json.loads(out.read_text())["columns"]["score"]
    known = label[test_ids] >= 0
    y, st = label[test_ids][known], s[test_ids][known]
    assert col["auroc"] == pytest.approx(metrics.auroc(y, st), abs=1e-12) and col["auroc"] > 0.8
    assert col["p95"]["threshold"] == pytest.approx(np.percentile(s[val_ids], 95))
    assert col["per_attack"]["dos"] == pytest.approx(
        metrics.per_attack_auroc(attack[test_ids][known], y, st)["dos"])
    assert col["n_attack"] == int((y == 1).sum())


def test_aggregate_options_reach_the_batched_aggregation(dataset):
    tmp_path, _, _ = dataset
    raw, sp = tmp_path / "scores.parquet", tmp_path / "splits.npz"
    labels = tmp_path / "ds" / "labels.parquet"
    for extra in ([], ["--sided", "two", "--collinear", "keep", "--transform", "none"]):
        agg = tmp_path / f"agg{len(extra)}.parquet"
        assert evaluate.main(["--aggregate", str(raw), str(agg), "--scores", str(agg),
                              "--labels", str(labels), "--splits", str(sp),
                              "--out", str(tmp_path / f"m{len(extra)}.json"), *extra]) == 0
        single = tmp_path / f"single{len(extra)}.parquet"
        assert aggregate.main(["--scores", str(raw), "--splits", str(sp), "--out", str(single),
                               *extra]) == 0
        assert agg.read_bytes() == single.read_bytes()
    two = pq.read_table(tmp_path / "agg6.parquet")
    # Two-sided, every column: oas and the paper's OAS coincide; the default differs.
    np.testing.assert_array_equal(two.column("oas").to_numpy(), two.column("oas_paper").to_numpy())
    one = pq.read_table(tmp_path / "agg0.parquet")
    assert not np.allclose(one.column("oas").to_numpy(), one.column("oas_paper").to_numpy())


# --------------------------------------------------------------------------- issue 11
def _with_cal(tmp_path):
    """The fixture's splits with val cut into val (early stopping) and cal (thresholds)."""
    path = tmp_path / "splits_cal.npz"
    write_npz(path, train=TRAIN, val=VAL[:40], cal=VAL[40:], test=TEST,
              meta=np.array(json.dumps({"seed": 0})))
    return path


def test_thresholds_come_from_cal_and_prevalence_reweights(dataset):
    tmp_path, label, _ = dataset
    sp = _with_cal(tmp_path)
    out = tmp_path / "m.json"
    assert evaluate.main(["--scores", str(tmp_path / "scores.parquet"), "--labels",
                          str(tmp_path / "ds" / "labels.parquet"), "--splits", str(sp),
                          "--out", str(out), "--seed", "1", "--target", "B"]) == 0
    m = json.loads(out.read_text())
    assert m["thresholds_from"] == "cal" and m["n_cal"] == 60 and m["n_val"] == 40
    raw = pq.read_table(tmp_path / "scores.parquet").column("terminal_norm").to_numpy()
    col = m["columns"]["terminal_norm"]
    assert col["p95"]["threshold"] == pytest.approx(np.percentile(raw[VAL[40:]], 95))
    assert col["p99"]["threshold"] == pytest.approx(np.percentile(raw[VAL[40:]], 99))
    assert col["p95"]["threshold"] != pytest.approx(np.percentile(raw[VAL], 95))
    known = TEST[label[TEST] >= 0]
    y, s = label[known], raw[known]
    pred = s > col["p95"]["threshold"]
    tpr, fpr = pred[y == 1].mean(), pred[y == 0].mean()
    for pi in (0.01, 0.1):
        prec = pi * tpr / (pi * tpr + (1 - pi) * fpr)
        got = col["p95"]["prevalence"][f"{pi:g}"]
        assert got["precision"] == pytest.approx(prec)
        assert got["f1"] == pytest.approx(2 * prec * tpr / (prec + tpr))
    assert col["tpr_at_0.1fpr"] == pytest.approx(metrics.tpr_at_fpr(y, s, 0.001))
    assert col["per_attack_n"] == {"dos": 70, "portscan": 60}
    # Headline columns carry bootstrap replicates; the others do not.
    assert len(col["auroc_boot"]) == evaluate.N_BOOT and "auroc_boot" not in \
        m["columns"]["disc_nll_syn"]
    assert abs(np.mean(col["auroc_boot"]) - col["auroc"]) < 0.02


def test_source_fit_and_feature_oas_through_evaluate(dataset):
    tmp_path, label, _ = dataset
    sp = _with_cal(tmp_path)
    feats = {c: np.random.default_rng(j).gamma(2.0, 3.0, N) * (1 + 9 * (label == 1))
             for j, c in enumerate(contract.FLOW_FEATURES)}
    write_parquet(tmp_path / "ds" / contract.FEATURES_FILE,
                  pa.table({"flow_id": np.arange(N, dtype=np.int64), **feats}))
    raw, agg, ctl = tmp_path / "scores.parquet", tmp_path / "agg.parquet", tmp_path / "ctl.parquet"
    labels = str(tmp_path / "ds" / "labels.parquet")
    outs = [tmp_path / "a.json", tmp_path / "c.json"]
    assert evaluate.main(["--aggregate", str(raw), str(agg), "--source-fit", str(raw), str(raw),
                          str(sp), "--feature-oas", str(tmp_path / "ds" / contract.FEATURES_FILE),
                          str(ctl), "--scores", str(agg), str(ctl), "--labels", labels,
                          "--splits", str(sp), "--out", *map(str, outs)]) == 0
    a, c = (json.loads(o.read_text()) for o in outs)
    # Source = target here: the uncalibrated column is the calibrated one, but its
    # thresholds come from the file (the source's cross-fitted cal percentiles).
    src = a["columns"][aggregate.SOURCE_COLUMN]
    assert src["auroc"] == pytest.approx(a["columns"]["oas"]["auroc"])
    assert src["p95"]["threshold"] == pytest.approx(a["columns"]["oas"]["p95"]["threshold"])
    assert "cal of" in src["thresholds_from"] and a["columns"]["oas"]["thresholds_from"] == "cal"
    assert c["columns"]["oas"]["auroc"] > 0.9  # the features separate the classes


def test_source_fit_without_its_aggregate_is_an_error(dataset, capsys):
    tmp_path, _, _ = dataset
    raw = str(tmp_path / "scores.parquet")
    assert evaluate.main(["--source-fit", raw, raw, str(tmp_path / "splits.npz"), "--scores", raw,
                          "--labels", str(tmp_path / "ds" / "labels.parquet"), "--splits",
                          str(tmp_path / "splits.npz"), "--out", str(tmp_path / "x.json")]) == 2
    assert "--source-fit" in capsys.readouterr().err
