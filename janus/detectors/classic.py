"""Classic one-class detectors from scikit-learn: Isolation Forest, LOF, One-Class SVM.

Each is fitted on the standardised benign training features; the score is the negated
``score_samples`` / ``decision_function`` so that higher = more anomalous. Kernel and
neighbour methods cost O(n^2) in the training set, so ``max_train`` caps it by a seeded
random subsample (logged in the history).

State: no pickle. A fitted estimator is not saved; ``fit_data.npz`` holds the exact
float32 matrix it was fitted on (standardised, after the ``max_train`` subsample; loaded with
``allow_pickle=False``) and ``detector.json`` the hyper-parameters and the seed, so loading
refits the same estimator deterministically (``n_jobs=1``; Isolation Forest is seeded, LOF
and the One-Class SVM have no randomness) and gives bit-identical scores. The file also
holds ``check``, the scores of up to 64 fitted rows at save time, which the refit must
reproduce exactly; a mismatch (another scikit-learn) is logged as a warning. Refit costs
what the fit did (``fit_seconds`` in the history): on 10 000 training flows (the splits'
default) about 1.5 s for iforest and lof and 0.3 s for ocsvm (its 5000-flow cap), one core.
"""

from __future__ import annotations

import logging
import time
import zipfile
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from janus.contract import N_FLOW_FEATURES
from janus.detectors.base import MODEL_FILE, Detector
from janus.errors import JanusError
from janus.io import write_npz

#: The matrix a scikit-learn detector was fitted on; refitted from on load.
FIT_DATA_FILE = "fit_data.npz"
#: Fitted rows whose scores are saved and must be reproduced by the refit.
CHECK_ROWS = 64

log = logging.getLogger(__name__)


class SklearnDetector(Detector):
    """Shared fit-subsample / save / load for scikit-learn estimators."""

    estimator: Any = None
    fit_data: np.ndarray | None = None

    def make_estimator(self) -> Any:
        raise NotImplementedError

    def _fit(self, z_train: np.ndarray, z_val: np.ndarray | None) -> None:
        cap = self.params.get("max_train")
        if cap is not None and len(z_train) > cap:
            rng = np.random.default_rng(self.seed)
            z_train = z_train[np.sort(rng.choice(len(z_train), cap, replace=False))]
            log.info("%s: fitting on a seeded subsample of %d training flows", self.name, cap)
        self.history["n_fit"] = len(z_train)
        self.fit_data = np.ascontiguousarray(z_train, dtype=np.float32)  # (n_fit, 20)
        self._refit()

    def _refit(self) -> None:
        self.estimator = self.make_estimator().fit(self.fit_data.astype(np.float64))

    def _check_rows(self) -> np.ndarray:
        return self.fit_data[:CHECK_ROWS]

    def _save_state(self, folder: Path) -> None:
        check = self._score(self._check_rows())
        write_npz(folder / FIT_DATA_FILE, z=self.fit_data, check=np.asarray(check, np.float64))

    def _load_state(self, folder: Path, meta: dict[str, Any]) -> None:
        import sklearn

        path = folder / FIT_DATA_FILE
        if not path.is_file():
            raise JanusError(f"{path}: not found; the model folder is incomplete (retrain with "
                             "'janus baseline train')")
        try:
            with np.load(path, allow_pickle=False) as f:
                z, check = f["z"], f["check"]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise JanusError(f"{path}: cannot read the training matrix "
                             f"({' '.join(str(exc).split())[:160]})") from exc
        if z.dtype != np.float32 or z.ndim != 2 or z.shape[1] != N_FLOW_FEATURES or len(z) < 2:
            raise JanusError(f"{path}: 'z' is {z.dtype} {z.shape}, expected float32 (n >= 2, "
                             f"{N_FLOW_FEATURES}); retrain with 'janus baseline train'")
        if not np.isfinite(z).all():
            raise JanusError(f"{path}: 'z' holds non-finite values; retrain")
        self.fit_data = z
        start = time.perf_counter()
        try:
            self._refit()
        except (ValueError, TypeError) as exc:  # hyper-parameters from detector.json
            raise JanusError(f"{folder / MODEL_FILE}: {self.name} cannot be refitted with "
                             f"params {self.params} ({' '.join(str(exc).split())[:160]})") from exc
        log.info("%s: refitted on %d saved training rows in %.2f s", self.name, len(z),
                 time.perf_counter() - start)
        again = np.asarray(self._score(self._check_rows()), np.float64)
        if again.shape != check.shape or not np.array_equal(again, check):
            log.warning("%s: the refitted %s does not reproduce the scores saved with it (saved "
                        "with scikit-learn %s, running %s): scores may differ", path, self.name,
                        meta.get("sklearn_version"), sklearn.__version__)


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
