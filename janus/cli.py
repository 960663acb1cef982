"""The ``janus`` command: one subcommand per pipeline step.

``janus STEP ARGS...`` runs ``python -m janus.STEP ARGS...``; each step module owns its
argument parser, so ``janus STEP --help`` and ``python -m janus.STEP --help`` agree.
Modules are imported only when their step runs, so ``janus extract`` never pays for
importing PyTorch.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence

from janus import __version__
from janus.errors import JanusError

#: step name -> (module, one-line description). Order is the pipeline's order.
STEPS: dict[str, tuple[str, str]] = {
    "synth": ("janus.synth", "write the embedded default: four synthetic sites as pcap + label CSV"),
    "download": ("janus.download", "fetch one of the paper's datasets (CIC portal, mirror or local)"),
    "extract": ("janus.extract", "captures -> packets.npz, flows.parquet, flow_features.parquet"),
    "merge": ("janus.merge", "join per-file extract outputs into one dataset (flow_id renumbered)"),
    "features": ("janus.features", "recompute flow_features.parquet from packets.npz"),
    "labels": ("janus.labels", "label flows by CIC CSV join, attacker IPs, or file/folder"),
    "splits": ("janus.splits", "deterministic benign-train / benign-val / test split per seed"),
    "train": ("janus.train", "train the JANUS flow-matching model on benign flows"),
    "score": ("janus.score", "write the 10-d score vector of every flow of a dataset"),
    "aggregate": ("janus.aggregate", "Mahalanobis-OAS (and ablation) scalars from score vectors"),
    "evaluate": ("janus.evaluate", "AUROC, thresholded P/R/F1, TPR@1%FPR, per-attack AUROC"),
    "baseline": ("janus.baselines", "train and score a baseline detector on the same splits"),
    "report": ("janus.report", "result tables (markdown) and figures"),
    "models": ("janus.models", "deployable model folders (checkpoint, aggregator, thresholds, card)"),
    "detect": ("janus.detect", "score new captures with a model folder: one verdict row per flow"),
    "explain": ("janus.explain", "why one flow scored high: score columns, packets, a figure"),
}


def setup_logging(verbose: int = 0) -> None:
    """Log to stderr: INFO by default, DEBUG with -v."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def run_main(
    build_parser: Callable[[], argparse.ArgumentParser],
    run: Callable[[argparse.Namespace], int | None],
    argv: Sequence[str] | None = None,
) -> int:
    """Parse ``argv``, run the step, and turn a :class:`JanusError` into a one-line message.

    Returns the process exit status: 0 on success, 2 for a user error, 130 on Ctrl-C.
    """
    parser = build_parser()
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    try:
        status = run(args)
    except JanusError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted; no partial output was kept", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `janus STEP ... | head` closed our stdout: not an error worth a traceback.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    return int(status or 0)


def _usage() -> str:
    width = max(map(len, STEPS))
    lines = [f"  {name:<{width}}  {desc}" for name, (_, desc) in STEPS.items()]
    return (
        "usage: janus [--version] STEP [ARGS...]\n\n"
        "JANUS: unsupervised network intrusion detection with flow matching.\n\n"
        "steps:\n" + "\n".join(lines) + "\n\n"
        "Run 'janus STEP --help' for the options of a step. The whole pipeline is driven by\n"
        "Snakemake: snakemake --cores all results/cross_matrix.md\n"
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] == "--version":
        print(f"janus {__version__}")
        return 0
    step, rest = argv[0], argv[1:]
    if step not in STEPS:
        print(f"janus: unknown step {step!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(STEPS[step][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
