"""Tests of janus/deploy/folder.py and build.py: what a model folder holds, and refusals."""

from __future__ import annotations

import json
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from janus.datasets.splits import load_splits
from janus.deploy import folder as F
from janus.deploy.model import load_model
from janus.errors import JanusError
from janus.evaluation.aggregate import read_score_table, rows_of


def test_folder_reproduces_the_runs_aggregator_and_thresholds(tiny_model) -> None:
    m = load_model(tiny_model.folder)
    # The checkpoint is the run's (same bytes; a hard link on one file system).
    assert (tiny_model.folder / "model.pt").read_bytes() == (tiny_model.run / "model.pt").read_bytes()
    # The saved aggregator applied to the run's raw scores gives evaluate's oas column.
    flow_id, raw, _cols = read_score_table(tiny_model.raw_scores, list(m.columns))
    agg = pq.read_table(tiny_model.agg)
    assert np.array_equal(agg.column("flow_id").to_numpy(), flow_id)
    # evaluate's oas of a calibration flow is out-of-fold; every other flow gets the aggregator
    # fitted on all of 'cal', which is the folder's.
    cal_rows = rows_of(flow_id, load_splits(tiny_model.splits)["cal"], "cal")
    other = np.setdiff1d(np.arange(len(flow_id)), cal_rows)
    assert cal_rows.size > 20 and other.size > 20
    oas = agg.column("oas").to_numpy()
    assert np.allclose(m.calibration.aggregator.apply(raw)[other], oas[other], rtol=1e-12, atol=1e-12)
    # Thresholds: percentiles of the (out-of-fold) oas scalar on the benign calibration flows.
    val = oas[cal_rows]
    thr = m.calibration.thresholds
    assert thr["p95"] == pytest.approx(np.percentile(val, 95), rel=1e-12)
    assert thr["p99"] == pytest.approx(np.percentile(val, 99), rel=1e-12)
    assert thr["fpr"] == pytest.approx(np.percentile(val, 99), rel=1e-12)  # target 1 %
    assert np.allclose(m.calibration.benign_scores, np.sort(val), rtol=1e-12)
    # Extraction parameters, provenance and the card's metrics.
    assert m.extraction == {"max_packets": 8, "idle_timeout": 120.0, "active_timeout": 1800.0}
    prov = m.manifest["provenance"]
    assert prov["config_hash"] == "abc123" and prov["seed"] == 42 and prov["dataset"] == "office"
    parts = load_splits(tiny_model.splits)
    assert prov["flows"]["val"] == len(parts["val"]) and prov["flows"]["train"] == len(parts["train"])
    assert prov["flows"]["cal"] == len(parts["cal"]) == m.calibration.source["n_flows"]
    env = prov["environment"]  # janus.provenance: the inputs by SHA-256
    import hashlib

    ck = hashlib.sha256((tiny_model.run / "model.pt").read_bytes()).hexdigest()
    assert env["inputs"][0]["sha256"] == ck and env["janus_version"] == prov["janus_version"]
    metrics = json.loads((tiny_model.root / "results/metrics/janus/office/office/seed42.json").read_text())
    assert m.manifest["test_metrics"]["columns"]["oas"]["auroc"] == metrics["columns"]["oas"]["auroc"]
    card = (tiny_model.folder / "MODEL_CARD.md").read_text()
    assert f"{metrics['columns']['oas']['auroc']:.4f}" in card and f"{thr['p99']:.4f}" in card


def test_aggregator_json_round_trips_bit_for_bit(tiny_model) -> None:
    cal = F.read_calibration(tiny_model.folder)
    again = F.Calibration.from_dict(json.loads(json.dumps(cal.to_dict())), Path("x"))
    x = np.random.default_rng(0).gamma(2.0, 1.0, (50, len(cal.aggregator.columns)))
    assert np.array_equal(cal.aggregator.apply(x), again.aggregator.apply(x))


def _copy(tiny_model, tmp_path: Path) -> Path:
    dst = tmp_path / "model"
    shutil.copytree(tiny_model.folder, dst)
    return dst


def _resign(folder: Path) -> None:
    """Record model.pt's new checksum in model.json (as an attacker who edits both would)."""
    m = json.loads((folder / "model.json").read_text())
    ck = folder / "model.pt"
    m["files"]["model.pt"] = {"sha256": F.sha256_of(ck), "bytes": ck.stat().st_size}
    (folder / "model.json").write_text(json.dumps(m))


def _break(folder: Path, how: str) -> str:
    """Damage the folder copy; return the file name the error must name."""
    mj, aj, ck = folder / "model.json", folder / "aggregator.json", folder / "model.pt"
    if how == "no_manifest":
        mj.unlink()
        return "model.json"
    if how == "truncated_manifest":
        mj.write_text(mj.read_text()[:40])
        return "model.json"
    if how == "foreign_manifest":
        mj.write_text(json.dumps({"format": "something-else/3", "name": "x"}))
        return "model.json"
    if how == "binary_manifest":
        mj.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
        return "model.json"
    if how == "truncated_aggregator":
        aj.write_text(aj.read_text()[:100])
        return "aggregator.json"
    if how == "bad_precision":
        d = json.loads(aj.read_text())
        d["aggregator"]["precision"] = d["aggregator"]["precision"][:-1]
        aj.write_text(json.dumps(d))
        return "aggregator.json"
    if how == "nan_threshold":
        d = json.loads(aj.read_text())
        d["benign_scores"] = ["x"]
        aj.write_text(json.dumps(d))
        return "aggregator.json"
    if how == "flipped_checkpoint":
        data = bytearray(ck.read_bytes())
        data[len(data) // 2] ^= 0xFF
        ck.write_bytes(bytes(data))
        return "model.pt"
    if how == "truncated_checkpoint":
        ck.write_bytes(ck.read_bytes()[:1000])
        return "model.pt"
    if how == "truncated_checkpoint_resigned":
        ck.write_bytes(ck.read_bytes()[:1000])
        _resign(folder)
        return "model.pt"
    if how == "pickle_checkpoint":
        # A checkpoint holding a Python object that would run code on a plain pickle load.
        with zipfile.ZipFile(ck, "w") as z:
            z.writestr("archive/data.pkl", pickle.dumps(print))
            z.writestr("archive/version", "3\n")
        _resign(folder)
        return "model.pt"
    raise AssertionError(how)


BREAKS = ["no_manifest", "truncated_manifest", "foreign_manifest", "binary_manifest",
          "truncated_aggregator", "bad_precision", "nan_threshold", "flipped_checkpoint",
          "truncated_checkpoint", "truncated_checkpoint_resigned", "pickle_checkpoint"]


@pytest.mark.parametrize("how", BREAKS)
def test_a_damaged_or_foreign_folder_is_one_line_naming_the_file(tiny_model, tmp_path, how) -> None:
    folder = _copy(tiny_model, tmp_path)
    name = _break(folder, how)
    with pytest.raises(JanusError) as err:
        load_model(folder)
    msg = str(err.value)
    assert "\n" not in msg and str(folder / name) in msg, msg


def test_loading_a_dataset_folder_or_a_file_is_refused(tiny_model, tmp_path) -> None:
    with pytest.raises(JanusError, match="model.json: not found"):
        load_model(tiny_model.data)  # an extracted dataset, not a model folder
    f = tmp_path / "model.pt"
    f.write_bytes(b"x")
    with pytest.raises(JanusError, match="not a folder"):
        load_model(f)


def test_cli_prints_one_line_for_a_corrupt_folder(tiny_model, tmp_path, capsys) -> None:
    from janus.deploy import detect

    folder = _copy(tiny_model, tmp_path)
    _break(folder, "flipped_checkpoint")
    capsys.readouterr()
    status = detect.main([str(tiny_model.capture), "--model", str(folder), "--out", str(tmp_path / "a.csv")])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "error" in ln]
    assert status == 2
    assert len(lines) == 1 and "SHA-256" in lines[0] and "Traceback" not in err, err
    assert not (tmp_path / "a.csv").exists()


def test_thresholds_from_closed_form() -> None:
    v = np.arange(101, dtype=float)  # percentiles of 0..100 are the percentages themselves
    t = F.thresholds_from(v, 0.1)
    assert t == {"p95": 95.0, "p99": 99.0, "fpr": 90.0, "target_fpr": 0.1}
    with pytest.raises(JanusError):
        F.thresholds_from(v, 1.5)
