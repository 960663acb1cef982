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
