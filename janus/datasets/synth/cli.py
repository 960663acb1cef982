"""``janus synth``: write the embedded default dataset (four synthetic sites)."""

from __future__ import annotations

import argparse
import datetime as dt
import logging

from tqdm import tqdm

from janus.cli import run_main
from janus.datasets.synth.generator import DEFAULT_SNAPLEN, generate_site
from janus.datasets.synth.sites import SITES
from janus.errors import ConfigError

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="janus synth",
        description="Write synthetic captures with ground truth: per site DIR/<site>/capture.pcap, "
        "DIR/<site>/GeneratedLabelledFlows.csv (CIC layout, site-local timestamps) and DIR/<site>/site.json.",
    )
    p.add_argument("--out", required=True, help="output folder; one sub-folder per site")
    p.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives byte-identical "
                   "pcap and CSV files (default 0)")
    p.add_argument("--sites", default=",".join(SITES),
                   help=f"comma-separated sites to generate, from {', '.join(SITES)} (default: all)")
    p.add_argument("--scale", type=float, default=1.0,
                   help="multiplies flow counts and the capture length (7200 s x scale, at least 720 s); "
                   "1.0 gives >= 5000 benign and >= 2000 attack flows per site, 0.1 a tiny version for tests")
    p.add_argument("--start", default="2026-01-05T09:00:00",
                   help="capture start in each site's LOCAL time, ISO format (default 2026-01-05T09:00:00)")
    p.add_argument("--snaplen", type=int, default=DEFAULT_SNAPLEN,
                   help="bytes kept per frame in the pcap, like tcpdump -s; the wire length of every "
                   f"packet stays whole (default {DEFAULT_SNAPLEN}: all headers, the start of the payload; "
                   "262144 keeps whole frames at ~6x the file size)")
    return p


def parse_sites(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in names if s not in SITES]
    if unknown or not names:
        raise ConfigError(f"--sites: unknown site(s) {unknown or text!r}; choose from {', '.join(SITES)}")
    return names


def run(args: argparse.Namespace) -> int:
    sites = parse_sites(args.sites)
    if not args.scale > 0:
        raise ConfigError(f"--scale must be positive, got {args.scale}")
    if args.snaplen < 96:
        raise ConfigError(f"--snaplen {args.snaplen} would cut packet headers; use at least 96")
    try:
        start = dt.datetime.fromisoformat(args.start)
    except ValueError as exc:
        raise ConfigError(f"--start {args.start!r} is not an ISO date-time like 2026-01-05T09:00:00") from exc
    if start.tzinfo is not None:
        raise ConfigError(f"--start {args.start!r}: give a local wall-clock time without a UTC offset")
    for name in tqdm(sites, desc="synth", unit="site", disable=None):
        meta = generate_site(name, args.out, seed=args.seed, scale=args.scale, start_local=start,
                             snaplen=args.snaplen)
        log.info("%s: %s", name, ", ".join(f"{k} {v}" for k, v in meta["counts"].items()))
    return 0


def main(argv=None) -> int:
    return run_main(build_parser, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
