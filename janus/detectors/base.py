"""The common baseline interface: feature scaling, the :class:`Detector` base, saving, training loop.

A detector declares what it reads in :attr:`Detector.inputs`:

* ``"features"`` (every detector on the flow features): the 20 flow features
  (:data:`janus.contract.FLOW_FEATURES`) passed through JANUS's own fixed transform
  (``sign(x) log1p(|x| / s)`` with the per-feature scales :data:`janus.model.data.FLOW_SCALE`:
  times in microseconds, ``fwd_ratio`` unchanged, everything else ``log1p``), then
  standardised with the mean and standard deviation of the BENIGN TRAINING flows;
* ``"packets"`` or ``"both"`` (the packet-sequence detectors of
  :mod:`janus.detectors.packets`): also the packet tensor, its size, iat and win through
  JANUS's packet transform and standardised with the benign training packets' statistics
  (:class:`PacketScaler`), its six binary channels as 0/1; ``"both"`` says the model reads
  the flow features as well, ``"packets"`` that it reads the packets alone.

The statistics are saved with the model, so scoring another dataset uses the training
dataset's standardisation, exactly like the JANUS checkpoint. ``fit`` and ``score`` take a
:class:`FlowData` (or, for a ``"features"`` detector, the ``(n, 20)`` feature matrix itself).

A model folder holds ``detector.json`` (name, seed, hyper-parameters, feature statistics,
training history, versions), ``loss.csv`` for a detector trained by epochs (``epoch,
train_loss, val_loss`` per epoch, as JANUS's own ``loss.csv``) and one state file:

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from janus import __version__
from janus.contract import BINARY, CONTINUOUS, FLOW_FEATURES, N_CHANNELS, N_FLOW_FEATURES
from janus.errors import JanusError
from janus.io import write_json, write_npz

log = logging.getLogger(__name__)

MODEL_FILE = "detector.json"
STATE_FILE = "state.npz"
#: A pickled scikit-learn model (earlier JANUS versions): refused, never loaded.
SKLEARN_FILE = "model.joblib"
#: What a detector reads (:attr:`Detector.inputs`).
INPUTS = ("features", "packets", "both")


# --------------------------------------------------------------------------- inputs
@dataclass
class FlowData:
    """Rows of one dataset, aligned: the flow features and, for packet detectors, the packets.

    ``features`` float64 ``(n, 20)`` in contract units; ``packets`` float32 ``(n, T, 9)``
    (zero after a flow's last packet) and ``lengths`` int ``(n,)`` in ``1..T``, both None
    when only the features were read.
    """

    features: np.ndarray
    packets: np.ndarray | None = None
    lengths: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.features.shape[0])

    @property
    def has_packets(self) -> bool:
        return self.packets is not None

    def take(self, ids: np.ndarray) -> FlowData:
        """The rows ``ids`` (an index array), in that order."""
        if not self.has_packets:
            return FlowData(self.features[ids])
        return FlowData(self.features[ids], self.packets[ids], self.lengths[ids])


def as_flow_data(x: FlowData | np.ndarray) -> FlowData:
    """``x`` itself, or a feature matrix ``(n, 20)`` wrapped as features-only rows."""
    return x if isinstance(x, FlowData) else FlowData(np.asarray(x))

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


class PacketScaler:
    """JANUS's packet transform (:data:`janus.model.data.PACKET_SCALE`: size and win
    ``log1p``, iat ``log1p(x / 1 us)``) then standardisation with the mean and standard
    deviation over the valid packets of the benign training flows (first ``max_packets``).

    ``transform(packets (n, T, 9), lengths (n,))`` -> ``(cont (n, T', 3) float32, flags
    (n, T', 6) float32, lengths (n,) int64)`` with ``T' = min(T, max_packets)``: size, iat,
    win standardised, direction, syn, fin, rst, psh, ack as 0/1; both 0 on padding.
    """

    def __init__(self, max_packets: int, mean: np.ndarray | None = None,
                 std: np.ndarray | None = None) -> None:
        self.max_packets = int(max_packets)
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float64)
        self.std = None if std is None else np.asarray(std, dtype=np.float64)

    def _cut(self, packets: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                      np.ndarray]:
        if packets.ndim != 3 or packets.shape[2] != N_CHANNELS or lengths.shape != \
                packets.shape[:1]:
            raise JanusError(f"expected packets (n, T, {N_CHANNELS}) and lengths (n,), got "
                             f"{packets.shape} and {lengths.shape}")
        t = min(self.max_packets, packets.shape[1])
        lengths = np.minimum(np.asarray(lengths, dtype=np.int64), t)
        valid = np.arange(t)[None, :] < lengths[:, None]  # (n, t)
        return packets[:, :t], lengths, valid

    def fit(self, packets: np.ndarray, lengths: np.ndarray) -> PacketScaler:
        from janus.model.data import MIN_STD, PACKET_SCALE, log1p_scaled

        raw, _, valid = self._cut(packets, lengths)
        y = log1p_scaled(raw[..., list(CONTINUOUS)][valid], PACKET_SCALE)  # (valid packets, 3)
        self.mean = y.mean(axis=0)
        self.std = np.where(y.std(axis=0) < MIN_STD, 1.0, y.std(axis=0))
        return self

    def transform(self, packets: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray,
                                                                           np.ndarray,
                                                                           np.ndarray]:
        from janus.model.data import PACKET_SCALE, log1p_scaled

        if self.mean is None:
            raise RuntimeError("PacketScaler.transform called before fit")
        raw, lengths, valid = self._cut(packets, lengths)
        cont = (log1p_scaled(raw[..., list(CONTINUOUS)], PACKET_SCALE) - self.mean) / self.std
        cont = np.where(valid[..., None], cont, 0.0).astype(np.float32)  # (n, t, 3)
        flags = np.where(valid[..., None], raw[..., list(BINARY)] > 0.5, 0).astype(np.float32)
        return cont, flags, lengths

    def to_dict(self) -> dict[str, Any]:
        return {"max_packets": self.max_packets, "mean": self.mean.tolist(),
                "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PacketScaler:
        out = cls(int(d["max_packets"]), d["mean"], d["std"])
        if out.mean.shape != (len(CONTINUOUS),) or out.std.shape != (len(CONTINUOUS),):
            raise ValueError("packet scaler arrays are not of length 3")
        return out


@dataclass
class PacketInputs:
    """Standardised model inputs of ``n`` flows for a packet detector.

    ``flow`` float32 ``(n, 20)`` (:class:`FeatureScaler`), ``cont`` float32 ``(n, T, 3)`` and
    ``flags`` float32 ``(n, T, 6)`` (:class:`PacketScaler`, 0 on padding), ``lengths`` int64
    ``(n,)`` in ``1..T``. Indexing by an index array or a slice gives a :class:`PacketBatch`
    padded to its own longest flow (see :mod:`janus.detectors.packets`).
    """

    flow: np.ndarray
    cont: np.ndarray
    flags: np.ndarray
    lengths: np.ndarray

    def __len__(self) -> int:
        return int(self.lengths.shape[0])

    def __getitem__(self, idx: Any) -> Any:
        from janus.detectors.packets import PacketBatch

        return PacketBatch.of(self, idx)


# --------------------------------------------------------------------------- detectors
class Detector(ABC):
    """A one-class detector on flow features: ``fit`` on benign flows, ``score`` any flows.

    Subclasses set :attr:`name`, :attr:`defaults` (hyper-parameters, JSON-able) and
    :attr:`inputs`, and implement ``_fit`` / ``_score`` on the standardised inputs (a float32
    ``(n, 20)`` matrix for ``"features"``, a :class:`PacketInputs` otherwise) and
    ``_save_state`` / ``_load_state``. Scores are float64 ``(n,)``, higher = more anomalous.
    A packet detector's ``defaults`` hold ``max_packets``, the packets per flow it reads.
    """

    name: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    #: What the detector reads: one of :data:`INPUTS`.
    inputs: ClassVar[str] = "features"

    def __init__(self, seed: int = 0, **params: Any) -> None:
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise JanusError(f"detector {self.name!r} has no hyper-parameters {sorted(unknown)}; "
                             f"known: {sorted(self.defaults)}")
        if self.inputs not in INPUTS:  # a programming error of the subclass, not a user's
            raise TypeError(f"{type(self).__name__}.inputs = {self.inputs!r}, not one of {INPUTS}")
        self.seed = int(seed)
        self.params: dict[str, Any] = {**self.defaults, **params}
        self.scaler: FeatureScaler | None = None
        self.packet_scaler: PacketScaler | None = None
        self.history: dict[str, Any] = {}

    @property
    def reads_packets(self) -> bool:
        return self.inputs != "features"

    # ---- public API
    def fit(self, x_train: FlowData | np.ndarray,
            x_val: FlowData | np.ndarray | None = None) -> Detector:
        """Fit on benign training flows (a :class:`FlowData`, or features ``(n, 20)`` for a
        ``"features"`` detector); ``x_val`` (benign) drives early stopping."""
        train = self._checked(x_train)
        if len(train) < 2:
            raise JanusError(f"detector {self.name!r} needs at least 2 training flows, got "
                             f"{len(train)}")
        self.scaler = FeatureScaler().fit(self._scaler_data(np.asarray(train.features, np.float64)))
        if self.reads_packets:
            self.packet_scaler = PacketScaler(self.params["max_packets"]).fit(train.packets,
                                                                              train.lengths)
        val = None if x_val is None or len(x_val) == 0 else self._prepare(self._checked(x_val))
        start = time.perf_counter()
        self._fit(self._prepare(train), val)
        self.history["fit_seconds"] = round(time.perf_counter() - start, 3)
        self.history["n_train"] = len(train)
        self.history["n_val"] = 0 if val is None else len(val)
        return self

    def _scaler_data(self, x_train: np.ndarray) -> np.ndarray:
        """The features ``(n, 20)`` the standardisation is fitted on: the training flows'
        own (``nf`` fits it on their dequantised values)."""
        return x_train

    def score(self, x: FlowData | np.ndarray) -> np.ndarray:
        """Anomaly scores ``(n,)`` float64 of raw flows (as :meth:`fit` takes them)."""
        if self.scaler is None:
            raise RuntimeError(f"detector {self.name!r} scored before fit/load")
        data = self._checked(x)
        if len(data) == 0:
            return np.zeros(0, np.float64)
        return np.asarray(self._score(self._prepare(data)), dtype=np.float64)

    def _checked(self, x: FlowData | np.ndarray) -> FlowData:
        data = as_flow_data(x)
        if self.reads_packets and not data.has_packets:
            raise JanusError(f"detector {self.name!r} reads the packets of each flow, but "
                             "only flow features were given")
        return data

    def _prepare(self, data: FlowData) -> np.ndarray | PacketInputs:
        """Standardised model inputs: ``(n, 20)`` float32, or :class:`PacketInputs`."""
        z = self.scaler.transform(data.features)
        if not self.reads_packets:
            return z
        cont, flags, lengths = self.packet_scaler.transform(data.packets, data.lengths)
        return PacketInputs(flow=z, cont=cont, flags=flags, lengths=lengths)

    def save(self, folder: str | Path) -> None:
        """Write ``folder/detector.json`` and the state file (see the module docstring)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        # A kill before the new description is written must not leave the old one beside
        # the new state; a stale pickle from an earlier JANUS would refuse the folder.
        (folder / MODEL_FILE).unlink(missing_ok=True)
        (folder / SKLEARN_FILE).unlink(missing_ok=True)
        self._save_state(folder)
        self._save_loss_curve(folder)
        # Versions from the installed metadata (the same strings as torch.__version__ and
        # sklearn.__version__): a scikit-learn detector's job never imports torch for them.
        from importlib import metadata

        meta = {
            "detector": self.name, "seed": self.seed, "params": self.params,
            "scaler": self.scaler.to_dict(), "history": self.history,
            "janus_version": __version__, "torch_version": metadata.version("torch"),
            "sklearn_version": metadata.version("scikit-learn"),
        }
        if self.reads_packets:
            meta["packet_scaler"] = self.packet_scaler.to_dict()
        write_json(folder / MODEL_FILE, meta)

    def _save_loss_curve(self, folder: Path) -> None:
        """``folder/loss.csv``: the per-epoch losses of ``history`` (nothing for a detector
        not trained by epochs; a stage-wise history such as KitNET's gets a ``stage``)."""
        from janus.io import write_text

        stages = {k: v for k, v in self.history.items()
                  if isinstance(v, dict) and "train_loss" in v}
        if "train_loss" in self.history:
            stages = {"": self.history}
        if not stages:
            return
        lines = ["stage,epoch,train_loss,val_loss"]
        for stage, h in stages.items():
            val = h.get("val_loss", [])
            for e, tr in enumerate(h["train_loss"]):
                v = f"{val[e]:.6g}" if e < len(val) else ""
                lines.append(f"{stage},{e},{tr:.6g},{v}")
        write_text(folder / "loss.csv", "\n".join(lines) + "\n")

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
        if det.reads_packets:
            try:
                det.packet_scaler = PacketScaler.from_dict(meta["packet_scaler"])
            except (KeyError, TypeError, ValueError) as exc:
                raise JanusError(f"{path}: bad packet statistics 'packet_scaler' ({exc!r}); "
                                 "retrain") from exc
        det.history = history
        det._load_state(folder, meta)
        return det

    # ---- subclass hooks
    @abstractmethod
    def _fit(self, z_train: Any, z_val: Any | None) -> None: ...

    @abstractmethod
    def _score(self, z: Any) -> np.ndarray: ...

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

    ``z_train``, ``z_val``: standardised features ``(n, D)`` or :class:`PacketInputs` (then a
    batch is a :class:`janus.detectors.packets.PacketBatch` padded to its longest flow).
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
    x, xv = _batchable(z_train), None if z_val is None else _batchable(z_val)
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


def _batchable(z: np.ndarray | PacketInputs) -> Any:
    """What :func:`train_minibatch` indexes rows of: a tensor, or the packet inputs."""
    import torch

    return z if isinstance(z, PacketInputs) else torch.from_numpy(np.ascontiguousarray(z))


def seed_everything(seed: int) -> None:
    """Seed torch and NumPy's legacy global RNG (zuko and torch.nn init draw from torch's)."""
    import torch

    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
