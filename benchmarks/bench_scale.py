"""Scaling: wall time and peak memory of each step against the dataset's flow count.

    python benchmarks/bench_scale.py                                # 0.1 M, 1 M, 5 M flows
    python benchmarks/bench_scale.py --sizes 100000 1000000 2000000 --extract-flows 20000 80000

For each size ``N`` it writes a dataset folder directly in the contract's layout (no capture:
a 5 M-flow capture would take longer to extract than every other step together): the packet
tensor as the sharded store (``--store sharded``, compact shards) or ``packets.npz``,
``flows.parquet`` and ``flow_features.parquet``, chunk by chunk (so the generator itself
stays small). Flows have 1..T packets, integer sizes and windows, 0/1 flags and float32 gaps;
a third of them come from the "attacker" address 10.0.0.66. Then each step runs in a fresh
child process (single-threaded: ``OMP_NUM_THREADS=1``, ``--threads 1``):

* ``labels`` -- ``janus labels --attacker 10.0.0.66=dos --default benign`` (the IP-rule
  labeller: it reads the flow table);
* ``labels_csv`` -- ``janus labels --csv`` of a CIC-style label CSV of ``--csv-rows`` rows
  (one row per ``N // csv_rows``-th flow, its 5-tuple, start time and class), so the CSV is
  the same size at every ``N`` and only the flow count grows;
* ``splits`` -- ``janus splits`` with the paper's sizes (10 k / 1 k / 1 k / 5 k / 5 k);
* ``splits_time`` -- the same with ``--order time`` (reads flows.parquet's start times too);
* ``train`` -- ``janus train``, a small model for a fixed number of steps (1 epoch over the
  10 k training flows);
* ``score`` -- ``janus score`` of val + test (12 k flows);
* ``baseline`` -- ``janus baseline run --detector iforest`` (fit on train, score val + test);
* ``features`` -- ``janus features`` (recomputes every flow's features: memory is one chunk,
  time is linear in ``N``).

When every step asked for reads only tables (labels, labels_csv, splits, splits_time), the
packet store and the feature table are not written (``--tables-only`` forces it).

Extraction is measured on synthetic captures of ``--extract-flows`` flows each (the
generator of ``benchmarks/bench_extract.py``), once per store layout.

Peak RSS is the child's ``ru_maxrss`` (a wrapper process runs the step and reads
``RUSAGE_CHILDREN``), which counts the file pages the step memory-maps and touches. The
datasets are deleted at the end (``--keep`` keeps them).
"""

from __future__ import annotations

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

_WRAP = (
    "import json, resource, subprocess, sys, time\n"
    "t = time.perf_counter()\n"
    "r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)\n"
    "wall = time.perf_counter() - t\n"
    "if r.returncode:\n"
    "    sys.stderr.write(r.stderr[-3000:])\n"
    "    raise SystemExit(r.returncode)\n"
    "print(json.dumps({'wall_s': wall, 'rss_mb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))\n"
)


def measure(*cmd: str, repo: Path = REPO) -> dict:
    """Wall seconds and peak RSS (MiB) of ``cmd`` run as a fresh child process (``janus``
    imported from ``repo``)."""
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    # cwd = repo: ``python -m`` puts the working folder first on sys.path, ahead of PYTHONPATH.
    out = subprocess.run([sys.executable, "-c", _WRAP, *cmd], env=env, capture_output=True, text=True,
                         check=False, cwd=repo)
    if out.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- datasets
def make_dataset(folder: Path, n: int, T: int, store: str, seed: int = 0, chunk: int = 200_000,
                 tables_only: bool = False, csv_rows: int = 0) -> None:
    """A dataset folder of ``n`` flows in the contract's layout, written chunk by chunk
    (``tables_only``: flows.parquet alone); with ``csv_rows`` also ``labels.csv``, a CIC
    label CSV of every ``n // csv_rows``-th flow."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from janus.capture.features import compute_flow_features, features_table
    from janus.contract import (
        BINARY,
        FEATURES_FILE,
        FLOW_COLUMNS,
        FLOWS_FILE,
        IAT,
        N_CHANNELS,
        PACKETS_FILE,
        PACKETS_STORE_DIR,
        SIZE,
        STATS_FILE,
        WIN,
    )
    from janus.datasets.store import ShardWriter
    from janus.io import ArrayStream, write_json, write_npz

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    schema = pa.schema([(k, pa.type_for_alias(v)) for k, v in FLOW_COLUMNS.items()])
    fw = pq.ParquetWriter(folder / FLOWS_FILE, schema)
    ftw = None
    hosts = pa.array(["10.0.0.66"] + [f"10.0.1.{h}" for h in range(1, 250)])

    def chunk_packets(lo: int, hi: int):
        r = np.random.default_rng([seed, lo])
        k = hi - lo
        lengths = np.minimum(r.geometric(0.25, k), T).astype(np.int32)
        p = np.zeros((k, T, N_CHANNELS), np.float32)
        # One random word per packet gives size, window and the six flags (cheap for 5 M flows).
        word = r.integers(0, 2**32, (k, T), dtype=np.uint32)
        p[..., SIZE] = 40 + word % 1475
        p[..., WIN] = word >> 16
        for j, ch in enumerate(BINARY):
            p[..., ch] = (word >> (8 + j)) & 1
        p[..., IAT] = r.random((k, T), dtype=np.float32) * 0.02
        p[:, 0, IAT] = 0
        p *= (np.arange(T)[None, :] < lengths[:, None])[..., None]
        return p, lengths

    writer = ShardWriter(folder / PACKETS_STORE_DIR, T) if store == "sharded" and not tables_only \
        else None
    all_lengths = []
    every = max(1, n // csv_rows) if csv_rows else 0
    csv = open(folder / "labels.csv", "w") if csv_rows else None  # noqa: SIM115 (closed below)
    if csv is not None:
        csv.write("Flow ID,Source IP,Source Port,Destination IP,Destination Port,Protocol,"
                  "Timestamp,Label\n")
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        k = hi - lo
        if tables_only:
            lengths = np.random.default_rng([seed, lo]).geometric(0.25, k).clip(max=T)
        else:
            p, lengths = chunk_packets(lo, hi)
            if writer is not None:
                writer.append(p, lengths)
            else:
                all_lengths.append(lengths)
            ft = features_table(compute_flow_features(p, lengths), first_id=lo)
            if ftw is None:
                ftw = pq.ParquetWriter(folder / FEATURES_FILE, ft.schema, use_dictionary=False)
            ftw.write_table(ft)
        # Host 0 is the attacker (a third of the flows), hosts 1..249 are benign.
        host = np.where(rng.random(k) < 1 / 3, 0, rng.integers(1, 250, k))
        start = 1.6e9 + np.arange(lo, hi) * 1e-3
        cols = {
            "flow_id": np.arange(lo, hi), "src_ip": hosts.take(pa.array(host)),
            "dst_ip": pa.array(["10.0.2.1"]).take(pa.array(np.zeros(k, np.int64))),
            "src_port": rng.integers(1024, 65536, k).astype(np.int32),
            "dst_port": np.full(k, 80, np.int32), "proto": np.full(k, 6, np.int16),
            "start_time": start, "end_time": start + 0.5,
            "n_packets": lengths.astype(np.int64), "n_bytes": lengths.astype(np.int64) * 500,
            "end_reason": pa.array(["fin"]).take(pa.array(np.zeros(k, np.int64))),
            "source_file": pa.array(["synthetic.pcap"]).take(pa.array(np.zeros(k, np.int64))),
        }
        fw.write_table(pa.table({f.name: pa.array(cols[f.name], f.type) for f in schema}, schema=schema))
        if csv is not None:
            ids = np.arange(-(-lo // every) * every, hi, every)
            j = ids - lo
            stamps = np.datetime_as_string((start[j] * 1e6).astype("datetime64[us]"), unit="us")
            src = hosts.take(pa.array(host[j])).to_pylist()
            for i, a, sp, dp, ts, h in zip(ids, src, cols["src_port"][j], cols["dst_port"][j],
                                           stamps, host[j]):
                csv.write(f"{i},{a},{sp},10.0.2.1,{dp},6,{ts.replace('T', ' ')},"
                          f"{'DoS Hulk' if h == 0 else 'BENIGN'}\n")
    fw.close()
    if csv is not None:
        csv.close()
    if tables_only:
        pass  # no packets, no features
    elif writer is not None:
        ftw.close()
        writer.close()
    else:
        ftw.close()
        lengths = np.concatenate(all_lengths)

        def blocks():
            for lo in range(0, n, chunk):
                yield chunk_packets(lo, min(n, lo + chunk))[0]

        write_npz(folder / PACKETS_FILE, packets=ArrayStream((n, T, N_CHANNELS), np.dtype(np.float32), blocks),
                  lengths=lengths)
    write_json(folder / STATS_FILE, {"totals": {"flows": n}, "synthetic": True})


TABLE_STEPS = {"labels", "labels_csv", "splits", "splits_time"}


def disk_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20


def step_commands(d: Path, T: int) -> dict[str, list[str]]:
    py = sys.executable
    s = str(d / "splits.npz")
    return {
        "labels": [py, "-m", "janus.labels", "--data", str(d), "--attacker", "10.0.0.66=dos",
                   "--default", "benign"],
        "labels_csv": [py, "-m", "janus.labels", "--data", str(d), "--csv", str(d / "labels.csv"),
                       "--time-offset", "none", "--default", "benign"],
        "splits": [py, "-m", "janus.splits", "--data", str(d), "--seed", "0", "--out", s],
        "splits_time": [py, "-m", "janus.splits", "--data", str(d), "--seed", "0", "--out",
                        str(d / "splits_time.npz"), "--order", "time"],
        "train": [py, "-m", "janus.train", "--data", str(d), "--splits", s, "--out", str(d / "run"),
                  "--max-packets", str(T), "--d-model", "32", "--n-layers", "1", "--n-heads", "2",
                  "--epochs", "1", "--batch-size", "256", "--device", "cpu", "--threads", "1"],
        "score": [py, "-m", "janus.score", "--checkpoint", str(d / "run" / "model.pt"), "--data", str(d),
                  "--splits", s, "--out", str(d / "scores.parquet"), "--device", "cpu", "--threads", "1"],
        "baseline": [py, "-m", "janus.baselines", "run", "--detector", "iforest", "--data", str(d),
                     "--splits", s, "--out", str(d / "iforest"), "--threads", "1",
                     "--score-data", str(d), "--score-out", str(d / "iforest.parquet"),
                     "--score-splits", s],
        "features": [py, "-m", "janus.features", str(d)],
    }


def bench_extract(tmp: Path, flows: list[int], T: int, stores: list[str], against: Path | None = None,
                  buffer_flows: int | None = None, headers_only: bool = False) -> list[dict]:
    """Extraction of synthetic captures of ``flows`` flows, once per layout in ``stores``;
    with ``against`` (another checkout), each capture is also extracted by that checkout's
    code right after this one's, so the two are compared under the same machine load."""
    spec = importlib.util.spec_from_file_location("bench_extract", REPO / "benchmarks" / "bench_extract.py")
    be = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(be)
    rows = []
    for n in flows:
        if headers_only:
            caps, packets = write_header_captures(be, tmp, n)
        else:
            caps = [tmp / f"cap{n}.pcap"]
            packets = be.write_capture(caps[0], n, span_s=max(60.0, n / 100.0), seed=1)
        cap_mb = sum(c.stat().st_size for c in caps) / 2**20
        for store in stores:
            for code in [REPO] + ([against] if against else []):
                out = tmp / f"x{n}{store}"
                extra = ["--buffer-flows", str(buffer_flows)] if buffer_flows and code == REPO else []
                r = measure(sys.executable, "-m", "janus.extract", *map(str, caps), "--out", str(out),
                            "--max-packets", str(T), "--store", store, *extra, repo=code)
                stats = json.loads((out / "extract_stats.json").read_text())
                rows.append({"flows_in": n, "store": store, "flows": stats["totals"]["flows"],
                             "code": "this" if code == REPO else str(code),
                             "spilled": stats.get("spill", {}).get("flows"),
                             "packets": packets, "capture_mb": cap_mb,
                             "pps": stats["packets_per_s_after_startup"], **r})
                print(f"  extract {n} flows ({store}, {rows[-1]['code']}): {r['wall_s']:.1f} s, "
                      f"{r['rss_mb']:.0f} MiB, {rows[-1]['pps']} packets/s", flush=True)
                shutil.rmtree(out)
        for c in caps:
            c.unlink()
    return rows


def write_header_captures(be, tmp: Path, n: int, piece: int = 1_000_000) -> tuple[list[Path], int]:
    """The synthetic capture of ``n`` flows as files of ``piece`` flows each over consecutive
    time spans (one stream to ``janus extract``), each record holding the frame's headers
    only (``incl_len`` 54, ``orig_len`` the whole frame, as ``tcpdump -s 54`` writes): the
    flows, sizes included, are the same workload while the files are ~10x smaller and the
    generator holds one piece at a time (a 5 M-flow capture with payloads is ~70 GB)."""
    paths, packets, end = [], 0, None
    for k, lo in enumerate(range(0, n, piece)):
        m = min(piece, n - lo)
        span = max(60.0, m / 100.0)
        p = be._flow_packets(np.random.default_rng(1 + k), m, span)
        # Each piece starts after the last packet of the one before (its long flows reach
        # ~1,300 s past its span): an overlap would step the capture clock back.
        if end is not None:
            p["ts"] = p["ts"] + (end + 1.0 - p["ts"][0])
        end = float(p["ts"][-1])
        wire = be._ETH + be._IP + np.where(p["tcp"], be._TCP, be._UDP) + p["payload"]
        p["payload"] = np.zeros_like(p["payload"])
        path = tmp / f"cap{n}-{k:02d}.pcap"
        with open(path, "wb") as fh:
            fh.write(np.array([0xA1B2C3D4], "<u4").tobytes())
            fh.write(np.array([2, 4], "<u2").tobytes())
            fh.write(np.array([0, 0, 262144, 1], "<u4").tobytes())
            for a in range(0, len(p["ts"]), 500_000):
                b = min(len(p["ts"]), a + 500_000)
                buf = np.frombuffer(be._frames(p, a, b), np.uint8).copy()
                rec = be._REC + be._ETH + be._IP + np.where(p["tcp"][a:b], be._TCP, be._UDP)
                off = np.zeros(b - a, np.int64)
                np.cumsum(rec[:-1], out=off[1:])
                be._put(buf, off + 12, wire[a:b], 4, big=False)  # orig_len: the whole frame
                fh.write(buf.tobytes())
        paths.append(path)
        packets += len(p["ts"])
    return paths, packets


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="*", default=[100_000, 1_000_000, 5_000_000],
                    help="dataset flow counts (default %(default)s)")
    ap.add_argument("--max-packets", type=int, default=16, help="T (default %(default)s)")
    ap.add_argument("--store", choices=("sharded", "npz"), default="sharded",
                    help="packet tensor layout of the generated datasets (default %(default)s)")
    ap.add_argument("--extract-flows", type=int, nargs="*", default=[25_000, 100_000, 400_000],
                    help="flows of the synthetic captures extraction is timed on (default %(default)s)")
    ap.add_argument("--extract-stores", nargs="+", choices=("npz", "sharded", "auto"),
                    default=["npz", "sharded"], help="layouts extraction is timed with (default %(default)s)")
    ap.add_argument("--extract-against", type=Path, default=None, metavar="CHECKOUT",
                    help="also extract each capture with the janus of another checkout (e.g. main), "
                    "right after this one's, for a before/after comparison under the same load")
    ap.add_argument("--extract-headers-only", action="store_true",
                    help="extraction captures of headers only (incl_len 54, orig_len the frame), "
                    "1 M flows a file: the same flows from ~10x less disk")
    ap.add_argument("--buffer-flows", type=int, default=None, metavar="N",
                    help="--buffer-flows of this checkout's extraction (default: its default)")
    ap.add_argument("--steps", nargs="+", default=list(step_commands(Path("."), 1)),
                    help="steps to time (default: all)")
    ap.add_argument("--tables-only", action="store_true",
                    help="write flows.parquet only (no packet store, no features); implied when "
                    "every step asked for is labels, labels_csv, splits or splits_time")
    ap.add_argument("--csv-rows", type=int, default=50_000,
                    help="rows of the label CSV of the labels_csv step (default %(default)s)")
    ap.add_argument("--tmp", type=Path, default=None, help="scratch folder (default: a new one in /tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the generated datasets")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="janus-scale-", dir=args.tmp))
    T = args.max_packets
    results: dict[str, dict[int, dict]] = {}
    try:
        for n in args.sizes:
            d = tmp / f"n{n}"
            t0 = time.perf_counter()
            tables_only = args.tables_only or set(args.steps) <= TABLE_STEPS
            make_dataset(d, n, T, args.store, tables_only=tables_only,
                         csv_rows=args.csv_rows if "labels_csv" in args.steps else 0)
            print(f"# N = {n}: dataset written in {time.perf_counter() - t0:.1f} s, "
                  f"{disk_mb(d):.0f} MiB on disk ({args.store})", flush=True)
            cmds = step_commands(d, T)
            for step in args.steps:
                r = measure(*cmds[step])
                results.setdefault(step, {})[n] = r
                print(f"  {step:9s} {r['wall_s']:7.2f} s  {r['rss_mb']:7.0f} MiB", flush=True)
            if not args.keep:
                shutil.rmtree(d)
        ext = (bench_extract(tmp, args.extract_flows, T, args.extract_stores, args.extract_against,
                             args.buffer_flows, args.extract_headers_only) if args.extract_flows else [])
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    sizes = args.sizes
    if sizes:
        print(f"\nT = {T}, store {args.store}; wall s / peak RSS MiB per step; last column: RSS "
          f"ratio {sizes[-1]:,} / {sizes[0]:,} flows")
        print("| step | " + " | ".join(f"{n:,} flows" for n in sizes) + " | RSS ratio |")
        print("|---|" + "---|" * (len(sizes) + 1))
    for step, by_n in results.items():
        cells = [f"{by_n[n]['wall_s']:.1f} s / {by_n[n]['rss_mb']:.0f} MiB" for n in sizes]
        print(f"| {step} | " + " | ".join(cells) + f" | {by_n[sizes[-1]]['rss_mb'] / by_n[sizes[0]]['rss_mb']:.2f} |")
    if ext:
        print("\n| extract: flows | store | code | packets | capture MiB | wall s | packets/s (after startup) "
              "| peak RSS MiB | flows spilled |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in ext:
            spilled = "" if r["spilled"] is None else f"{r['spilled']:,}"
            print(f"| {r['flows']:,} | {r['store']} | {r['code']} | {r['packets']:,} | {r['capture_mb']:.0f} | "
                  f"{r['wall_s']:.1f} | {r['pps']:,.0f} | {r['rss_mb']:.0f} | {spilled} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
