"""The Phase-1 extended score set: quantities of the learned ODE path, beyond the 10 scores.

``janus score --extended`` (``score: extended: true``) adds the columns of
:data:`janus.contract.EXTENDED_SCORE_COLUMNS` to a scores file. All of them come from one
integration of the learned field ``dx/dt = v(x, t)`` backwards from the flow ``x(1) = x1``
to ``x(0) = x0`` (the continuous values: 20 flow features and the 3 channels of each valid
packet, ``D = 20 + 3n`` values for a flow of ``n`` packets), with the conventions of
``janus score --mode ode`` (:func:`janus.model.score.terminal_point`): ``steps`` fixed steps
of ``h = 1/steps`` at ``t_k = 1 - k h`` with the ``euler`` or ``midpoint`` solver, padding
entering the field as 0, the flags seen as ``ode_flags`` says. Step ``k`` moves
``x_{k+1} = x_k - h s_k`` with the slope ``s_k`` = ``v`` at the solver's slope point (the
midpoint stage ``(x_k - h/2 v(x_k, t_k), t_k - h/2)``, or ``(x_k, t_k)`` for Euler); every
time integral below is the same quadrature, ``int_0^1 f dt ~ h sum_k f(slope point k)``.
Every score is per continuous value (divided by ``D``), like ``terminal_norm``, so flows of
different lengths compare; higher = more anomalous for all of them.

* ``ode_terminal_norm`` = ``|x0|^2 / D``: ``terminal_norm`` with the terminal point from the
  ODE (equal to ``terminal_norm`` itself when the file is scored with ``--mode ode`` and the
  same steps and solver).
* ``kinetic_energy`` = ``int_0^1 |v(x(t), t)|^2 dt / D``.
* ``path_curvature`` = ``int_0^1 |v(x(t), t) - (x1 - x0)|^2 dt / D``: how far the velocity
  strays from the straight line between the path's endpoints (the per-sample "straightness"
  of Liu et al., "Flow Straight and Fast", ICLR 2023). It is 0 exactly when the velocity is
  constant along the path, and equals ``kinetic_energy - |x1 - x0|^2 / D`` (the discrete
  slopes sum to ``x1 - x0`` exactly); it is computed from the slopes directly, which keeps
  its precision on near-straight paths.
* ``cnf_nll`` = ``-log p(x1) / D`` in nats per value, the continuous-normalising-flow
  log-likelihood by the instantaneous change of variables (Chen et al. 2018; FFJORD,
  Grathwohl et al. 2019): ``log p(x1) = log N(x0; 0, I) - int_0^1 tr(dv/dx)(x(t), t) dt``.
  The trace is Hutchinson's estimate ``E[e^T (dv/dx) e]`` with ``probes`` Rademacher vectors
  ``e`` (entries +-1) per slope point, from vector-Jacobian products; the probes are a fixed
  hash of ``(probe_seed, flow_id, step, probe, value index)`` (:func:`rademacher_probes`),
  so a flow's estimate does not depend on the batch it is scored in. With ``ode_flags``
  ``visible`` it is the density of the continuous values given the observed flags.
* ``velocity_t1.0``, ``velocity_t0.5``, ``velocity_t0.0`` = ``|v(x(t), t)|^2 / D`` at the
  grid times ``t = 1, 1/2, 0`` of the path (the time profile of the velocity; ``steps`` must
  be even so that ``t = 1/2`` is a grid point). For the midpoint solver the first two are
  evaluations it makes anyway; ``t = 0`` costs one more.

Cost per batch, in forward passes: ``steps`` slope evaluations with gradients (each about a
forward and a backward per probe), plus ``steps`` grid evaluations for the midpoint solver,
plus one at ``t = 0``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from janus.contract import EXTENDED_SCORE_COLUMNS
from janus.model.data import Batch
from janus.model.flowmatch import MASK
from janus.model.network import JanusNet

#: ``field(x_flow (B, F), x_packet (B, L, C), t) -> (v_flow (B, F), v_packet (B, L, C))``,
#: ``v_packet`` 0 on padding.
Field = Callable[[torch.Tensor, torch.Tensor, float], tuple[torch.Tensor, torch.Tensor]]

#: Grid times of the velocity profile, in :data:`EXTENDED_SCORE_COLUMNS` order.
PROFILE_TIMES: tuple[float, ...] = (1.0, 0.5, 0.0)
assert EXTENDED_SCORE_COLUMNS[4:] == tuple(f"velocity_t{t:.1f}" for t in PROFILE_TIMES)

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser on uint64 arrays (wrapping arithmetic): a well-mixed hash."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def rademacher_probes(flow_id: np.ndarray, step: int, probe: int, n_flow: int, n_packets: int,
                      n_cont: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Fixed Rademacher vectors of flows ``flow_id`` ``(B,)`` for one (step, probe).

    Returns float32 ``(B, n_flow)`` and ``(B, n_packets, n_cont)`` with entries +-1: value
    ``j`` of a flow (flow features ``0..n_flow-1``, then packet ``i`` channel ``c`` at
    ``n_flow + n_cont i + c``) gets the sign of a hash of ``(seed, flow_id, step, probe, j)``,
    whatever the batch and its padding. The caller zeroes padded packets.
    """
    key = _splitmix64(np.asarray(flow_id, dtype=np.uint64) ^ _splitmix64(np.uint64(seed)))
    key = _splitmix64(key ^ np.uint64((step << 20) + probe))  # (B,)
    dims = np.arange(n_flow + n_packets * n_cont, dtype=np.uint64)
    bits = _splitmix64(key[:, None] ^ _splitmix64(dims)[None, :]) >> np.uint64(63)  # (B, D)
    signs = (2.0 * bits.astype(np.float32) - 1.0)
    return signs[:, :n_flow], signs[:, n_flow:].reshape(len(signs), n_packets, n_cont)


def field_divergence(field: Field, xf: torch.Tensor, xp: torch.Tensor, t: float,
                     probes: Sequence[tuple[torch.Tensor, torch.Tensor]]
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The field at ``(xf, xp, t)`` and Hutchinson's estimate of its divergence.

    ``probes``: ``(e_flow (B, F), e_packet (B, L, C))`` pairs, ``e_packet`` 0 on padding.
    Returns ``(v_flow, v_packet, div (B,))`` with ``div = mean_j e_j^T (dv/dx) e_j``, each term
    from one vector-Jacobian product. Flows of a batch never interact in the field, so the
    gradient of the batch sum gives every flow's own product.
    """
    with torch.enable_grad():
        xf = xf.detach().requires_grad_(True)
        xp = xp.detach().requires_grad_(True)
        vf, vp = field(xf, xp, t)
        div = torch.zeros(xf.shape[0], dtype=torch.float64, device=xf.device)
        for j, (ef, ep) in enumerate(probes):
            vjp_of = (vf * ef).sum() + (vp * ep).sum()
            if not vjp_of.requires_grad:  # a field that ignores x (a constant): div = 0
                break
            gf, gp = torch.autograd.grad(vjp_of, (xf, xp), retain_graph=j < len(probes) - 1,
                                         allow_unused=True, materialize_grads=True)
            div += ((gf * ef).sum(1) + (gp * ep).sum((1, 2))).double()
    return vf.detach(), vp.detach(), div / len(probes)


def path_scores(field: Field, x1f: torch.Tensor, x1p: torch.Tensor, mask: torch.Tensor,
                flow_id: np.ndarray, steps: int = 4, solver: str = "midpoint", probes: int = 1,
                probe_seed: int = 0) -> torch.Tensor:
    """The extended scores of a batch: float64 ``(B, 7)`` in :data:`EXTENDED_SCORE_COLUMNS` order.

    ``x1f`` ``(B, F)``, ``x1p`` ``(B, L, C)`` (0 on padding): the data end of the path; ``mask``
    ``(B, L)`` valid packets; ``flow_id`` ``(B,)`` int (seeds the probes). See the module
    docstring for the definitions.
    """
    if steps < 2 or steps % 2:
        raise ValueError(f"extended scores need an even number of steps >= 2, got {steps}")
    b, n_flow = x1f.shape
    n_pkt, n_cont = x1p.shape[1:]
    maskf = mask[..., None].to(x1p.dtype)  # (B, L, 1)
    dim = (n_flow + n_cont * mask.sum(1)).double()  # (B,) continuous values per flow
    flow_id = np.asarray(flow_id)

    def msq(vf: torch.Tensor, vp: torch.Tensor) -> torch.Tensor:
        return ((vf.double() ** 2).sum(1) + ((vp.double() * maskf) ** 2).sum((1, 2))) / dim

    def probe_set(k: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        out = []
        for j in range(probes):
            ef, ep = rademacher_probes(flow_id, k, j, n_flow, n_pkt, n_cont, probe_seed)
            out.append((torch.from_numpy(ef).to(x1f), torch.from_numpy(ep).to(x1p) * maskf))
        return out

    h = 1.0 / steps
    profile_step = {round((1.0 - t) * steps): t for t in PROFILE_TIMES}
    speed: dict[float, torch.Tensor] = {}
    xf, xp = x1f, x1p
    slopes: list[tuple[torch.Tensor, torch.Tensor]] = []
    kinetic = torch.zeros(b, dtype=torch.float64, device=x1f.device)
    div_int = torch.zeros_like(kinetic)
    for k in range(steps):
        t = 1.0 - k * h
        if solver == "midpoint":
            with torch.no_grad():
                wf, wp = field(xf, xp, t)
            if k in profile_step:
                speed[profile_step[k]] = msq(wf, wp)
            sf, sp, div = field_divergence(field, xf - 0.5 * h * wf, xp - 0.5 * h * wp,
                                           t - 0.5 * h, probe_set(k))
        elif solver == "euler":
            sf, sp, div = field_divergence(field, xf, xp, t, probe_set(k))
            if k in profile_step:
                speed[profile_step[k]] = msq(sf, sp)
        else:
            raise ValueError(f"unknown solver {solver!r}; expected 'euler' or 'midpoint'")
        sp = sp * maskf
        slopes.append((sf, sp))
        kinetic += h * msq(sf, sp)
        div_int += h * div
        xf, xp = xf - h * sf, xp - h * sp
    with torch.no_grad():
        wf, wp = field(xf, xp, 0.0)
    speed[0.0] = msq(wf, wp)
    df, dp = x1f - xf, x1p - xp  # x1 - x0, the straight line's velocity
    curvature = sum(h * msq(sf - df, sp - dp) for sf, sp in slopes)
    terminal = msq(xf, xp)  # |x0|^2 / D
    # -log N(x0; 0, I) = |x0|^2 / 2 + D log(2 pi) / 2; log p(x1) = log N(x0) - int div dt.
    nll = 0.5 * terminal + 0.5 * math.log(2 * math.pi) + div_int / dim
    return torch.stack([terminal, kinetic, curvature, nll] +
                       [speed[t] for t in PROFILE_TIMES], dim=1)


def model_field(model: JanusNet, batch: Batch, ode_flags: str = "visible") -> Field:
    """The JANUS velocity field of ``batch`` as :data:`Field`, with the conventions of
    :func:`janus.model.score.terminal_point`'s ODE: padding enters as 0 and its velocity is
    dropped; the packet tokens see the observed flags at ``t_d = 1`` (``"visible"``) or every
    flag MASK at ``t_d = 0`` (``"hidden"``)."""
    b = batch.flow.shape[0]
    ones = torch.ones(b, device=batch.flow.device)
    maskf = batch.mask[..., None].to(batch.cont.dtype)
    if ode_flags == "hidden":
        disc, t_d = torch.full_like(batch.disc, MASK), 0.0
    else:
        disc, t_d = batch.disc, 1.0

    def field(xf: torch.Tensor, xp: torch.Tensor, t: float) -> tuple[torch.Tensor, torch.Tensor]:
        vf, vp, _ = model(xf, xp * maskf, disc, batch.lengths, t * ones, t_d * ones)
        return vf.float(), vp.float() * maskf

    return field


def extended_batch(model: JanusNet, batch: Batch, steps: int = 4, solver: str = "midpoint",
                   ode_flags: str = "visible", probes: int = 1, probe_seed: int = 0
                   ) -> torch.Tensor:
    """:func:`path_scores` of a JANUS batch: float64 ``(B, 7)``."""
    return path_scores(model_field(model, batch, ode_flags), batch.flow, batch.cont, batch.mask,
                       batch.flow_id.cpu().numpy(), steps, solver, probes, probe_seed)
