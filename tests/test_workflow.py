"""Checks of the Snakemake workflow: lint, format, dry runs, config schema, a real small run.

Every test runs Snakemake on a fresh copy of the workflow files in a temporary folder, so no
run touches the checkout's data/, results/ or .snakemake/.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from janus.workflow_config import code_fingerprint, config_hash

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SNAKEMAKE = str(BIN / "snakemake")
WORKFLOW_FILES = ("workflow", "config", "profiles")


def _copy_workflow(dest: Path) -> Path:
    dest.mkdir(parents=True)
    for name in WORKFLOW_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name)
        else:
            shutil.copy2(src, dest / name)
    return dest


@pytest.fixture()
def wf(tmp_path: Path) -> Path:
    return _copy_workflow(tmp_path / "wf")


def _snakemake(cwd: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    # The venv's bin first on PATH: rules call `python -m janus.STEP`.
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run([SNAKEMAKE, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _job_counts(stdout: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run -> {rule: count}."""
    counts: dict[str, int] = {}
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Job stats"))
    for line in lines[start + 3:]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        counts[parts[0]] = int(parts[1])
    return counts


def test_lint_clean(wf):
    out = _snakemake(wf, "--lint", "--cores", "1")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Congratulations, your workflow is in a good condition!" in out.stdout + out.stderr


def test_snakefmt_clean():
    snakefmt = BIN / "snakefmt"
    if not snakefmt.exists():
        pytest.skip("snakefmt not installed (pip install -e .[dev])")
    out = subprocess.run([str(snakefmt), "--check", "workflow"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_dry_run_default_config(wf):
    out = _snakemake(wf, "-n", "--cores", "2")
    assert out.returncode == 0, out.stdout + out.stderr
    counts = _job_counts(out.stdout)
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    n_data, n_seeds = len(cfg["datasets"]), len(cfg["seeds"])
    janus = [d for d in cfg["detectors"] if d in ("janus", "janus_cont")]
    baselines = [d for d in cfg["detectors"] if d not in janus]
    n_sigmas = len({cfg["model"]["sigma_within"], cfg["model"]["sigma_cross"]})
    # The default runs JANUS and the baselines; the paper config adds the two ablations.
    assert set(cfg["detectors"]) >= {"janus", "nf", "iforest", "kitnet"}
    assert {"ocsvm", "lof"} & set(cfg["detectors"])
    paper = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    assert {"janus_cont", "flowcfm"} <= set(paper["detectors"])
    assert counts["extract"] == n_data
    assert counts["splits"] == n_data * n_seeds
    # Equal sigmas: one model per (detector, dataset, seed) serves within and cross scoring.
    assert counts["train"] == len(janus) * n_data * n_seeds * n_sigmas
    # Batched along targets: one job per (detector, source, seed) scores every target, one
    # job per (source, seed) aggregates and evaluates every (detector, target).
    assert counts["score"] == len(janus) * n_data * n_seeds
    assert counts["baseline"] == len(baselines) * n_data * n_seeds
    assert counts["evaluate"] == n_data * n_seeds
    assert counts["report"] == 1
    assert "aggregate" not in counts and "baseline_score" not in counts
    # Hyper-parameters from config reach the commands.
    printed = _snakemake(wf, "-n", "-p", "--cores", "2", "--forcerun", "baseline").stdout
    if cfg.get("baselines", {}).get("epochs"):
        assert f"--detector nf --data data/{next(iter(cfg['datasets']))}" in printed
        assert f"--epochs {cfg['baselines']['epochs']}" in printed


def test_batched_commands_cover_every_target(wf):
    """Aligned lists: every target's data, splits and outputs, in one order, once."""
    extra = wf / "two.yaml"
    extra.write_text("datasets:\n  a: {source: {synth: {site: office}}}\n"
                     "  b: {source: {synth: {site: iot}}}\nseeds: [7]\n"
                     "detectors: [janus, iforest]\nbaselines: {iforest: {n_estimators: 30}}\n"
                     "model: {sigma_within: 0.1, sigma_cross: 0.6}\n")
    out = _snakemake(wf, "-n", "-p", "--cores", "1", "--configfile", str(extra),
                     "--replace-workflow-config")
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    # Source a: its own data with the sigma_within model, b with the sigma_cross one.
    assert ("--checkpoint runs/janus/a/seed7_sigma0.1/model.pt runs/janus/a/seed7_sigma0.6/"
            "model.pt --data data/a data/b --splits data/a/splits/seed7.npz "
            "data/b/splits/seed7.npz --out results/scores/janus/a/a/seed7.parquet "
            "results/scores/janus/a/b/seed7.parquet") in text
    assert ("--score-data data/a data/b --score-splits data/a/splits/seed7.npz "
            "data/b/splits/seed7.npz --score-out results/scores/iforest/b/a/seed7.parquet "
            "results/scores/iforest/b/b/seed7.parquet") in text
    baseline_cmds = [line for line in text.splitlines() if "janus.baselines run" in line]
    assert len(baseline_cmds) == 2
    # iforest is not trained by epochs: no --epochs, but its --param override.
    assert all("--param n_estimators=30" in c and "--epochs" not in c for c in baseline_cmds)
    # Evaluate: the JANUS vectors are aggregated first, then all four runs are evaluated.
    assert ("--aggregate results/scores/janus/a/b/seed7.parquet "
            "results/agg/janus/a/b/seed7.parquet") in text
    assert ("--detector janus janus iforest iforest --target a b a b") in text
    counts = _job_counts(text)
    assert counts["train"] == 4 and counts["score"] == 2 and counts["evaluate"] == 2
    # Within-dataset only: each job covers its own dataset alone.
    extra.write_text(extra.read_text() + "cross_dataset: false\n")
    out = _snakemake(wf, "-n", "-p", "--cores", "1", "--configfile", str(extra),
                     "--replace-workflow-config")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "--score-out results/scores/iforest/b/b/seed7.parquet --threads" in out.stdout
    assert "results/scores/janus/a/b/seed7.parquet" not in out.stdout
    assert _job_counts(out.stdout)["train"] == 2


def test_extended_scores_and_memae_options_reach_the_commands(wf):
    extra = wf / "ext.yaml"
    extra.write_text("datasets:\n  a: {source: {synth: {site: office}}}\nseeds: [7]\n"
                     "detectors: [janus, memae]\n"
                     "baselines: {memae: {shrink_thres: 0.04, similarity: dot}}\n"
                     "score: {extended: true, extended_steps: 6, probes: 2}\n")
    out = _snakemake(wf, "-n", "-p", "--cores", "1", "--configfile", str(extra),
                     "--replace-workflow-config")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "--ode-flags visible --extended --extended-steps 6 --probes 2 --device" in out.stdout
    assert "--param shrink_thres=0.04 --param 'similarity=\"dot\"'" in out.stdout
    # Off by default: the plain command line.
    extra.write_text("datasets:\n  a: {source: {synth: {site: office}}}\nseeds: [7]\n"
                     "detectors: [janus]\n")
    out = _snakemake(wf, "-n", "-p", "--cores", "1", "--configfile", str(extra),
                     "--replace-workflow-config")
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.search(r"--ode-flags visible +--device", out.stdout)
    assert "--extended" not in out.stdout


def test_distinct_sigmas_train_twice(wf):
    extra = wf / "sigma.yaml"
    extra.write_text("model: {sigma_within: 0.1, sigma_cross: 0.6}\n")
    out = _snakemake(wf, "-n", "--cores", "2", "--configfile", str(extra))
    assert out.returncode == 0, out.stdout + out.stderr
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    janus = [d for d in cfg["detectors"] if d in ("janus", "janus_cont")]
    assert _job_counts(out.stdout)["train"] == 2 * len(janus) * len(cfg["datasets"]) * len(
        cfg["seeds"])
    assert "seed42_sigma0.6/model.pt" in out.stdout


def test_only_packet_detectors_wait_for_the_packet_tensors(wf):
    """A baseline job lists the packet tensors of its source and targets (their
    extract_stats.json, which stands for packets.npz or packets/) among its inputs only when
    its detector reads packets (Detector.inputs)."""
    out = _snakemake(wf, "-n", "--cores", "2", "--config", "detectors=[packet_cfm,iforest]",
                     "seeds=[42]")
    assert out.returncode == 0, out.stdout + out.stderr
    inputs = {}
    for block in out.stdout.split("rule baseline:")[1:]:
        lines = [line.strip() for line in block.splitlines()]
        given = next(line for line in lines if line.startswith("input:"))
        wildcards = next(line for line in lines if line.startswith("wildcards:"))
        name = wildcards.split("baseline=")[1].split(",")[0]
        inputs.setdefault(name, []).append(given)
    assert len(inputs["packet_cfm"]) == len(inputs["iforest"]) == 4
    for given in inputs["packet_cfm"]:
        assert given.count("extract_stats.json") == 4  # the source is one of its four targets
    assert not any("extract_stats.json" in given for given in inputs["iforest"])


def _resolved_args(wf: Path, monkeypatch, *argv: str):
    """Snakemake's own resolution of the command line plus its profiles, run in ``wf``."""
    from snakemake.cli import parse_args

    monkeypatch.chdir(wf)
    return parse_args(list(argv))[1]


def test_slurm_profile_settings_survive_the_workflow_profile(wf, monkeypatch):
    """profiles/default is loaded beside --profile profiles/slurm and wins key by key: it
    must not bring the workstation's latency, cores or a global GPU cap to the cluster."""
    args = _resolved_args(wf, monkeypatch, "--profile", "profiles/slurm", "-n", "--configfile",
                          "config/paper.yaml", "--replace-workflow-config")
    slurm = yaml.safe_load((wf / "profiles" / "slurm" / "config.yaml").read_text())
    assert args.executor == "slurm" and args.jobs == slurm["jobs"] == 64
    assert args.latency_wait == slurm["latency-wait"] == 60
    assert args.cores is None  # a cores cap would limit every cluster job's threads
    assert "gpu" not in (args.resources or {})  # no global GPU cap: GPU jobs run side by side
    assert set(args.set_resources) == {"train", "score"}
    assert args.rerun_incomplete and args.keep_going  # the workflow profile's own settings


def test_workstation_run_keeps_the_workflow_profile(wf, monkeypatch):
    args = _resolved_args(wf, monkeypatch, "--cores", "all", "-n")
    assert args.rerun_incomplete and args.keep_going and args.printshellcmds
    assert "gpu" not in (args.resources or {})


def _train_gpu_claims(stdout: str) -> set[str]:
    """The gpu=N of every train job of a dry run's printout."""
    claims, in_train = set(), False
    for line in stdout.splitlines():
        if line.startswith("rule "):
            in_train = line.startswith("rule train:")
        elif in_train and line.strip().startswith("resources:"):
            claims |= {part.strip() for part in line.split(",") if part.strip().startswith("gpu=")}
    return claims


@pytest.mark.parametrize("gpus, expected", [(0, {"gpu=0"}), (1, {"gpu=1"})])
def test_gpu_claim_auto_follows_the_machine(wf, tmp_path, gpus, expected):
    """resources.gpu: auto claims a GPU only where nvidia-smi lists one: on a CPU-only machine
    train jobs claim none and run side by side."""
    fake = tmp_path / "bin"
    fake.mkdir()
    smi = fake / "nvidia-smi"
    smi.write_text("#!/bin/sh\n" + "".join(f'echo "GPU {i}: Test GPU (UUID: GPU-{i})"\n'
                                            for i in range(gpus)))
    smi.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}{os.pathsep}{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    out = subprocess.run([SNAKEMAKE, "-n", "--cores", "2"], cwd=wf, env=env, capture_output=True,
                         text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    assert yaml.safe_load((wf / "config" / "config.yaml").read_text())["resources"]["gpu"] == "auto"
    assert _train_gpu_claims(out.stdout) == expected


def test_dry_run_paper_config_with_slurm_profile(wf):
    pytest.importorskip("snakemake_executor_plugin_slurm")
    out = _snakemake(wf, "--profile", "profiles/slurm", "-n", "--configfile",
                     "config/paper.yaml", "--replace-workflow-config")
    assert out.returncode == 0, out.stdout + out.stderr
    counts = _job_counts(out.stdout)
    assert counts["download"] == 4
    # sigma_within != sigma_cross: two models per (detector, dataset, seed).
    assert counts["train"] == 2 * 2 * 4 * 3
    assert "synth" not in counts


@pytest.mark.parametrize("config, expected", [
    ("model:\n  sigma_withn: 0.1\n", "'sigma_withn' was unexpected"),
    ("train:\n  epochs: many\n", "'many' is not of type 'integer'"),
    ("datasets:\n  lab:\n    description: no source given\n", "'source' is a required property"),
    ("datasets:\n  lab:\n    source: {}\n", "should be non-empty"),
    ("datasets:\n  lab:\n    source:\n      pcap: {files: [a.pcap]}\n", "'pcap' was unexpected"),
    ("seeds: [1, 1]\n", "has non-unique elements"),
    ("baselines:\n  nf: {hiden: 64}\n", "'hiden' was unexpected"),
    ("baselines:\n  ocsvm: {nu: 2}\n", "2 is greater than the maximum of 1"),
])
def test_schema_rejects_with_key_named(wf, config, expected):
    bad = wf / "bad.yaml"
    bad.write_text(config)
    out = _snakemake(wf, "-n", "--cores", "1", "--configfile", str(bad))
    text = out.stdout + out.stderr
    assert out.returncode != 0
    assert "config key " in text
    assert expected in text, text[-3000:]
    assert len(text.splitlines()) < 12, text  # one message, not the schema dump


@pytest.mark.parametrize("override, expected", [
    ("train={epochs: 3}", "--epochs 3 --batch-size 128"),  # a number in a section
    ("seeds=[7]", "--seed 7 "),  # a list
    ("cross_dataset=false", None),  # a boolean: the diagonal only
])
def test_config_overrides_take_the_schema_types(wf, override, expected):
    out = _snakemake(wf, "-n", "-p", "--cores", "1", "--config", override)
    assert out.returncode == 0, out.stderr[-3000:]
    if expected is not None:
        assert expected in out.stdout
    else:
        counts = _job_counts(out.stdout)
        full = _job_counts(_snakemake(wf, "-n", "--cores", "1").stdout)
        assert counts["score"] == full["score"] and counts["evaluate"] == full["evaluate"]
        assert "results/scores/janus/office/iot/" not in out.stdout
        assert "results/scores/janus/office/office/" in out.stdout


def test_config_error_is_short_and_names_the_key(wf):
    out = _snakemake(wf, "-n", "--cores", "1", "--config", "trian={epochs: 3}")
    assert out.returncode != 0
    text = out.stdout + out.stderr
    assert "config key (top level)" in text and "'trian' was unexpected" in text
    assert len(text.splitlines()) < 12, text  # not the schema dump of the whole config
    out = _snakemake(wf, "-n", "--cores", "1", "--config", "train={epochs: many}")
    assert "config key train.epochs: 'many' is not of type 'integer'" in out.stdout + out.stderr


def test_config_hash_and_fingerprint(tmp_path):
    a = {"model": {"sigma": 0.1, "d": 1}, "seeds": [1, 2]}
    b = {"seeds": [1, 2], "model": {"d": 1, "sigma": 0.1}}
    assert config_hash(a) == config_hash(b)           # key order does not matter
    assert config_hash(a) != config_hash({**a, "seeds": [2, 1]})
    assert len(config_hash(a)) == 12
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "m.py").write_text("x = 1\n")
    first = code_fingerprint(pkg)
    (pkg / "m.py").write_text("x = 2\n")
    assert code_fingerprint(pkg) != first


@pytest.mark.slow
def test_end_to_end_tiny_config(tiny_workflow):
    """config/test.yaml from captures to tables (the shared run of conftest.tiny_workflow;
    tests/test_end_to_end.py checks its values), then nothing left to do on a second run."""
    wf, args = tiny_workflow
    cross = (wf / "results" / "cross_matrix.md").read_text()
    assert "## janus: Mahalanobis-OAS vs terminal_norm" in cross
    assert "| office |" in cross and "| iot |" in cross
    assert "config hash:" in cross
    for name in ("within.md", "thresholded.md", "per_attack.md", "aggregators.md",
                 "baselines.md", "figures/cross_matrix.png", "figures/roc_iot.png",
                 "figures/hist_office.png"):
        assert (wf / "results" / name).stat().st_size > 0, name
    again = _snakemake(wf, *args, "-n")
    assert again.returncode == 0, again.stderr
    assert "Nothing to be done" in again.stdout + again.stderr
    html = _snakemake(wf, *args, "--report", "results/report.html", timeout=300)
    assert html.returncode == 0, html.stderr[-3000:]
    assert (wf / "results" / "report.html").stat().st_size > 0
