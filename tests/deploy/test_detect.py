"""Tests of janus/deploy/detect.py and model.py: one row per flow, stdin, formats, calibration."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
import torch

from janus.contract import SCORE_COLUMNS
from janus.deploy.model import OUTPUT_COLUMNS, load_model
from janus.errors import ConfigError, JanusError

KEY = ["start_time", "src_ip", "src_port", "dst_ip", "dst_port", "proto"]


@pytest.fixture(scope="module")
def model(tiny_model):
    return load_model(tiny_model.folder)


@pytest.fixture(scope="module")
def extracted_other(tiny_model, tmp_path_factory) -> Path:
    """``janus extract`` of the site the model never saw, with the model's parameters."""
    from janus import extract

    out = tmp_path_factory.mktemp("iot") / "iot"
    assert extract.main([str(tiny_model.other), "--out", str(out), "--max-packets", "8",
                         "--idle-timeout", "120", "--active-timeout", "1800"]) == 0
    return out


@pytest.fixture(scope="module")
def detected(model, tiny_model) -> pl.DataFrame:
    return model.score_capture(tiny_model.other, with_scores=True)


def test_every_flow_gets_one_row_matching_extract(detected, extracted_other) -> None:
    flows = pl.read_parquet(extracted_other / "flows.parquet")
    assert detected.height == flows.height > 100
    assert detected.columns[:len(OUTPUT_COLUMNS)] == list(OUTPUT_COLUMNS)
    cols = ["src_ip", "src_port", "dst_ip", "dst_port", "proto", "start_time", "end_time",
            "n_packets", "n_bytes"]
    # One chunk here: the rows come in extract's order, value for value.
    assert detected.select(cols).equals(flows.select(cols))


def test_chunked_run_gives_the_same_rows(model, tiny_model, detected) -> None:
    small = model.score_capture(tiny_model.other, with_scores=True, chunk_flows=7)
    assert small.height == detected.height
    a, b = small.sort(KEY), detected.sort(KEY)
    flow_cols = list(OUTPUT_COLUMNS[:9])
    assert a.select(flow_cols).equals(b.select(flow_cols))
    # Batches of other lengths pad differently: scores agree to float32 rounding.
    for col in ("score", "top1_share", "top_packet_share", *SCORE_COLUMNS):
        assert np.allclose(a[col].to_numpy(), b[col].to_numpy(), rtol=1e-4, atol=1e-5), col
    assert (a["top1"] == b["top1"]).mean() > 0.97


def test_scores_equal_janus_score_then_the_folders_aggregator(model, detected, extracted_other,
                                                              tmp_path) -> None:
    from janus import score

    out = tmp_path / "s.parquet"
    assert score.main(["--checkpoint", str(model.folder / "model.pt"), "--data", str(extracted_other),
                       "--out", str(out), "--device", "cpu"]) == 0
    raw = pq.read_table(out)
    ref = np.column_stack([raw.column(c).to_numpy() for c in SCORE_COLUMNS])
    got = detected.select(SCORE_COLUMNS).to_numpy()
    assert np.allclose(got, ref, rtol=1e-4, atol=1e-5)
    agg = model.calibration.aggregator
    sel = [SCORE_COLUMNS.index(c) for c in agg.columns]
    assert np.allclose(detected["score"].to_numpy(), agg.apply(ref[:, sel]), rtol=1e-4, atol=1e-5)
    by_dataset = model.score_dataset(extracted_other)
    assert by_dataset["flow_id"].to_list() == list(range(detected.height))
    assert np.allclose(by_dataset["score"].to_numpy(), detected["score"].to_numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("spec,q", [("p95", 95), ("p99", 99), ("fpr", 99), ("fpr=0.2", 80)])
def test_thresholds_are_benign_percentiles(model, spec, q) -> None:
    _, value = model.threshold(spec)
    assert value == pytest.approx(np.percentile(model.calibration.benign_scores, q), rel=1e-12)


def test_alert_is_score_above_the_chosen_threshold(model, tiny_model, detected) -> None:
    s = detected["score"].to_numpy()
    assert np.array_equal(detected["alert"].to_numpy(), s > model.threshold("fpr")[1])
    at_p95 = model.score_capture(tiny_model.other, threshold="p95")
    assert np.array_equal(at_p95["alert"].to_numpy(), at_p95["score"].to_numpy() > model.threshold("p95")[1])
    assert at_p95["alert"].sum() > detected["alert"].sum() > 0


@pytest.mark.parametrize("spec", ["p90", "fpr=0", "fpr=1.5", "fpr=x", "high"])
def test_a_bad_threshold_is_a_config_error(model, spec) -> None:
    with pytest.raises(ConfigError, match="threshold"):
        model.threshold(spec)


def _detect(capsys, *args: str, stdin=None) -> tuple[int, str]:
    """``janus detect ARGS`` in this process (``stdin``: a file object read as standard
    input); returns ``(status, stderr)``."""
    from janus.deploy import detect

    capsys.readouterr()
    if stdin is None:
        status = detect.main([str(a) for a in args])
    else:
        real = sys.stdin
        sys.stdin = io.TextIOWrapper(stdin)
        try:
            status = detect.main([str(a) for a in args])
        finally:
            sys.stdin = real
    return status, capsys.readouterr().err


def test_stdin_equals_file_and_the_formats_agree(tiny_model, tmp_path, capsys) -> None:
    outs = {ext: tmp_path / f"file.{ext}" for ext in ("csv", "parquet", "jsonl")}
    status, err = _detect(capsys, tiny_model.other, "--model", tiny_model.folder, "--out", outs["csv"],
                          "--threshold", "p95")
    assert status == 0, err[-2000:]
    with open(tiny_model.other, "rb") as fh:
        status, err = _detect(capsys, "-", "--model", tiny_model.folder, "--out", tmp_path / "pipe.csv",
                              "--threshold", "p95", stdin=fh)
    assert status == 0, err[-2000:]
    assert (tmp_path / "pipe.csv").read_bytes() == outs["csv"].read_bytes()
    summary = [ln for ln in err.splitlines() if ln.startswith("janus detect:")]
    assert len(summary) == 1 and "flows/s" in summary[0] and "alerts" in summary[0]
    csv = pl.read_csv(outs["csv"])
    n = int(summary[0].split(":")[1].split("flows")[0])
    assert n == csv.height and int(csv["alert"].sum()) == int(summary[0].split(", ")[1].split()[0])
    # The other formats hold the same rows (written by the same chunk writer).
    from janus.deploy.detect import write_tables

    model = load_model(tiny_model.folder)
    for ext in ("parquet", "jsonl"):
        tables = model.iter_capture([tiny_model.other], "p95", chunk_flows=50)
        rows, alerts = write_tables(outs[ext], tables, None)
        other = pl.read_parquet(outs[ext]) if ext == "parquet" else pl.read_ndjson(outs[ext])
        assert rows == other.height == csv.height and alerts == int(csv["alert"].sum())
        assert other.columns == csv.columns
        a, b = other.sort(KEY), csv.sort(KEY)
        assert a["src_ip"].to_list() == b["src_ip"].to_list()
        assert a["alert"].to_list() == b["alert"].to_list()
        assert np.allclose(a["score"].to_numpy(), b["score"].to_numpy(), rtol=1e-4, atol=1e-5)


def test_a_real_pipe_on_stdin(tiny_model, tmp_path) -> None:
    """The real thing once: a subprocess reading a pipe (``cat CAPTURE | janus detect -``)."""
    out = tmp_path / "p.csv"
    cmd = (f"cat {tiny_model.other} | {sys.executable} -m janus.detect - --model {tiny_model.folder} "
           f"--out {out} --threshold p95 --threads 1")
    r = subprocess.run(cmd, shell=True, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    model = load_model(tiny_model.folder)
    ref = model.score_capture(tiny_model.other, threshold="p95")
    got = pl.read_csv(out)
    assert got.height == ref.height and got["alert"].to_list() == ref["alert"].to_list()


def test_stdin_pcapng_equals_file(real_data_dir, tiny_model, tmp_path, capsys) -> None:
    cap = real_data_dir / "cicids2017-monday-benign.pcapng"
    s1, _ = _detect(capsys, cap, "--model", tiny_model.folder, "--out", tmp_path / "f.csv")
    with open(cap, "rb") as fh:
        s2, err = _detect(capsys, "-", "--model", tiny_model.folder, "--out", tmp_path / "p.csv", stdin=fh)
    assert s1 == s2 == 0, err[-2000:]
    assert (tmp_path / "f.csv").read_bytes() == (tmp_path / "p.csv").read_bytes()
    assert pl.read_csv(tmp_path / "f.csv").height > 100


def _digest(folder: Path) -> dict[str, tuple[str, int]]:
    return {p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.iterdir())}


def test_calibrate_changes_aggregator_and_thresholds_never_the_network_or_folder(
        model, tiny_model, tmp_path) -> None:
    from janus.evaluation.aggregate import cross_fitted, fit_aggregator

    before = _digest(tiny_model.folder)
    weights = {k: v.clone() for k, v in model.net.state_dict().items()}
    cal = model.calibrate(tiny_model.other)
    # The aggregator and thresholds are refitted on the new site's flows ...
    old, new = model.calibration, cal.calibration
    # (the columns kept as linearly independent depend on the flows, so compare them first)
    assert (old.aggregator.keep.tolist() != new.aggregator.keep.tolist()
            or not np.allclose(old.aggregator.mean, new.aggregator.mean))
    assert old.thresholds["p99"] != pytest.approx(new.thresholds["p99"])
    scores = cal.score_capture(tiny_model.other, with_scores=True)
    ref = fit_aggregator(scores.select(list(old.aggregator.columns)).to_numpy(), "oas",
                         old.aggregator.columns, old.aggregator.options)
    assert np.allclose(ref.mean, new.aggregator.mean) and np.allclose(ref.precision, new.aggregator.precision)
    # ... and the thresholds are percentiles of the out-of-fold scalars of those flows (not
    # of the in-sample ones, which sit lower and so give more false alerts).
    x = scores.select(list(old.aggregator.columns)).to_numpy()
    oof, _ = cross_fitted(x, x, np.arange(len(x)), "oas", old.aggregator.columns,
                          old.aggregator.options)
    s = scores["score"].to_numpy()
    assert not np.allclose(oof, s)
    assert new.thresholds["p99"] == pytest.approx(np.percentile(oof, 99), rel=1e-6)
    assert (oof > new.thresholds["fpr"]).mean() <= 0.011
    # The network and the given model are untouched.
    assert cal.net is model.net
    assert all(torch.equal(weights[k], v) for k, v in model.net.state_dict().items())
    assert model.calibration is old
    # Saved to a new folder, it loads back the same; the original folder never changes.
    out = cal.save(tmp_path / "calibrated")
    again = load_model(out)
    assert np.array_equal(again.calibration.aggregator.precision, new.aggregator.precision)
    assert again.calibration.source["calibrated_from"] == str(tiny_model.folder)
    assert "calibrated from" in (out / "MODEL_CARD.md").read_text()
    with pytest.raises(JanusError, match="new folder"):
        cal.save(tiny_model.folder)
    assert _digest(tiny_model.folder) == before


def test_cli_calibrate_leaves_the_folder_unchanged(tiny_model, tmp_path, capsys) -> None:
    before = _digest(tiny_model.folder)
    status, err = _detect(capsys, tiny_model.other, "--model", tiny_model.folder, "--out",
                          tmp_path / "a.parquet", "--calibrate", tiny_model.other,
                          "--save-calibrated", tmp_path / "cal")
    assert status == 0, err[-2000:]
    assert _digest(tiny_model.folder) == before
    rows = pl.read_parquet(tmp_path / "a.parquet")
    # Calibrated on this very traffic at 1 % FPR (out-of-fold thresholds, in-sample scores):
    # ~1 %, with binomial slack for a few hundred flows (the refit itself is held above).
    assert rows["alert"].mean() <= 0.02
    assert load_model(tmp_path / "cal").calibration.thresholds["target_fpr"] == 0.01


@pytest.mark.parametrize("args,match", [
    (["--out", "x.txt"], "unknown extension"),
    (["--out", "x.csv", "--save-calibrated", "d"], "need --calibrate"),
    (["--out", "x.csv", "--threshold", "fpr=2"], "FPR must be"),
])
def test_cli_refuses_bad_options_in_one_line(tiny_model, tmp_path, capsys, args, match) -> None:
    args = [a if not a.startswith("x.") and a != "d" else str(tmp_path / a) for a in args]
    status, err = _detect(capsys, tiny_model.other, "--model", tiny_model.folder, *args)
    lines = [ln for ln in err.strip().splitlines() if "janus detect: error" in ln]
    assert status == 2 and len(lines) == 1 and match in lines[0], err
    assert not list(tmp_path.glob("x.*"))


def test_a_capture_without_flows_gives_an_empty_file_with_the_columns(tiny_model, tmp_path, capsys) -> None:
    from janus.capture.pcapwrite import write_pcap

    empty = tmp_path / "empty.pcap"
    write_pcap(empty, [], [])
    status, err = _detect(capsys, empty, "--model", tiny_model.folder, "--out", tmp_path / "e.parquet")
    assert status == 0, err
    df = pl.read_parquet(tmp_path / "e.parquet")
    assert df.height == 0 and df.columns == list(OUTPUT_COLUMNS)
    assert "janus detect: 0 flows, 0 alerts" in err
