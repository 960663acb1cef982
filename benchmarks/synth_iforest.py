"""The embedded default end to end: synthesise -> extract -> label by CSV join -> IsolationForest.

    python benchmarks/synth_iforest.py                      # four sites, --scale 1.0
    python benchmarks/synth_iforest.py --scale 0.1 --sites office,iot

For each site it prints: flows per class (from the label join), pcap size, generation and
extraction time, packets skipped by the extractor, the label-join match rate (every CSV row
should match one flow), and the AUROC of an IsolationForest (scikit-learn,
``random_state=0``) fitted on the 20 flow features of a random half of the benign flows and
scored on the other half plus every attack flow; also the AUROC per attack class (that
class's flows against the held-out benign flows), which shows which attacks are subtle.

The synthetic data is meant to be hard for flow statistics: an AUROC near 1.0 on every site
would mean the generator is too easy (see janus/datasets/synth/attacks.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def evaluate_site(site_dir: Path, ext_dir: Path, seed: int) -> dict:
    import polars as pl
    from sklearn.ensemble import IsolationForest
    from sklearn.metrics import roc_auc_score

    from janus.capture.extract import extract
    from janus.contract import FEATURES_FILE, FLOW_FEATURES, LABELS_FILE, STATS_FILE
    from janus.datasets.labels import label_dataset
    from janus.datasets.synth import CSV_NAME, PCAP_NAME

    t = time.perf_counter()
    stats = extract([site_dir / PCAP_NAME], ext_dir)
    t_extract = time.perf_counter() - t
    report = label_dataset(ext_dir, csv=[site_dir / CSV_NAME], time_offset="auto")
    stats = json.loads((ext_dir / STATS_FILE).read_text())

    feats = pl.read_parquet(ext_dir / FEATURES_FILE).select(FLOW_FEATURES).to_numpy().astype(np.float64)
    labels = pl.read_parquet(ext_dir / LABELS_FILE)
    y = labels["label"].to_numpy()
    attack = np.asarray(labels["attack"].to_list(), dtype=object)
    benign = np.flatnonzero(y == 0)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(benign)
    train, test_benign = perm[: len(perm) // 2], perm[len(perm) // 2:]
    test = np.concatenate([test_benign, np.flatnonzero(y == 1)])
    forest = IsolationForest(random_state=0, n_estimators=200).fit(feats[train])
    score = -forest.score_samples(feats)  # higher = more anomalous
    auroc = float(roc_auc_score(y[test], score[test]))
    per_class = {}
    for cls in sorted(set(attack[y == 1])):
        idx = np.concatenate([test_benign, np.flatnonzero(attack == cls)])
        per_class[cls] = (int((attack == cls).sum()), float(roc_auc_score((y[idx] == 1).astype(int), score[idx])))
    csv = report.get("csv", {})
    return {
        "extract_s": t_extract,
        "flows": report["n_flows"],
        "skipped": stats["skipped"],
        "rows": csv.get("rows", 0),
        "rows_matched": csv.get("rows_matched", 0),
        "offset_h": csv.get("time_offset", {}).get("applied_hours"),
        "labels": report["labels"],
        "auroc": auroc,
        "per_class": per_class,
        "n_train": len(train),
        "n_test": len(test),
    }


def main(argv=None) -> int:
    from janus.datasets.synth import META_NAME, SITES, generate_site

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=float, default=1.0, help="janus synth --scale (default 1.0)")
    p.add_argument("--seed", type=int, default=0, help="synth seed and split seed (default 0)")
    p.add_argument("--sites", default=",".join(SITES), help="comma-separated sites (default: all four)")
    p.add_argument("--work", default=None, help="folder for the generated data (default: a temporary one)")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="janus_synth_bench_") as tmp:
        work = Path(args.work or tmp)
        rows = []
        t_gen_total = 0.0
        for name in args.sites.split(","):
            t = time.perf_counter()
            meta = generate_site(name, work / "synth", seed=args.seed, scale=args.scale)
            t_gen = time.perf_counter() - t
            t_gen_total += t_gen
            res = evaluate_site(work / "synth" / name, work / "extracted" / name, args.seed)
            rows.append((name, meta, t_gen, res))
            assert (work / "synth" / name / META_NAME).is_file()

        print(f"\njanus synth --scale {args.scale} --seed {args.seed}: generation {t_gen_total:.1f} s for "
              f"{len(rows)} site(s)\n")
        print("| site | benign | attack | pcap MB | frames | gen s | extract s | skipped | CSV rows matched "
              "| offset h | IForest AUROC |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for name, meta, t_gen, r in rows:
            skipped = ", ".join(f"{k} {v}" for k, v in r["skipped"].items()) or "0"
            print(f"| {name} | {r['labels']['benign']} | {r['labels']['attack']} | {meta['pcap_bytes'] / 1e6:.1f} "
                  f"| {meta['n_frames']} | {t_gen:.1f} | {r['extract_s']:.1f} | {skipped} "
                  f"| {r['rows_matched']}/{r['rows']} ({100 * r['rows_matched'] / max(r['rows'], 1):.1f} %) "
                  f"| {r['offset_h']:+.0f} | {r['auroc']:.3f} |")
        print("\nPer attack class (flows; IsolationForest AUROC against the held-out benign flows):")
        for name, meta, _, r in rows:
            classes = "; ".join(f"{c} {n} ({a:.3f})" for c, (n, a) in r["per_class"].items())
            print(f"  {name}: {classes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
