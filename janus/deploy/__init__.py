"""Use a trained model on new traffic: model folders, detect, calibrate, explain.

``load_model(DIR)`` -> :class:`~janus.deploy.model.DeployedModel`, whose ``score_capture`` and
``score_dataset`` return a polars DataFrame (one row per flow; ``.to_pandas()`` for pandas) and
whose ``calibrate`` refits the aggregator and thresholds on a new site's benign captures.
Importing this package imports neither torch nor polars; :func:`load_model` does.
"""

from __future__ import annotations

from typing import Any


def load_model(folder: Any, device: str = "cpu") -> Any:
    """Read a model folder; see :func:`janus.deploy.model.load_model`."""
    from janus.deploy.model import load_model as _load

    return _load(folder, device=device)


__all__ = ["load_model"]
