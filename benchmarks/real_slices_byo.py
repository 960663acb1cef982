"""The shared real capture slices run as two bring-your-own datasets, through every table.

    python benchmarks/real_slices_byo.py --size default              # the default's sizes
    python benchmarks/real_slices_byo.py --size paper --seeds 42,43  # the paper's model
    git worktree add /tmp/before 561abe5
    python benchmarks/real_slices_byo.py --size paper --code /tmp/before --work /tmp/rb_before

reads the slices in ``../shared/data/real/`` (SOURCES.md there; ``--real DIR`` elsewhere),
never copies them into the checkout, and builds a working folder (``--work``) with captures
it makes itself and a config:

* ``ids17`` = the earlier half of the CICIDS2017 Monday slice (benign, one host,
  192.168.10.5) + nmap SYN scan (172.16.0.8) + CICIDS2017 SQL injection (172.16.0.1) + ssh
  brute force (147.32.80.40);
* ``ddos19`` = the later half of the Monday slice + the CIC-DDoS2019 SYN flood and WebDDoS
  slices (both from 172.16.0.5, told apart by their time windows).

The Monday slice (~190 flows) is the only benign traffic: it is halved by the time of each
flow's first packet (a flow's packets stay together), so each dataset has ~95 benign flows
and the split sizes are set explicitly (:data:`SPLITS`). Captures of a dataset are listed in
time order (one stream; the timestamp guard of extract would warn on a step back). Labels:
the ``attackers`` rule (an attacker address at either end of a flow), everything else benign.

Then it runs ``snakemake --cores N -s CODE/workflow/Snakefile --configfile CONFIG`` for the
tables and prints the wall time, job count, the most train jobs that ran at once (from the
Snakemake log), the peak RSS of the largest single job, CPU seconds (all jobs; per rule from
``logs/benchmarks/`` where the workflow writes them), the ``uptime`` load before and after,
and the tables. ``--dry-run`` only lists the jobs (``snakemake -n``).

``--code DIR`` runs the workflow and the janus package of another checkout (PYTHONPATH=DIR),
e.g. the code before the CPU-only scheduling fixes. Its schema may know fewer keys: the
config is pruned to what that schema accepts (every dropped key is printed), and a schema
without ``splits.n_cal`` gets ``n_val + n_cal`` as ``n_val`` (the same benign flows held out:
early stopping, OAS fit and thresholds then share them, as that code did). A checkout with
the old layout (``Snakefile`` at its root, paths relative to the working folder) is run with
that checkout as the working folder and its ``profiles/default`` as the workflow profile, as
its README ran it.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "data" / "real"

MONDAY = "cicids2017-monday-benign.pcapng"

#: Dataset -> captures in time order ("monday_a"/"monday_b" are the halves this script
#: writes, the rest are read in place) and attacker rules (SOURCES.md).
DATASETS = {
    "ids17": {
        "description": "CICIDS2017 Monday, earlier half (benign, one host) + nmap SYN scan, "
                       "SQL injection, ssh brute force (real slices)",
        "files": ["nmap-synscan.pcap", "monday_a", "cicids2017-thursday-sqli.pcap",
                  "ssh-bruteforce.pcap"],
        "attackers": ["172.16.0.8=portscan", "172.16.0.1=sql_injection",
                      "147.32.80.40=ssh_bruteforce"],
    },
    "ddos19": {
        "description": "CICIDS2017 Monday, later half (benign, one host) + CIC-DDoS2019 SYN "
                       "flood and WebDDoS (real slices)",
        "files": ["monday_b", "cicddos2019-synflood.pcap", "cicddos2019-webddos.pcap"],
        "attackers": ["172.16.0.5=syn_flood@2018-11-03T10:00:00,2018-11-03T11:00:00",
                      "172.16.0.5=webddos@2018-12-01T12:00:00,2018-12-01T13:00:00"],
    },
}

#: Benign flows per split (~95 benign flows a dataset): every split gets flows. The test
#: split is balanced by janus.splits (as many attack flows as benign ones).
SPLITS = {"n_train": 50, "n_val": 10, "n_cal": 15, "n_test_benign": 20, "n_test_attack": 20}

#: The default config's sections that size the run (model, schedule, extract, baselines);
#: --size paper takes them from config/paper.yaml instead.
SIZED = ("extract", "model", "train", "baselines")
DETECTORS = ["janus", "nf", "iforest", "ocsvm"]


def _flow_key(buf: bytes):
    """Bidirectional (addresses, protocol, ports) of an Ethernet frame; None if not IP."""
    import dpkt

    try:
        eth = dpkt.ethernet.Ethernet(buf)
    except (dpkt.UnpackError, IndexError):
        return None
    ip = eth.data
    if not isinstance(ip, (dpkt.ip.IP, dpkt.ip6.IP6)):
        return None
    ports = (0, 0)
    if isinstance(ip.data, (dpkt.tcp.TCP, dpkt.udp.UDP)):
        ports = (ip.data.sport, ip.data.dport)
    a, b = (bytes(ip.src), ports[0]), (bytes(ip.dst), ports[1])
    return (min(a, b), max(a, b), ip.p)


def split_by_time(src: Path, out_a: Path, out_b: Path) -> dict:
    """Write the flows of ``src`` whose first packet is in the earlier half of the flows' start
    times to ``out_a``, the rest to ``out_b`` (classic pcap, Ethernet, microseconds, each in
    time order). A flow's packets all go to the half of its first packet; non-IP packets go
    by their own time. Returns the flow and packet counts of each half and the cut (Unix s).
    """
    import dpkt

    from janus.capture.pcapwrite import write_pcap

    with open(src, "rb") as fh:
        reader = dpkt.pcapng.Reader(fh) if src.suffix == ".pcapng" else dpkt.pcap.Reader(fh)
        if reader.datalink() != dpkt.pcap.DLT_EN10MB:
            raise SystemExit(f"{src}: link type {reader.datalink()}, expected Ethernet")
        packets = [(float(ts), bytes(buf)) for ts, buf in reader]
    first: dict = {}
    keys = []
    for ts, buf in packets:
        key = _flow_key(buf)
        keys.append(key)
        if key is not None:
            first.setdefault(key, ts)
    starts = sorted(first.values())
    cut = starts[len(starts) // 2]  # flows starting before the median start go to the first half
    halves: tuple[list, list] = ([], [])
    for (ts, buf), key in zip(packets, keys):
        t0 = ts if key is None else first[key]
        halves[t0 >= cut].append((ts, buf))
    for path, half in zip((out_a, out_b), halves):
        write_pcap(path, [t for t, _ in half], [b for _, b in half])
    return {"cut": cut, "flows": [sum(t < cut for t in starts), sum(t >= cut for t in starts)],
            "packets": [len(halves[0]), len(halves[1])]}


def build_captures(real: Path, work: Path) -> dict:
    """The Monday halves in ``work/captures`` (the other slices are read in place)."""
    missing = [f for d in DATASETS.values() for f in d["files"]
               if not f.startswith("monday_") and not (real / f).is_file()]
    if not (real / MONDAY).is_file() or missing:
        raise SystemExit(f"{real}: the shared real slices are not there "
                         f"(missing {', '.join(missing) or MONDAY}); pass --real DIR")
    captures = work / "captures"
    captures.mkdir(parents=True, exist_ok=True)
    return split_by_time(real / MONDAY, captures / "monday_a.pcap", captures / "monday_b.pcap")


def capture_path(name: str, real: Path, work: Path) -> str:
    if name.startswith("monday_"):
        return str((work / "captures" / f"{name}.pcap").resolve())
    return str((real / name).resolve())


def build_config(size: str, real: Path, work: Path, seeds: list[int],
                 detectors: list[str]) -> dict:
    """The run's config (this checkout's key names): the two datasets, explicit splits, and
    the default's or the paper's model/extract/schedule/baseline sections."""
    sized = yaml.safe_load((REPO / "config" / ("paper.yaml" if size == "paper"
                                                 else "config.yaml")).read_text())
    cfg: dict = {"datasets": {}}
    for name, spec in DATASETS.items():
        cfg["datasets"][name] = {"description": spec["description"], "source": {"pcaps": {
            "files": [capture_path(f, real, work) for f in spec["files"]],
            "labels": {"attackers": list(spec["attackers"]), "default": "benign"}}}}
    cfg["seeds"] = list(seeds)
    cfg["detectors"] = list(detectors)
    cfg["cross_dataset"] = True
    cfg["splits"] = dict(SPLITS)
    for key in SIZED:
        cfg[key] = copy.deepcopy(sized[key])
    # One stream per dataset (the Monday half's flows and an attack slice's never span two
    # files here), as the measured runs read them; the paper config extracts file by file.
    cfg["extract"]["per_file"] = False
    # The paper's Phase-1 path scores (score.extended) stay off: the code before the
    # scheduling fixes had none, and they are not what this run times.
    cfg["score"] = {"extended": False}
    cfg["resources"] = {"gpu": "auto"}
    return cfg


def _schema_node(schema: dict, node: dict) -> dict:
    while "$ref" in node:
        node = schema["$defs"][node["$ref"].split("/")[-1]]
    return node


def _prune(value, node: dict, schema: dict, path: str, dropped: list[str]):
    """``value`` without the keys ``node`` (a schema object) does not know."""
    node = _schema_node(schema, node)
    if not isinstance(value, dict) or not ("properties" in node or isinstance(
            node.get("additionalProperties"), dict)):
        return value
    props = node.get("properties", {})
    out = {}
    for key, sub in value.items():
        if key in props:
            out[key] = _prune(sub, props[key], schema, f"{path}{key}.", dropped)
        elif isinstance(node.get("additionalProperties"), dict):  # a map (datasets)
            out[key] = _prune(sub, node["additionalProperties"], schema, f"{path}{key}.", dropped)
        else:
            dropped.append(f"{path}{key}")
    return out


def adapt_config(cfg: dict, code: Path) -> tuple[dict, list[str]]:
    """``cfg`` as the schema of checkout ``code`` accepts it, and what was changed."""
    schema_path = code / "workflow" / "schemas" / "config.schema.yaml"
    schema = yaml.safe_load(schema_path.read_text())
    cfg = copy.deepcopy(cfg)
    notes: list[str] = []
    split_keys = _schema_node(schema, schema["properties"]["splits"])["properties"]
    if "n_cal" not in split_keys and "n_cal" in cfg["splits"]:
        cfg["splits"]["n_val"] += cfg["splits"].pop("n_cal")
        notes.append(f"splits.n_cal folded into splits.n_val = {cfg['splits']['n_val']}")
    gpu = _schema_node(schema, schema["properties"]["resources"])["properties"]["gpu"]
    if cfg.get("resources", {}).get("gpu") == "auto" and gpu.get("type") == "integer":
        del cfg["resources"]["gpu"]
        notes.append(f"resources.gpu: auto unknown, the schema's default {gpu.get('default')}")
    dropped: list[str] = []
    cfg = _prune(cfg, schema, schema, "", dropped)
    import jsonschema

    # Values of a kind that schema does not take (e.g. model.ot as a string): drop them too.
    validator = jsonschema.Draft202012Validator(schema)
    for _ in range(50):
        errors = sorted(validator.iter_errors(cfg), key=lambda e: len(e.absolute_path))
        errors = [e for e in errors if e.absolute_path]
        if not errors:
            break
        where = list(errors[0].absolute_path)
        parent = cfg
        for part in where[:-1]:
            parent = parent[part]
        # Only a value of the wrong kind is dropped; an object the schema rejects as a whole
        # (a key it lacks inside a 'oneOf' source, a required key) is a config to fix by hand.
        if isinstance(parent, list) or errors[0].validator in ("additionalProperties",
                                                               "required", "oneOf"):
            raise SystemExit(f"{schema_path}: cannot adapt {'.'.join(map(str, where))}: "
                             f"{errors[0].message}")
        del parent[where[-1]]
        dropped.append(".".join(map(str, where)) + f" ({errors[0].message})")
    notes += [f"dropped {d}" for d in dropped]
    return cfg, notes


def _uptime() -> str:
    """``uptime``'s line (the load averages); the machine is shared, so every run logs it."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return Path("/proc/loadavg").read_text().strip()


_JOB = re.compile(r"^\[(?P<when>[^\]]+)\]\s*$")


def parse_snakemake_log(text: str) -> dict:
    """Jobs per rule, the most train jobs running at once and per-rule wall seconds from a
    Snakemake log (``rule NAME:`` / ``jobid: N`` blocks under a ``[time]`` line, then
    ``Finished jobid: N``)."""
    from datetime import datetime

    def when(s: str) -> float | None:
        for fmt in ("%a %b %d %H:%M:%S %Y", "%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%d %H:%M:%S"):
            try:
                return datetime.strptime(s.strip(), fmt).timestamp()
            except ValueError:
                continue
        return None

    now = None
    rule = None
    started: dict[str, tuple[str, float | None]] = {}
    running: Counter = Counter()
    most: Counter = Counter()
    per_rule_s: dict[str, list[float]] = {}
    jobs: Counter = Counter()
    for line in text.splitlines():
        m = _JOB.match(line)
        if m:
            now = when(m.group("when"))
            continue
        s = line.strip()
        m = re.match(r"^(?:local)?rule (\w+):$", s)
        if m:
            rule = m.group(1)
            continue
        m = re.match(r"^jobid: (\d+)$", s)
        if m and rule is not None:
            started[m.group(1)] = (rule, now)
            jobs[rule] += 1
            running[rule] += 1
            most[rule] = max(most[rule], running[rule])
            rule = None
            continue
        m = re.match(r"^Finished job(?:id)?:? (\d+)", s)
        if m and m.group(1) in started:
            r, t0 = started.pop(m.group(1))
            running[r] -= 1
            if t0 is not None and now is not None:
                per_rule_s.setdefault(r, []).append(now - t0)
    return {"jobs": dict(jobs), "max_parallel": dict(most),
            "wall_s": {r: sum(v) for r, v in per_rule_s.items()}}


def benchmark_cpu(root: Path) -> dict[str, dict]:
    """Per rule: jobs, CPU seconds and the largest max_rss (MB) of logs/benchmarks/<rule>/."""
    out: dict[str, dict] = {}
    bench = root / "logs" / "benchmarks"
    if not bench.is_dir():
        return out
    for tsv in sorted(bench.rglob("*.tsv")):
        rule = tsv.relative_to(bench).parts[0]
        lines = tsv.read_text().splitlines()
        if len(lines) < 2:
            continue
        row = dict(zip(lines[0].split("\t"), lines[-1].split("\t")))
        acc = out.setdefault(rule, {"jobs": 0, "cpu_s": 0.0, "wall_s": 0.0, "max_rss_mb": 0.0})
        acc["jobs"] += 1
        for key, col in (("cpu_s", "cpu_time"), ("wall_s", "s")):
            try:
                acc[key] += float(row.get(col, "nan"))
            except ValueError:
                pass
        try:
            acc["max_rss_mb"] = max(acc["max_rss_mb"], float(row.get("max_rss", "nan")))
        except ValueError:
            pass
    return out


def loss_summary(root: Path) -> list[dict]:
    """Per JANUS training run: epochs run, best epoch, whether early stopping fired."""
    rows = []
    for path in sorted((root / "runs").glob("*/*/*/loss.csv")):
        lines = path.read_text().splitlines()
        head = lines[0].split(",")
        body = [dict(zip(head, line.split(","))) for line in lines[1:] if line]
        if not body:
            continue
        val = [float(r["val_loss"]) for r in body if r.get("val_loss") not in (None, "")]
        best = min(range(len(val)), key=val.__getitem__) if val else -1
        rows.append({"run": str(path.parent.relative_to(root / "runs")),
                     "epochs": len(body),
                     "best_epoch": int(body[best]["epoch"]) if best >= 0 else None,
                     "early_stop": body[-1].get("early_stop", "n/a"),
                     "val_first": val[0] if val else None, "val_best": min(val) if val else None})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=["default", "paper"], default="default",
                   help="model/extract/schedule sections of config/config.yaml or config/paper.yaml")
    p.add_argument("--real", type=Path, default=REAL, help="folder of the shared real slices")
    p.add_argument("--work", type=Path, default=None,
                   help="working folder (default /tmp/janus_real_byo_SIZE)")
    p.add_argument("--code", type=Path, default=REPO,
                   help="checkout whose workflow and janus package run (default: this one)")
    p.add_argument("--cores", type=int, default=2, help="snakemake --cores")
    p.add_argument("--seeds", default="42,43", help="comma-separated training seeds")
    p.add_argument("--detectors", default=",".join(DETECTORS), help="comma-separated detectors")
    p.add_argument("--targets", default="results/cross_matrix.md,results/within.md,"
                   "results/baselines.md,results/thresholded.md,results/per_attack.md,"
                   "results/aggregators.md", help="comma-separated snakemake targets")
    p.add_argument("--dry-run", action="store_true", help="snakemake -n: list the jobs only")
    p.add_argument("--fresh", action="store_true", help="empty the working folder first")
    args = p.parse_args(argv)

    code = args.code.resolve()
    work = (args.work or Path(f"/tmp/janus_real_byo_{args.size}")).resolve()
    if args.fresh and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    halves = build_captures(args.real.resolve(), work)
    print(f"Monday slice halved at {halves['cut']:.3f}: flows {halves['flows']}, "
          f"packets {halves['packets']}")
    seeds = [int(s) for s in args.seeds.split(",") if s]
    detectors = [d for d in args.detectors.split(",") if d]
    cfg = build_config(args.size, args.real.resolve(), work, seeds, detectors)
    cfg, notes = adapt_config(cfg, code)
    for note in notes:
        print(f"config for {code}: {note}")
    config_path = work / f"real_{args.size}.yaml"
    config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))

    new_layout = (code / "workflow" / "Snakefile").is_file()
    cwd = work if new_layout else code  # the old Snakefile reads paths relative to its checkout
    snakefile = code / "workflow" / "Snakefile" if new_layout else code / "Snakefile"
    cmd = ["snakemake", "--cores", str(args.cores), "-s", str(snakefile),
           "--configfile", str(config_path), "--replace-workflow-config"]
    if not new_layout and (code / "profiles" / "default").is_dir():
        cmd += ["--workflow-profile", str(code / "profiles" / "default")]
    if args.dry_run:
        cmd += ["-n"]
    cmd += [t for t in args.targets.split(",") if t]
    env = dict(os.environ, PYTHONPATH=str(code))
    print("cwd:", cwd)
    print("command:", " ".join(cmd))
    print("host:", socket.gethostname(), "| cores:", os.cpu_count())
    print("load before:", _uptime())
    log_path = work / f"snakemake_{args.size}.log"
    t0 = time.perf_counter()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(log_path, "w") as log:
        rc = subprocess.run(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                            check=False).returncode
    wall = time.perf_counter() - t0
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    print("load after:", _uptime())
    text = log_path.read_text()
    if args.dry_run:
        print(text)
        return rc
    if rc != 0:
        print(text[-4000:])
        print(f"snakemake failed (rc {rc}); log: {log_path}")
        return rc
    parsed = parse_snakemake_log(text)
    cpu_all = (ru.ru_utime - ru0.ru_utime) + (ru.ru_stime - ru0.ru_stime)
    summary = {
        "size": args.size, "code": str(code), "wall_s": round(wall, 1),
        "jobs": sum(parsed["jobs"].values()), "jobs_per_rule": parsed["jobs"],
        "max_parallel": parsed["max_parallel"],
        "job_wall_s_per_rule": {r: round(s, 1) for r, s in parsed["wall_s"].items()},
        "cpu_s_all_jobs": round(cpu_all, 1),
        "peak_rss_mb_largest_job": round(ru.ru_maxrss / 1024, 1),
        "benchmarks": benchmark_cpu(cwd),
        "loss": loss_summary(cwd),
        "config_notes": notes,
    }
    print(json.dumps(summary, indent=1))
    (work / f"summary_{args.size}.json").write_text(json.dumps(summary, indent=1))
    for table in args.targets.split(","):
        path = cwd / table
        if path.is_file() and table.endswith(".md"):
            print(f"\n===== {table}\n{path.read_text()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
