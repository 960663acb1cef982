"""benchmarks/real_slices_byo.py: the Monday halves, the config it builds (a dry run lists the
expected jobs, no training), the config adapted to an older schema, the Snakemake-log parser."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_workflow import _job_counts

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def _bench():
    spec = importlib.util.spec_from_file_location(
        "real_slices_byo", REPO / "benchmarks" / "real_slices_byo.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


bench = _bench()


@pytest.mark.real
def test_monday_halves_keep_flows_whole(real_data_dir, tmp_path):
    dpkt = pytest.importorskip("dpkt")
    info = bench.split_by_time(real_data_dir / bench.MONDAY, tmp_path / "a.pcap",
                               tmp_path / "b.pcap")
    keys = []
    for name in ("a.pcap", "b.pcap"):
        with open(tmp_path / name, "rb") as fh:
            packets = [(ts, bytes(buf)) for ts, buf in dpkt.pcap.Reader(fh)]
        times = [t for t, _ in packets]
        assert times == sorted(times)  # one stream in time order
        keys.append({bench._flow_key(b) for _, b in packets} - {None})
    assert sum(info["packets"]) == 6000  # SOURCES.md: every packet lands in one half
    assert not keys[0] & keys[1]  # a flow's packets stay in one half
    assert [len(k) for k in keys] == info["flows"]
    assert abs(info["flows"][0] - info["flows"][1]) <= 1 and sum(info["flows"]) >= 180


def _dry_run(tmp_path: Path, real: Path, size: str) -> tuple[dict[str, int], str]:
    bench.build_captures(real, tmp_path)
    cfg = bench.build_config(size, real, tmp_path, [42, 43], bench.DETECTORS)
    cfg, notes = bench.adapt_config(cfg, REPO)
    assert notes == []  # this checkout's schema takes the config as built
    path = tmp_path / "real.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([SNAKEMAKE, "-n", "-p", "--cores", "2", "-s",
                          str(REPO / "workflow" / "Snakefile"), "--configfile", str(path),
                          "--replace-workflow-config", "results/cross_matrix.md",
                          "results/baselines.md"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
                         check=False)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return _job_counts(out.stdout), out.stdout


@pytest.mark.real
@pytest.mark.parametrize("size, trains", [("default", 4), ("paper", 8)])
def test_config_dry_run_lists_the_jobs(real_data_dir, tmp_path, size, trains):
    counts, printed = _dry_run(tmp_path, real_data_dir, size)
    # 2 datasets x 2 seeds; the paper's sigma_cross != sigma_within: a second model each;
    # 3 baselines x 2 sources x 2 seeds (the feature-OAS control is computed by evaluate).
    assert counts == {"extract": 2, "labels": 2, "splits": 4, "train": trains,
                      "score": 4, "baseline": 12, "evaluate": 4, "report": 1,
                      "total": 33 + trains - 4}
    assert "--attacker 172.16.0.5=syn_flood@2018-11-03T10:00:00,2018-11-03T11:00:00" in printed
    assert "--attacker 147.32.80.40=ssh_bruteforce" in printed
    assert "--n-train 50 --n-val 10 --n-cal 15 --n-test-benign 20" in printed
    assert f"--max-packets {64 if size == 'paper' else 16}" in printed


def test_adapt_config_to_an_older_schema(tmp_path):
    """A schema without n_cal, with an integer gpu and a boolean ot (as at 561abe5)."""
    schema = {
        "$defs": {"count": {"type": ["integer", "null"]}},
        "type": "object", "additionalProperties": False,
        "properties": {
            "splits": {"type": "object", "additionalProperties": False, "properties": {
                "n_train": {"$ref": "#/$defs/count"}, "n_val": {"$ref": "#/$defs/count"}}},
            "model": {"type": "object", "additionalProperties": False, "properties": {
                "d_model": {"type": "integer"}, "ot": {"type": "boolean"}}},
            "resources": {"type": "object", "additionalProperties": False, "properties": {
                "gpu": {"type": "integer", "default": 1}}},
            "datasets": {"type": "object", "additionalProperties": {
                "type": "object", "additionalProperties": False,
                "properties": {"description": {"type": "string"}}}},
        }}
    (tmp_path / "workflow" / "schemas").mkdir(parents=True)
    (tmp_path / "workflow" / "schemas" / "config.schema.yaml").write_text(yaml.safe_dump(schema))
    cfg = {"splits": {"n_train": 50, "n_val": 10, "n_cal": 15},
           "model": {"d_model": 128, "ot": "exact", "ot_reg": 0.05},
           "resources": {"gpu": "auto"}, "score": {"extended": False},
           "datasets": {"a": {"description": "x", "source": {}}}}
    out, notes = bench.adapt_config(cfg, tmp_path)
    assert out == {"splits": {"n_train": 50, "n_val": 25}, "model": {"d_model": 128},
                   "resources": {}, "datasets": {"a": {"description": "x"}}}
    assert "splits.n_cal folded into splits.n_val = 25" in notes
    assert any(n.startswith("dropped model.ot (") for n in notes)
    assert {"dropped model.ot_reg", "dropped score", "dropped datasets.a.source"} <= set(notes)
    assert cfg["splits"]["n_cal"] == 15  # the input is left as it was


LOG = """\
[Tue Dec  1 10:00:00 2026]
rule train:
    jobid: 5
[Tue Dec  1 10:00:01 2026]
rule train:
    jobid: 6
[Tue Dec  1 10:00:10 2026]
Finished jobid: 5 (Rule: train)
[Tue Dec  1 10:00:11 2026]
localrule report:
    jobid: 7
[Tue Dec  1 10:00:20 2026]
Finished jobid: 6 (Rule: train)
[Tue Dec  1 10:00:30 2026]
rule train:
    jobid: 8
[Tue Dec  1 10:00:40 2026]
Finished jobid: 8 (Rule: train)
Finished jobid: 7 (Rule: report)
"""


def test_parse_snakemake_log():
    out = bench.parse_snakemake_log(LOG)
    assert out["jobs"] == {"train": 3, "report": 1}
    assert out["max_parallel"] == {"train": 2, "report": 1}
    assert out["wall_s"] == {"train": 10 + 19 + 10, "report": 29}
