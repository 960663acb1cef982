"""Score flows with a trained JANUS model: the 10-d vector of :data:`janus.contract.SCORE_COLUMNS`.

Notation for a flow with ``n`` valid packets: ``z_f`` (20,) the standardised flow features,
``z_p`` (n, 3) the standardised size/iat/win (``x1 = (z_f, z_p)``, the data end of the CFM
path), ``b`` (n, 6) the observed direction and flags, ``l`` (n, 6) the flag logits.

Continuous side: the terminal point. ``x0 = (x0_f, x0_p)`` is the point of the Gaussian source
that the learned velocity field ``v`` transports to the flow, found by integrating
``dx/dt = v(x, t)`` backwards from ``x(1) = x1`` to ``t = 0`` (:func:`terminal_point`):

* ``mode="ode"``: a fixed-step solver (``solver="midpoint"``, two evaluations a
  step, or ``"euler"``) with ``steps`` steps of ``h = 1/steps`` at ``t = 1, 1-h, ..., h``;
  padding enters the field as 0, as in training. Along the path the field sees the observed
  flags at discrete time 1 (``ode_flags="visible"``, the default) or every flag MASK at
  discrete time 0 (``"hidden"``). For benign-like flows ``x0`` is a draw from about
  ``N(0, I)`` where the field is well trained (a feature with a few atoms, e.g. a count,
  maps each atom to the centre of its region instead, so its second moment stays below 1);
  flows the field does not know land far out.
* ``mode="onepass"`` (the default): ``x0 = x1 - v(x1, t=1)`` with every flag MASK, one Euler
  step of size 1, exact only where the learned paths are straight; one forward pass.

From ``x0``:

* ``terminal_flow`` = ``mean_k x0_f[k]^2`` over the 20 flow features;
* ``terminal_packet`` = ``mean_{i<=n, c} x0_p[i, c]^2`` over the 3n packet values;
* ``terminal_norm`` = the mean of the same squares over all ``20 + 3n`` continuous values,
  ``(20 terminal_flow + 3n terminal_packet) / (20 + 3n)``.

What each velocity reads (:mod:`janus.model.network`): the FLOW token's velocity reads the flow
features and the times only; packet ``i``'s velocity reads packets ``1..i`` (their continuous
values and, with ``ode_flags="visible"``, their flags) and the times, never the FLOW token.

Discrete side (exact masked evaluation, no sampling), the same in every mode: one evaluation
at ``(t_c, t_d) = (1, 0)`` on the observed continuous values with EVERY flag MASK gives
``p_{i,c} = sigmoid(l_{i,c})``, the probability that flag ``c`` of packet ``i`` is 1 given the
size, iat and win of packets ``1..i`` and the position ``i``; the flag head never reads an
observed flag, the flow features (whose ``syn/fin/rst/psh_count``, ``fwd_ratio`` and
per-direction sizes are functions of the flags) or a later packet.

* ``disc_nll_<c>`` = ``mean_{i<=n} -log p(b_{i,c})`` (nats per packet) for
  ``c`` in direction, syn, fin, rst, psh, ack;
* ``disc_nll_total`` = the sum of those six = the mean per-packet NLL of the whole flag vector
  under the head's factorised prediction.

No randomness enters, so the scores are a deterministic function of the checkpoint, the
options and the flows; the same code scores any dataset (standardisation comes from the
checkpoint). Flows are batched by length and padded to each batch's longest flow, which
changes no score. The options are written into the scores file's schema metadata
(:data:`SCORE_OPTIONS_KEY`).

With ``extended=True`` (``--extended``) the file also holds the Phase-1 scores of the learned
ODE path after the 10 (:data:`janus.contract.EXTENDED_SCORE_COLUMNS`: ODE terminal, kinetic
energy, path curvature, CNF negative log-likelihood by Hutchinson's trace estimator, velocity
profile; :mod:`janus.model.extended_scores`), integrated with ``extended_steps`` steps of
``solver`` and seeing the flags as ``ode_flags`` says, whatever ``mode``. They are reported but
not aggregated: the file's aggregate columns stay the 10 (or 3).
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from janus.cli import run_main
from janus.contract import (
    AGGREGATE_COLUMNS_KEY,
    EXTENDED_SCORE_COLUMNS,
    N_FLOW_FEATURES,
    SCORE_COLUMNS,
)
from janus.datasets.splits import load_splits
from janus.errors import ConfigError, JanusError
from janus.io import write_parquet
from janus.model.checkpoint import load_checkpoint, model_from_checkpoint
from janus.model.data import Batch, Dataset, FeatureStats, length_batches, load_dataset
from janus.model.flowmatch import MASK
from janus.model.network import JanusNet
from janus.model.train import resolve_device

log = logging.getLogger(__name__)

#: Flows prepared at a time (bounds the memory of the float copies of the packet tensor).
CHUNK_FLOWS = 131_072
#: Most tokens (padded) per forward pass: batches of long flows hold fewer flows.
MAX_TOKENS = 16_384
#: Parquet schema-metadata key of a scores file: the :class:`ScoreOptions` that made it (JSON).
SCORE_OPTIONS_KEY = "janus.score_options"

MODES = ("onepass", "ode")
SOLVERS = ("euler", "midpoint")
ODE_FLAGS = ("hidden", "visible")


@dataclass(frozen=True)
class ScoreOptions:
    """How the terminal point is computed (see the module docstring).

    The defaults were chosen by measurement (README "Scores", "Method ablation"): on four sites
    x 3 seeds ``ode`` lost 0.008 within-site OAS AUROC against ``onepass`` at 4x the cost; for
    ``ode``, two midpoint steps match eight to 0.002 AUROC, and seeing the observed flags
    helped on one site.
    """

    mode: str = "onepass"  # "onepass" (one Euler step) or "ode" (integrate t = 1 -> 0)
    steps: int = 2  # ode: fixed steps from t = 1 to t = 0
    solver: str = "midpoint"  # ode: "euler" (steps evaluations) or "midpoint" (2 x steps)
    ode_flags: str = "visible"  # ode: flags seen by the field, "hidden" (MASK) or "visible"
    extended: bool = False  # also the Phase-1 path scores (EXTENDED_SCORE_COLUMNS)
    extended_steps: int = 4  # extended: solver steps of their path (even: t = 1/2 on the grid)
    probes: int = 1  # extended: Rademacher probes of Hutchinson's trace estimate per step
    probe_seed: int = 0  # extended: seed of the probes' hash

    def __post_init__(self) -> None:
        for name, allowed in (("mode", MODES), ("solver", SOLVERS), ("ode_flags", ODE_FLAGS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"score option {name} must be one of {list(allowed)}, "
                                  f"got {getattr(self, name)!r}")
        if self.steps < 1:
            raise ConfigError(f"score option steps must be >= 1, got {self.steps}")
        if self.extended_steps < 2 or self.extended_steps % 2:
            raise ConfigError("score option extended_steps must be even and >= 2 (t = 1/2 is a "
                              f"grid point of the velocity profile), got {self.extended_steps}")
        if self.probes < 1:
            raise ConfigError(f"score option probes must be >= 1, got {self.probes}")

    @property
    def columns(self) -> tuple[str, ...]:
        """The score columns these options write, in order."""
        return SCORE_COLUMNS + (EXTENDED_SCORE_COLUMNS if self.extended else ())

    @property
    def evaluations(self) -> int:
        """Forward passes per batch."""
        if self.mode == "onepass":
            return 1
        per_step = 2 if self.solver == "midpoint" else 1
        return per_step * self.steps + (self.ode_flags == "visible")


@torch.no_grad()
def terminal_point(
    model: JanusNet, batch: Batch, opts: ScoreOptions = ScoreOptions()
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The source point the learned field transports the batch's flows from, and the flag logits.

    Returns ``(x0_flow (B, 20), x0_packet (B, L, 3), flag_logits (B, L, 6))``, float32;
    ``x0_packet`` is 0 on padding. The logits always come from the evaluation at
    ``(t_c, t_d) = (1, 0)`` on the observed continuous values with every flag MASK, whatever
    the mode: the observed flags never reach them.
    """
    b = batch.flow.shape[0]
    ones = torch.ones(b, device=batch.flow.device)
    maskf = batch.mask[..., None].to(batch.cont.dtype)  # (B, L, 1)
    hidden = torch.full_like(batch.disc, MASK)
    vf, vp, logits = model(batch.flow, batch.cont, hidden, batch.lengths, ones, 1.0 - ones)
    vf, vp = vf.float(), vp.float() * maskf
    if opts.mode == "onepass":
        return batch.flow - vf, batch.cont - vp, logits.float()
    disc_in, t_d = (hidden, 0.0) if opts.ode_flags == "hidden" else (batch.disc, 1.0)

    def field(xf: torch.Tensor, xp: torch.Tensor, t: float) -> tuple[torch.Tensor, torch.Tensor]:
        # Padding enters as 0, as in training; its velocity is dropped.
        wf, wp, _ = model(xf, xp * maskf, disc_in, batch.lengths, t * ones, t_d * ones)
        return wf.float(), wp.float() * maskf

    h = 1.0 / opts.steps
    xf, xp = batch.flow, batch.cont
    for k in range(opts.steps):
        t = 1.0 - k * h
        if k == 0 and opts.ode_flags == "hidden":
            wf, wp = vf, vp  # the (1, 0) evaluation above is this step's first one
        else:
            wf, wp = field(xf, xp, t)
        if opts.solver == "midpoint":
            wf, wp = field(xf - 0.5 * h * wf, xp - 0.5 * h * wp, t - 0.5 * h)
        xf, xp = xf - h * wf, xp - h * wp
    return xf, xp, logits.float()


@torch.no_grad()
def packet_terms(
    model: JanusNet, batch: Batch, opts: ScoreOptions = ScoreOptions()
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The additive terms the 10 scores are made of (what :mod:`janus.deploy.attribution` ranks).

    Returns ``(sq_flow (B, 20), sq_packet (B, L, 3), nll (B, L, 6))``, float32: the squared
    terminal point of each flow feature, of each packet's size/iat/win, and each packet's
    flag NLL ``-log p(b_{i,c})`` in nats (direction, syn, fin, rst, psh, ack); both packet
    terms are 0 on padding. :func:`scores_from_terms` turns them into the 10 scores.
    """
    x0f, x0p, logits = terminal_point(model, batch, opts)
    m = batch.mask.float()[..., None]  # (B, L, 1)
    nll = F.binary_cross_entropy_with_logits(logits, batch.disc.float(), reduction="none")
    return x0f ** 2, x0p ** 2 * m, nll * m


def scores_from_terms(sq_flow: torch.Tensor, sq_packet: torch.Tensor, nll: torch.Tensor,
                      mask: torch.Tensor) -> torch.Tensor:
    """The 10 scores (float32 ``(B, 10)``, :data:`SCORE_COLUMNS` order) from
    :func:`packet_terms` and the valid-packet ``mask`` ``(B, L)``."""
    n = mask.float().sum(1)  # (B,)
    sq_f = sq_flow.sum(1)  # (B,)
    sq_p = sq_packet.sum(2).sum(1)  # (B,)
    n_cont = sq_packet.shape[2]
    nll_c = nll.sum(1) / n[:, None]  # (B, 6)
    return torch.cat([
        ((sq_f + sq_p) / (N_FLOW_FEATURES + n_cont * n))[:, None],
        (sq_f / N_FLOW_FEATURES)[:, None],
        (sq_p / (n_cont * n))[:, None],
        nll_c.sum(1, keepdim=True),
        nll_c,
    ], dim=1)


@torch.no_grad()
def score_batch(model: JanusNet, batch: Batch, opts: ScoreOptions = ScoreOptions()) -> torch.Tensor:
    """The scores of one batch, :attr:`ScoreOptions.columns` order: ``(B, 10)`` float32, or
    ``(B, 17)`` float64 with ``opts.extended``."""
    out = scores_from_terms(*packet_terms(model, batch, opts), batch.mask)
    if not opts.extended:
        return out
    from janus.model.extended_scores import extended_batch

    ext = extended_batch(model, batch, opts.extended_steps, opts.solver, opts.ode_flags,
                         opts.probes, opts.probe_seed)  # (B, 7)
    return torch.cat([out.double(), ext], dim=1)


def score_flows(
    model: JanusNet,
    stats: FeatureStats,
    ds: Dataset,
    flow_ids: np.ndarray,
    batch_size: int = 1024,
    device: torch.device | str = "cpu",
    disable_progress: bool | None = None,
    opts: ScoreOptions = ScoreOptions(),
) -> np.ndarray:
    """Scores of ``flow_ids`` of ``ds``: float64 ``(len(flow_ids), len(opts.columns))``, rows in
    ``flow_ids`` order."""
    device = torch.device(device)
    model = model.to(device).eval()
    flow_ids = np.asarray(flow_ids, dtype=np.int64)
    out = np.empty((len(flow_ids), len(opts.columns)), dtype=np.float64)
    with tqdm(total=len(flow_ids), desc="scoring", unit="flow", disable=disable_progress) as bar:
        for start in range(0, len(flow_ids), CHUNK_FLOWS):
            prep = stats.prepare(ds, flow_ids[start:start + CHUNK_FLOWS], model.cfg.max_packets)
            for idx in length_batches(prep.lengths, batch_size, max_tokens=MAX_TOKENS):
                out[start + idx] = score_batch(model, prep.batch(idx).to(device), opts).cpu().numpy()
                bar.update(len(idx))
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="janus score",
        description=__doc__.split("\n\n")[0] + " Several datasets can be scored in one "
        "process: --data, --splits and --out then take aligned lists, and each distinct "
        "--checkpoint is loaded once.")
    p.add_argument("--checkpoint", required=True, type=Path, nargs="+",
                   help="RUN_DIR/model.pt from 'janus train': one for every --data, or one per "
                   "--data (aligned)")
    p.add_argument("--data", required=True, type=Path, nargs="+",
                   help="dataset folder(s) to score (any dataset)")
    p.add_argument("--out", required=True, type=Path, nargs="+",
                   help="output SCORES.parquet (flow_id + 10 scores, 17 with --extended), one per --data")
    p.add_argument("--splits", type=Path, default=None, nargs="+",
                   help="score only the val, cal and test flows of this SPLITS.npz, one per --data "
                   "(default: every flow)")
    d = ScoreOptions()
    p.add_argument("--mode", choices=MODES, default=d.mode,
                   help="terminal point: 'ode' integrates the learned field from t=1 to t=0, "
                   f"'onepass' takes one Euler step x1 - v(x1, 1) (default {d.mode})")
    p.add_argument("--steps", type=int, default=d.steps,
                   help=f"ode: fixed solver steps from t=1 to t=0 (default {d.steps})")
    p.add_argument("--solver", choices=SOLVERS, default=d.solver,
                   help=f"ode: fixed-step solver; midpoint costs 2 evaluations a step (default {d.solver})")
    p.add_argument("--ode-flags", choices=ODE_FLAGS, default=d.ode_flags,
                   help="ode: the flags the velocity field sees along the path, every one MASK "
                   f"(hidden) or the observed ones (visible) (default {d.ode_flags})")
    p.add_argument("--extended", action="store_true",
                   help="also write the Phase-1 path scores (ODE terminal, kinetic energy, path "
                   "curvature, CNF NLL by Hutchinson's estimator, velocity at t = 1, 0.5, 0), "
                   "integrated with --solver and --ode-flags; reported, never aggregated")
    p.add_argument("--extended-steps", type=int, default=d.extended_steps,
                   help=f"extended: even number of solver steps of their path (default {d.extended_steps})")
    p.add_argument("--probes", type=int, default=d.probes,
                   help="extended: Rademacher probes of Hutchinson's trace estimate per step "
                   f"(default {d.probes})")
    p.add_argument("--probe-seed", type=int, default=d.probe_seed,
                   help=f"extended: seed of the probes (default {d.probe_seed})")
    p.add_argument("--batch-size", type=int, default=1024, help="flows per forward pass (default 1024)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="auto = CUDA when available, else CPU (default auto)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch (default: PyTorch's choice)")
    return p


def score_dataset(
    model: JanusNet, stats: FeatureStats, data: Path, out: Path, splits: Path | None = None,
    batch_size: int = 1024, device: torch.device | str = "cpu",
    opts: ScoreOptions = ScoreOptions(),
) -> int:
    """Score the flows of dataset folder ``data`` (only val + cal + test of ``splits`` when
    given) and write ``out`` (flow_id + :attr:`ScoreOptions.columns`); returns the flow count."""
    import pyarrow as pa

    ds = load_dataset(data)
    if splits is not None:
        parts = load_splits(splits)
        flow_ids = np.union1d(np.union1d(parts["val"], parts["cal"]), parts["test"]).astype(np.int64)
        if len(flow_ids) and flow_ids.max() >= ds.n_flows:
            raise JanusError(f"{splits}: flow id {flow_ids.max()} >= {ds.n_flows} flows of "
                             f"{data}; the splits belong to another dataset")
    else:
        flow_ids = np.arange(ds.n_flows, dtype=np.int64)
    scores = score_flows(model, stats, ds, flow_ids, batch_size, device, opts=opts)
    columns = {"flow_id": pa.array(flow_ids, pa.int64())}
    columns.update({name: pa.array(scores[:, k]) for k, name in enumerate(opts.columns)})
    # A model trained without the discrete loss (lambda_disc = 0, the continuous-only
    # ablation) has an untrained flag head: its disc_nll_* columns are noise, so the file
    # tells the aggregator to use the continuous-side columns only.
    informative = SCORE_COLUMNS if model.cfg.lambda_disc > 0 else SCORE_COLUMNS[:3]
    table = pa.table(columns).replace_schema_metadata(
        {AGGREGATE_COLUMNS_KEY: json.dumps(list(informative)),
         SCORE_OPTIONS_KEY: json.dumps(asdict(opts))})
    write_parquet(out, table)
    log.info("scored %d flows of %s (%s) -> %s", len(flow_ids), data, asdict(opts), out)
    return len(flow_ids)


def _aligned(values: list[Path] | None, n: int, option: str) -> list[Path | None]:
    """``values`` as ``n`` entries: None -> Nones, one value -> repeated, n values -> as given."""
    if values is None:
        return [None] * n
    if len(values) == n:
        return list(values)
    if len(values) == 1:
        return list(values) * n
    raise JanusError(f"{option} has {len(values)} values for {n} --data folders; give one or {n}")


def run(args: argparse.Namespace) -> int:
    n = len(args.data)
    if len(args.out) != n:
        raise JanusError(f"--out has {len(args.out)} values for {n} --data folders; give one "
                         "output per dataset")
    if len(set(args.out)) < n:
        raise JanusError(f"--out names the same file twice: {[str(o) for o in args.out]}")
    checkpoints = _aligned(args.checkpoint, n, "--checkpoint")
    splits = _aligned(args.splits, n, "--splits")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    opts = ScoreOptions(mode=args.mode, steps=args.steps, solver=args.solver,
                        ode_flags=args.ode_flags, extended=args.extended,
                        extended_steps=args.extended_steps, probes=args.probes,
                        probe_seed=args.probe_seed)
    models: dict[Path, tuple[JanusNet, FeatureStats]] = {}
    for ckpt, data, out, part in zip(checkpoints, args.data, args.out, splits):
        if ckpt not in models:
            ckpt_dict = load_checkpoint(ckpt, require_finished=True)
            model, _, stats = model_from_checkpoint(ckpt_dict)
            models[ckpt] = (model, stats)
        score_dataset(*models[ckpt], data, out, part, args.batch_size, device, opts)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(build_parser, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
