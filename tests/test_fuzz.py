"""Bounded, seeded fuzzing of every hostile input JANUS reads: pcap, pcapng, label CSV, zip, tar.

Each case mutates a valid seed input (bit flips, overwritten length words, truncation,
inserted garbage, duplicated slices) and feeds it to the public entry point. Every case must
end in a result or a :class:`janus.errors.JanusError` -- never another exception -- within a
time bound. The bound is a hang guard (a quadratic or endless loop), not a speed target, so
it is generous for a shared machine. A result must also be self-consistent (every flow row
has its packets), so a mutation that is silently mis-read into broken rows fails too.

The seeds are fixed, so a failure names a case that reproduces: rerun with
``JANUS_FUZZ_CASE=<format>:<i>`` to run that one alone.
"""

from __future__ import annotations

import io
import json
import os
import random
import struct
import tarfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from capture_builders import (
    ACK,
    FIN,
    PSH,
    SYN,
    Record,
    epb,
    ethernet,
    idb,
    ipv4,
    pcap_bytes,
    pcapng_bytes,
    shb,
    tcp,
    udp,
)

from janus.errors import JanusError

#: Cases per format (each a few to a few tens of milliseconds after warm-up).
CASES = 120
#: Longest one case may take, seconds (hang guard).
CASE_BOUND_S = 20.0
T0 = 1_499_342_400.0  # 2017-07-06 12:00 UTC


# --------------------------------------------------------------------------- seed inputs
def _conversation(i: int, t: float) -> list[Record]:
    c, s = f"192.168.10.{i}", "10.0.0.1"
    sport = 40000 + i
    frames = [
        (c, s, sport, 80, SYN), (s, c, 80, sport, SYN | ACK), (c, s, sport, 80, ACK),
        (c, s, sport, 80, PSH | ACK), (s, c, 80, sport, PSH | ACK),
        (c, s, sport, 80, FIN | ACK), (s, c, 80, sport, FIN | ACK), (c, s, sport, 80, ACK),
    ]
    out = []
    for k, (src, dst, sp, dp, flags) in enumerate(frames):
        payload = b"x" * (37 * k % 200) if flags & PSH else b""
        seg = tcp(sp, dp, flags=flags, window=1024 + k) + payload
        out.append(Record(t + 0.01 * k, ethernet(ipv4(seg, src=src, dst=dst))))
    return out


def _records() -> list[Record]:
    recs: list[Record] = []
    for i in range(12):
        recs += _conversation(i + 1, T0 + i)
    recs += [Record(T0 + 20 + j, ethernet(ipv4(udp(5353, 53, b"q" * j), proto=17)))
             for j in range(6)]
    return sorted(recs, key=lambda r: r.ts)


def seed_pcap() -> bytes:
    return pcap_bytes(_records())


def seed_pcapng() -> bytes:
    recs = _records()
    blocks = [shb(), idb(), idb()]
    blocks += [epb(r.frame, r.ts, iface=k % 2) for k, r in enumerate(recs)]
    return pcapng_bytes(blocks)


CSV_HEADER = ("Flow ID, Source IP, Source Port, Destination IP, Destination Port, Protocol, "
              "Timestamp, Flow Duration, Label")


def seed_csv() -> bytes:
    lines = [CSV_HEADER]
    for i in range(12):
        t = time.gmtime(T0 + i - 3 * 3600)
        ts = f"{t.tm_mday}/{t.tm_mon}/{t.tm_year} {t.tm_hour}:{t.tm_min:02d}:{t.tm_sec:02d}"
        label = "BENIGN" if i % 3 else "DoS Hulk"
        c = f"192.168.10.{i + 1}"
        lines.append(f"{c}-10.0.0.1-{40001 + i}-80-6,{c},{40001 + i},10.0.0.1,80,6,{ts},"
                     f"{1000 + i},{label}")
    return ("\r\n".join(lines) + "\r\n").encode()


def _members() -> list[tuple[str, bytes]]:
    return [("day1/a.pcap", seed_pcap()[:3000]), ("day1/labels.csv", seed_csv()),
            ("README.txt", b"hello\n" * 50)]


def seed_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in _members():
            z.writestr(name, data)
    return buf.getvalue()


def seed_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        info = tarfile.TarInfo("day1")
        info.type = tarfile.DIRTYPE
        t.addfile(info)
        for name, data in _members():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


# --------------------------------------------------------------------------- mutations
_WORDS = (0, 1, 0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFF, 65536, 16, 2**24)


def mutate(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """One to three seeded mutations of ``data``; returns the bytes and what was done."""
    b = bytearray(data)
    done = []
    for _ in range(rng.randint(1, 3)):
        kind = rng.choice(("flip", "word", "truncate", "insert", "duplicate", "zero"))
        if not b:
            break
        pos = rng.randrange(len(b))
        if kind == "flip":
            b[pos] ^= 1 << rng.randrange(8)
        elif kind == "word" and len(b) >= 4:
            pos = rng.randrange(0, len(b) - 3) & ~3 if rng.random() < 0.7 else min(pos, len(b) - 4)
            b[pos:pos + 4] = struct.pack(rng.choice("<>") + "I", rng.choice(_WORDS))
        elif kind == "truncate":
            del b[pos:]
        elif kind == "insert":
            b[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
        elif kind == "duplicate":
            end = min(len(b), pos + rng.randint(1, 512))
            b[pos:pos] = b[pos:end]
        elif kind == "zero":
            end = min(len(b), pos + rng.randint(1, 64))
            b[pos:end] = bytes(end - pos)
        done.append(f"{kind}@{pos}")
    return bytes(b), ",".join(done)


# --------------------------------------------------------------------------- entry points
def run_capture(data: bytes, suffix: str, work: Path) -> bool:
    """Extract the mutated capture; True when the result reports damage it skipped."""
    from janus import contract
    from janus.capture.extract import extract

    cap = work / f"in{suffix}"
    cap.write_bytes(data)
    out = work / "out"
    stats = extract([cap], out, max_packets=8)
    # A result must be whole and consistent: one packets row per flow, lengths within T.
    import pyarrow.parquet as pq

    flows = pq.read_table(out / contract.FLOWS_FILE)
    with np.load(out / contract.PACKETS_FILE, allow_pickle=False) as z:
        lengths = z["lengths"]
    assert len(lengths) == flows.num_rows
    assert np.all((lengths >= 1) & (lengths <= 8))
    assert json.loads((out / "extract_stats.json").read_text()) == stats
    ts = stats.get("timestamps", {})
    return bool(stats["skipped"]) or any(
        isinstance(v, (int, float)) and v and k != "max_clock_jump_s" for k, v in ts.items())


@pytest.fixture(scope="module")
def flows_dir(tmp_path_factory) -> Path:
    """An extracted dataset for the label fuzzing to join against."""
    from janus.capture.extract import extract

    work = tmp_path_factory.mktemp("fuzz_flows")
    cap = work / "seed.pcap"
    cap.write_bytes(seed_pcap())
    extract([cap], work / "data", max_packets=8)
    return work / "data"


def run_labels(data: bytes, work: Path, flows_dir: Path) -> None:
    import shutil

    from janus import contract
    from janus.datasets.labels.step import label_dataset

    data_dir = work / "data"
    shutil.copytree(flows_dir, data_dir)
    csv = work / "labels.csv"
    csv.write_bytes(data)
    label_dataset(data_dir, csv=[csv], time_offset="auto", default="benign")
    assert (data_dir / contract.LABELS_FILE).is_file()


def run_archive(data: bytes, suffix: str, work: Path) -> None:
    from janus.datasets.archive import extract

    arc = work / f"in{suffix}"
    arc.write_bytes(data)
    dest = extract(arc, work / "dest", progress=False)
    # Whatever was extracted stays inside dest, as regular files and folders.
    for p in Path(dest).rglob("*"):
        assert not p.is_symlink(), p
        assert p.resolve().is_relative_to(Path(dest).resolve()), p
    outside = sorted(q.name for q in work.iterdir())
    assert set(outside) <= {arc.name, "dest"}, outside


FORMATS: dict[str, tuple[Callable[[], bytes], str]] = {
    "pcap": (seed_pcap, ".pcap"),
    "pcapng": (seed_pcapng, ".pcapng"),
    "csv": (seed_csv, ".csv"),
    "zip": (seed_zip, ".zip"),
    "tar": (seed_tar, ".tar.gz"),
}


def _selected(fmt: str) -> range | list[int]:
    only = os.environ.get("JANUS_FUZZ_CASE")
    if only:
        name, _, idx = only.partition(":")
        return [int(idx)] if name == fmt else []
    return range(CASES)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_mutated_inputs_end_in_a_result_or_a_janus_error(fmt, tmp_path, flows_dir):
    make, suffix = FORMATS[fmt]
    seed = make()
    failures, slowest = [], 0.0
    outcomes = {"result": 0, "result reporting damage": 0, "JanusError": 0}
    for i in _selected(fmt):
        rng = random.Random(f"{fmt}:{i}")
        data, what = mutate(seed, rng)
        work = tmp_path / f"case{i}"
        work.mkdir()
        t0 = time.perf_counter()
        try:
            if fmt in ("pcap", "pcapng"):
                if run_capture(data, suffix, work):
                    outcomes["result reporting damage"] += 1
            elif fmt == "csv":
                run_labels(data, work, flows_dir)
            else:
                run_archive(data, suffix, work)
            outcomes["result"] += 1
        except JanusError:
            outcomes["JanusError"] += 1
        except Exception as exc:  # noqa: BLE001 - the point of the test
            failures.append(f"{fmt}:{i} ({what}): {type(exc).__name__}: {exc}"[:300])
        took = time.perf_counter() - t0
        slowest = max(slowest, took)
        if took > CASE_BOUND_S:
            failures.append(f"{fmt}:{i} ({what}): took {took:.1f} s > {CASE_BOUND_S} s")
    print(f"{fmt}: {outcomes}, slowest case {slowest:.2f} s")
    assert not failures, f"{len(failures)} cases failed:\n" + "\n".join(failures[:15])
    if not os.environ.get("JANUS_FUZZ_CASE"):
        # The mutations must reach the damage paths, or the fuzzing proves little: a capture
        # reader that resynchronises reports what it skipped instead of failing.
        assert outcomes["JanusError"] + outcomes["result reporting damage"] >= CASES // 10
