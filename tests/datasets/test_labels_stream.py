"""The streamed labels join against the in-memory one of 0.3.0 (tests/labels_reference.py) on
randomised datasets built to straddle chunks: port reuse (a 5-tuple with many flows, in
random file order, so its flows sit in many chunks), rows matched by start and by span, swapped
directions, address spellings, a clock offset, a 12-hour file, damaged rows, several files;
CSVs parsed in tiny blocks. Plus the documented tie rules and the memory-shaped parts."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import labels_reference
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from janus import contract
from janus.datasets.labels import cic_csv, join
from janus.datasets.labels.step import label_dataset

UTC = timezone.utc
T0 = datetime(2017, 7, 6, 12, 0, 0, tzinfo=UTC)
HEADER = "Flow ID, Source IP, Source Port, Destination IP, Destination Port, Protocol, Timestamp, Label"
HOSTS = ["192.168.10.5", "192.168.10.8", "10.0.0.1", "2001:db8::1", "172.16.0.5"]
SPELLING = {"2001:db8::1": "2001:DB8:0::1"}  # the CSV's spelling of one address


def _flows(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    # Half the flows on 10 five-tuples (ports reused: many flows a key, in every chunk), half
    # on 150 rare ones (the offset diagnostic's keys with at most 4 flows).
    pairs = [(HOSTS[rng.integers(5)], HOSTS[rng.integers(5)], 1024 + k,
              int(rng.choice([53, 80, 443])), int(rng.choice([6, 17]))) for k in range(160)]
    which = np.where(rng.random(n) < 0.5, rng.integers(0, 10, n), rng.integers(10, 160, n))
    start = T0.timestamp() + rng.uniform(0, 4 * 3600, n).round(6)
    return {
        "src": np.array([pairs[k][0] for k in which]), "dst": np.array([pairs[k][1] for k in which]),
        "sport": np.array([pairs[k][2] for k in which]), "dport": np.array([pairs[k][3] for k in which]),
        "proto": np.array([pairs[k][4] for k in which]), "start": start,
        "end": start + rng.choice([0.2, 5.0, 200.0, 900.0], n),
        "file": np.array([f"/cap/{'Monday' if k % 3 else 'Tuesday'}/x.pcap" for k in which]),
    }


def _write_flows(folder: Path, f: dict[str, np.ndarray], row_group: int) -> None:
    n = f["start"].size
    folder.mkdir(parents=True)
    pq.write_table(pa.table({
        "flow_id": pa.array(np.arange(n), pa.int64()), "src_ip": pa.array(f["src"], pa.string()),
        "dst_ip": pa.array(f["dst"], pa.string()), "src_port": pa.array(f["sport"], pa.int32()),
        "dst_port": pa.array(f["dport"], pa.int32()), "proto": pa.array(f["proto"], pa.int16()),
        "start_time": pa.array(f["start"], pa.float64()), "end_time": pa.array(f["end"], pa.float64()),
        "n_packets": pa.array(np.full(n, 3), pa.int64()), "n_bytes": pa.array(np.full(n, 180), pa.int64()),
        "end_reason": pa.array(["fin"] * n), "source_file": pa.array(f["file"], pa.string()),
    }), folder / contract.FLOWS_FILE, row_group_size=row_group)


def _stamp(t: float, fmt: str, hours: float) -> str:
    when = datetime.fromtimestamp(t, UTC) + timedelta(hours=hours)
    if fmt == "iso":
        return when.strftime("%Y-%m-%d %H:%M:%S.%f")
    if fmt == "dmy12":  # a 12-hour clock without a marker
        return f"{when.day}/{when.month}/{when.year} {(when.hour - 1) % 12 + 1}:{when.minute:02d}:{when.second:02d}"
    return f"{when.day}/{when.month}/{when.year} {when.hour}:{when.minute:02d}:{when.second:02d}"


def _csv(path: Path, rng: np.random.Generator, f: dict[str, np.ndarray], ids: np.ndarray,
         fmt: str, hours: float) -> Path:
    labels = ["BENIGN", "BENIGN", "DoS Hulk", "PortScan", "Bot", "unknown", "???"]
    lines = [HEADER]
    for i in ids:
        for _ in range(int(rng.integers(1, 4))):
            kind = rng.integers(0, 10)
            t = f["start"][i] + {0: rng.uniform(-100, 100), 1: rng.uniform(0, f["end"][i] - f["start"][i] + 100),
                                 2: rng.uniform(200, 3000)}.get(int(kind), rng.uniform(-3, 3))
            src, dst, sp, dp = f["src"][i], f["dst"][i], f["sport"][i], f["dport"][i]
            if rng.random() < 0.3:
                src, dst, sp, dp = dst, src, dp, sp
            src, dst = SPELLING.get(src, src), SPELLING.get(dst, dst)
            proto, ts = str(f["proto"][i]), _stamp(t, fmt, hours)
            if kind == 3:
                src = "999.1.1.1"  # not an address
            elif kind == 4 and rng.random() < 0.5:
                ts = "yesterday"
            elif kind == 5 and rng.random() < 0.3:
                dp, proto = 7, "300"  # no flow has this 5-tuple (nor protocol)
            lines.append(f"x,{src},{sp},{dst},{dp},{proto},{ts},{labels[rng.integers(len(labels))]}")
        if rng.random() < 0.05:
            lines.append(",,,,,,,")  # a blank row
    path.write_text("\r\n".join(lines) + "\r\n")
    return path


@pytest.fixture(params=[0, 1, 2])
def scenario(request, tmp_path):
    rng = np.random.default_rng(request.param)
    f = _flows(rng, 400)
    data = tmp_path / "data"
    _write_flows(data, f, row_group=int(rng.choice([7, 50, 10**6])))
    # Two hours behind the flows' clock (a site offset the diagnostic finds), three files;
    # the second on a 12-hour clock without a marker.
    a = _csv(tmp_path / "a.csv", rng, f, rng.choice(400, 250, replace=False), "dmy", -2.0)
    late = np.flatnonzero(f["start"] > T0.timestamp() + 3600)  # 1..4 pm, written 1..4
    b = _csv(tmp_path / "b.csv", rng, f, late[: late.size // 2], "dmy12", 0.0)
    c = _csv(tmp_path / "c.csv", rng, f, rng.choice(400, 60, replace=False), "iso", -2.0)
    return data, [a, b, c]


def _both(data: Path, chunk: int, **kwargs) -> None:
    ref_dir = data.with_name("reference")
    shutil.rmtree(ref_dir, ignore_errors=True)
    shutil.copytree(data, ref_dir)
    ref = labels_reference.label_dataset(ref_dir, **kwargs)
    got = label_dataset(data, chunk=chunk, **kwargs)
    assert got == {**ref, "data": str(data)}
    assert pl.read_parquet(data / contract.LABELS_FILE).equals(
        pl.read_parquet(ref_dir / contract.LABELS_FILE))
    return got


@pytest.mark.parametrize("chunk,block", [(3, 5000), (7, 97), (10**6, 10**6)])
def test_streamed_join_equals_the_in_memory_join(scenario, chunk, block, monkeypatch):
    data, csvs = scenario
    monkeypatch.setattr(cic_csv, "BLOCK_BYTES", block)  # 97: a row or two a block
    if chunk == 7:  # a popular key's rows matched a few at a time
        monkeypatch.setattr(join, "MATCH_BATCH_ROWS", 3)
    rep = _both(data, chunk, csv=csvs[:1], time_offset="auto")
    assert rep["csv"]["time_offset"]["applied_hours"] == -2.0  # the offset was found...
    kinds = rep["csv"]["match_kinds"]
    assert kinds.get("start", 0) > 50 and kinds.get("span", 0) > 0  # ...and both kinds match
    assert set(rep["csv"]["unmatched_reasons"]) >= {"bad_endpoint", "no_flow_near_time",
                                                    "bad_label", "unknown_label"}
    _both(data, chunk, csv=csvs, utc_offset_hours=-2.0, time_offset="none", default="benign",
          attackers=["172.16.0.5"], by_folder=True, tolerance_s=30.0)


def test_streamed_join_twelve_hour_file(scenario):
    data, csvs = scenario
    rep = _both(data, 5, csv=[csvs[1]], time_offset="none")
    assert rep["csv"]["files"][0]["twelve_hour_suspect"]
    assert rep["csv"]["match_kinds"].get("start_12h", 0) > 0


@pytest.mark.parametrize("block", [1, 40, 97, 10**6])
def test_csv_blocks_read_as_the_whole_file(tmp_path, block):
    lines = [HEADER, "x,1.2.3.4,1,5.6.7.8,2,6,6/7/2017 9:01,BENIGN", ",,,,,,,", "",
             'x,1.2.3.4,1,5.6.7.8,2,6,"6/7/2017 9:02",DoS Hulk', "x,1.2.3.4,1,5.6.7.8,2,6,6/7/2017 3:03,Bot",
             'x,1.2.3.4,1,5.6.7.8,2,6,6/7/2017 3:04,"Bot\r\nnet"']  # a quoted line end: one row
    path = tmp_path / "q.csv"
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode())  # BOM, no final line end
    ref = labels_reference.read_label_csv(path)
    got = cic_csv.read_label_csv(path, block_bytes=block)
    assert got.table.equals(ref.table)
    assert (got.rows_total, got.rows_blank, got.timestamp_format, got.twelve_hour_suspect) == \
        (ref.rows_total, ref.rows_blank, ref.timestamp_format, ref.twelve_hour_suspect)
    assert got.table["line"].to_list() == [2, 5, 6, 7]
    assert got.table["raw_label"][-1] == "Bot\r\nnet"


def _chunk(n_rows, start, end, flow_id):
    """Flows of the key whose rows are 0..n_rows-1."""
    first = np.zeros(len(start), np.int64)
    return join.FlowChunk(np.asarray(flow_id), np.asarray(start, float), np.asarray(end, float),
                          first, first + n_rows)


def _match(times, flows, tolerance=10.0, chunks=1):
    """Rows of one key at ``times``, flows ``(start, end, flow_id)`` offered in ``chunks``."""
    n = len(times)
    rows = join.CsvRows(np.zeros(n, complex), np.asarray(times, float), np.zeros(n, np.int16),
                        np.zeros(n, np.uint16), np.zeros(n, bool), np.zeros(0, np.int64),
                        [(0, "benign")])
    m = join.Matcher(rows, 100, tolerance)
    for part in np.array_split(np.asarray(flows, float), chunks):
        if len(part):
            m.add(_chunk(n, part[:, 0], part[:, 1], part[:, 2].astype(np.int64)))
    return m.result()


@pytest.mark.parametrize("chunks", [1, 2, 3])
def test_tie_rules_and_span_semantics(chunks):
    # Equally near flows: the later start (flow 2); equal starts: the lower flow_id (flow 3).
    fid, how = _match([100.0, 200.0], [(95, 96, 1), (105, 106, 2), (203, 204, 4), (203, 204, 3)],
                      chunks=chunks)
    assert fid.tolist() == [2, 3] and how.tolist() == [0, 0]
    # Span: only the latest flow starting before the row counts; it must hold the row.
    fid, how = _match([500.0, 700.0], [(300, 800, 7), (450, 460, 8), (600, 750, 9)],
                      chunks=chunks)
    assert fid.tolist() == [-1, 9] and how.tolist() == [-1, 1]


def test_endpoint_keys_are_exact_and_unordered():
    ids = pl.Series([3, 5, None, 5], dtype=pl.Int64)
    other = pl.Series([5, 3, 5, 5], dtype=pl.Int64)
    ports = pl.Series([80, 443, 80, 70000])
    key, ok = join.endpoint_keys(ids, other, ports, pl.Series([443, 80, 1, 1]),
                                 pl.Series([6, 6, 6, 6]))
    assert key[0] == key[1] and key[0] == (3 * 65536 + 80) * 256 + 6 + 1j * (5 * 65536 + 443)
    assert ok.tolist() == [True, True, False, False]
    assert key[2].real == join.BAD_KEY and key[3].real == join.BAD_KEY
    key, _ = join.endpoint_keys(ids[:1], other[:1], ports[:1], ports[:1], pl.Series([300]))
    assert key[0].real == join.NO_FLOW_KEY
