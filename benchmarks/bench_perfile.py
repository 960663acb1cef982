"""Per-file extraction + merge against one-stream extraction of the same capture files.

    python benchmarks/bench_perfile.py ../shared/data/real/cicids2017-monday-benign.pcapng \
        ../shared/data/real/cicddos2019-synflood.pcap --slices 2 3 4

Cuts each capture into ``--slices`` files of equal record counts in capture order (what a
capture tool's rotation by size does; the bytes of every record copied unchanged: pcap
records, or pcapng packet blocks with the section and interface blocks repeated at the top
of each slice), then extracts the slices twice: as one stream (``janus extract A B C``, a
flow may go on in the next file) and each on its own followed by ``janus merge`` (what the
workflow's ``extract.per_file`` does). It prints, per capture and slice count, the flows of
each, how many one-stream flows come out value-identical (every flows.parquet column but
flow_id, the packet rows and the 20 features), and what the others became: cut at a file
boundary (a flow open at a slice's end that goes on in the next) or only their end_reason
changed (eof at a slice's end where the stream would say idle later, or the reverse).

Little-endian captures only (both shared real slices are).

    python benchmarks/bench_perfile.py --merge-sizes 200000 2000000 --parts 4

instead times ``janus merge`` alone (a fresh process; peak RSS from ``RUSAGE_CHILDREN``) on
``--parts`` part folders of synthetic flows (``bench_scale.make_dataset``, T = 64), for parts
in the sharded store (shards linked) and in ``packets.npz`` (re-encoded shard by shard).

    python benchmarks/bench_perfile.py ../shared/data/real/cicddos2019-synflood.pcap \
        --extract-mb 20 100 200

times ``janus extract`` of one capture file (what one ``extract_part`` job does; fresh
process, T = 64, sharded store) on files of about that many MB made of copies of a classic
pcap capture, each copy shifted 130 s (past the idle timeout) after the previous one, so
every copy adds new flows: the SYN-flood slice is the densest real case (~4,700 flows a MB).
"""

from __future__ import annotations

import argparse
import struct
import sys
import tempfile
from pathlib import Path

import numpy as np

_PCAPNG_SHB, _PCAPNG_IDB = 0x0A0D0D0A, 0x00000001
_PCAPNG_PACKETS = {0x00000006, 0x00000003, 0x00000002}  # enhanced, simple, obsolete packet


def split_capture(path: Path, k: int, out: Path) -> list[Path]:
    """``path`` cut into ``k`` files of (nearly) equal record counts, in capture order."""
    data = path.read_bytes()
    magic = struct.unpack_from("<I", data, 0)[0]
    head, records = b"", []
    if magic in (0xA1B2C3D4, 0xA1B23C4D):
        head, pos = data[:24], 24
        while pos + 16 <= len(data):
            incl = struct.unpack_from("<I", data, pos + 8)[0]
            records.append(data[pos: pos + 16 + incl])
            pos += 16 + incl
    elif magic == _PCAPNG_SHB:
        pos, heads = 0, []
        while pos + 12 <= len(data):
            btype, blen = struct.unpack_from("<II", data, pos)
            block = data[pos: pos + blen]
            if btype in _PCAPNG_PACKETS:
                records.append(block)
            elif not records and btype in (_PCAPNG_SHB, _PCAPNG_IDB):
                heads.append(block)
            pos += blen
        head = b"".join(heads)
    else:
        raise SystemExit(f"{path}: not a little-endian pcap or pcapng file")
    suffix = path.suffix or ".pcap"
    files = []
    for i, chunk in enumerate(np.array_split(np.arange(len(records)), k)):
        f = out / f"{path.stem}-{i}{suffix}"
        f.write_bytes(head + b"".join(records[j] for j in chunk))
        files.append(f)
    return files


def _rows(folder: Path):
    """flows (pyarrow Table without flow_id), packets (N, T, 9), lengths, features (N, 20)."""
    import pyarrow.parquet as pq

    from janus.datasets.store import open_packets

    flows = pq.read_table(folder / "flows.parquet").drop(["flow_id"])
    feats = pq.read_table(folder / "flow_features.parquet").drop(["flow_id"])
    store = open_packets(folder)
    return flows, store.packets(), store.lengths(), np.column_stack(
        [c.to_numpy() for c in feats.columns])


def compare(one: Path, parts: Path) -> dict:
    """Counts of one-stream flows kept, cut or changed in the per-file merge."""
    fa, pa_, la, xa = _rows(one)
    fb, pb, lb, xb = _rows(parts)
    key = ["src_ip", "dst_ip", "src_port", "dst_port", "proto", "start_time"]

    def index(flows):
        cols = [flows.column(c).to_pylist() for c in key]
        return {tuple(v): i for i, v in enumerate(zip(*cols))}

    ia, ib = index(fa), index(fb)
    rest = [c for c in fa.column_names if c not in key]
    ra = {c: fa.column(c).to_pylist() for c in rest}
    rb = {c: fb.column(c).to_pylist() for c in rest}
    same = reason_only = cut = 0
    for k, i in ia.items():
        j = ib.get(k)
        if j is None:
            cut += 1  # the per-file run has no flow starting there (it was joined or not cut)
            continue
        diff = [c for c in rest if ra[c][i] != rb[c][j]]
        tensors = la[i] == lb[j] and np.array_equal(pa_[i], pb[j]) and np.array_equal(xa[i], xb[j])
        if not diff and tensors:
            same += 1
        elif diff == ["end_reason"] and tensors:
            reason_only += 1
        else:
            cut += 1
    return {"one_stream": len(ia), "per_file": len(ib), "identical": same,
            "end_reason_only": reason_only, "cut": cut,
            "per_file_only": sum(1 for k in ib if k not in ia)}


def bench_merge(sizes: list[int], n_parts: int, T: int = 64) -> None:
    """Wall time and peak RSS of ``janus merge`` against the merged flow count."""
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("bench_scale", Path(__file__).with_name("bench_scale.py"))
    scale = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scale)
    params = {"max_packets": T, "idle_timeout_s": 120.0, "active_timeout_s": None, "strict": False}
    print("| flows | parts | part store | merged store | wall s | peak RSS MiB |")
    print("|---|---|---|---|---|---|")
    for n in sizes:
        for part_store in ("sharded", "npz"):
            with tempfile.TemporaryDirectory() as tmp:
                tmp = Path(tmp)
                parts = []
                for k in range(n_parts):
                    d = tmp / f"part{k}"
                    scale.make_dataset(d, n // n_parts, T, part_store, seed=k)
                    stats = json.loads((d / "extract_stats.json").read_text())
                    stats.update(parameters=params, files=[{"path": f"f{k}.pcap"}])
                    (d / "extract_stats.json").write_text(json.dumps(stats))
                    parts.append(str(d))
                r = scale.measure(sys.executable, "-m", "janus.merge", *parts, "--out", str(tmp / "merged"),
                                  "--store", "sharded")
            print(f"| {n} | {n_parts} | {part_store} | sharded | {r['wall_s']:.2f} "
                  f"| {r['rss_mb']:.0f} |", flush=True)


def repeated_capture(src: Path, mb: float, out: Path, gap_s: int = 130) -> int:
    """Copies of the pcap ``src`` one after another, each shifted past the previous copy's end
    plus ``gap_s`` seconds, up to about ``mb`` MB; returns the number of copies."""
    data = src.read_bytes()
    if struct.unpack_from("<I", data, 0)[0] not in (0xA1B2C3D4, 0xA1B23C4D):
        raise SystemExit(f"{src}: --extract-mb needs a little-endian classic pcap")
    offsets, secs, pos = [], [], 24
    while pos + 16 <= len(data):
        offsets.append(pos)
        secs.append(struct.unpack_from("<I", data, pos)[0])
        pos += 16 + struct.unpack_from("<I", data, pos + 8)[0]
    span = max(secs) - min(secs) + gap_s
    body = bytearray(data[24:pos])
    copies = max(1, int(mb * 2**20 // len(body)))
    with open(out, "wb") as fh:
        fh.write(data[:24])
        for c in range(copies):
            chunk = bytearray(body)
            for off, sec in zip(offsets, secs):
                struct.pack_into("<I", chunk, off - 24, sec + c * span)
            fh.write(chunk)
    return copies


def bench_extract_part(src: Path, sizes: list[float]) -> None:
    """Wall time and peak RSS of one extract_part job against the capture file's size."""
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("bench_scale", Path(__file__).with_name("bench_scale.py"))
    scale = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scale)
    print("| capture MB | copies | flows | wall s | peak RSS MiB |")
    print("|---|---|---|---|---|")
    for mb in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            copies = repeated_capture(src, mb, tmp / "big.pcap")
            size = (tmp / "big.pcap").stat().st_size / 2**20
            r = scale.measure(sys.executable, "-m", "janus.extract", str(tmp / "big.pcap"),
                              "--out", str(tmp / "part"), "--max-packets", "64", "--store", "sharded")
            flows = json.loads((tmp / "part" / "extract_stats.json").read_text())["totals"]["flows"]
        print(f"| {size:.0f} | {copies} | {flows} | {r['wall_s']:.2f} | {r['rss_mb']:.0f} |",
              flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("captures", nargs="*", type=Path)
    ap.add_argument("--merge-sizes", nargs="+", type=int, default=None)
    ap.add_argument("--parts", type=int, default=4)
    ap.add_argument("--extract-mb", nargs="+", type=float, default=None)
    ap.add_argument("--slices", nargs="+", type=int, default=[2, 3, 4])
    ap.add_argument("--max-packets", type=int, default=64)
    args = ap.parse_args()
    if args.merge_sizes:
        bench_merge(args.merge_sizes, args.parts)
        return 0
    if args.extract_mb:
        bench_extract_part(args.captures[0], args.extract_mb)
        return 0
    from janus.capture.extract import extract
    from janus.datasets.merge import merge

    print("| capture | slices | flows one stream | flows per file | identical | end_reason only "
          "| cut at a boundary | per-file only |")
    print("|---|---|---|---|---|---|---|---|")
    for cap in args.captures:
        for k in args.slices:
            with tempfile.TemporaryDirectory() as tmp:
                tmp = Path(tmp)
                files = split_capture(cap, k, tmp)
                opts = {"max_packets": args.max_packets}
                extract(files, tmp / "one", **opts)
                parts = []
                for i, f in enumerate(files):
                    extract([f], tmp / f"part{i}", store="sharded", **opts)
                    parts.append(tmp / f"part{i}")
                merge(parts, tmp / "merged")
                c = compare(tmp / "one", tmp / "merged")
            print(f"| {cap.name} | {k} | {c['one_stream']} | {c['per_file']} | {c['identical']} "
                  f"| {c['end_reason_only']} | {c['cut']} | {c['per_file_only']} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
