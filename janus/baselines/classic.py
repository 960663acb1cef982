"""Classic one-class detectors from scikit-learn: Isolation Forest, LOF, One-Class SVM.

Each is fitted on the standardised benign training features; the score is the negated
``score_samples`` / ``decision_function`` so that higher = more anomalous. Kernel and
neighbour methods cost O(n^2) in the training set, so ``max_train`` caps it by a seeded
random subsample (logged in the history).

State: ``model.joblib`` (pickle; load only model folders you made yourself).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..errors import JanusError
from .base import SKLEARN_FILE, Detector

log = logging.getLogger(__name__)


class SklearnDetector(Detector):
    """Shared fit-subsample / save / load for scikit-learn estimators."""

    estimator: Any = None

    def make_estimator(self) -> Any:
        raise NotImplementedError

    def _fit(self, z_train: np.ndarray, z_val: np.ndarray | None) -> None:
        cap = self.params.get("max_train")
        if cap is not None and len(z_train) > cap:
            rng = np.random.default_rng(self.seed)
            z_train = z_train[np.sort(rng.choice(len(z_train), cap, replace=False))]
            log.info("%s: fitting on a seeded subsample of %d training flows", self.name, cap)
        self.history["n_fit"] = len(z_train)
        self.estimator = self.make_estimator().fit(z_train.astype(np.float64))

    def _save_state(self, folder: Path) -> None:
        import joblib

        from ..io import atomic_path

        with atomic_path(folder / SKLEARN_FILE) as tmp:
            joblib.dump(self.estimator, tmp)

    def _load_state(self, folder: Path, meta: dict[str, Any]) -> None:
        import joblib
        import sklearn

        path = folder / SKLEARN_FILE
        if not path.is_file():
            raise JanusError(f"{path}: not found; the model folder is incomplete")
        if meta.get("sklearn_version") != sklearn.__version__:
            log.warning("%s was saved with scikit-learn %s, running %s: scores may differ",
                        path, meta.get("sklearn_version"), sklearn.__version__)
        self.estimator = joblib.load(path)


class IForestDetector(SklearnDetector):
    name = "iforest"
    defaults: ClassVar[dict[str, Any]] = {"n_estimators": 200, "max_samples": 256, "max_train": None}

    def make_estimator(self) -> Any:
        from sklearn.ensemble import IsolationForest

        return IsolationForest(n_estimators=self.params["n_estimators"],
                               max_samples=self.params["max_samples"], random_state=self.seed,
                               n_jobs=1)

    def _score(self, z: np.ndarray) -> np.ndarray:
        # score_samples is minus the paper's anomaly score 2^(-E[h(x)]/c(n)).
        return -self.estimator.score_samples(z.astype(np.float64))


class LOFDetector(SklearnDetector):
    name = "lof"
    defaults: ClassVar[dict[str, Any]] = {"n_neighbors": 20, "max_train": 20_000}

    def make_estimator(self) -> Any:
        from sklearn.neighbors import LocalOutlierFactor

        return LocalOutlierFactor(n_neighbors=self.params["n_neighbors"], novelty=True, n_jobs=1)

    def _score(self, z: np.ndarray) -> np.ndarray:
        return -self.estimator.score_samples(z.astype(np.float64))  # the LOF ratio, >= ~1


class OCSVMDetector(SklearnDetector):
    name = "ocsvm"
    defaults: ClassVar[dict[str, Any]] = {"nu": 0.05, "gamma": "scale", "max_train": 5_000}

    def make_estimator(self) -> Any:
        from sklearn.svm import OneClassSVM

        return OneClassSVM(kernel="rbf", nu=self.params["nu"], gamma=self.params["gamma"])

    def _score(self, z: np.ndarray) -> np.ndarray:
        return -self.estimator.decision_function(z.astype(np.float64))
