"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = REPO_ROOT.parent / "shared" / "data" / "real"


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The folder of real capture slices beside the checkout; skips the test when absent."""
    if not REAL_DATA.is_dir():
        pytest.skip(f"real captures not found at {REAL_DATA} (they ship beside the checkout, "
                    "not with it)")
    return REAL_DATA


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
