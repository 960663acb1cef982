"""How much of the optimal-transport cost reduction each minibatch coupling recovers, and what
the exact assignment costs per batch.

Usage: python benchmarks/bench_ot.py --data DIR [DIR ...] [--splits SPLITS.npz ...]
       [--max-packets 16] [--batch-size 128] [--batches 20] [--seed 0]

For each dataset it standardises the flows as ``janus train`` does (statistics of the training
flows: the ``train`` ids of ``--splits``, else every flow), cuts them into the training
batches (length-bucketed, ``--batch-size``), draws the source noise as
:func:`janus.model.train.joint_loss` does and builds the masked squared cost of the FLOW token's 20
features and each valid packet's 3 continuous values. Per coupling it prints the mean paired
squared distance per valid dimension, and the share of the exact assignment's cost reduction
(independent pairing -> exact) that it recovers:

* ``none``: the independent pairing (0 % by definition);
* ``exact``: :func:`janus.model.flowmatch.exact_assignment` (100 % by definition);
* ``sinkhorn`` at ``reg`` 0.05 relative to the cost spread (today's ``--ot sinkhorn``) and the
  coupling before it, ``reg`` 0.05 relative to the mean cost (reproduced exactly by passing
  ``0.05 * mean / std`` of each batch's cost): pairs sampled from the plan as in training,
  with ``partners`` = the mean effective number of source rows per data row
  (``1 / sum_i P(i | j)^2``).

It also prints the batch's cost spread (std / mean of the cost entries) and the median time
per batch of the cost matrix plus exact assignment and of Sinkhorn (one thread).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from janus.datasets.splits import load_splits
from janus.model.data import FeatureStats, length_batches, load_dataset
from janus.model.flowmatch import exact_assignment, masked_sq_cost, sinkhorn_plan


def batch_costs(data: Path, splits: Path | None, t: int, batch_size: int, n_batches: int,
                seed: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]]:
    """``(x0, x1, mask, valid_dims)`` of up to ``n_batches`` full training batches."""
    ds = load_dataset(data)
    ids = load_splits(splits)["train"] if splits else np.arange(ds.n_flows)
    stats = FeatureStats.fit(ds, ids, t)
    prep = stats.prepare(ds, ids, t)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    out = []
    for idx in length_batches(prep.lengths, batch_size, rng):
        if len(idx) < batch_size:
            continue
        b = prep.batch(idx)
        n = len(idx)
        x1 = torch.cat([b.flow, b.cont.reshape(n, -1)], 1)  # (B, 20 + 3L)
        mask = torch.cat([torch.ones_like(b.flow, dtype=torch.bool),
                          b.mask[:, :, None].expand(-1, -1, b.cont.shape[2]).reshape(n, -1)], 1)
        x0 = torch.cat([torch.randn(b.flow.shape, generator=gen),
                        torch.randn(b.cont.shape, generator=gen).reshape(n, -1)], 1)
        out.append((x0, x1, mask, int(mask.sum())))
        if len(out) == n_batches:
            break
    return out


def sampled(plan: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, float]:
    """Source index per data row drawn from ``P(i | j)``, and the mean effective partners."""
    cond = plan.T / plan.T.sum(1, keepdim=True)  # (B1, B0)
    partners = (1.0 / (cond ** 2).sum(1)).mean().item()
    return torch.multinomial(cond, 1, generator=gen).squeeze(1), partners


def median_ms(fn, repeats: int = 20) -> float:
    """Median CPU time of ``fn`` in ms: process time, so that a shared, loaded machine's
    preemption (tens of ms per time slice) does not enter."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return 1e3 * float(np.median(times))


def report(name: str, batches: list, reg: float, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    rows: dict[str, list[float]] = {}
    partners: dict[str, list[float]] = {}
    spread, dims = [], []
    for x0, x1, mask, valid in batches:
        cost = masked_sq_cost(x0, x1, mask)  # (B, B)
        b = cost.shape[0]
        cols = torch.arange(b)
        spread.append((cost.std() / cost.mean()).item())
        dims.append(valid / b)
        idx = {"none": cols, "exact": exact_assignment(cost)}
        for label, r in ((f"sinkhorn reg {reg} x spread", reg),
                         (f"sinkhorn reg {reg} x mean (before)", reg * (cost.mean() / cost.std()).item())):
            idx[label], p = sampled(sinkhorn_plan(cost, reg=r), gen)
            partners.setdefault(label, []).append(p)
        for label, i in idx.items():
            rows.setdefault(label, []).append(cost[i, cols].sum().item() / valid)
    none, exact = np.mean(rows["none"]), np.mean(rows["exact"])
    print(f"\n{name}: {len(batches)} batches of {batches[0][0].shape[0]}, "
          f"{np.mean(dims):.1f} valid dims per row (mean), cost std/mean {np.mean(spread):.3f}")
    print(f"  {'coupling':<34} {'sq. dist/dim':>12} {'of exact gain':>13} {'partners':>9}")
    for label, v in rows.items():
        share = (none - np.mean(v)) / (none - exact) if none > exact else float("nan")
        p = f"{np.mean(partners[label]):9.1f}" if label in partners else f"{1.0:9.1f}"
        print(f"  {label:<34} {np.mean(v):12.4f} {100 * share:12.1f}% {p}")
    t_exact = [median_ms(lambda x0=x0, x1=x1, m=m: exact_assignment(masked_sq_cost(x0, x1, m))) for x0, x1, m, _ in batches]
    t_sink = [median_ms(lambda x0=x0, x1=x1, m=m: sinkhorn_plan(masked_sq_cost(x0, x1, m), reg=reg)) for x0, x1, m, _ in batches]
    print(f"  CPU ms per batch (median of 20 per batch; mean, max over batches): cost + exact assignment "
          f"{np.mean(t_exact):.2f}, {np.max(t_exact):.2f}; cost + Sinkhorn plan {np.mean(t_sink):.2f}, "
          f"{np.max(t_sink):.2f} ({torch.get_num_threads()} thread)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", nargs="+", required=True, type=Path, help="dataset folder(s) (janus extract)")
    p.add_argument("--splits", nargs="*", default=None,
                   help="SPLITS.npz per --data ('-' = every flow): batches of the train ids "
                        "(default: every flow of every dataset)")
    p.add_argument("--max-packets", type=int, default=16, help="T (default 16, the default config)")
    p.add_argument("--batch-size", type=int, default=128, help="flows per batch (default 128)")
    p.add_argument("--batches", type=int, default=20, help="batches per dataset (default 20)")
    p.add_argument("--reg", type=float, default=0.05, help="Sinkhorn reg (default 0.05)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(1)
    splits = args.splits or [None] * len(args.data)
    if len(splits) != len(args.data):
        p.error("--splits takes one file per --data")
    for data, sp in zip(args.data, splits):
        sp = None if sp in (None, "-") else Path(sp)
        batches = batch_costs(data, sp, args.max_packets, args.batch_size, args.batches, args.seed)
        if not batches:
            print(f"\n{data}: fewer than {args.batch_size} flows, no full batch")
            continue
        report(str(data), batches, args.reg, args.seed)


if __name__ == "__main__":
    main()
