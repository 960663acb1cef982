"""Extraction throughput (and peak memory) against a plain dpkt loop.

    python benchmarks/bench_extract.py                  # >= 500k packets, speed + ratio
    python benchmarks/bench_extract.py --size-gb 2      # also peak RSS on a ~2 GB capture
    python benchmarks/bench_extract.py --profile        # also the rate without start-up costs

Writes a synthetic Ethernet/IPv4 capture (many TCP connections with handshakes, request /
response data and FIN teardowns, plus UDP request/response and streaming flows; sizes and
gaps drawn from simple heavy-tailed laws) with vectorised NumPy into a temporary folder.
Then, each in a fresh child process pinned to one thread (NUMBA_NUM_THREADS=1,
OMP_NUM_THREADS=1), it runs:

* ``janus.capture.extract.extract`` -- the whole step: decode + flows + features + writing the
  dataset triple; packets/s over the step's wall time (and CPU time), median of
  ``--repeat`` fresh processes. The imports come before the clock. The one-time start-up of
  a process (``janus.capture.extract.load_runtime``: numba's runtime and the kernels from its cache,
  the Parquet writer; ~0.5 s) is timed on its own and the rate is printed without and with
  it. Peak RSS is the child's ``ru_maxrss``. The numba cache is warmed first on a small
  capture.
* a straightforward dpkt loop: ``dpkt.pcap.Reader``, Ethernet/IP/TCP/UDP parse, a dict of
  flows keeping the first T packets' channels (no output written; it is the floor a
  per-packet Python extractor cannot go under).

Checksums in the generated frames are left 0: neither reader verifies them.
"""

from __future__ import annotations

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SYN, ACK, FIN, PSH = 0x02, 0x10, 0x01, 0x08
_REC, _ETH, _IP, _TCP, _UDP = 16, 14, 20, 20, 8


# --------------------------------------------------------------------------- traffic model
def _flow_packets(rng: np.random.Generator, n_flows: int, span_s: float) -> dict[str, np.ndarray]:
    """Packet metadata of ``n_flows`` flows, sorted by time. All arrays (n_packets,)."""
    is_tcp = rng.random(n_flows) < 0.8
    # TCP: 3-way handshake + k request/response rounds (1..40, heavy-tailed) + 4-packet teardown
    # (FIN/ACK, ACK, FIN/ACK, ACK). Each round: request PSH/ACK, 1..6 response segments, an ACK.
    rounds = np.minimum(rng.geometric(0.25, n_flows), 40)
    resp_segs = np.minimum(rng.geometric(0.35, n_flows), 6)
    udp_len = np.where(rng.random(n_flows) < 0.7, 2, np.minimum(rng.geometric(0.05, n_flows), 300))
    n_pk = np.where(is_tcp, 3 + rounds * (resp_segs + 2) + 4, udp_len)
    flow = np.repeat(np.arange(n_flows), n_pk)
    start = np.repeat(np.cumsum(n_pk) - n_pk, n_pk)
    k = np.arange(flow.shape[0]) - start  # packet index inside its flow
    tcp = is_tcp[flow]
    per_round = (resp_segs + 2)[flow]
    in_round = (k - 3) % per_round
    last4 = k - (n_pk[flow] - 4)
    # Direction (1 = server -> client) and flags for TCP, by position in the connection.
    direction = np.where(tcp, 0, k % 2)
    flags = np.zeros(flow.shape[0], np.uint8)
    hs = tcp & (k < 3)
    flags[hs & (k == 0)] = SYN
    flags[hs & (k == 1)] = SYN | ACK
    flags[hs & (k == 2)] = ACK
    direction[hs & (k == 1)] = 1
    data = tcp & (k >= 3) & (last4 < 0)
    flags[data] = ACK
    flags[data & (in_round == 0)] |= PSH
    resp = data & (in_round >= 1) & (in_round <= per_round - 2)
    direction[resp] = 1
    flags[resp & (in_round == per_round - 2)] |= PSH
    td = tcp & (last4 >= 0)
    flags[td] = ACK
    flags[td & ((last4 == 0) | (last4 == 2))] |= FIN
    direction[td & ((last4 == 1) | (last4 == 2))] = 1
    # Payload bytes: requests 100..800, responses mostly full segments, UDP 40..1200.
    payload = np.zeros(flow.shape[0], np.int64)
    payload[data & (in_round == 0)] = rng.integers(100, 800, int((data & (in_round == 0)).sum()))
    payload[resp] = np.where(rng.random(int(resp.sum())) < 0.7, 1460, rng.integers(1, 1460, int(resp.sum())))
    payload[~tcp] = rng.integers(40, 1200, int((~tcp).sum()))
    # Times: flows start uniformly over the span; gaps log-normal (median ~8 ms) with rare
    # think times of seconds.
    t0 = rng.uniform(0.0, span_s, n_flows)
    gap = rng.lognormal(np.log(0.008), 1.5, flow.shape[0])
    gap[rng.random(flow.shape[0]) < 0.01] *= 300.0
    gap[k == 0] = 0.0
    ts = t0[flow] + _segment_cumsum(gap, start)
    client = rng.integers(0x0A000001, 0x0A00FFFF, n_flows, dtype=np.uint32)  # 10.0.x.x
    server = rng.integers(0xC0A80001, 0xC0A800FF, n_flows, dtype=np.uint32)  # 192.168.0.x
    cport = rng.integers(1024, 65535, n_flows, dtype=np.uint16)
    sport = np.where(is_tcp, rng.choice(np.array([80, 443, 22, 8080], np.uint16), n_flows),
                     rng.choice(np.array([53, 123, 5353, 4500], np.uint16), n_flows))
    order = np.argsort(ts, kind="stable")
    fw = direction[order] == 0
    f = flow[order]
    return {
        "ts": ts[order] + 1.5e9,
        "src": np.where(fw, client[f], server[f]),
        "dst": np.where(fw, server[f], client[f]),
        "sport": np.where(fw, cport[f], sport[f]).astype(np.uint16),
        "dport": np.where(fw, sport[f], cport[f]).astype(np.uint16),
        "tcp": tcp[order],
        "flags": flags[order],
        "win": np.where(fw, 502, 65160).astype(np.uint16),
        "payload": payload[order],
    }


def _segment_cumsum(x: np.ndarray, seg_start: np.ndarray) -> np.ndarray:
    """Cumulative sum of ``x`` restarting at every segment (``seg_start`` = first index per row)."""
    c = np.cumsum(x)
    return c - (c[seg_start] - x[seg_start])


def _put(buf: np.ndarray, pos: np.ndarray, value: np.ndarray, width: int, big: bool = True) -> None:
    """Write ``width``-byte integers ``value`` at byte offsets ``pos`` of ``buf`` (vectorised)."""
    value = value.astype(np.uint64)
    for j in range(width):
        shift = 8 * (width - 1 - j) if big else 8 * j
        buf[pos + j] = ((value >> np.uint64(shift)) & np.uint64(0xFF)).astype(np.uint8)


def _frames(p: dict[str, np.ndarray], lo: int, hi: int) -> bytes:
    """pcap records of packets ``lo..hi`` as one bytes object (vectorised)."""
    tcp = p["tcp"][lo:hi]
    l4 = np.where(tcp, _TCP, _UDP)
    payload = p["payload"][lo:hi]
    wire = _ETH + _IP + l4 + payload
    rec = _REC + wire
    off = np.zeros(hi - lo, np.int64)
    np.cumsum(rec[:-1], out=off[1:])
    buf = np.zeros(int(rec.sum()), np.uint8)
    ts = p["ts"][lo:hi]
    sec = np.floor(ts).astype(np.int64)
    _put(buf, off, sec, 4, big=False)
    _put(buf, off + 4, np.round((ts - sec) * 1e6).clip(0, 999_999), 4, big=False)
    _put(buf, off + 8, wire, 4, big=False)
    _put(buf, off + 12, wire, 4, big=False)
    e = off + _REC
    _put(buf, e + 12, np.full(hi - lo, 0x0800), 2)
    buf[e] = 2  # locally administered MACs
    buf[e + 6] = 2
    ip = e + _ETH
    buf[ip] = 0x45
    _put(buf, ip + 2, _IP + l4 + payload, 2)
    buf[ip + 6] = 0x40  # DF
    buf[ip + 8] = 64
    buf[ip + 9] = np.where(tcp, 6, 17).astype(np.uint8)
    _put(buf, ip + 12, p["src"][lo:hi], 4)
    _put(buf, ip + 16, p["dst"][lo:hi], 4)
    t = ip + _IP
    _put(buf, t, p["sport"][lo:hi], 2)
    _put(buf, t + 2, p["dport"][lo:hi], 2)
    tt = t[tcp]
    buf[tt + 12] = 0x50
    buf[tt + 13] = p["flags"][lo:hi][tcp]
    _put(buf, tt + 14, p["win"][lo:hi][tcp], 2)
    u = t[~tcp]
    _put(buf, u + 4, (_UDP + payload)[~tcp], 2)
    return buf.tobytes()


def write_capture(path: Path, n_flows: int, span_s: float, seed: int = 0, chunk: int = 500_000) -> int:
    """Write the synthetic capture; returns the number of packets."""
    p = _flow_packets(np.random.default_rng(seed), n_flows, span_s)
    n = p["ts"].shape[0]
    with open(path, "wb") as fh:
        fh.write(np.array([0xA1B2C3D4], "<u4").tobytes())
        fh.write(np.array([2, 4], "<u2").tobytes())
        fh.write(np.array([0, 0, 262144, 1], "<u4").tobytes())
        fh.writelines(_frames(p, lo, min(n, lo + chunk)) for lo in range(0, n, chunk))
    return n


# --------------------------------------------------------------------------- the contenders
# Peak memory of the child. ru_maxrss is the figure asked for, but Linux carries a parent's
# high-water mark across fork+exec, so the parent never holds big arrays (captures are
# generated in a child too) and VmHWM (per address space, reset by exec) is printed beside it.
_HWM = r"""
def hwm():
    try:
        with open("/proc/self/status") as fh:
            return int(fh.read().split("VmHWM:")[1].split()[0])
    except (OSError, IndexError, ValueError):
        return None
"""

_GEN_CHILD = r"""
import sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from bench_extract import write_capture
print(write_capture(Path(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), seed=int(sys.argv[5])))
"""

_JANUS_CHILD = _HWM + r"""
import json, resource, sys, time
t = time.perf_counter()
from janus.capture.extract import extract, load_runtime
imports = time.perf_counter() - t
# One-time start-up, timed on its own: numba's runtime and the kernels from its cache, the
# Parquet writer. extract() would do the same as its "startup" phase; done here first, that
# phase is ~0 and the step's wall time is the data work alone.
t, cpu = time.perf_counter(), time.process_time()
load_runtime()
startup = {"wall_s": time.perf_counter() - t, "cpu_s": time.process_time() - cpu}
cpu = time.process_time()
summary = extract([sys.argv[1]], sys.argv[2], max_packets=int(sys.argv[3]))
result = {"wall_s": summary["wall_time_s"], "imports_s": imports, "cpu_s": time.process_time() - cpu,
          "startup": startup, "hwm_kb": hwm(), "phases": summary["phase_time_s"],
          "packets": summary["totals"]["packets_kept"], "flows": summary["totals"]["flows"],
          "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}
if sys.argv[4] == "again":
    # The same extraction once more in this process: freed memory is reused and the code is
    # hot, so this is the per-packet cost alone (what a capture far larger than this one sees).
    cpu = time.process_time()
    again = extract([sys.argv[1]], sys.argv[2] + "_again", max_packets=int(sys.argv[3]))
    result["again"] = {"wall_s": again["wall_time_s"], "cpu_s": time.process_time() - cpu,
                       "phases": again["phase_time_s"], "packets": result["packets"]}
print(json.dumps(result))
"""

_DPKT_CHILD = _HWM + r"""
import json, resource, sys, time
import dpkt
T = int(sys.argv[2])
t = time.perf_counter()
cpu = time.process_time()
flows, n = {}, 0
with open(sys.argv[1], "rb") as fh:
    for ts, frame in dpkt.pcap.Reader(fh):
        n += 1
        eth = dpkt.ethernet.Ethernet(frame)
        ip = eth.data
        if not isinstance(ip, dpkt.ip.IP):
            continue
        l4 = ip.data
        if isinstance(l4, dpkt.tcp.TCP):
            sport, dport, flags, win = l4.sport, l4.dport, l4.flags, l4.win
        elif isinstance(l4, dpkt.udp.UDP):
            sport, dport, flags, win = l4.sport, l4.dport, 0, 0
        else:
            continue
        a, b = (ip.src, sport), (ip.dst, dport)
        key = (a, b, ip.p) if a <= b else (b, a, ip.p)
        f = flows.get(key)
        if f is None:
            f = flows[key] = {"init": a, "last": ts, "n": 0, "bytes": 0, "pk": []}
        if len(f["pk"]) < T:
            f["pk"].append((len(frame), ts - f["last"], int(a != f["init"]), flags, win))
        f["n"] += 1
        f["bytes"] += len(frame)
        f["last"] = ts
wall = time.perf_counter() - t
print(json.dumps({"wall_s": wall, "cpu_s": time.process_time() - cpu, "packets": n, "hwm_kb": hwm(), "flows": len(flows),
                  "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def _run(code: str, *args: str) -> str:
    env = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code, *map(str, args)], env=env, capture_output=True,
                         text=True, check=False)
    if out.returncode:
        raise SystemExit(f"benchmark child failed:\n{out.stderr}")
    return out.stdout.strip().splitlines()[-1]


def _child(code: str, *args: str) -> dict:
    return json.loads(_run(code, *args))


def _generate(path: Path, n_flows: int, span_s: float, seed: int) -> int:
    n = int(_run(_GEN_CHILD, Path(__file__).resolve().parent, path, n_flows, span_s, seed))
    # Flush the capture's dirty pages now: written back during the extraction, they would
    # compete with its own writes and the write phase would time the generator's I/O.
    os.sync()
    return n


def _mem(r: dict) -> str:
    hwm = f", VmHWM {r['hwm_kb'] / 2**20:.2f} GiB" if r.get("hwm_kb") else ""
    return f"peak RSS (ru_maxrss) {r['maxrss_kb'] / 2**20:.2f} GiB{hwm}"


def _phases(r: dict) -> str:
    return "  ".join(f"{k} {v:.3f}" for k, v in r["phases"].items() if k != "startup") + " (s)"


def _rates(r: dict) -> str:
    return (f"{r['packets'] / r['wall_s']:>12,.0f} ({r['wall_s']:6.2f} s) "
            f"{r['packets'] / r['cpu_s']:>12,.0f} ({r['cpu_s']:6.2f} s)")


def _with_startup(r: dict) -> dict:
    """``r`` with the one-time start-up (kernel loading, not the imports) added to its times."""
    return dict(r, wall_s=r["wall_s"] + r["startup"]["wall_s"], cpu_s=r["cpu_s"] + r["startup"]["cpu_s"])


def _report_janus(label: str, j: dict) -> None:
    print(f"{label:<14}: {_rates(j)}  {j['flows']:,} flows, {_mem(j)}")
    print(f"  + start-up  : {_rates(_with_startup(j))}  the same step with the one-time start-up "
          f"({j['startup']['wall_s']:.2f} s) inside the clock")
    print(f"  phases      : {_phases(j)}; before the clock: imports {j['imports_s']:.2f} s")


def _median_run(runs: list[dict]) -> dict:
    return sorted(runs, key=lambda r: r["wall_s"])[len(runs) // 2]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--flows", type=int, default=25_000, help="flows in the speed capture (default %(default)s)")
    ap.add_argument("--span-s", type=float, default=600.0, help="seconds the capture spans (default %(default)s)")
    ap.add_argument("--max-packets", type=int, default=64, help="T, packets kept per flow (default %(default)s)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="extractions of the speed capture, each in a fresh process; the median "
                    "by wall time is reported, every run's rate too (default %(default)s)")
    ap.add_argument("--size-gb", type=float, default=None,
                    help="also measure peak RSS (and the rate) of the extractor on a capture of "
                    "about this many GB")
    ap.add_argument("--no-dpkt", action="store_true", help="skip the dpkt comparison")
    ap.add_argument("--tmp", type=Path, default=None, help="folder for the temporary captures")
    ap.add_argument("--profile", action="store_true",
                    help="also run the extraction a second time in the same child and print its "
                    "rate and phases: the per-packet cost with warm memory and caches")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be >= 1")
    T = str(args.max_packets)
    print("Rates are over the extraction step: decode + flows + features + writing the triple.\n"
          "Before its clock: the imports. The one-time start-up (numba runtime and kernels from\n"
          "its cache, the Parquet writer; janus.capture.extract.load_runtime) is timed on its own and\n"
          "shown both ways. CPU time is what one uncontended core gives.")
    with tempfile.TemporaryDirectory(dir=args.tmp, prefix="bench_extract_") as tmp:
        tmp = Path(tmp)
        _generate(tmp / "warm.pcap", 200, 30.0, seed=1)
        _child(_JANUS_CHILD, str(tmp / "warm.pcap"), str(tmp / "warm_out"), T, "once")  # numba cache

        t = time.perf_counter()
        n = _generate(tmp / "speed.pcap", args.flows, args.span_s, seed=0)
        size = (tmp / "speed.pcap").stat().st_size
        print(f"capture: {n:,} packets, {args.flows:,} flows, {size / 1e6:.0f} MB "
              f"(written in {time.perf_counter() - t:.1f} s)")
        runs = []
        for k in range(args.repeat):
            runs.append(_child(_JANUS_CHILD, str(tmp / "speed.pcap"), str(tmp / f"speed_out{k}"), T,
                               "again" if args.profile else "once"))
            shutil.rmtree(tmp / f"speed_out{k}", ignore_errors=True)
        print("               packets/s (wall)         packets/s (CPU time)")
        if args.repeat > 1:
            each = ", ".join(f"{r['packets'] / r['wall_s'] / 1e6:.2f}" for r in runs)
            print(f"janus runs    : {each} M packets/s (wall), median below")
        j = _median_run(runs)
        _report_janus("janus extract", j)
        if args.profile:
            a = j["again"]
            print(f"janus again   : {_rates(a)}  same process, second extraction")
            print(f"  phases      : {_phases(a)}")
        if not args.no_dpkt:
            d = _child(_DPKT_CHILD, str(tmp / "speed.pcap"), T)
            print(f"dpkt loop     : {_rates(d)}  {d['flows']:,} flows, {_mem(d)}")
            print(f"ratio (wall)  : {d['wall_s'] / j['wall_s']:.1f}x   ratio (CPU): {d['cpu_s'] / j['cpu_s']:.1f}x"
                  f"   (with janus's start-up: {d['wall_s'] / _with_startup(j)['wall_s']:.1f}x)")
        (tmp / "speed.pcap").unlink()

        if args.size_gb:
            # Bytes per flow of this traffic model, measured on the speed capture.
            flows_big = int(args.flows * args.size_gb * 1e9 / size)
            t = time.perf_counter()
            n = _generate(tmp / "big.pcap", flows_big, args.span_s * flows_big / args.flows, seed=2)
            big = (tmp / "big.pcap").stat().st_size
            print(f"big capture: {n:,} packets, {flows_big:,} flows, {big / 1e9:.2f} GB "
                  f"(written in {time.perf_counter() - t:.1f} s)")
            _report_janus("janus extract", _child(_JANUS_CHILD, str(tmp / "big.pcap"), str(tmp / "big_out"),
                                                  T, "once"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
