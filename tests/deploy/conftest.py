"""A tiny trained model folder, built once per session from a synthetic site.

The pipeline of the workflow run in-process with tiny settings: ``janus synth`` (office, at
scale 0.05, plus iot as the "new site"), extract (T = 8), labels, splits, a 2-epoch model of
width 16, score, evaluate with the aggregation, then ``janus models``. About 20 s.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

T = 8
SEED = 42


@dataclass(frozen=True)
class TinyModel:
    root: Path
    folder: Path  # the model folder
    data: Path  # the extracted training dataset (office)
    capture: Path  # office's capture (the training site)
    other: Path  # iot's capture: a site the model never saw
    other_csv: Path  # iot's label CSV
    run: Path  # the training run folder
    raw_scores: Path  # janus score output of the run on its own dataset
    agg: Path  # janus evaluate --aggregate output
    splits: Path


def _ok(status: int, what: str) -> None:
    assert status == 0, f"{what} failed with status {status}"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    from janus import evaluate, extract, labels, models, score, splits, synth, train

    root = tmp_path_factory.mktemp("deploy")
    _ok(synth.main(["--out", str(root / "raw"), "--sites", "office,iot", "--scale", "0.05"]), "synth")
    cap = root / "raw" / "office" / "capture.pcap"
    data = root / "data" / "office"
    _ok(extract.main([str(cap), "--out", str(data), "--max-packets", str(T), "--idle-timeout", "120",
                      "--active-timeout", "1800"]), "extract")
    _ok(labels.main(["--data", str(data), "--csv", str(root / "raw" / "office" / "GeneratedLabelledFlows.csv")]),
        "labels")
    sp = data / "splits" / f"seed{SEED}.npz"
    _ok(splits.main(["--data", str(data), "--seed", str(SEED), "--out", str(sp), "--n-train", "300",
                     "--n-val", "120", "--n-test-benign", "150", "--n-test-attack", "150"]), "splits")
    run = root / "runs" / "janus" / "office" / f"seed{SEED}_sigma0.1"
    _ok(train.main(["--data", str(data), "--splits", str(sp), "--seed", str(SEED), "--out", str(run),
                    "--max-packets", str(T), "--d-model", "16", "--n-layers", "1", "--n-heads", "2",
                    "--epochs", "3", "--batch-size", "64", "--lr", "0.003", "--device", "cpu",
                    "--threads", "1"]), "train")
    raw = root / "results" / "scores" / "janus" / "office" / "office" / f"seed{SEED}.parquet"
    _ok(score.main(["--checkpoint", str(run / "model.pt"), "--data", str(data), "--splits", str(sp),
                    "--out", str(raw), "--device", "cpu"]), "score")
    agg = root / "results" / "agg" / "janus" / "office" / "office" / f"seed{SEED}.parquet"
    metrics = root / "results" / "metrics" / "janus" / "office" / "office" / f"seed{SEED}.json"
    _ok(evaluate.main(["--aggregate", str(raw), str(agg), "--scores", str(agg), "--labels",
                       str(data / "labels.parquet"), "--splits", str(sp), "--out", str(metrics),
                       "--detector", "janus", "--target", "office", "--source", "office",
                       "--seed", str(SEED)]), "evaluate")
    out = root / "results" / "models" / "office"
    _ok(models.main(["--dataset", "office", "--data", str(data), "--checkpoint", str(run / "model.pt"),
                     "--scores", str(raw), "--splits", str(sp), "--metrics", str(metrics), "--seed",
                     str(SEED), "--out", str(out), "--config-hash", "abc123"]), "models")
    return TinyModel(root=root, folder=out / f"seed{SEED}", data=data, capture=cap,
                     other=root / "raw" / "iot" / "capture.pcap",
                     other_csv=root / "raw" / "iot" / "GeneratedLabelledFlows.csv", run=run,
                     raw_scores=raw, agg=agg, splits=sp)
