"""Deterministic benign-train / benign-val / test splits of one dataset for one seed.

Output ``SPLITS.npz`` (read by train, score, aggregate, evaluate and the baselines):

* ``train`` -- int64 sorted flow ids, benign (label 0) only;
* ``val`` -- int64 sorted flow ids, benign only, disjoint from ``train``;
* ``cal`` -- int64 sorted flow ids, benign only, disjoint from both;
* ``test`` -- int64 sorted flow ids: benign flows disjoint from the three, plus attack
  flows (label 1); unknown flows (label -1) never enter any split;
* ``meta`` -- 0-d str array holding JSON: seed, order, data dir, requested and actual
  sizes, and how many benign / attack / unknown flows the dataset has.

Sampling. Every flow gets a key ``splitmix64(mix(seed) + flow_id * golden gamma)``, a
bijection of the flow id for one seed, so keys never tie and a flow's key depends on
nothing but (seed, flow_id). The benign flows with the smallest keys, in key order, are a
uniform random ordering of a uniform random subset (a bottom-k sample); they are taken in
the order val, cal, test, train (so ``n_val + n_cal`` equal to an earlier ``n_val`` leaves
test and train as they were). The attack flows of the test split are the attack flows with
the smallest keys. The labels are read batch by batch and only the ``k`` smallest keys per
pool are kept, so memory is O(n_train + n_val + n_cal + n_test) whatever the dataset's size,
and the splits do not depend on how the file is chunked.

Allocation. When the dataset has fewer benign flows than ``n_train + n_val + n_cal +
n_test_benign``, all four are scaled down in proportion (so a small dataset still gets a val
and a test split). The test split is balanced by default: both classes get
``min(benign test, attack)`` flows when both exist. Every clipping is logged. The same
(dataset, seed, sizes, order) always gives the same split.

Time order (``--order time``). The benign flows are cut by ``start_time`` (flows.parquet) at
the benign quantile ``q = (n_train + n_val + n_cal) / (n_train + n_val + n_cal +
n_test_benign)``: the cut is the start time of the benign flow of rank ``round(q * B)`` in
start order (``B`` benign flows), found exactly by streamed histogram passes. val, cal and
train are sampled as above from the benign flows that start before the cut; the test split
(benign and attack) from the flows that start at or after it, so every train/val/cal flow
starts before every test flow. Each side is scaled down on its own when short. Attacks
before the cut are left out (counted in ``meta``).
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from janus.cli import run_main
from janus.contract import FLOWS_FILE
from janus.errors import ConfigError, JanusError
from janus.io import BATCH_ROWS, iter_labels, iter_parquet, write_npz

log = logging.getLogger(__name__)

ORDERS = ("random", "time")
_GAMMA = np.uint64(0x9E3779B97F4A7C15)
#: A histogram pass of the time cut has this many bins...
_CUT_BINS = 4096
#: ...and the values of one bin are gathered and sorted once they are this few.
_CUT_GATHER = 1 << 18

# (first flow_id, labels (n,) int8, start times (n,) float64 or None) of consecutive flows.
Batches = Callable[[], Iterator[tuple[int, np.ndarray, np.ndarray | None]]]


def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser (a bijection of uint64), elementwise; wraps on purpose."""
    x = x.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return x


def flow_keys(flow_ids: np.ndarray, seed: int) -> np.ndarray:
    """uint64 sampling keys ``(n,)`` of ``flow_ids`` for ``seed`` (distinct for distinct ids)."""
    base = _mix64(np.array([seed & 0xFFFFFFFFFFFFFFFF], np.uint64))
    with np.errstate(over="ignore"):
        return _mix64(np.asarray(flow_ids).astype(np.uint64) * _GAMMA + base)


class BottomK:
    """The ``k`` flow ids with the smallest keys seen so far (memory O(k + one batch))."""

    def __init__(self, k: int) -> None:
        self.k = int(k)
        self.keys = np.zeros(0, np.uint64)
        self.ids = np.zeros(0, np.int64)

    def add(self, ids: np.ndarray, keys: np.ndarray) -> None:
        if self.k == 0 or ids.size == 0:
            return
        keys = np.concatenate([self.keys, keys])
        ids = np.concatenate([self.ids, ids.astype(np.int64)])
        if keys.size > self.k:
            keep = np.argpartition(keys, self.k - 1)[:self.k]
            keys, ids = keys[keep], ids[keep]
        self.keys, self.ids = keys, ids

    def ordered(self) -> np.ndarray:
        """The ids kept, smallest key first."""
        return self.ids[np.argsort(self.keys)]


def _check_sizes(**sizes: int) -> None:
    for name, value in sizes.items():
        if value < 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 0, got {value}")


def _scaled(want: np.ndarray, available: int, what: str) -> np.ndarray:
    """``want`` scaled down in proportion (floor) when ``available`` is short, logged."""
    if want.sum() <= available:
        return want.copy()
    sizes = np.floor(want * available / want.sum()).astype(np.int64)
    log.warning("only %d %s for %d requested: %s scaled to %s", available, what, want.sum(),
                want.tolist(), sizes.tolist())
    return sizes


def _balanced(ntb: int, nta: int, n_test_attack: int, attacks: int, balance: bool
              ) -> tuple[int, int]:
    if nta < n_test_attack:
        log.warning("only %d attack flows for %d requested", attacks, n_test_attack)
    if balance and ntb > 0 and nta > 0 and ntb != nta:
        k = min(ntb, nta)
        log.warning("balancing the test split: %d benign + %d attack -> %d + %d", ntb, nta, k, k)
        ntb = nta = k
    if nta == 0:
        log.warning("the test split has no attack flows; AUROC is undefined on it")
    return ntb, nta


def _time_cut(batches: Batches, rank: int, lo: float, hi: float, count: int) -> float:
    """The start time of rank ``rank`` (0-based) among the ``count`` benign flows whose start
    times lie in ``[lo, hi]``: histogram passes narrow the window until its values are few
    enough to sort (one pass each; two or three in practice)."""
    while True:
        if lo == hi:
            return lo
        if count <= _CUT_GATHER:
            parts = [s[(lab == 0) & (s >= lo) & (s <= hi)] for _, lab, s in batches()]
            return float(np.partition(np.concatenate(parts), rank)[rank])
        edges = np.linspace(lo, hi, _CUT_BINS + 1)
        hist = np.zeros(_CUT_BINS, np.int64)
        for _, lab, s in batches():
            v = s[(lab == 0) & (s >= lo) & (s <= hi)]
            b = np.clip(np.searchsorted(edges, v, side="right") - 1, 0, _CUT_BINS - 1)
            hist += np.bincount(b, minlength=_CUT_BINS)
        cum = np.cumsum(hist)
        b = int(np.searchsorted(cum, rank, side="right"))
        rank -= int(cum[b - 1]) if b else 0
        count = int(hist[b])
        # Bin b holds [edges[b], edges[b+1]) (the last bin also hi); narrow to its values.
        new_hi = hi if b == _CUT_BINS - 1 else float(np.nextafter(edges[b + 1], -np.inf))
        lo, hi = float(edges[b]), new_hi


def split_batches(
    batches: Batches,
    seed: int,
    n_train: int = 10_000,
    n_val: int = 2_000,
    n_test_benign: int = 5_000,
    n_test_attack: int = 5_000,
    balance: bool = True,
    n_cal: int = 0,
    order: str = "random",
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Split the flows that ``batches()`` yields (see the module docstring); ``batches`` is
    called once per pass (one for ``random``, two to four for ``time``, whose batches carry
    start times). Returns ``({"train", "val", "cal", "test"} -> sorted int64 flow ids, meta)``.
    """
    _check_sizes(n_train=n_train, n_val=n_val, n_cal=n_cal, n_test_benign=n_test_benign,
                 n_test_attack=n_test_attack)
    if order not in ORDERS:
        raise ConfigError(f"--order {order!r}: expected one of {', '.join(ORDERS)}")
    want = np.array([n_val, n_cal, n_test_benign, n_train], np.int64)
    counts = np.zeros(3, np.int64)  # benign, attack, unknown
    cut = None
    if order == "time":
        lo, hi = np.inf, -np.inf
        for _, lab, start in batches():
            counts += [(lab == 0).sum(), (lab == 1).sum(), (lab == -1).sum()]
            s = start[lab == 0]
            if s.size:
                lo, hi = min(lo, float(s.min())), max(hi, float(s.max()))
        n_early = n_val + n_cal + n_train
        q = 1.0 if n_early + n_test_benign == 0 else n_early / (n_early + n_test_benign)
        rank = round(float(q * counts[0]))
        cut = np.inf if rank >= counts[0] else _time_cut(batches, rank, lo, hi, int(counts[0]))
        pools = {"early": BottomK(n_early), "late": BottomK(n_test_benign),
                 "attack": BottomK(n_test_attack)}
    else:
        pools = {"benign": BottomK(int(want.sum())), "attack": BottomK(n_test_attack)}
    sides = np.zeros(3, np.int64)  # benign before the cut, benign after, attacks after
    for first, lab, start in batches():
        ids = np.arange(first, first + lab.shape[0], dtype=np.int64)
        keys = flow_keys(ids, seed)
        if cut is None:
            counts += [(lab == 0).sum(), (lab == 1).sum(), (lab == -1).sum()]
            for name, mask in (("benign", lab == 0), ("attack", lab == 1)):
                pools[name].add(ids[mask], keys[mask])
            continue
        early = start < cut
        for i, (name, mask) in enumerate((("early", (lab == 0) & early),
                                          ("late", (lab == 0) & ~early),
                                          ("attack", (lab == 1) & ~early))):
            pools[name].add(ids[mask], keys[mask])
            sides[i] += mask.sum()
    n_benign, n_attack = int(counts[0]), int(counts[1])
    if cut is None:
        nv, nc, ntb, ntr = (int(x) for x in _scaled(want, n_benign, "benign flows"))
        benign = pools["benign"].ordered()
        val, cal = benign[:nv], benign[nv:nv + nc]
        test_b = benign[nv + nc:nv + nc + ntb]
        train = benign[nv + nc + ntb:nv + nc + ntb + ntr]
        ntb, nta = _balanced(ntb, min(n_test_attack, n_attack), n_test_attack, n_attack, balance)
    else:
        nv, nc, ntr = (int(x) for x in _scaled(want[[0, 1, 3]], int(sides[0]),
                                               "benign flows before the time cut"))
        ntb = int(min(n_test_benign, sides[1]))
        if ntb < n_test_benign:
            log.warning("only %d benign flows after the time cut for %d requested", sides[1],
                        n_test_benign)
        early_ids = pools["early"].ordered()
        val, cal, train = early_ids[:nv], early_ids[nv:nv + nc], early_ids[nv + nc:nv + nc + ntr]
        ntb, nta = _balanced(ntb, int(min(n_test_attack, sides[2])), n_test_attack,
                             int(sides[2]), balance)
        test_b = pools["late"].ordered()
    test_b = test_b[:ntb]
    attack = pools["attack"].ordered()[:nta]
    out = {
        "train": np.sort(train).astype(np.int64),
        "val": np.sort(val).astype(np.int64),
        "cal": np.sort(cal).astype(np.int64),
        "test": np.sort(np.concatenate([test_b, attack])).astype(np.int64),
    }
    meta: dict[str, Any] = {
        "seed": int(seed),
        "order": order,
        "requested": {"train": n_train, "val": n_val, "cal": n_cal,
                      "test_benign": n_test_benign, "test_attack": n_test_attack,
                      "balance": balance},
        "sizes": {"train": ntr, "val": nv, "cal": nc, "test_benign": ntb, "test_attack": nta},
        "available": {"benign": n_benign, "attack": n_attack, "unknown": int(counts[2])},
    }
    if cut is not None:
        meta["time_cut"] = {"start_time": None if np.isinf(cut) else float(cut),
                            "benign_before": int(sides[0]), "benign_after": int(sides[1]),
                            "attack_after": int(sides[2]),
                            "attack_before_left_out": n_attack - int(sides[2])}
        log.info("time cut at start_time %s: %d benign flows before, %d after; %d attack "
                 "flows after (%d before it left out)", meta["time_cut"]["start_time"],
                 *sides[:2], sides[2], n_attack - sides[2])
    return out, meta


def _array_batches(labels: np.ndarray, start_time: np.ndarray | None,
                   batch_rows: int) -> Batches:
    def batches():
        for lo in range(0, labels.shape[0], batch_rows):
            yield (lo, labels[lo:lo + batch_rows],
                   None if start_time is None else start_time[lo:lo + batch_rows])
    return batches


def make_splits(
    labels: np.ndarray,
    seed: int,
    n_train: int = 10_000,
    n_val: int = 2_000,
    n_test_benign: int = 5_000,
    n_test_attack: int = 5_000,
    balance: bool = True,
    n_cal: int = 0,
    order: str = "random",
    start_time: np.ndarray | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Split flows with ``labels`` (int ``(N,)``: 0 benign, 1 attack, -1 unknown) held in
    memory; ``start_time`` (float ``(N,)``, seconds) is needed for ``order="time"``. The same
    result as the streamed :func:`split_dataset` of a file holding these labels.

    Returns ``({"train", "val", "cal", "test"} -> sorted int64 flow ids, meta dict)``.
    """
    labels = np.asarray(labels).astype(np.int8)
    if order == "time":
        if start_time is None or np.shape(start_time) != labels.shape:
            raise ConfigError("order 'time' needs one start_time per flow")
        start_time = np.asarray(start_time, np.float64)
    return split_batches(_array_batches(labels, start_time if order == "time" else None,
                                        BATCH_ROWS),
                         seed, n_train, n_val, n_test_benign, n_test_attack, balance, n_cal,
                         order)


def dataset_batches(data_dir: str | Path, with_start: bool = False,
                    batch_rows: int = BATCH_ROWS) -> Batches:
    """Batches of ``data_dir``'s labels.parquet (and flows.parquet's start_time when
    ``with_start``), read batch by batch on every call."""
    data_dir = Path(data_dir)
    flows = data_dir / FLOWS_FILE
    if with_start and not flows.is_file():
        raise JanusError(f"{flows}: not found; --order time needs the flows' start times "
                         f"(run 'janus extract' for {data_dir})")

    def batches():
        starts: Iterable = iter_parquet(flows, ["start_time"], batch_rows) if with_start \
            else iter(())
        for first, labels in iter_labels(data_dir, batch_rows):
            start = None
            if with_start:
                start = next(starts, {}).get("start_time")
                if start is None or start.shape != labels.shape:
                    raise JanusError(f"{flows}: fewer rows than labels.parquet; the files "
                                     "are not row-aligned (rerun 'janus labels')")
                start = start.astype(np.float64)
            yield first, labels, start
        if with_start and next(starts, None) is not None:
            raise JanusError(f"{flows}: more rows than labels.parquet; the files are not "
                             "row-aligned (rerun 'janus labels')")
    return batches


def split_dataset(data_dir: str | Path, seed: int, *, order: str = "random",
                  batch_rows: int = BATCH_ROWS, **sizes: Any
                  ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """:func:`split_batches` of ``data_dir`` (streamed; memory O(split sizes + a batch))."""
    return split_batches(dataset_batches(data_dir, order == "time", batch_rows), seed,
                         order=order, **sizes)


def load_splits(path: str | Path) -> dict[str, Any]:
    """Read a splits file: ``{"train", "val", "cal", "test"}`` sorted int64 flow-id arrays
    and ``"meta"`` (a dict; empty when the file has none). ``cal`` is empty in a file written
    before it existed (:func:`threshold_ids` then falls back to ``val``)."""
    path = Path(path)
    if not path.is_file():
        raise JanusError(f"{path}: splits file not found; run 'janus splits' first")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = {"train", "val", "test"} - set(z.files)
            if missing:
                raise JanusError(f"{path}: splits file lacks arrays {sorted(missing)} (has {z.files})")
            out: dict[str, Any] = {k: np.asarray(z[k], dtype=np.int64) for k in ("train", "val", "test")}
            out["cal"] = np.asarray(z["cal"], dtype=np.int64) if "cal" in z.files else \
                np.zeros(0, np.int64)
            out["meta"] = json.loads(str(z["meta"])) if "meta" in z.files else {}
    except (OSError, ValueError) as exc:
        raise JanusError(f"{path}: not a readable .npz splits file ({exc})") from exc
    for key in ("train", "val", "cal", "test"):
        ids = out[key]
        if ids.ndim != 1 or (ids.size > 1 and np.any(np.diff(ids) <= 0)):
            raise JanusError(f"{path}: array {key!r} is not a 1-d strictly increasing id list")
    return out


def calibration_ids(splits: dict[str, Any], what: str = "splits") -> np.ndarray:
    """The benign flows that fit aggregators and set thresholds: ``cal``, or ``val`` (with a
    warning naming ``what``) for a splits file written before ``cal`` existed."""
    if splits["cal"].size:
        return splits["cal"]
    log.warning("%s has no 'cal' flows (written before the calibration split existed): "
                "thresholds and aggregators use 'val', the early-stopping flows; rerun "
                "'janus splits' for honest thresholds", what)
    return splits["val"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="janus splits", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, type=Path,
                   help="dataset folder (needs labels.parquet)")
    p.add_argument("--seed", required=True, type=int, help="split seed (one split per seed)")
    p.add_argument("--out", required=True, type=Path, help="output SPLITS.npz")
    p.add_argument("--n-train", type=int, default=10_000, help="benign training flows (default 10000)")
    p.add_argument("--n-val", type=int, default=1_000,
                   help="benign validation flows, for early stopping only (default 1000)")
    p.add_argument("--n-cal", type=int, default=1_000,
                   help="benign calibration flows: the aggregators' fit and the P95/P99 "
                   "thresholds (default 1000)")
    p.add_argument("--n-test-benign", type=int, default=5_000, help="benign test flows (default 5000)")
    p.add_argument("--n-test-attack", type=int, default=5_000, help="attack test flows (default 5000)")
    p.add_argument("--no-balance", action="store_true",
                   help="keep the benign and attack test sizes independent instead of equal")
    p.add_argument("--order", choices=ORDERS, default="random",
                   help="random: uniform samples of the whole capture; time: train/val/cal "
                   "from the benign flows that start before a cut (the benign start-time "
                   "quantile (train+val+cal)/(train+val+cal+test benign)), the test split "
                   "from the flows that start after it (needs flows.parquet; default "
                   "%(default)s)")
    return p


def run(args: argparse.Namespace) -> int:
    splits, meta = split_dataset(args.data, args.seed, order=args.order, n_train=args.n_train,
                                 n_val=args.n_val, n_test_benign=args.n_test_benign,
                                 n_test_attack=args.n_test_attack, balance=not args.no_balance,
                                 n_cal=args.n_cal)
    meta["data"] = str(args.data)
    write_npz(args.out, meta=np.array(json.dumps(meta)), **splits)
    log.info("splits of %s (seed %d): %s -> %s", args.data, args.seed, meta["sizes"], args.out)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(build_parser, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
