"""The explain step: why one flow scored as it did.

``janus explain --model DIR CAPTURE [...] --flow "SRC:PORT-DST:PORT/PROTO"`` (or ``--alerts
FILE --row N``, a row of a ``janus detect`` output) finds the flow(s) in the captures (either
direction of the 5-tuple; every flow on it when the 5-tuple recurs), scores only those, and
prints the breakdown of :mod:`janus.deploy.attribution`: each score column's value, z-score
and share of the Mahalanobis distance, then each packet's channels, its share of the distance
and the channel that contributes most. Packets whose share is at least twice an even split
(``2 / n``) are marked ``*``. A figure (``--figure``, PNG, default ``explain.png``) shows the
packets' sizes by direction with the marked ones in red, above a map of every packet's and
channel's share.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from janus.cli import run_main
from janus.contract import BINARY, CHANNELS, SCORE_COLUMNS
from janus.errors import ConfigError, JanusError

log = logging.getLogger(__name__)

PROTOCOLS = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58, "sctp": 132}
#: A packet is marked when its share of the distance is at least this many even splits.
MARK_FACTOR = 2.0


@dataclass(frozen=True)
class FlowKey:
    src_ip: str
    src_port: int
    dst_ip: str
    dst_port: int
    proto: int
    start_time: float | None = None  # a row of an alerts file pins one flow of the 5-tuple

    def text(self) -> str:
        def ep(ip: str, port: int) -> str:
            return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"

        return f"{ep(self.src_ip, self.src_port)}-{ep(self.dst_ip, self.dst_port)}/{self.proto}"


def _endpoint(text: str, spec: str) -> tuple[str, int]:
    text = text.strip()
    if text.startswith("["):
        host, _, port = text[1:].partition("]:")
    else:
        host, _, port = text.rpartition(":")
    try:
        return str(ipaddress.ip_address(host)), int(port)
    except ValueError:
        raise ConfigError(f"--flow {spec!r}: {text!r} is not ADDRESS:PORT (IPv6 as [ADDR]:PORT)") from None


def parse_flow(spec: str) -> FlowKey:
    """``"10.0.0.1:40000-10.0.0.2:80/tcp"`` (protocol by name or number) -> :class:`FlowKey`."""
    body, slash, proto = spec.rpartition("/")
    if not slash or "-" not in body:
        raise ConfigError(f"--flow {spec!r}: expected SRC:PORT-DST:PORT/PROTO, e.g. "
                          "10.0.0.1:40000-10.0.0.2:80/tcp")
    a, _, b = body.partition("-")
    proto = proto.strip().lower()
    number = PROTOCOLS.get(proto)
    if number is None:
        try:
            number = int(proto)
        except ValueError:
            raise ConfigError(f"--flow {spec!r}: protocol {proto!r} is not a number or one of "
                              f"{sorted(PROTOCOLS)}") from None
    return FlowKey(*_endpoint(a, spec), *_endpoint(b, spec), number)


def key_of_row(path: Path, row: int) -> FlowKey:
    """The flow of row ``row`` (0-based) of a ``janus detect`` output file."""
    import polars as pl

    readers = {".csv": pl.read_csv, ".parquet": pl.read_parquet, ".jsonl": pl.read_ndjson,
               ".ndjson": pl.read_ndjson}
    reader = readers.get(path.suffix.lower())
    if reader is None:
        raise ConfigError(f"--alerts {path}: unknown extension; a .csv, .parquet or .jsonl of janus detect")
    if not path.is_file():
        raise JanusError(f"--alerts {path}: not found")
    try:
        df = reader(path)
    except Exception as exc:  # noqa: BLE001 - polars raises many kinds for a damaged file
        raise JanusError(f"--alerts {path}: cannot read ({str(exc).splitlines()[0]})") from None
    need = ("src_ip", "src_port", "dst_ip", "dst_port", "proto", "start_time")
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise JanusError(f"--alerts {path}: columns {missing} missing; not a janus detect output")
    if not 0 <= row < df.height:
        raise ConfigError(f"--row {row}: {path} has rows 0..{df.height - 1}")
    r = df.row(row, named=True)
    return FlowKey(str(r["src_ip"]), int(r["src_port"]), str(r["dst_ip"]), int(r["dst_port"]),
                   int(r["proto"]), float(r["start_time"]))


def find_flows(model, paths, key: FlowKey):
    """Every flow of ``paths`` on ``key``'s 5-tuple (either direction; the one starting at
    ``key.start_time`` when given) -> list of ``(flow row dict, padded packets (T, 9), length,
    features (20,))``."""
    from janus.capture.extract import flows_table
    from janus.capture.features import compact_flow_features
    from janus.capture.stream import iter_flow_chunks

    found = []
    for res in iter_flow_chunks(paths, **model.extraction):
        t = flows_table(res, paths)
        src, dst = np.asarray(t.column("src_ip").to_pylist()), np.asarray(t.column("dst_ip").to_pylist())
        sp, dp = t.column("src_port").to_numpy(), t.column("dst_port").to_numpy()
        proto = t.column("proto").to_numpy()
        fwd = (src == key.src_ip) & (sp == key.src_port) & (dst == key.dst_ip) & (dp == key.dst_port)
        rev = (src == key.dst_ip) & (sp == key.dst_port) & (dst == key.src_ip) & (dp == key.src_port)
        hit = (fwd | rev) & (proto == key.proto)
        if key.start_time is not None:
            hit &= np.abs(t.column("start_time").to_numpy() - key.start_time) < 1e-6
        rows = np.flatnonzero(hit)
        if rows.size == 0:
            continue
        feats = compact_flow_features(res.rows, res.row_start, res.lengths)
        block = res.padded_block(0, len(res))
        for r in rows:
            found.append(({c: t.column(c)[int(r)].as_py() for c in t.column_names},
                          block[r], int(res.lengths[r]), feats[r]))
    return found


def explain_flows(model, found, threshold: float) -> list[dict]:
    """Score the found flows with full detail: one dict per flow (row, scores, detail)."""
    if not found:
        return []
    packets = np.stack([f[1] for f in found])
    lengths = np.array([f[2] for f in found], np.int64)
    feats = np.stack([f[3] for f in found])
    scored = model.score_arrays(packets, lengths, feats, detail_rows=range(len(found)))
    out = []
    for k, (row, *_rest) in enumerate(found):
        out.append({"flow": row, "score": float(scored.scalar[k]), "alert": bool(scored.scalar[k] > threshold),
                    "scores": scored.scores[k], "detail": scored.detail[k],
                    "top_packet": int(scored.packet[k]), "top_channel": str(scored.channel[k]),
                    "top_packet_share": float(scored.packet_share[k])})
    return out


def marked_packets(attribution: np.ndarray, d2: float) -> np.ndarray:
    """bool ``(n,)``: packets whose share of ``d2`` is at least :data:`MARK_FACTOR` / n."""
    n = attribution.shape[0]
    if d2 <= 0 or n == 0:
        return np.zeros(n, bool)
    share = attribution.sum(1) / d2
    return share >= MARK_FACTOR / n


def format_breakdown(model, e: dict, threshold_name: str, threshold: float) -> str:
    """The text breakdown of one explained flow."""
    f, det = e["flow"], e["detail"]
    agg = model.calibration.aggregator
    d2 = det["d2"]
    lines = [(f"flow {FlowKey(f['src_ip'], f['src_port'], f['dst_ip'], f['dst_port'], f['proto']).text()}"
             f"  start {f['start_time']:.6f}  end {f['end_time']:.6f}  {f['n_packets']} packets, "
             f"{f['n_bytes']} bytes"),
             (f"score {e['score']:.4f} ({agg.method} distance), threshold {threshold_name} = "
             f"{threshold:.4f}: {'ALERT' if e['alert'] else 'no alert'}"),
             "", f"{'score column':<20} {'value':>10} {'z':>8} {'share':>7}"]
    zs = dict(zip(agg.used, det["z"]))
    for j, col in enumerate(agg.columns):
        value = e["scores"][SCORE_COLUMNS.index(col)]
        share = det["contribution"][j] / d2 if d2 > 0 else 0.0
        z = f"{zs[col]:8.2f}" if col in zs else f"{'(unused)':>8}"
        lines.append(f"{col:<20} {value:10.4f} {z} {100 * share:6.1f}%")
    raw, a = det["raw"], det["attribution"]
    marks = marked_packets(a, d2)
    flags = [CHANNELS[c] for c in BINARY if c != BINARY[0]]
    lines += ["", (f"top packet {e['top_packet']} channel {e['top_channel']} "
              f"({100 * e['top_packet_share']:.1f}% of the distance); * = share >= "
              f"{MARK_FACTOR:g}/n"), "",
              (f"{'':1} {'pkt':>3} {'dir':>3} {'size B':>7} {'iat s':>10} {'win':>6} "
              f"{'flags':<16} {'share':>7} {'top channel':<12}")]
    for i in range(raw.shape[0]):
        set_flags = ",".join(n for n in flags if raw[i, CHANNELS.index(n)] > 0.5) or "-"
        share = a[i].sum() / d2 if d2 > 0 else 0.0
        top = CHANNELS[int(np.argmax(a[i]))] if d2 > 0 and a[i].max() > 0 else "-"
        lines.append(f"{'*' if marks[i] else ' '} {i:>3} {'>' if raw[i, 2] < 0.5 else '<':>3} "
                     f"{raw[i, 0]:7.0f} {raw[i, 1]:10.6f} {raw[i, 8]:6.0f} {set_flags:<16} "
                     f"{100 * share:6.1f}% {top:<12}")
    if f["n_packets"] > raw.shape[0]:
        lines.append(f"  (the model reads the first {raw.shape[0]} of {f['n_packets']} packets)")
    return "\n".join(lines)


def plot_flow(e: dict, path: Path) -> None:
    """A PNG of one explained flow: sizes by direction (marked packets red) above a map of
    the per-packet, per-channel shares of the distance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from janus.io import atomic_path

    det = e["detail"]
    raw, a, d2 = det["raw"], det["attribution"], det["d2"]
    n = raw.shape[0]
    marks = marked_packets(a, d2)
    share = a / d2 if d2 > 0 else np.zeros_like(a)
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(max(4.0, 0.35 * n + 2), 4.5), sharex=True,
                                   constrained_layout=True, gridspec_kw={"height_ratios": [1, 1.2]})
    x = np.arange(n)
    sign = np.where(raw[:, 2] < 0.5, 1.0, -1.0)
    colors = np.where(marks, "tab:red", "tab:gray")
    ax1.bar(x, sign * raw[:, 0], color=colors)
    ax1.axhline(0, color="black", lw=0.5)
    ax1.set_ylabel("size, bytes\n(+ initiator, - responder)")
    f = e["flow"]
    ax1.set_title(f"{FlowKey(f['src_ip'], f['src_port'], f['dst_ip'], f['dst_port'], f['proto']).text()}"
                  f"  score {e['score']:.2f}{'  ALERT' if e['alert'] else ''}", fontsize=9)
    lim = max(float(np.abs(share).max()), 1e-9)
    im = ax2.imshow(share.T, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim,
                    interpolation="nearest")
    ax2.set_yticks(range(len(CHANNELS)), CHANNELS, fontsize=7)
    ax2.set_xlabel("packet index")
    ax2.set_xticks(x)
    fig.colorbar(im, ax=ax2, label="share of distance$^2$")
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="janus explain", description=__doc__.split("\n\n")[1])
    p.add_argument("captures", nargs="+", metavar="CAPTURE", help="the captures the flow is in")
    p.add_argument("--model", required=True, type=Path, metavar="DIR", help="a model folder")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--flow", default=None, metavar="SRC:PORT-DST:PORT/PROTO",
                   help="the flow's 5-tuple (either direction), e.g. 10.0.0.1:40000-10.0.0.2:80/tcp")
    g.add_argument("--row", type=int, default=None, metavar="N",
                   help="row N (0-based) of the --alerts file")
    p.add_argument("--alerts", type=Path, default=None, metavar="FILE",
                   help="a janus detect output (.csv, .parquet, .jsonl), with --row")
    p.add_argument("--threshold", default=None, metavar="SPEC",
                   help="as janus detect --threshold (default: fpr)")
    p.add_argument("--figure", type=Path, default=Path("explain.png"), metavar="PNG",
                   help="figure of the (first) flow's packets (default %(default)s)")
    return p


def run(args: argparse.Namespace) -> int:
    from janus.capture.stream import check_sources
    from janus.deploy.model import load_model

    if args.row is not None and args.alerts is None:
        raise ConfigError("--row needs --alerts FILE (a janus detect output)")
    key = parse_flow(args.flow) if args.flow else key_of_row(args.alerts, args.row)
    paths = check_sources(args.captures)
    model = load_model(args.model)
    name, value = model.threshold(args.threshold)
    explained = explain_flows(model, find_flows(model, paths, key), value)
    if not explained:
        raise JanusError(f"no flow {key.text()}"
                         f"{f' starting at {key.start_time}' if key.start_time is not None else ''}"
                         f" in {', '.join(paths)}")
    for k, e in enumerate(explained):
        if k:
            print()
        print(format_breakdown(model, e, name, value))
    plot_flow(explained[0], args.figure)
    print(f"\nfigure of the first flow: {args.figure}", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    return run_main(build_parser, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
