"""Tests of janus/model/flowmatch.py: OT coupling, CFM path, discrete mixture path."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from janus.model.flowmatch import (
    MASK,
    _sinkhorn_log,
    cfm_path,
    exact_assignment,
    kappa,
    masked_sq_cost,
    mixture_corrupt,
    normalise_cost,
    ot_pair_indices,
    sinkhorn_plan,
)


def test_sinkhorn_recovers_a_permutation() -> None:
    g = torch.Generator().manual_seed(0)
    x1 = torch.randn(32, 12, generator=g)
    perm = torch.randperm(32, generator=g)
    x0 = x1[perm] + 0.01 * torch.randn(32, 12, generator=g)  # x0[i] is a copy of x1[perm[i]]
    idx = ot_pair_indices(x0, x1, torch.ones_like(x1, dtype=torch.bool), g, method="sinkhorn", reg=0.01)
    # x0[idx[j]] must be the copy of x1[j], i.e. idx is the inverse permutation.
    np.testing.assert_array_equal(perm[idx].numpy(), np.arange(32))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_assignment_is_the_minimum_cost_permutation(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    cost = torch.rand(7, 7, generator=g) ** 3  # skewed: greedy nearest partners are not optimal
    idx = exact_assignment(cost)
    assert sorted(idx.tolist()) == list(range(7))
    total = cost[idx, torch.arange(7)].sum().item()
    brute = min(sum(cost[p[j], j].item() for j in range(7)) for p in itertools.permutations(range(7)))
    assert total == pytest.approx(brute, rel=1e-6)


def test_exact_assignment_hand_built() -> None:
    # Data row j=0 is nearest to source 0 but so is j=1, which has nothing else close: the
    # optimum gives source 0 to j=1 (greedy column-by-column would give it to j=0).
    cost = torch.tensor([[1.0, 0.0, 9.0],
                         [2.0, 9.0, 9.0],
                         [9.0, 9.0, 0.0]])
    np.testing.assert_array_equal(exact_assignment(cost).numpy(), [1, 0, 2])
    # More source rows than data rows: distinct sources, the cheapest ones.
    rect = torch.tensor([[5.0, 5.0], [0.0, 1.0], [1.0, 0.0]])
    np.testing.assert_array_equal(exact_assignment(rect).numpy(), [1, 2])
    with pytest.raises(ValueError, match="at least as many source rows"):
        exact_assignment(rect.T)


def test_exact_ot_recovers_a_permutation_and_lowers_the_cost() -> None:
    g = torch.Generator().manual_seed(0)
    x1 = torch.randn(64, 30, generator=g)
    perm = torch.randperm(64, generator=g)
    x0 = x1[perm] + 0.3 * torch.randn(64, 30, generator=g)
    mask = torch.ones_like(x1, dtype=torch.bool)
    idx = ot_pair_indices(x0, x1, mask, None, method="exact")
    np.testing.assert_array_equal(perm[idx].numpy(), np.arange(64))
    # Independent Gaussians: exact pairs cost less than the identity and than Sinkhorn's.
    x0 = torch.randn(128, 30, generator=g)
    cost = masked_sq_cost(x0, x1.repeat(2, 1), torch.ones(128, 30))
    pair_cost = {m: cost[ot_pair_indices(x0, x1.repeat(2, 1), torch.ones(128, 30), g, method=m),
                         torch.arange(128)].mean().item() for m in ("exact", "sinkhorn", "none")}
    assert pair_cost["exact"] < pair_cost["sinkhorn"] < pair_cost["none"]
    np.testing.assert_array_equal(ot_pair_indices(x0, x1.repeat(2, 1), torch.ones(128, 30), g, method="none"),
                                  np.arange(128))
    with pytest.raises(ValueError, match="unknown OT method 'emd'"):
        ot_pair_indices(x0, x0, torch.ones(128, 30), g, method="emd")


def test_sinkhorn_reg_is_relative_to_the_cost_spread() -> None:
    # The plan depends on the spread of the costs, not on their level: adding a constant
    # (as a larger dimension adds to every squared distance) or rescaling leaves it unchanged.
    cost = torch.rand(16, 16, generator=torch.Generator().manual_seed(5))
    plan = sinkhorn_plan(cost, reg=0.1, n_iter=500, tol=1e-8)
    torch.testing.assert_close(sinkhorn_plan(3.0 * cost + 50.0, reg=0.1, n_iter=500, tol=1e-8), plan,
                               rtol=1e-4, atol=1e-7)
    c = normalise_cost(3.0 * cost + 50.0)
    assert c.min().item() == 0.0 and c.std().item() == pytest.approx(1.0)


def test_sinkhorn_plan_has_uniform_marginals() -> None:
    cost = torch.rand(20, 20, generator=torch.Generator().manual_seed(1))
    plan = sinkhorn_plan(cost, reg=0.1, n_iter=500, tol=1e-8)
    torch.testing.assert_close(plan.sum(0), torch.full((20,), 1 / 20), rtol=1e-4, atol=0)
    torch.testing.assert_close(plan.sum(1), torch.full((20,), 1 / 20), rtol=1e-4, atol=0)
    # The scaling form and the log-domain form agree where both are usable.
    c = normalise_cost(cost.double())
    torch.testing.assert_close(plan, _sinkhorn_log(c, 0.1, 500, 1e-8).float(), rtol=1e-4, atol=1e-7)


def test_sinkhorn_falls_back_to_log_domain_when_the_kernel_underflows() -> None:
    # Column 1 costs 1e4 x the mean more than column 0 for every row: exp(-c/reg) underflows.
    cost = torch.tensor([[0.0, 1e4], [0.0, 1e4 + 1.0]])
    plan = sinkhorn_plan(cost, reg=1e-3)
    assert torch.isfinite(plan).all()
    torch.testing.assert_close(plan.sum(0), torch.full((2,), 0.5), rtol=1e-4, atol=0)
    torch.testing.assert_close(plan.sum(1), torch.full((2,), 0.5), rtol=1e-4, atol=0)


def test_masked_cost_matches_brute_force() -> None:
    g = torch.Generator().manual_seed(2)
    x0, x1 = torch.randn(5, 7, generator=g), torch.randn(6, 7, generator=g)
    mask = torch.rand(6, 7, generator=g) > 0.4
    brute = ((x0[:, None, :] - x1[None, :, :]) ** 2 * mask[None].float()).sum(-1)
    torch.testing.assert_close(masked_sq_cost(x0, x1, mask), brute, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("t", [0.0, 0.25, 1.0])
def test_cfm_straight_path_closed_form(t: float) -> None:
    g = torch.Generator().manual_seed(3)
    x0, x1, eps = (torch.randn(4, 3, generator=g) for _ in range(3))
    tt = torch.full((4,), t)
    xt, u = cfm_path(x0, x1, tt, sigma=0.1, eps=eps)
    torch.testing.assert_close(xt, t * x1 + (1 - t) * x0 + 0.1 * eps)
    torch.testing.assert_close(u, x1 - x0)
    # Without noise the target is the time derivative of the path.
    h = 1e-3
    xa, _ = cfm_path(x0, x1, tt, 0.0, eps)
    xb, _ = cfm_path(x0, x1, tt + h, 0.0, eps)
    torch.testing.assert_close((xb - xa) / h, u, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("source,p_clean_from_source", [("mask", 0.0), ("uniform", 0.5)])
@pytest.mark.parametrize("t", [0.0, 0.3, 0.8, 1.0])
def test_mixture_path_marginals(source: str, p_clean_from_source: float, t: float) -> None:
    g = torch.Generator().manual_seed(4)
    n = 200_000
    x1 = torch.randint(0, 2, (n // 4, 4), generator=g)
    xt, replaced = mixture_corrupt(x1, kappa(torch.full((n // 4,), t)), source, g)
    k = float(kappa(torch.tensor(t)))
    expected = k + (1 - k) * p_clean_from_source
    freq = (xt == x1).float().mean().item()
    assert abs(freq - expected) < 4 * np.sqrt(expected * (1 - expected) / n) + 1e-9
    assert abs(replaced.float().mean().item() - (1 - k)) < 4 * np.sqrt(k * (1 - k) / n) + 1e-9
    if source == "mask":
        assert torch.equal(xt == MASK, replaced)
    else:
        assert set(xt.unique().tolist()) <= {0, 1}


def test_mixture_path_rejects_unknown_source() -> None:
    with pytest.raises(ValueError, match="unknown discrete source"):
        mixture_corrupt(torch.zeros(2, 3, dtype=torch.long), torch.ones(2), "gauss", None)
