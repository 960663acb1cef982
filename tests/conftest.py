"""Shared fixtures."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# Tests live in folders that mirror the package; the builders and servers they share
# (capture_builders, flowdata, portal_server, test_workflow) stay in tests/.
sys.path.insert(0, str(Path(__file__).resolve().parent))

REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = REPO_ROOT.parent / "shared" / "data" / "real"


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The folder of real capture slices beside the checkout; skips the test when absent."""
    if not REAL_DATA.is_dir():
        pytest.skip(f"real captures not found at {REAL_DATA} (they ship beside the checkout, "
                    "not with it)")
    return REAL_DATA


@pytest.fixture(scope="session")
def tiny_workflow(tmp_path_factory) -> tuple[Path, tuple[str, ...]]:
    """``config/test.yaml`` run once, from captures to tables, in a fresh copy of the workflow:
    ``(folder, snakemake arguments)``. Shared by tests/test_workflow.py (files, rerun, report)
    and tests/test_end_to_end.py (values), so the suite pays for one run."""
    from test_workflow import _copy_workflow, _snakemake

    wf = _copy_workflow(tmp_path_factory.mktemp("tiny") / "wf")
    args = ("--cores", "2", "--configfile", "config/test.yaml", "--replace-workflow-config")
    out = _snakemake(wf, *args, timeout=900)
    if out.returncode != 0:
        logs = "\n".join(f"== {p}\n{p.read_text()[-1500:]}" for p in (wf / "logs").rglob("*.log")
                         if "rror" in p.read_text())
        pytest.fail(f"snakemake failed:\n{out.stderr[-4000:]}\n{logs[-6000:]}")
    return wf, args


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Run torch on one thread in tests: the tensors are tiny, so a second thread only adds
    synchronisation, and on a loaded machine a descheduled OpenMP worker stalls every op."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
