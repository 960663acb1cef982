"""The workflow's extract.per_file: one extract_part job per capture file and a merge job.

Dry runs on fresh copies of the workflow (tests/test_workflow.py's helpers), and one real
run of the two rules on hand-built captures.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from capture_builders import PROTO_UDP, Record, ethernet, ipv4, pcap_bytes, udp
from test_workflow import _copy_workflow, _job_counts, _rule_blocks, _snakemake

from janus.capture.extract import extract
from janus.datasets.store import open_packets


@pytest.fixture()
def wf(tmp_path):
    return _copy_workflow(tmp_path / "wf")


def _config(wf, datasets, per_file=True, **extra):
    path = wf / "extra.yaml"
    path.write_text(yaml.safe_dump({"datasets": datasets, "seeds": [1], "detectors": ["iforest"],
                                    "extract": {"per_file": per_file, "max_packets": 4},
                                    **extra}))
    return ("--configfile", str(path), "--replace-workflow-config")


def _byo(files):
    return {"source": {"pcaps": {"files": files, "labels": {"default": "benign"}}}}


def _commands(stdout: str, step: str) -> list[str]:
    return [line.split("Shell command: ", 1)[1] for line in stdout.splitlines()
            if line.startswith(f"Shell command: python -m janus.{step} ")]


def test_default_run_gains_no_jobs(wf):
    """Every synth site is one capture file: per_file changes nothing there."""
    target = "results/cross_matrix.md"
    off = _snakemake(wf, "-n", "--cores", "2", target)
    on = _snakemake(wf, "-n", "--cores", "2", target, "--config", "extract={per_file: true}")
    assert off.returncode == 0 and on.returncode == 0, on.stdout[-2000:] + on.stderr[-2000:]
    assert _job_counts(on.stdout) == _job_counts(off.stdout)
    assert _job_counts(on.stdout)["total"] == 69 and "merge" not in _job_counts(on.stdout)


def test_byo_per_file_lists_one_part_per_file_and_a_merge(wf):
    files = [f"caps/day{k}.pcap" for k in range(3)]
    (wf / "caps").mkdir()
    for f in files + ["caps/single.pcap"]:
        (wf / f).write_bytes(b"")
    args = _config(wf, {"lab": _byo(files), "one": _byo(["caps/single.pcap"])})
    out = _snakemake(wf, "-n", "-p", "--cores", "2", *args, "results/cross_matrix.md")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    counts = _job_counts(out.stdout)
    assert (counts["extract_part"], counts["merge"], counts["extract"]) == (3, 1, 1)
    parts = sorted(_commands(out.stdout, "extract"))
    # One file each, always the sharded store (the merge links its shards); the one-file
    # dataset keeps its extract job, reading the whole (single-file) stream.
    assert [c for c in parts if "--out data/lab/parts/" in c] == [
        f"python -m janus.extract {f} --out data/lab/parts/{k:05d} --max-packets 4 "
        f"--idle-timeout 120 --active-timeout 1800 --store sharded --shard-flows 32768 "
        f"> logs/extract_part/lab/{k:05d}.log 2>&1" for k, f in enumerate(files)]
    assert any(c.startswith("python -m janus.extract caps/single.pcap --out data/one ")
               for c in parts)
    (merge,) = _commands(out.stdout, "merge")
    assert merge.startswith("python -m janus.merge data/lab/parts/00000 data/lab/parts/00001 "
                            "data/lab/parts/00002 --out data/lab --store auto")
    # per_file false: one extract job per dataset reads every file as one stream.
    args = _config(wf, {"lab": _byo(files), "one": _byo(["caps/single.pcap"])}, per_file=False)
    out = _snakemake(wf, "-n", "-p", "--cores", "2", *args, "results/cross_matrix.md")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    counts = _job_counts(out.stdout)
    assert counts["extract"] == 2 and "extract_part" not in counts and "merge" not in counts
    assert any(c.startswith("python -m janus.extract caps/day0.pcap caps/day1.pcap "
                            "caps/day2.pcap --out data/lab ") for c in _commands(out.stdout, "extract"))



def test_buffer_flows_reaches_extract_and_parts_not_the_merge(wf):
    """extract.buffer_flows bounds the streaming writer of every extraction job; the merge
    has no such option (it holds one shard)."""
    files = [f"caps/day{k}.pcap" for k in range(2)]
    (wf / "caps").mkdir()
    for f in files + ["caps/single.pcap"]:
        (wf / f).write_bytes(b"")
    path = wf / "buffer.yaml"
    path.write_text(yaml.safe_dump({
        "datasets": {"lab": _byo(files), "one": _byo(["caps/single.pcap"])}, "seeds": [1],
        "detectors": ["iforest"],
        "extract": {"per_file": True, "max_packets": 4, "buffer_flows": 777}}))
    out = _snakemake(wf, "-n", "-p", "--cores", "2", "--configfile", str(path),
                     "--replace-workflow-config", "results/cross_matrix.md")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    extracts = _commands(out.stdout, "extract")
    assert len(extracts) == 3 and all("--buffer-flows 777 " in c for c in extracts)
    (merge,) = _commands(out.stdout, "merge")
    assert "--buffer-flows" not in merge
    # Left out (null), janus extract keeps its own default and no flag is passed.
    args = _config(wf, {"lab": _byo(files), "one": _byo(["caps/single.pcap"])})
    out = _snakemake(wf, "-n", "-p", "--cores", "2", *args, "results/cross_matrix.md")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert not any("--buffer-flows" in c for c in _commands(out.stdout, "extract"))


def test_download_is_a_checkpoint_whose_list_makes_the_parts(wf):
    ds = {"dl": {"source": {"download": {"dataset": "cicids2017", "local": "/nowhere"}}}}
    args = _config(wf, ds)
    out = _snakemake(wf, "-n", "--cores", "2", *args, "data/dl/extract_stats.json")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    # Before the download: its list is unknown, so no part job yet; the merge waits on it.
    assert _job_counts(out.stdout) == {"download": 1, "merge": 1, "total": 2}
    assert "checkpoint download:" in out.stdout
    assert "DAG of jobs will be updated after completion" in out.stdout
    # After it (its list written): one part per listed capture, in the list's order.
    raw = wf / "data" / "raw" / "dl"
    raw.mkdir(parents=True)
    names = ["PCAPs/Monday.pcap", "PCAPs/Tuesday.pcap"]
    for n in names:
        (raw / n).parent.mkdir(exist_ok=True)
        (raw / n).write_bytes(b"")
    (raw / "captures.txt").write_text("".join(f"data/raw/dl/{n}\n" for n in names))
    out = _snakemake(wf, "-n", "-p", "--cores", "2", *args, "data/dl/extract_stats.json")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert _job_counts(out.stdout) == {"extract_part": 2, "merge": 1, "total": 3}
    inputs = {re.search(r"--out (\S+)", c).group(1): c.split()[3]
              for c in _commands(out.stdout, "extract")}
    assert inputs == {"data/dl/parts/00000": "data/raw/dl/PCAPs/Monday.pcap",
                      "data/dl/parts/00001": "data/raw/dl/PCAPs/Tuesday.pcap"}
    assert "input: data/dl/parts/00000, data/dl/parts/00001" in "\n".join(
        _rule_blocks(out.stdout, "merge"))


def test_per_file_rules_run_and_remove_their_parts(wf):
    """A real run of extract_part + merge: the triple equals janus merge's view of the
    files extracted one by one, and the part folders are gone afterwards."""
    (wf / "caps").mkdir()
    files = []
    for k in range(2):
        recs = [Record(1000.0 * k + 0.01 * i, ethernet(ipv4(udp(5000 + i % 3, 53, b"q" * (i + 1)),
                                                            "10.0.0.1", "10.0.0.9", PROTO_UDP)))
                for i in range(9)]
        f = wf / "caps" / f"c{k}.pcap"
        f.write_bytes(pcap_bytes(recs))
        files.append(f"caps/c{k}.pcap")
    args = _config(wf, {"lab": _byo(files)})
    out = _snakemake(wf, "--cores", "2", *args, "data/lab/extract_stats.json", timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    lab = wf / "data" / "lab"
    assert not (lab / "parts").exists() or not any((lab / "parts").iterdir())
    stats = json.loads((lab / "extract_stats.json").read_text())
    assert stats["merge"]["parts"] == 2 and stats["totals"]["flows"] == 6
    flows = pq.read_table(lab / "flows.parquet")
    assert flows.column("flow_id").to_pylist() == list(range(6))
    assert flows.column("source_file").to_pylist() == [files[0]] * 3 + [files[1]] * 3
    # The files are 1000 s apart (> idle timeout): one stream gives the same flows, packets.
    extract([wf / f for f in files], wf / "one", max_packets=4)
    one = pq.read_table(wf / "one" / "flows.parquet")
    for col in ("src_port", "start_time", "n_packets", "n_bytes"):
        assert flows.column(col).equals(one.column(col)), col
    np.testing.assert_array_equal(open_packets(lab).packets(), open_packets(wf / "one").packets())


def test_paper_config_extracts_per_file(wf):
    """config/paper.yaml: every CIC dataset per file, its merge sized from the config."""
    out = _snakemake(wf, "-n", "--cores", "2", "--configfile", "config/paper.yaml",
                     "--replace-workflow-config")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    counts = _job_counts(out.stdout)
    assert counts["download"] == counts["merge"] == 4
    assert "extract" not in counts and "extract_part" not in counts  # after the downloads
    paper = yaml.safe_load((wf / "config" / "paper.yaml").read_text())
    assert paper["extract"]["per_file"] is True
    res = paper["resources"]["merge"]
    blocks = "\n".join(_rule_blocks(out.stdout, "merge"))
    assert f"mem_mb={res['mem_mb']}" in blocks and f"runtime={res['runtime']}" in blocks
