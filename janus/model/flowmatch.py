"""Probability paths of the JANUS model, as pure functions (no module state, explicit RNG).

Continuous side -- conditional flow matching with an optimal-transport coupling (OT-CFM):

* source ``x0 ~ N(0, I)``, data ``x1``, time ``t ~ U(0, 1)``;
* path ``x_t = t x1 + (1 - t) x0 + sigma eps`` with ``eps ~ N(0, I)``;
* regression target ``u_t = x1 - x0`` (the velocity of the straight line from ``x0`` to ``x1``);
* in a minibatch, ``x0`` is re-paired with ``x1`` by minibatch optimal transport
  (:func:`ot_pair_indices`). The default, ``exact``, is the assignment that minimises the
  total squared distance (:func:`exact_assignment`, a permutation): the pairs of a batch then
  never cross (for any two pairs, swapping partners would not lower the cost), so the
  regression targets of nearby points agree and the learned field's paths are straighter
  than with independent pairs. ``sinkhorn`` samples the pairs from an entropic plan
  (:func:`sinkhorn_plan`, regularisation relative to the cost's spread), ``none`` keeps the
  independent pairing. The pairing is straight only within a minibatch; across batches,
  paths may still cross.

Discrete side -- discrete flow matching on the mixture path:

* each binary value equals the data value with probability ``kappa(t)`` and is replaced by a
  draw from the source distribution otherwise (:func:`mixture_corrupt`);
* ``kappa(t) = t`` (:func:`kappa`).

JANUS uses the MASK source (an absorbing state, index :data:`MASK`): on a binary alphabet a
uniform source turns a corrupted value into a fair coin that the model cannot tell apart from
a clean one, so it would have to guess which inputs to trust; with MASK the corrupted
positions are known, the loss is taken exactly there, and scoring can ask for the
distribution of every flag with all flags hidden. The uniform source is kept for tests and
comparisons.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

#: Discrete state index of the MASK (absorbing) source token; the binary values are 0 and 1.
MASK = 2
#: Number of discrete input states (0, 1, MASK).
N_DISC_STATES = 3
#: Minibatch couplings of ``x0`` to ``x1`` (:func:`ot_pair_indices`); the first is the default.
OT_METHODS = ("exact", "sinkhorn", "none")


# --------------------------------------------------------------------------- continuous
def cfm_path(
    x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor, sigma: float, eps: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Point on the Gaussian-smoothed straight path and its CFM target.

    ``x0``, ``x1``, ``eps``: same shape ``(B, ...)``; ``t``: ``(B,)`` in [0, 1].
    Returns ``(x_t, u_t)`` with ``x_t = t x1 + (1-t) x0 + sigma eps`` and ``u_t = x1 - x0``.
    """
    tb = t.reshape(t.shape[0], *([1] * (x1.dim() - 1)))
    return tb * x1 + (1.0 - tb) * x0 + sigma * eps, x1 - x0


def masked_sq_cost(x0: torch.Tensor, x1: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean cost between every source and data row, over the data row's valid dims.

    ``x0``: ``(B0, D)``; ``x1``, ``mask``: ``(B1, D)`` (mask 1 where ``x1`` has a value, 0 on
    padding). Returns ``C`` ``(B0, B1)`` with ``C[i, j] = sum_d mask[j,d] (x0[i,d] - x1[j,d])^2``:
    a source row paired with a short flow is charged only on that flow's dimensions.
    """
    m = mask.to(x1.dtype)
    # Expanded square: three matmuls instead of a (B0, B1, D) difference tensor.
    cost = (x0 * x0) @ m.T - 2.0 * x0 @ (m * x1).T + (m * x1 * x1).sum(1)[None, :]
    return cost.clamp_min_(0.0)


def normalise_cost(cost: torch.Tensor) -> torch.Tensor:
    """``(cost - min) / std`` over all entries (a constant cost maps to 0): the scale on which
    Sinkhorn's ``reg`` is read. Shifting by a constant does not change an OT plan; it only
    keeps the Gibbs kernel of the smallest cost at 1."""
    c = cost - cost.min()
    return c / c.std().clamp_min(1e-30) if c.numel() > 1 else c


def sinkhorn_plan(
    cost: torch.Tensor, reg: float = 0.05, n_iter: int = 100, tol: float = 1e-4
) -> torch.Tensor:
    """Entropic OT plan between uniform marginals, by Sinkhorn iterations.

    ``cost``: ``(B0, B1)``, any scale; it is normalised by :func:`normalise_cost` (minus its
    minimum, divided by its standard deviation), so ``reg`` is relative to the spread of the
    costs, which is what decides how many partners a row has: the mean would not do, since in
    high dimension the costs of a batch are all close to their mean (spread ~0.2 of it at
    26-68 dims). ``reg -> 0`` approaches the exact assignment. Stops after ``n_iter``
    iterations or when the row marginals are within ``tol`` (relative, L1) of uniform.
    Returns the float32 plan ``P`` ``(B0, B1)``, rows summing to ``1/B0``, columns to ``1/B1``.

    The scaling form (two matrix-vector products per iteration) runs in float64 on the Gibbs
    kernel with each row shifted by its minimum cost, which keeps every row's largest entry at
    1; only when a whole column still underflows (``reg`` tiny against the cost spread) does it
    fall back to the log-domain iteration, which is exact at any ``reg`` but ~10x slower.
    """
    c = normalise_cost(cost.double())
    n0, n1 = c.shape
    kernel = torch.exp(-(c - c.min(1, keepdim=True).values) / reg)  # (B0, B1)
    if bool((kernel.sum(0) < 1e-280).any()):
        return _sinkhorn_log(c, reg, n_iter, tol).float()
    a = torch.full((n0,), 1.0 / n0, dtype=c.dtype, device=c.device)
    b = torch.full((n1,), 1.0 / n1, dtype=c.dtype, device=c.device)
    v = torch.ones_like(b)
    for it in range(n_iter):
        u = a / (kernel @ v)
        v = b / (kernel.T @ u)
        # Columns are exact after the v update; check the rows every few iterations.
        if it % 10 == 9 and ((u * (kernel @ v)) * n0 - 1.0).abs().sum() / n0 < tol:
            break
    return (u[:, None] * kernel * v[None, :]).float()


def _sinkhorn_log(c: torch.Tensor, reg: float, n_iter: int, tol: float) -> torch.Tensor:
    """Log-domain Sinkhorn on a normalised cost ``c`` (see :func:`sinkhorn_plan`)."""
    n0, n1 = c.shape
    log_k = -c / reg
    log_a = torch.full((n0,), -math.log(n0), dtype=c.dtype, device=c.device)
    log_b = torch.full((n1,), -math.log(n1), dtype=c.dtype, device=c.device)
    f = torch.zeros(n0, dtype=c.dtype, device=c.device)
    g = torch.zeros(n1, dtype=c.dtype, device=c.device)
    for it in range(n_iter):
        f = log_a - torch.logsumexp(log_k + g[None, :], dim=1)
        g = log_b - torch.logsumexp(log_k + f[:, None], dim=0)
        if it % 10 == 9:
            rows = torch.logsumexp(log_k + g[None, :], dim=1) + f
            if (rows.exp() * n0 - 1.0).abs().sum() / n0 < tol:
                break
    return torch.exp(log_k + f[:, None] + g[None, :])


def exact_assignment(cost: torch.Tensor) -> torch.Tensor:
    """For each data column ``j`` of ``cost`` ``(B0, B1)`` (``B0 >= B1``), the source row it is
    assigned to by the minimum-total-cost matching (Hungarian / Jonker-Volgenant, scipy's
    ``linear_sum_assignment`` in float64 on the CPU; deterministic). Distinct rows for
    distinct columns: with ``B0 == B1`` a permutation. Returns int64 ``(B1,)`` on ``cost``'s
    device.
    """
    n0, n1 = cost.shape
    if n1 > n0:
        raise ValueError(f"exact assignment needs at least as many source rows as data rows, got {n0} < {n1}")
    rows, cols = linear_sum_assignment(cost.detach().double().cpu().numpy().T)  # rows = data j
    idx = np.empty(n1, dtype=np.int64)
    idx[rows] = cols
    return torch.from_numpy(idx).to(cost.device)


def ot_pair_indices(
    x0: torch.Tensor,
    x1: torch.Tensor,
    mask: torch.Tensor,
    generator: torch.Generator | None,
    method: str = "exact",
    reg: float = 0.05,
    n_iter: int = 100,
) -> torch.Tensor:
    """For each data row ``j``, the index of the source row it is paired with.

    ``x0`` ``(B, D)``, ``x1`` ``(B, D)``, ``mask`` ``(B, D)``; the cost is
    :func:`masked_sq_cost`. ``method``:

    * ``"exact"``: the permutation of minimum total cost (:func:`exact_assignment`), every
      source and every data row used exactly once; ``generator`` is not used;
    * ``"sinkhorn"``: row ``j``'s index is drawn from the entropic plan's conditional
      ``P(i | j)`` (``reg`` relative to the cost spread, see :func:`sinkhorn_plan`;
      ``generator`` makes it reproducible), so every data row is used once and a source row
      may be used more than once, as in sampling a minibatch from the coupling;
    * ``"none"``: the identity (independent pairing).

    Returns int64 ``(B,)``; apply it as ``x0[idx]``.
    """
    if method == "none":
        return torch.arange(x1.shape[0], device=x1.device)
    if method not in OT_METHODS:
        raise ValueError(f"unknown OT method {method!r}; expected one of {', '.join(OT_METHODS)}")
    cost = masked_sq_cost(x0.float(), x1.float(), mask)  # (B, B)
    if method == "exact":
        return exact_assignment(cost)
    plan = sinkhorn_plan(cost, reg=reg, n_iter=n_iter)
    cond = plan.T  # (B1, B0): row j is proportional to P(i | j)
    cond = cond / cond.sum(1, keepdim=True).clamp_min(1e-30)
    return torch.multinomial(cond, 1, generator=generator).squeeze(1)


# --------------------------------------------------------------------------- discrete
def kappa(t: torch.Tensor) -> torch.Tensor:
    """Mixture-path schedule: probability that a value is still the data value at time ``t``."""
    return t


def mixture_corrupt(
    x1: torch.Tensor,
    keep_prob: torch.Tensor,
    source: str,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample the mixture path ``p_t(x | x1) = kappa x1 + (1 - kappa) p_source``.

    ``x1``: int64 ``(B, ...)`` with values in {0, 1}; ``keep_prob``: ``(B,)`` (``kappa(t)``).
    ``source``: ``"mask"`` (replace by :data:`MASK`) or ``"uniform"`` (replace by a fair draw
    from {0, 1}, which equals the data value half of the time). Returns ``(x_t, replaced)``:
    ``x_t`` int64 like ``x1`` and the boolean positions that were replaced by a source draw.
    """
    kb = keep_prob.reshape(keep_prob.shape[0], *([1] * (x1.dim() - 1)))
    u = torch.rand(x1.shape, generator=generator, device=x1.device)
    replaced = u >= kb
    if source == "mask":
        fill = torch.full_like(x1, MASK)
    elif source == "uniform":
        fill = torch.randint(0, 2, x1.shape, generator=generator, device=x1.device)
    else:
        raise ValueError(f"unknown discrete source {source!r}; expected 'mask' or 'uniform'")
    return torch.where(replaced, fill, x1), replaced
