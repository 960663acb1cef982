"""AUROC, OAS, terminal-point second moment and CPU time of JANUS scoring options.

Usage: python benchmarks/score_modes.py --checkpoint RUN/model.pt --data DIR --splits SPLITS.npz
       [--option MODE[:SOLVER:STEPS:FLAGS] ...]

For each option (e.g. ``onepass``, ``ode:midpoint:2:visible``) it scores the validation and
test flows of ``--splits`` on one thread and prints one JSON line: the test AUROC of each
continuous score and of ``disc_nll_total``; the test AUROC of the OAS aggregate of all 10
columns fitted on the benign validation flows; the per-dimension second moment of the
terminal point ``x0`` on the benign validation flows (flow features: min / mean / max; the
3 packet channels); the Spearman correlation of ``disc_nll_total`` with ``terminal_flow`` on
the test flows (all, benign, attack); the CPU seconds of scoring.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from scipy.stats import spearmanr

from janus.contract import SCORE_COLUMNS
from janus.datasets.splits import load_splits
from janus.evaluation.aggregate import fit_aggregator
from janus.evaluation.metrics import auroc
from janus.io import load_labels
from janus.model import score
from janus.model.checkpoint import load_checkpoint, model_from_checkpoint
from janus.model.data import length_batches, load_dataset


def parse_option(text: str) -> score.ScoreOptions:
    mode, *rest = text.split(":")
    if mode == "onepass":
        return score.ScoreOptions(mode="onepass")
    solver, steps, flags = rest
    return score.ScoreOptions(mode=mode, solver=solver, steps=int(steps), ode_flags=flags)


def second_moments(model, stats, ds, ids, max_packets, opts) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean of ``x0**2`` over flows (20 flow dims) and valid packets (3 dims)."""
    prep = stats.prepare(ds, ids, max_packets)
    f2, p2, n_pkt = np.zeros(20), np.zeros(3), 0.0
    for idx in length_batches(prep.lengths, 1024):
        b = prep.batch(idx)
        x0f, x0p, _ = score.terminal_point(model, b, opts)
        f2 += (x0f.double() ** 2).sum(0).numpy()
        p2 += ((x0p.double() ** 2) * b.mask[..., None]).sum((0, 1)).numpy()
        n_pkt += b.mask.sum().item()
    return f2 / len(ids), p2 / n_pkt


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--splits", required=True)
    p.add_argument("--option", nargs="+", default=["onepass", "ode:midpoint:2:visible"])
    args = p.parse_args()
    torch.set_num_threads(1)
    model, cfg, stats = model_from_checkpoint(load_checkpoint(args.checkpoint, require_finished=True))
    ds = load_dataset(args.data)
    labels = load_labels(args.data)
    sp = load_splits(args.splits)
    val, test = sp["val"], sp["test"]
    ids = np.union1d(val, test)
    y = labels[test]
    for text in args.option:
        opts = parse_option(text)
        t0 = time.process_time()
        s = score.score_flows(model, stats, ds, ids, disable_progress=True, opts=opts)
        cpu = time.process_time() - t0
        sv, st = s[np.searchsorted(ids, val)], s[np.searchsorted(ids, test)]
        oas = fit_aggregator(sv, "oas", SCORE_COLUMNS).apply(st)
        f2, p2 = second_moments(model, stats, ds, val, cfg.max_packets, opts)
        rho = [spearmanr(st[m, 3], st[m, 1]).correlation for m in (y >= 0, y == 0, y == 1)]
        print(json.dumps({
            "option": text, "evaluations": opts.evaluations, "flows": len(ids),
            "cpu_s": round(cpu, 3),
            **{f"auroc_{c}": round(auroc(y, st[:, j]), 4) for j, c in enumerate(SCORE_COLUMNS[:4])},
            "auroc_oas": round(auroc(y, oas), 4),
            "x0_flow_m2_min_mean_max": [round(float(v), 3) for v in (f2.min(), f2.mean(), f2.max())],
            "x0_packet_m2": [round(float(v), 3) for v in p2],
            "spearman_disc_vs_terminal_flow_all_benign_attack": [round(float(r), 3) for r in rho],
        }), flush=True)


if __name__ == "__main__":
    main()
