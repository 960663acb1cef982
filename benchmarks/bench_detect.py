"""End-to-end speed and memory of ``janus detect`` (one process per measurement).

    python benchmarks/bench_detect.py --model results/models/office/seed42 \\
        --calibrate ../shared/data/real/cicids2017-monday-benign.pcapng \\
        ../shared/data/real/*.pcap*

prints, per run, flows/s and packets/s end to end (from the model folder on disk to the
written file, model load and calibration included; and the detect phase alone) and the peak
resident memory (``resource.getrusage``, of a fresh child process per measurement). With
``--labels`` it also scores the run against the shared slices' label rule (SOURCES.md: every
flow of the benign Monday slice is benign; in the attack slices a flow is an attack when an
attacker address is one of its endpoints, else unknown and left out): AUROC of the scores and
the alert TPR/FPR.

``--big-mb N`` (repeatable) writes a capture of about N MB by repeating a real slice, each
copy shifted past the previous one's end (``janus.capture.pcapwrite``), and measures peak
memory on it: the growth from small to large shows whether memory is bounded.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: Attacker addresses of the shared real slices (../shared/data/real/SOURCES.md).
ATTACKERS = {
    "cicddos2019-synflood.pcap": ["172.16.0.5"],
    "cicddos2019-webddos.pcap": ["172.16.0.5"],
    "cicids2017-thursday-sqli.pcap": ["172.16.0.1"],
    "nmap-synscan.pcap": None,  # the scanning host: the initiator of most flows, found below
    "ssh-bruteforce.pcap": ["147.32.80.40"],
}
BENIGN = "cicids2017-monday-benign.pcapng"


def _child(args: list[str]) -> dict:
    """Run one detect in a fresh process; its wall time, peak RSS and summary line."""
    code = (
        "import resource, sys, time\n"
        "t = time.perf_counter()\n"
        "from janus.deploy.detect import main\n"
        f"status = main({args!r})\n"
        "wall = time.perf_counter() - t\n"
        "rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print('BENCH', status, wall, rss, file=sys.stderr)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                       env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
    bench = [ln for ln in r.stderr.splitlines() if ln.startswith("BENCH")]
    summary = [ln for ln in r.stderr.splitlines() if ln.startswith("janus detect:")]
    if r.returncode != 0 or not bench:
        raise SystemExit(f"detect failed:\n{r.stderr[-3000:]}")
    _, _status, wall, rss = bench[0].split()
    return {"wall_s": float(wall), "peak_rss_mb": int(rss) / 1024, "summary": summary[0]}


def _phase_rate(summary: str) -> tuple[float, float]:
    """Flows/s and packets/s of the detect phase (the summary line's own figures)."""
    rate = summary.split("(")[-1]
    flows = float(rate.split(" flows/s")[0].replace(",", ""))
    packets = float(rate.split(", ")[1].split(" packets/s")[0].replace(",", ""))
    return flows, packets


def big_capture(src: Path, mb: float, out: Path, gap_s: float = 1.0) -> int:
    """Repeat ``src`` (a classic pcap) until about ``mb`` MB, each copy ``gap_s`` seconds
    after the last one ends; returns the packet count. With a gap above the idle timeout
    every copy's flows have ended before the next copy starts (the open flows stay those of
    one copy); with 1 s, a flood's unanswered flows pile up for the whole idle timeout."""
    import numpy as np

    from janus.capture.pcapwrite import LINKTYPE_ETHERNET

    data = src.read_bytes()
    if data[:4] not in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        raise SystemExit(f"{src}: --big-from needs a little-endian classic pcap")
    nano = data[:4] == b"\x4d\x3c\xb2\xa1"
    units = 10**9 if nano else 10**6
    recs, pos = [], 24
    while pos + 16 <= len(data):
        sec, frac, incl, orig = np.frombuffer(data, "<u4", 4, pos)
        recs.append((int(sec) * units + int(frac), data[pos + 16:pos + 16 + int(incl)], int(orig)))
        pos += 16 + int(incl)
    t0, t1 = recs[0][0], recs[-1][0]
    span = t1 - t0 + int(gap_s * units)
    copies = max(1, int(mb * 1e6 / len(data)))
    import struct

    with open(out, "wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B23C4D if nano else 0xA1B2C3D4, 2, 4, 0, 0, 262144,
                             LINKTYPE_ETHERNET))
        for k in range(copies):
            shift = k * span
            fh.write(b"".join(struct.pack("<IIII", (t + shift) // units, (t + shift) % units,
                                          len(frame), orig) + frame for t, frame, orig in recs))
    return copies * len(recs)


def _labels(rows, name: str):
    """1 attack / 0 benign / -1 unknown per row of a detect output of slice ``name``."""
    import numpy as np

    n = rows.height
    if name == BENIGN:
        return np.zeros(n, np.int8)
    attackers = ATTACKERS.get(name)
    if attackers is None:  # the scanner: the most frequent initiator
        attackers = [rows["src_ip"].value_counts(sort=True)["src_ip"][0]]
    src, dst = rows["src_ip"].to_numpy(), rows["dst_ip"].to_numpy()
    hit = np.isin(src, attackers) | np.isin(dst, attackers)
    return np.where(hit, 1, -1).astype(np.int8)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("captures", nargs="+", type=Path)
    p.add_argument("--model", required=True, type=Path)
    p.add_argument("--calibrate", type=Path, default=None, help="benign capture to calibrate on")
    p.add_argument("--labels", action="store_true", help="score against the slices' label rule")
    p.add_argument("--big-mb", type=float, action="append", default=[],
                   help="also measure on a capture of about this many MB (repeatable)")
    p.add_argument("--gap-s", type=float, default=1.0,
                   help="seconds between the copies of --big-mb captures (default 1; above the "
                   "model's idle timeout, no flow of one copy is still open in the next)")
    p.add_argument("--big-from", type=Path, default=None,
                   help="the classic pcap repeated for --big-mb (default: the first capture)")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_detect_"))
    cal = ["--calibrate", str(args.calibrate)] if args.calibrate else []
    out = tmp / "all.parquet"
    res = _child([*map(str, args.captures), "--model", str(args.model), "--out", str(out), *cal])
    import polars as pl

    rows = pl.read_parquet(out)
    n_pk = int(rows["n_packets"].sum())
    fl, pk = _phase_rate(res["summary"])
    print(f"all slices, one run: {rows.height} flows, {n_pk} packets; end to end {res['wall_s']:.2f} s "
          f"= {rows.height / res['wall_s']:,.0f} flows/s, {n_pk / res['wall_s']:,.0f} packets/s "
          f"(detect phase: {fl:,.0f} flows/s, {pk:,.0f} packets/s); peak RSS {res['peak_rss_mb']:.0f} MB")
    print("  " + res["summary"])
    if args.labels:
        import numpy as np
        from sklearn.metrics import roc_auc_score

        ys, ss, alerts, per = [], [], [], {}
        for cap in args.captures:
            o = tmp / f"{cap.stem}.parquet"
            _child([str(cap), "--model", str(args.model), "--out", str(o), *cal])
            r = pl.read_parquet(o)
            y = _labels(r, cap.name)
            keep = y >= 0
            ys.append(y[keep]), ss.append(r["score"].to_numpy()[keep])
            alerts.append(r["alert"].to_numpy()[keep])
            per[cap.name] = (int((y == 1).sum()), int((y == 0).sum()), int((y < 0).sum()),
                             float(r["alert"].to_numpy()[keep].mean()) if keep.any() else float("nan"))
        y, s, a = np.concatenate(ys), np.concatenate(ss), np.concatenate(alerts)
        print(f"labelled flows: {int((y == 1).sum())} attack, {int((y == 0).sum())} benign; "
              f"AUROC {roc_auc_score(y, s):.4f}; alert TPR {a[y == 1].mean():.4f}, "
              f"FPR {a[y == 0].mean():.4f}")
        for name, (n1, n0, nu, rate) in per.items():
            print(f"  {name}: {n1} attack, {n0} benign, {nu} unknown (left out); alert rate "
                  f"{rate:.4f}")
    for mb in args.big_mb:
        big = tmp / f"big_{mb:g}.pcap"
        src = args.big_from or args.captures[0]
        t = time.perf_counter()
        n = big_capture(src, mb, big, args.gap_s)
        made = time.perf_counter() - t
        r = _child([str(big), "--model", str(args.model), "--out", str(tmp / "big.parquet")])
        size = big.stat().st_size / 1e6
        fl, pk = _phase_rate(r["summary"])
        print(f"big capture {size:.0f} MB ({n} packets, copies of {src.name} {args.gap_s:g} s apart, "
              f"made in {made:.0f} s): "
              f"{r['wall_s']:.1f} s end to end, detect phase {fl:,.0f} flows/s, {pk:,.0f} packets/s; "
              f"peak RSS {r['peak_rss_mb']:.0f} MB")
        big.unlink()
    print(json.dumps({"tmp": str(tmp), "maxrss_self_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
