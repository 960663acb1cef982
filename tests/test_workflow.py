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
    assert set(cfg["detectors"]) >= {"janus", "nf", "iforest", "ocsvm"}
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
    # One job per dataset writes every seed's deployable model folder.
    assert counts["model_folders"] == (n_data if "janus" in cfg["detectors"] else 0)
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
    # Evaluate: the JANUS vectors are aggregated first (each with its source fit, the
    # uncalibrated column), the source's feature-OAS control is written, then all five runs
    # are evaluated (the control is of the source dataset itself).
    assert ("--aggregate results/scores/janus/a/b/seed7.parquet "
            "results/agg/janus/a/b/seed7.parquet --source-fit "
            "results/scores/janus/a/b/seed7.parquet results/scores/janus/a/a/seed7.parquet "
            "data/a/splits/seed7.npz") in text
    assert ("--feature-oas data/a/flow_features.parquet "
            "results/agg/feature_oas/a/a/seed7.parquet") in text
    assert ("--detector janus janus iforest iforest feature_oas --target a b a b a") in text
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


def test_split_order_reaches_the_splits_command(wf):
    extra = wf / "order.yaml"
    extra.write_text("datasets:\n  a: {source: {synth: {site: office}}}\nseeds: [7]\n"
                     "detectors: [janus]\nsplits: {n_train: 300, order: time}\n")
    out = _snakemake(wf, "-n", "-p", "--cores", "1", "--configfile", str(extra),
                     "--replace-workflow-config")
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.search(r"janus\.splits .*--n-train 300 --order time", out.stdout)
    extra.write_text("datasets:\n  a: {source: {synth: {site: office}}}\nseeds: [7]\n"
                     "detectors: [janus]\nsplits: {order: sideways}\n")
    out = _snakemake(wf, "-n", "--cores", "1", "--configfile", str(extra),
                     "--replace-workflow-config")
    assert out.returncode != 0 and "sideways" in out.stdout + out.stderr


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
    """workflow/profiles/default is loaded beside --profile profiles/slurm and wins key by
    key: it must not bring the workstation's latency, cores or a global GPU cap to the
    cluster. The tiny jobs are grouped there, and only there."""
    args = _resolved_args(wf, monkeypatch, "--profile", "profiles/slurm", "-n", "--configfile",
                          "config/paper.yaml", "--replace-workflow-config")
    slurm = yaml.safe_load((wf / "profiles" / "slurm" / "config.yaml").read_text())
    assert args.executor == "slurm" and args.jobs == slurm["jobs"] == 64
    assert args.latency_wait == slurm["latency-wait"] == 60
    assert args.cores is None  # a cores cap would limit every cluster job's threads
    assert "gpu" not in (args.resources or {})  # no global GPU cap: GPU jobs run side by side
    assert set(args.set_resources) == {"train", "score"}
    assert args.rerun_incomplete and args.keep_going  # the workflow profile's own settings
    assert dict(args.groups) == {"splits": "tiny_splits", "evaluate": "tiny_evaluate"}
    assert dict(args.group_components) == {"tiny_splits": 12, "tiny_evaluate": 12}


def test_workstation_run_keeps_the_workflow_profile(wf, monkeypatch):
    args = _resolved_args(wf, monkeypatch, "--cores", "all", "-n")
    assert args.rerun_incomplete and args.keep_going and args.printshellcmds
    assert "gpu" not in (args.resources or {})
    assert not args.groups and not args.group_components  # local jobs stay one per rule


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
    # Paper-scale sizes of the data steps, from config/paper.yaml's resources.
    res = yaml.safe_load((wf / "config" / "paper.yaml").read_text())["resources"]
    assert res["download"] == {"threads": 1, "mem_mb": 2000, "runtime": 1440, "disk_mb": 60000}
    assert res["labels"]["mem_mb"] == 8000
    assert _rule_resources(out.stdout, "download") == {
        f"mem_mb={res['download']['mem_mb']}", f"runtime={res['download']['runtime']}",
        f"disk_mb={res['download']['disk_mb']}"}
    assert _rule_resources(out.stdout, "labels") == {
        f"mem_mb={res['labels']['mem_mb']}", f"runtime={res['labels']['runtime']}"}
    # The 12 splits and 12 evaluate jobs go in two group submissions.
    assert out.stdout.count("Group job tiny_splits") == 1
    assert out.stdout.count("Group job tiny_evaluate") == 1
    # A download's labelling rule is the registry's, applied by the labels step at run time.
    printed = _snakemake(wf, "--profile", "profiles/slurm", "-n", "-p", "--configfile",
                         "config/paper.yaml", "--replace-workflow-config").stdout
    assert ("python -m janus.labels --data data/cicddos2019 --registry-rule cicddos2019 "
            "--registry-root data/raw/cicddos2019 >") in printed


def _rule_resources(stdout: str, rule: str) -> set[str]:
    """The mem_mb, runtime and disk_mb of every job of ``rule`` in a dry run's printout."""
    found, inside = set(), False
    for line in stdout.splitlines():
        if line and not line[0].isspace():  # a block header: a rule's job, a group job, ...
            inside = line in (f"rule {rule}:", f"localrule {rule}:", f"checkpoint {rule}:")
        elif inside and line.strip().startswith("resources:"):
            found |= {part.strip() for part in line.split(":", 1)[1].split(",")
                      if part.strip().split("=")[0] in ("mem_mb", "runtime", "disk_mb")
                      and "<TBD>" not in part}  # <TBD>: Snakemake's default, set at run time
    return found


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
    assert "## janus: Mahalanobis-OAS (target-cal.) vs terminal_norm" in cross
    assert "| office |" in cross and "| iot |" in cross
    assert "config hash:" in cross
    for name in ("within.md", "thresholded.md", "per_attack.md", "aggregators.md",
                 "baselines.md", "figures/cross_matrix.png", "figures/roc_iot.png",
                 "figures/hist_office.png", "tables/baselines.html"):
        assert (wf / "results" / name).stat().st_size > 0, name
    from janus.deploy import load_model

    for site in ("office", "iot"):
        model = load_model(wf / "results" / "models" / site / "seed42")
        assert model.manifest["provenance"]["dataset"] == site
        assert model.manifest["test_metrics"]["columns"]["oas"]["auroc"] is not None
    again = _snakemake(wf, *args, "-n")
    assert again.returncode == 0, again.stderr
    assert "Nothing to be done" in again.stdout + again.stderr
    html = _snakemake(wf, *args, "--report", "results/report.html", timeout=300)
    assert html.returncode == 0, html.stderr[-3000:]
    assert (wf / "results" / "report.html").stat().st_size > 0
    # The tables are shown inline (HTML), not only offered as downloads.
    assert (wf / "results" / "report.html").read_text().count('"mime_type": "text/html"') == 6


# --------------------------------------------------------------------------- deployment


def _no_janus_env(tmp_path: Path) -> dict[str, str]:
    """An environment in which `import janus` fails: a PYTHONPATH entry ahead of everything
    whose janus/__init__.py raises ImportError (the editable install's finder and the
    checkout come later on the path), and no nvidia-smi."""
    fake = tmp_path / "no_janus"
    (fake / "janus").mkdir(parents=True)
    (fake / "janus" / "__init__.py").write_text(
        'raise ImportError("janus imported while Snakemake parses the workflow")\n')
    env = {**os.environ, "PYTHONPATH": str(fake),
           "PATH": f"{BIN}{os.pathsep}/usr/bin{os.pathsep}/bin"}
    check = subprocess.run([sys.executable, "-c", "import janus"], env=env, cwd=tmp_path,
                           capture_output=True, text=True)
    assert check.returncode != 0 and "while Snakemake parses" in check.stderr
    return env


def test_module_import_parses_without_the_janus_package(tmp_path):
    """`module janus: snakefile: ...` + `use rule * from janus` from another project's folder,
    with a Snakemake in which janus cannot be imported: the dry run lists every job, and the
    post-deploy script is told to install the workflow's own source tree."""
    proj = tmp_path / "project"
    proj.mkdir()
    (proj / "Snakefile").write_text(
        "import os\n\n"
        "configfile: 'config.yaml'\n\n"
        "module janus:\n"
        f"    snakefile: '{REPO / 'workflow' / 'Snakefile'}'\n"
        "    config: config\n\n"
        "use rule * from janus as janus_*\n\n"
        "print('JANUS_SRC=' + os.environ['JANUS_SRC'])\n")
    (proj / "config.yaml").write_text(
        "datasets:\n  office: {source: {synth: {site: office}}}\n"
        "  iot: {source: {synth: {site: iot}}}\n"
        "seeds: [5]\ndetectors: [janus, iforest]\n")
    out = subprocess.run([SNAKEMAKE, "-n", "-p", "--cores", "2", "results/cross_matrix.md"],
                         cwd=proj, env=_no_janus_env(tmp_path), capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    counts = _job_counts(out.stdout)
    # Schema defaults fill what the project's config leaves out (sigma_cross 0.6: two
    # models per dataset), and the workflow's rules come in under the module's prefix.
    assert counts == {"janus_synth": 2, "janus_extract": 2, "janus_labels": 2,
                      "janus_splits": 2, "janus_train": 4, "janus_score": 2,
                      "janus_baseline": 2, "janus_evaluate": 2, "janus_report": 1,
                      "total": 19}
    assert "python -m janus.train --data data/office --splits data/office/splits/seed5.npz" \
        in out.stdout
    assert f"JANUS_SRC={REPO}" in out.stdout


def _git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}
    out = subprocess.run(["git", "-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false",
                          *args], cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert out.returncode == 0, f"git {' '.join(args)}: {out.stderr}"
    return out.stdout


def _release_repo(dest: Path, tag: str) -> Path:
    """A git repository holding this checkout's files (tracked and untracked-not-ignored, as
    they are on disk now) in its first commit, tagged ``tag``; then a later commit that
    changes what a module at the tag must not see (the schema's sigma_cross default 0.6 ->
    0.1, a marker in the train rule's command, no __version__ in janus/__init__.py); then the
    working tree deleted, so everything has to come out of the git objects."""
    listed = _git(REPO, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    dest.mkdir()
    for rel in filter(None, listed.split("\0")):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    _git(dest, "init", "-q")
    _git(dest, "add", "-A")
    _git(dest, "commit", "-q", "-m", "release")
    _git(dest, "tag", tag)
    schema = dest / "workflow" / "schemas" / "config.schema.yaml"
    text = schema.read_text()
    cross = text.index("      sigma_cross:")
    at = text.index("default: 0.6", cross)
    schema.write_text(text[:at] + "default: 0.1" + text[at + len("default: 0.6"):])
    model = dest / "workflow" / "rules" / "model.smk"
    model.write_text(model.read_text().replace(
        '"python -m janus.train --data', '"python -m janus.train --after-the-tag --data', 1))
    init = dest / "janus" / "__init__.py"
    init.write_text(re.sub(r"(?m)^__version__\s*=.*$", "", init.read_text()))
    _git(dest, "commit", "-q", "-am", "after the release")
    for name in ("workflow", "janus", "config"):
        shutil.rmtree(dest / name)
    return dest


@pytest.mark.slow
def test_module_from_a_local_git_repository_at_a_tag(tmp_path):
    """README's module form, `module janus: snakefile: github("OWNER/janus",
    path="workflow/Snakefile", tag=...)`, without the network: the same workflow pulled with
    Snakemake's `gitfile(REPO, path=..., tag=...)` from a local git repository, whose later
    commit and (deleted) working tree differ from the tag. The schema, janus/__init__.py's
    version, the rules and the post-deploy script all come from the tag's git objects; the
    post-deploy script installs that tag."""
    import janus

    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs git and a git checkout of janus")
    tag = f"v{janus.__version__}"
    repo = _release_repo(tmp_path / "janus_repo", tag)
    proj = tmp_path / "project"
    proj.mkdir()
    (proj / "Snakefile").write_text(
        "import os\n\n"
        "configfile: 'config.yaml'\n\n"
        "module janus:\n"
        f"    snakefile: gitfile({str(repo)!r}, path='workflow/Snakefile', tag={tag!r})\n"
        "    config: config\n\n"
        "use rule * from janus as janus_*\n\n"
        "print('JANUS_SRC=' + os.environ['JANUS_SRC'])\n"
        "print('JANUS_PARAM=' + str(rules.janus_synth.params.janus))\n")
    (proj / "config.yaml").write_text(
        "datasets:\n  office: {source: {synth: {site: office}}}\n"
        "  iot: {source: {synth: {site: iot}}}\n"
        "seeds: [5]\ndetectors: [janus, iforest]\n")
    env = _no_janus_env(tmp_path)
    # Another janus release installed in the project's environment: the version the rules
    # carry must be the tag's own, not this one.
    meta = tmp_path / "other_janus" / "janus_nids-0.0.1.dist-info"
    meta.mkdir(parents=True)
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: janus-nids\nVersion: 0.0.1\n")
    env["PYTHONPATH"] += os.pathsep + str(meta.parent)
    out = subprocess.run([SNAKEMAKE, "-n", "-p", "--cores", "2", "results/cross_matrix.md"],
                         cwd=proj, env=env, capture_output=True, text=True, timeout=300,
                         check=False)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    # The tag's schema default sigma_cross 0.6: two models per dataset (the later commit's
    # 0.1 would give one).
    assert _job_counts(out.stdout) == {
        "janus_synth": 2, "janus_extract": 2, "janus_labels": 2, "janus_splits": 2,
        "janus_train": 4, "janus_score": 2, "janus_baseline": 2, "janus_evaluate": 2,
        "janus_report": 1, "total": 19}
    assert "python -m janus.train --data data/office --splits data/office/splits/seed5.npz" \
        in out.stdout
    assert "--after-the-tag" not in out.stdout
    assert f"JANUS_PARAM={janus.__version__}\n" in out.stdout
    src = f"git+file://{repo}@{tag}"
    assert f"JANUS_SRC={src}\n" in out.stdout

    # What the conda environment's creation runs: the tag's post-deploy script (Snakemake
    # reads it from the git objects too) with that JANUS_SRC. A `python` shim installs into a
    # folder of its own, offline, instead of the environment.
    script = tmp_path / "janus.post-deploy.sh"
    script.write_text(_git(repo, "show", f"{tag}:workflow/envs/janus.post-deploy.sh"))
    shim = tmp_path / "shim"
    shim.mkdir()
    target = tmp_path / "installed"
    (shim / "python").write_text(
        f'#!/bin/sh\nexec {sys.executable} "$@" --no-index --no-build-isolation '
        f'--target {target} --quiet\n')
    (shim / "python").chmod(0o755)
    deploy = subprocess.run(
        ["bash", str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300,
        check=False,
        env={**os.environ, "JANUS_SRC": src,
             "PATH": f"{shim}{os.pathsep}{os.environ.get('PATH', '')}"})
    assert deploy.returncode == 0, deploy.stdout[-2000:] + deploy.stderr[-3000:]
    installed = (target / "janus" / "__init__.py").read_text()
    assert f'__version__ = "{janus.__version__}"' in installed
    assert (target / "janus" / "model" / "train.py").read_bytes() == \
        (REPO / "janus" / "model" / "train.py").read_bytes()


def _byo_commands() -> list[str]:
    """The shell lines of README's bring-your-own block (between its markers)."""
    text = (REPO / "README.md").read_text()
    block = text.split("<!-- byo-commands -->", 1)[1].split("<!-- /byo-commands -->", 1)[0]
    return [line for line in block.replace("\\\n", " ").splitlines()
            if line.strip() and not line.startswith("```")]


def test_readme_byo_example_on_captures_the_project_makes(tmp_path):
    """README's bring-your-own commands, as written, from a folder of their own: `janus synth`
    makes the captures and label CSVs config/byo.yaml names; the dry run on a CPU-only
    machine plans every job, and its train jobs claim no GPU and one core each (schema
    defaults), with no global cap, so `--cores N` runs N of them side by side."""
    synth, run = _byo_commands()
    assert synth.startswith("janus synth --out captures")
    assert run.startswith("snakemake --cores all -s ") and "config/byo.yaml" in run
    work = tmp_path / "mine"
    work.mkdir()
    made = subprocess.run([sys.executable, "-m", "janus.synth", *synth.split()[2:],
                           "--scale", "0.1"], cwd=work, capture_output=True, text=True,
                          timeout=300)
    assert made.returncode == 0, made.stderr[-2000:]
    args = run.replace("PATH/TO/janus", str(REPO)).split()[1:]
    env = _no_janus_env(tmp_path)
    smi = tmp_path / "bin" / "nvidia-smi"  # a driver that lists no GPU
    smi.parent.mkdir()
    smi.write_text("#!/bin/sh\nexit 0\n")
    smi.chmod(0o755)
    env["PATH"] = f"{smi.parent}{os.pathsep}{env['PATH']}"
    out = subprocess.run([SNAKEMAKE, *[a if a != "all" else "2" for a in args], "-n"],
                         cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    counts = _job_counts(out.stdout)
    byo = yaml.safe_load((REPO / "config" / "byo.yaml").read_text())
    n = len(byo["datasets"])
    assert counts["extract"] == counts["labels"] == n and "synth" not in counts
    assert counts["train"] == n * len(byo["seeds"])  # equal sigmas: one model each
    assert _train_gpu_claims(out.stdout) == {"gpu=0"}
    threads = {line.split("threads:")[1].strip() for line in _rule_blocks(out.stdout, "train")
               if line.strip().startswith("threads:")}
    assert threads <= {"1"}  # Snakemake prints a job's threads only when above 1
    assert len(_rule_blocks(out.stdout, "train")) > 0
    # The workflow profile is found beside the Snakefile, from any working folder.
    profile = REPO / "workflow" / "profiles" / "default"
    assert f"workflow specific profile {profile}" in out.stdout + out.stderr
    # Every capture the config names is one synth wrote.
    for ds in byo["datasets"].values():
        for f in ds["source"]["pcaps"]["files"] + ds["source"]["pcaps"]["labels"]["csv"]:
            assert (work / f).stat().st_size > 0, f


def _rule_blocks(stdout: str, rule: str) -> list[str]:
    """The lines of every job block of ``rule`` in a dry run's printout."""
    lines, inside = [], False
    for line in stdout.splitlines():
        if line and not line[0].isspace():
            inside = line in (f"rule {rule}:", f"localrule {rule}:")
        elif inside:
            lines.append(line)
    return lines


def test_parse_time_provenance_matches_the_package(tmp_path):
    """The config hash and code fingerprint the workflow computes without importing janus
    are janus.workflow_config's, on the resolved config (schema defaults filled in)."""
    import json as _json

    from janus.workflow_config import code_fingerprint as package_fingerprint

    proj = tmp_path / "p"
    proj.mkdir()
    (proj / "Snakefile").write_text(
        "import json\n\n"
        f"include: '{REPO / 'workflow' / 'Snakefile'}'\n\n"
        "print('RESOLVED=' + json.dumps(config))\n"
        "print('HASH=' + CONFIG_HASH)\n"
        "print('JANUS=' + JANUS)\n")
    (proj / "extra.yaml").write_text("provenance: {rerun_on_code_change: true}\nseeds: [3]\n")
    out = subprocess.run([SNAKEMAKE, "-n", "--cores", "1", "--configfile",
                          str(REPO / "config" / "config.yaml"), str(proj / "extra.yaml")],
                         cwd=proj, env=_no_janus_env(tmp_path), capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    values = dict(line.split("=", 1) for line in out.stdout.splitlines()
                  if line.split("=", 1)[0] in ("RESOLVED", "HASH", "JANUS"))
    resolved = _json.loads(values["RESOLVED"])
    assert resolved["seeds"] == [3] and resolved["resources"]["labels"]["mem_mb"] > 0
    assert values["HASH"] == config_hash(resolved)
    assert values["JANUS"] == package_fingerprint(REPO / "janus")


def test_schema_knows_every_detector_and_which_take_epochs():
    """The workflow reads detector facts from the schema (it cannot import janus.detectors
    while it parses): the schema must agree with the package."""
    from janus.detectors import DETECTORS as CLASSES

    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    names = schema["properties"]["detectors"]["items"]["enum"]
    assert set(names) == {"janus", "janus_cont"} | set(CLASSES)
    hyper = {k: v for k, v in schema["properties"]["baselines"]["properties"].items()
             if v.get("type") == "object"}
    assert set(hyper) == set(CLASSES)
    for name, spec in hyper.items():
        keys = set(spec["properties"])
        assert keys <= set(CLASSES[name].defaults), name
        assert ("epochs" in keys) == ("epochs" in CLASSES[name].defaults), name
        # Which jobs wait for the packet tensors (baseline_packets in common.smk).
        assert spec.get("x-inputs", "features") == CLASSES[name].inputs, name


def test_post_deploy_installs_the_given_source(tmp_path):
    """workflow/envs/janus.post-deploy.sh installs $JANUS_SRC (what the workflow sets while
    it parses) and refuses to guess without it."""
    script = REPO / "workflow" / "envs" / "janus.post-deploy.sh"
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "python").write_text('#!/bin/sh\necho "python $*" > "$RECORD"\n')
    (fake / "python").chmod(0o755)
    env = {"PATH": f"{fake}{os.pathsep}/usr/bin{os.pathsep}/bin",
           "RECORD": str(tmp_path / "record")}
    out = subprocess.run(["bash", str(script)], env=env, cwd=tmp_path, capture_output=True,
                         text=True)
    assert out.returncode != 0 and "JANUS_SRC is not set" in out.stderr
    assert not (tmp_path / "record").exists()
    env["JANUS_SRC"] = "git+https://github.com/OWNER/janus@v0.3.0"
    out = subprocess.run(["bash", str(script)], env=env, cwd=tmp_path, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "record").read_text().split() == [
        "python", "-m", "pip", "install", "--no-deps", "git+https://github.com/OWNER/janus@v0.3.0"]
