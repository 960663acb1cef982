"""The common baseline interface: feature scaling, the :class:`Detector` base, saving, training loop.

Every baseline sees the same input: the 20 flow features (:data:`janus.contract.FLOW_FEATURES`)
passed through JANUS's own fixed transform (``sign(x) log1p(|x| / s)`` with the per-feature
scales :data:`janus.model.data.FLOW_SCALE`: times in microseconds, ``fwd_ratio`` unchanged,
everything else ``log1p``), then standardised with the mean and standard deviation of the
BENIGN TRAINING flows. The statistics are saved with the model, so scoring another dataset
uses the training dataset's standardisation, exactly like the JANUS checkpoint.

A model folder holds ``detector.json`` (name, seed, hyper-parameters, feature statistics,
training history, versions) and one state file:

* torch detectors (``nf``, ``kitnet``, ``flowcfm``): ``state.npz``, the ``state_dict`` as
  plain NumPy arrays (loaded with ``allow_pickle=False``: no code can ride along);
* scikit-learn detectors (``iforest``, ``lof``, ``ocsvm``): ``fit_data.npz``, the matrix
  they were fitted on, from which loading refits them (:mod:`janus.detectors.classic`).

Nothing is ever unpickled: a folder holding a ``model.joblib`` (what earlier JANUS versions
saved, and a pickle that could run code on load) is refused with a request to retrain.
``detector.json`` is written last (and removed first when a folder is overwritten), so a
killed ``janus baseline train`` leaves a folder that does not load.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from janus import __version__
from janus.contract import FLOW_FEATURES, N_FLOW_FEATURES
from janus.errors import JanusError
from janus.io import write_json, write_npz

log = logging.getLogger(__name__)

MODEL_FILE = "detector.json"
STATE_FILE = "state.npz"
#: A pickled scikit-learn model (earlier JANUS versions): refused, never loaded.
SKLEARN_FILE = "model.joblib"


# --------------------------------------------------------------------------- features
class FeatureScaler:
    """Fixed log transform then standardisation with benign-training statistics.

    ``fit(x)`` with ``x`` float ``(n, 20)`` in contract units (seconds, bytes, counts);
    ``transform(x)`` -> float32 ``(n, 20)``, roughly zero-mean unit-variance on benign train.
    """

    def __init__(self, scale: np.ndarray | None = None, mean: np.ndarray | None = None,
                 std: np.ndarray | None = None) -> None:
        from janus.model.data import FLOW_SCALE

        self.scale = np.asarray(FLOW_SCALE if scale is None else scale, dtype=np.float64)
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float64)
        self.std = None if std is None else np.asarray(std, dtype=np.float64)

    def _log(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != N_FLOW_FEATURES:
            raise JanusError(f"expected flow features of shape (n, {N_FLOW_FEATURES}), got {x.shape}")
        safe = np.where(self.scale > 0, self.scale, 1.0)
        return np.where(self.scale > 0, np.sign(x) * np.log1p(np.abs(x) / safe), x)

    def fit(self, x: np.ndarray) -> FeatureScaler:
        from janus.model.data import MIN_STD

        y = self._log(x)
        self.mean = y.mean(axis=0)
        std = y.std(axis=0)
        # A feature constant on benign train (e.g. rst_count) is divided by 1, not 0.
        self.std = np.where(std < MIN_STD, 1.0, std)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        if self.mean is None:
            raise RuntimeError("FeatureScaler.transform called before fit")
        return ((self._log(x) - self.mean) / self.std).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"features": list(FLOW_FEATURES), "scale": self.scale.tolist(),
                "mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureScaler:
        if list(d.get("features", [])) != list(FLOW_FEATURES):
            raise JanusError("the model's feature list differs from janus.contract.FLOW_FEATURES; "
                             "it was trained by an incompatible JANUS version")
        return cls(d["scale"], d["mean"], d["std"])


# --------------------------------------------------------------------------- detectors
class Detector(ABC):
    """A one-class detector on flow features: ``fit`` on benign flows, ``score`` any flows.

    Subclasses set :attr:`name` and :attr:`defaults` (hyper-parameters, JSON-able) and
    implement ``_fit`` / ``_score`` on standardised features and ``_save_state`` /
    ``_load_state``. Scores are float64 ``(n,)``, higher = more anomalous.
    """

    name: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, seed: int = 0, **params: Any) -> None:
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise JanusError(f"detector {self.name!r} has no hyper-parameters {sorted(unknown)}; "
                             f"known: {sorted(self.defaults)}")
        self.seed = int(seed)
        self.params: dict[str, Any] = {**self.defaults, **params}
        self.scaler: FeatureScaler | None = None
        self.history: dict[str, Any] = {}

    # ---- public API
    def fit(self, x_train: np.ndarray, x_val: np.ndarray | None = None) -> Detector:
        """Fit on benign training features ``(n, 20)``; ``x_val`` (benign) drives early stopping."""
        if len(x_train) < 2:
            raise JanusError(f"detector {self.name!r} needs at least 2 training flows, got "
                             f"{len(x_train)}")
        self.scaler = FeatureScaler().fit(x_train)
        z_val = None if x_val is None or len(x_val) == 0 else self.scaler.transform(x_val)
        start = time.perf_counter()
        self._fit(self.scaler.transform(x_train), z_val)
        self.history["fit_seconds"] = round(time.perf_counter() - start, 3)
        self.history["n_train"] = len(x_train)
        self.history["n_val"] = 0 if z_val is None else len(z_val)
        return self

    def score(self, x: np.ndarray) -> np.ndarray:
        """Anomaly scores ``(n,)`` float64 of raw flow features ``(n, 20)``."""
        if self.scaler is None:
            raise RuntimeError(f"detector {self.name!r} scored before fit/load")
        if len(x) == 0:
            return np.zeros(0, np.float64)
        return np.asarray(self._score(self.scaler.transform(x)), dtype=np.float64)

    def save(self, folder: str | Path) -> None:
        """Write ``folder/detector.json`` and the state file (see the module docstring)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        # A kill before the new description is written must not leave the old one beside
        # the new state; a stale pickle from an earlier JANUS would refuse the folder.
        (folder / MODEL_FILE).unlink(missing_ok=True)
        (folder / SKLEARN_FILE).unlink(missing_ok=True)
        self._save_state(folder)
        import sklearn
        import torch

        write_json(folder / MODEL_FILE, {
            "detector": self.name, "seed": self.seed, "params": self.params,
            "scaler": self.scaler.to_dict(), "history": self.history,
            "janus_version": __version__, "torch_version": torch.__version__,
            "sklearn_version": sklearn.__version__,
        })

    @staticmethod
    def load(folder: str | Path) -> Detector:
        """Rebuild a saved detector from ``folder``."""
        from janus.detectors import DETECTORS

        folder = Path(folder)
        pickled = folder / SKLEARN_FILE
        if pickled.exists():
            raise JanusError(f"{pickled}: refused: a pickled scikit-learn model (joblib) can "
                             "run code when loaded and JANUS never loads one; retrain the "
                             "detector with 'janus baseline train' (models are now saved "
                             "without pickle)")
        path = folder / MODEL_FILE
        if not path.is_file():
            raise JanusError(f"{path}: not found; is {folder} a model folder from "
                             "'janus baseline train'?")
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
            cls = DETECTORS[meta["detector"]]
            seed, params, scaler = int(meta["seed"]), dict(meta["params"]), meta["scaler"]
            history = dict(meta.get("history", {}))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError,
                ValueError) as exc:
            raise JanusError(f"{path}: not a detector description ({exc!r})") from exc
        det = cls(seed=seed, **params)
        try:
            det.scaler = FeatureScaler.from_dict(scaler)
            if det.scaler.mean.shape != (N_FLOW_FEATURES,) or det.scaler.std.shape != \
                    (N_FLOW_FEATURES,) or det.scaler.scale.shape != (N_FLOW_FEATURES,):
                raise ValueError("scaler arrays are not of length 20")
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise JanusError(f"{path}: bad feature statistics 'scaler' ({exc!r}); retrain") \
                from exc
        det.history = history
        det._load_state(folder, meta)
        return det

    # ---- subclass hooks
    @abstractmethod
    def _fit(self, z_train: np.ndarray, z_val: np.ndarray | None) -> None: ...

    @abstractmethod
    def _score(self, z: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def _save_state(self, folder: Path) -> None: ...

    @abstractmethod
    def _load_state(self, folder: Path, meta: dict[str, Any]) -> None: ...


# --------------------------------------------------------------------------- torch helpers
class TorchDetector(Detector):
    """A detector whose state is one ``torch.nn.Module`` built by :meth:`build`."""

    module: Any = None

    @abstractmethod
    def build(self) -> Any:
        """Construct the (untrained) module from ``self.params`` and fitted attributes."""

    def _save_state(self, folder: Path) -> None:
        state = {k: v.detach().cpu().numpy() for k, v in self.module.state_dict().items()}
        write_npz(folder / STATE_FILE, **state)

    def _load_state(self, folder: Path, meta: dict[str, Any]) -> None:
        import torch

        path = folder / STATE_FILE
        try:
            with np.load(path, allow_pickle=False) as z:
                state = {k: torch.from_numpy(z[k].copy()) for k in z.files}
        except (OSError, ValueError, KeyError, EOFError, TypeError, zipfile.BadZipFile) as exc:
            raise JanusError(f"{path}: cannot read the model state ({_one_line(exc)})") from exc
        try:
            self.module = self.build()
        except (TypeError, ValueError, IndexError, RuntimeError) as exc:
            raise JanusError(f"{folder / MODEL_FILE}: cannot build {self.name} from its "
                             f"params ({_one_line(exc)}); retrain") from exc
        try:
            self.module.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise JanusError(f"{path}: state does not fit the {self.name} architecture in "
                             f"{MODEL_FILE} ({_one_line(exc)})") from exc
        self.module.eval()


def _one_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split())
    return text[:limit] + "..." if len(text) > limit else text or type(exc).__name__


def batched_eval(fn: Callable[[Any], Any], z: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """Apply ``fn`` (a tensor ``(b, D)`` -> tensor ``(b,)``) over ``z`` in batches, no grad."""
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(z), batch_size):
            out.append(fn(torch.from_numpy(np.ascontiguousarray(z[i:i + batch_size]))).double()
                       .numpy())
    return np.concatenate(out) if out else np.zeros(0)


def train_minibatch(
    module: Any,
    loss_fn: Callable[[Any, Any], Any],
    z_train: np.ndarray,
    z_val: np.ndarray | None,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    patience: int,
    seed: int,
    desc: str,
    weight_decay: float = 0.0,
) -> dict[str, Any]:
    """Adam on minibatches with early stopping on the benign validation loss.

    ``loss_fn(batch (b, D) tensor, generator) -> scalar`` is the per-sample mean loss; the
    generator (seeded from ``seed``) makes every random draw in it reproducible. The
    validation loss is evaluated with a generator re-seeded identically every epoch, so
    epochs are compared on the same noise. The best-validation weights are restored
    (the last ones without a validation set). Returns the history.
    """
    import torch
    from tqdm.auto import tqdm

    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(module.parameters(), lr=lr, weight_decay=weight_decay)
    x = torch.from_numpy(np.ascontiguousarray(z_train))
    xv = None if z_val is None else torch.from_numpy(np.ascontiguousarray(z_val))
    best, best_state, bad = math.inf, None, 0
    hist: dict[str, Any] = {"train_loss": [], "val_loss": []}
    bar = tqdm(range(epochs), desc=desc, unit="epoch", leave=False, disable=None)
    for epoch in bar:
        module.train()
        perm = torch.randperm(len(x), generator=gen)
        total, n = 0.0, 0
        for i in range(0, len(x), batch_size):
            xb = x[perm[i:i + batch_size]]
            loss = loss_fn(xb, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(xb)
            n += len(xb)
        hist["train_loss"].append(total / n)
        if xv is None:
            bar.set_postfix(train=f"{total / n:.4f}")
            continue
        module.eval()
        vgen = torch.Generator().manual_seed(seed + 7919)
        with torch.no_grad():
            # Same batch size as training: a loss with a minibatch coupling depends on it.
            vtotal = sum(float(loss_fn(xv[i:i + batch_size], vgen)) * len(xv[i:i + batch_size])
                         for i in range(0, len(xv), batch_size))
        vloss = vtotal / len(xv)
        hist["val_loss"].append(vloss)
        bar.set_postfix(train=f"{total / n:.4f}", val=f"{vloss:.4f}")
        if not math.isfinite(best) or vloss < best - 1e-6 * abs(best):
            best, best_state, bad = vloss, copy.deepcopy(module.state_dict()), 0
            hist["best_epoch"] = epoch
        else:
            bad += 1
            if bad >= patience:
                break
    if best_state is not None:
        module.load_state_dict(best_state)
    module.eval()
    hist["epochs_run"] = len(hist["train_loss"])
    log.info("%s: %d epochs, train loss %.4f, best val loss %s", desc, hist["epochs_run"],
             hist["train_loss"][-1], "n/a" if best_state is None else f"{best:.4f}")
    return hist


def seed_everything(seed: int) -> None:
    """Seed torch and NumPy's legacy global RNG (zuko and torch.nn init draw from torch's)."""
    import torch

    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
