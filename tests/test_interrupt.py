"""Interrupting the workflow: a killed run never leaves results that a rerun trusts wrongly.

Each test runs a one-dataset config (JANUS only, long enough training to be caught mid-way)
in a fresh copy of the workflow, kills it on purpose, and checks what the README promises:

* ``kill -9`` of the whole Snakemake process group in the middle of a training job: the same
  command then refuses to start until ``snakemake --unlock`` (Snakemake keeps its lock when it
  cannot clean up; the README says so), and after the unlock the rerun completes with results
  identical to an uninterrupted run (training is deterministic per seed and thread count);
* killing only the training job of a forced retrain (``-R train``): the old ``model.pt`` is
  gone, so a plain rerun must retrain instead of "Nothing to be done".
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from test_workflow import _copy_workflow

BIN = Path(sys.executable).parent
SNAKEMAKE = str(BIN / "snakemake")
RUN = Path("runs/janus/office/seed42_sigma0.1")
SCORES = Path("results/scores/janus/office/office/seed42.parquet")

pytestmark = pytest.mark.slow


def _config(wf: Path) -> tuple[str, ...]:
    """A one-site config whose training lasts several seconds (many short epochs)."""
    cfg = yaml.safe_load((wf / "config" / "test.yaml").read_text())
    cfg["datasets"] = {"office": cfg["datasets"]["office"]}
    cfg["detectors"] = ["janus"]
    cfg["cross_dataset"] = False
    cfg["train"].update(epochs=40, patience=40)
    path = wf / "config" / "interrupt.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return ("--cores", "2", "--configfile", "config/interrupt.yaml", "--replace-workflow-config",
            "results/cross_matrix.md")


def _env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def _run(wf: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([SNAKEMAKE, *args], cwd=wf, env=_env(), capture_output=True,
                          text=True, timeout=timeout)


def _ok(out: subprocess.CompletedProcess) -> None:
    assert out.returncode == 0, out.stderr[-4000:]


def _wait_for(pred, proc: subprocess.Popen, timeout: float = 300, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if proc.poll() is not None:
            pytest.fail(f"snakemake ended (rc {proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def _table_rows(path: Path) -> list[str]:
    # The footer's run details may differ; the result rows must not.
    return [line for line in path.read_text().splitlines() if line.startswith("|")]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted run of the interrupt config."""
    wf = _copy_workflow(tmp_path_factory.mktemp("ref") / "wf")
    _ok(_run(wf, *_config(wf)))
    return wf


def test_kill_9_mid_training_then_unlock_and_rerun_gives_identical_results(reference, tmp_path):
    wf = _copy_workflow(tmp_path / "wf")
    args = _config(wf)
    proc = subprocess.Popen([SNAKEMAKE, *args], cwd=wf, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    # last.pt appears after the first epoch; the run has 40, so training is under way.
    _wait_for(lambda: (wf / RUN / "last.pt").exists(), proc, what="the first epoch")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (wf / "results" / "cross_matrix.md").exists()
    assert not (wf / SCORES).exists()

    locked = _run(wf, *args)
    assert locked.returncode != 0
    assert "unlock" in (locked.stdout + locked.stderr)
    _ok(_run(wf, "--unlock", *args))
    _ok(_run(wf, *args))

    ref_w, new_w = _weights(reference / RUN / "model.pt"), _weights(wf / RUN / "model.pt")
    assert ref_w.keys() == new_w.keys()
    assert all(torch.equal(ref_w[k], new_w[k]) for k in ref_w)
    import polars as pl

    ref_s, new_s = pl.read_parquet(reference / SCORES), pl.read_parquet(wf / SCORES)
    assert ref_s.columns == new_s.columns and ref_s.height == new_s.height > 0
    for col in ref_s.columns:
        np.testing.assert_array_equal(ref_s[col].to_numpy(), new_s[col].to_numpy())
    assert _table_rows(reference / "results/cross_matrix.md") == \
        _table_rows(wf / "results/cross_matrix.md")


def test_killed_forced_retrain_is_redone_by_a_plain_rerun(reference, tmp_path):
    import psutil

    wf = _copy_workflow(tmp_path / "wf")
    args = _config(wf)
    _ok(_run(wf, *args))  # a finished run
    proc = subprocess.Popen([SNAKEMAKE, *args, "-R", "train"], cwd=wf, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)

    def train_job():
        for child in psutil.Process(proc.pid).children(recursive=True):
            try:
                # The python process itself, not the shell that Snakemake wraps it in.
                if child.cmdline()[1:3] == ["-m", "janus.train"]:
                    return child
            except psutil.NoSuchProcess:
                pass
        return None

    _wait_for(lambda: train_job() is not None, proc, what="the train job")
    job = train_job()
    # Let it get into its epochs, then kill the training job alone.
    _wait_for(lambda: (wf / RUN / "loss.csv").exists() and
              (wf / RUN / "loss.csv").stat().st_mtime > (wf / SCORES).stat().st_mtime,
              proc, what="a new epoch of the forced retrain")
    assert not (wf / RUN / "train_summary.json").exists() or \
        (wf / RUN / "train_summary.json").stat().st_mtime < (wf / SCORES).stat().st_mtime
    job.kill()
    proc.wait(timeout=120)
    assert proc.returncode != 0
    assert not (wf / RUN / "model.pt").exists()  # Snakemake removes a failed job's outputs

    again = _run(wf, *args)
    _ok(again)
    assert "Nothing to be done" not in again.stdout + again.stderr
    assert (wf / RUN / "model.pt").is_file()
    ref_w, new_w = _weights(reference / RUN / "model.pt"), _weights(wf / RUN / "model.pt")
    assert all(torch.equal(ref_w[k], new_w[k]) for k in ref_w)
