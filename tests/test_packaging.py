"""The built wheel, installed into a fresh virtual environment, runs `janus` from another
folder: nothing of the package may rely on the checkout (paths, data files, the cwd)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import janus

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_runs_janus_from_another_folder(tmp_path: Path) -> None:
    # Built from a copy of the files the wheel is made of, so that setuptools' build/ and
    # egg-info folders never land in the checkout.
    src = tmp_path / "src"
    shutil.copytree(REPO / "janus", src / "janus",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, src / name)
    wheels = tmp_path / "whl"
    # --no-build-isolation: build with the installed setuptools (no download).
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                            "--no-build-isolation", "-q", "-w", str(wheels), str(src)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = wheels.glob("janus_nids-*.whl")
    assert f"-{janus.__version__}-" in wheel.name
    venv = tmp_path / "venv"
    # System site-packages supply torch and the rest; the wheel itself goes into the venv.
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                   check=True, timeout=300)
    py = venv / "bin" / "python"
    inst = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                           "--force-reinstall", str(wheel)], capture_output=True, text=True,
                          timeout=300)
    assert inst.returncode == 0, inst.stderr[-3000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    where = subprocess.run([str(py), "-c", "import janus; print(janus.__file__)"], cwd=elsewhere,
                           env=env, capture_output=True, text=True, timeout=120)
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout + where.stderr
    cli = venv / "bin" / "janus"
    usage = subprocess.run([str(cli), "--help"], cwd=elsewhere, env=env, capture_output=True,
                           text=True, timeout=120)
    assert usage.returncode == 0 and "extract" in usage.stdout and "train" in usage.stdout
    version = subprocess.run([str(cli), "--version"], cwd=elsewhere, env=env,
                             capture_output=True, text=True, timeout=120)
    assert version.stdout.strip() == f"janus {janus.__version__}"
    # One real step: the synthetic generator writes a capture and its labels.
    step = subprocess.run([str(cli), "synth", "--out", "sites", "--sites", "iot", "--scale",
                           "0.1"], cwd=elsewhere, env=env, capture_output=True, text=True,
                          timeout=300)
    assert step.returncode == 0, step.stderr[-3000:]
    pcap = (elsewhere / "sites" / "iot" / "capture.pcap").read_bytes()
    assert pcap[:4] in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1",
                        b"\xa1\xb2\x3c\x4d")
    assert (elsewhere / "sites" / "iot" / "GeneratedLabelledFlows.csv").stat().st_size > 0
