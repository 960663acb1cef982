"""The report step: METRICS.json files -> markdown tables and figures.

Every ``METRICS.json`` (written by ``janus evaluate``) is one run: a detector trained on a
*source* dataset with one seed, evaluated on a *target* dataset. The tables summarise the
runs over seeds as ``mean ± std`` (sample standard deviation, ``ddof = 1``; a single seed
shows the mean alone):

* ``cross_matrix.md`` -- AUROC, rows = source (training) dataset, columns = target; JANUS's
  Mahalanobis-OAS scalar and its ``terminal_norm`` score side by side with their paired
  difference Δ = OAS − terminal_norm (per seed, then mean ± std), then one matrix per other
  detector, then the within/cross averages.
* ``within.md`` -- per dataset, OAS and each of the 10 raw scores (JANUS detectors), then the
  extended path scores of files scored with ``--extended``.
* ``thresholded.md`` -- precision/recall/F1 at the benign-validation P95 and P99
  thresholds, and TPR at 1 % FPR.
* ``per_attack.md`` -- within-dataset AUROC of each attack class against the benign flows.
* ``aggregators.md`` -- the default OAS vs the paper's two-sided 10-column OAS
  (``oas_paper``) vs max-z vs Mahalanobis vs Ledoit-Wolf (and terminal_norm).
* ``baselines.md`` -- every detector's headline score side by side, within each dataset and
  on every cross-dataset pair.

Figures (under ``OUT_DIR/figures``): ``cross_matrix.png`` (terminal_norm, JANUS-OAS and Δ
heatmaps), and per dataset ``roc_<dataset>.png`` and ``hist_<dataset>.png`` from the
per-flow scores of the within-dataset runs of one seed (the files each METRICS.json names).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from janus import __version__, contract
from janus.cli import run_main
from janus.errors import JanusError
from janus.io import atomic_path, write_text
from janus.provenance import collect as collect_provenance
from janus.provenance import footer_lines

log = logging.getLogger(__name__)

#: Detectors built on the JANUS model; their score files hold the aggregated scalars.
JANUS_DETECTORS: tuple[str, ...] = ("janus", "janus_cont")
#: Aggregators compared in aggregators.md, in column order (janus.evaluation.aggregate.METHODS).
AGGREGATORS: tuple[str, ...] = ("oas", "oas_paper", "maxz", "mahalanobis", "ledoit_wolf")
#: The raw score JANUS-OAS is compared against in the headline matrix.
REFERENCE_SCORE = "terminal_norm"
#: Table file names, in the order they are written.
TABLES: tuple[str, ...] = ("cross_matrix.md", "within.md", "thresholded.md", "per_attack.md",
                           "aggregators.md", "baselines.md")
MISSING = "—"


# --------------------------------------------------------------------------- loading
@dataclass(frozen=True)
class Run:
    """One METRICS.json: ``columns`` maps a score column to its metrics dict."""

    path: Path
    detector: str
    source: str
    target: str
    seed: int
    columns: dict
    janus_version: str | None
    scores_file: str | None
    labels_file: str | None
    splits_file: str | None


def load_run(path: str | Path) -> Run:
    """Read one METRICS.json; :class:`JanusError` naming the file and key when malformed."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise JanusError(f"{path}: metrics file not found (run 'janus evaluate' first)") from None
    except json.JSONDecodeError as exc:
        raise JanusError(f"{path}: not JSON ({exc})") from None
    for key in ("detector", "source", "target", "seed", "columns"):
        if data.get(key) is None:
            raise JanusError(f"{path}: key {key!r} is missing or null (evaluate it with "
                             "--detector, --source, --target and --seed)")
    if not isinstance(data["columns"], dict) or not data["columns"]:
        raise JanusError(f"{path}: key 'columns' holds no score column")
    return Run(path=path, detector=str(data["detector"]), source=str(data["source"]),
               target=str(data["target"]), seed=int(data["seed"]), columns=data["columns"],
               janus_version=data.get("janus_version"), scores_file=data.get("scores_file"),
               labels_file=data.get("labels_file"), splits_file=data.get("splits_file"))


def load_runs(paths: Iterable[str | Path]) -> list[Run]:
    """Read every METRICS.json; two files for the same (detector, source, target, seed) is an
    error (a table cell would silently average a stale run in)."""
    runs: list[Run] = []
    seen: dict[tuple, Path] = {}
    for p in paths:
        run = load_run(p)
        key = (run.detector, run.source, run.target, run.seed)
        if key in seen:
            raise JanusError(f"{run.path} and {seen[key]} are both detector={key[0]} "
                             f"source={key[1]} target={key[2]} seed={key[3]}")
        seen[key] = run.path
        runs.append(run)
    if not runs:
        raise JanusError("no METRICS.json given (--metrics)")
    return runs


# --------------------------------------------------------------------------- statistics
def mean_std(values: Sequence[float | None]) -> tuple[float, float, int]:
    """``(mean, sample std (ddof=1), n)`` over the non-missing values.

    Missing values (``None``/NaN, e.g. an AUROC of a test set without attacks) are left out;
    ``n`` counts the rest. ``std`` is NaN for ``n < 2`` and ``mean`` is NaN for ``n == 0``.
    """
    x = np.array([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
    if x.size == 0:
        return math.nan, math.nan, 0
    return float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else math.nan, int(x.size)


def fmt(stat: tuple[float, float, int], signed: bool = False, digits: int = 3) -> str:
    """``0.951 ± 0.012``; the mean alone for one value; :data:`MISSING` for none."""
    mean, std, n = stat
    if n == 0:
        return MISSING
    sign = "+" if signed else ""
    text = f"{mean:{sign}.{digits}f}"
    return text if n < 2 else f"{text} ± {std:.{digits}f}"


@dataclass(frozen=True)
class Entry:
    """A column of the tables: one score ``column`` of one ``detector``, shown as ``label``."""

    detector: str
    column: str
    label: str


def headline_column(detector: str, columns: Iterable[str]) -> str:
    """The score a detector is ranked by: OAS for JANUS, ``score`` for a baseline."""
    cols = list(columns)
    for name in ("oas", "score"):
        if name in cols:
            return name
    return cols[0]


class Results:
    """All runs, indexed by ``(detector, source, target)`` -> {seed: Run}."""

    def __init__(self, runs: list[Run], datasets: Sequence[str] | None = None,
                 detectors: Sequence[str] | None = None) -> None:
        self.runs = runs
        self.index: dict[tuple[str, str, str], dict[int, Run]] = {}
        for r in runs:
            self.index.setdefault((r.detector, r.source, r.target), {})[r.seed] = r
        self.datasets = list(datasets) if datasets else _unique(
            [r.source for r in runs] + [r.target for r in runs])
        self.detectors = list(detectors) if detectors else _unique([r.detector for r in runs])
        self.seeds = sorted({r.seed for r in runs})
        for name, given, found in (
            ("datasets", self.datasets, {r.source for r in runs} | {r.target for r in runs}),
            ("detectors", self.detectors, {r.detector for r in runs}),
        ):
            extra = sorted(found - set(given))
            if extra:
                raise JanusError(f"metrics files name {name} {extra} that --{name} leaves out")

    def pairs(self, cross: bool | None = None) -> list[tuple[str, str]]:
        """(source, target) pairs with at least one run; ``cross`` False/True = only the
        diagonal / only off-diagonal pairs."""
        out = []
        for s in self.datasets:
            for t in self.datasets:
                if cross is not None and (s != t) != cross:
                    continue
                if any((d, s, t) in self.index for d in self.detectors):
                    out.append((s, t))
        return out

    def values(self, detector: str, source: str, target: str, column: str,
               path: Sequence[str] = ("auroc",)) -> dict[int, float | None]:
        """seed -> the metric at ``columns[column][path...]`` (None where absent or null)."""
        out: dict[int, float | None] = {}
        for seed, run in self.index.get((detector, source, target), {}).items():
            node = run.columns.get(column)
            for key in path:
                node = node.get(key) if isinstance(node, dict) else None
            out[seed] = None if node is None else float(node)
        return out

    def stat(self, detector: str, source: str, target: str, column: str,
             path: Sequence[str] = ("auroc",)) -> tuple[float, float, int]:
        return mean_std(list(self.values(detector, source, target, column, path).values()))

    def delta(self, detector: str, source: str, target: str, col_a: str, col_b: str
              ) -> tuple[float, float, int]:
        """Paired AUROC difference ``col_a − col_b``: per seed, then mean ± std."""
        a = self.values(detector, source, target, col_a)
        b = self.values(detector, source, target, col_b)
        diffs = [a[s] - b[s] for s in a if s in b and a[s] is not None and b[s] is not None]
        return mean_std(diffs)

    def columns_of(self, detector: str) -> list[str]:
        """Score columns the detector's runs report, in first-seen order."""
        return _unique(c for (d, _, _), runs in self.index.items() if d == detector
                       for r in runs.values() for c in r.columns)

    def entries(self) -> list[Entry]:
        """One entry per detector (its headline score), plus terminal_norm for JANUS."""
        out = []
        for d in self.detectors:
            cols = self.columns_of(d)
            if not cols:
                continue
            head = headline_column(d, cols)
            out.append(Entry(d, head, f"{d}-OAS" if head == "oas" else d))
            if d == "janus" and REFERENCE_SCORE in cols:
                out.append(Entry(d, REFERENCE_SCORE, f"{d} ({REFERENCE_SCORE})"))
        return out

    def main_janus(self) -> str | None:
        """The detector of the OAS-vs-terminal_norm comparison: janus, else janus_cont."""
        for d in JANUS_DETECTORS:
            cols = self.columns_of(d)
            if "oas" in cols and REFERENCE_SCORE in cols:
                return d
        return None


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


# --------------------------------------------------------------------------- markdown
def md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A GitHub-markdown table; the first column is left-aligned, the rest right-aligned."""
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def provenance(res: Results, config_hash: str | None, date: str | None = None,
               prov: dict | None = None) -> str:
    """Footer lines: config hash, janus versions, seeds, date (UTC) and, with ``prov``
    (:func:`janus.provenance.collect`), git commit, software, options and input hashes."""
    versions = sorted({r.janus_version for r in res.runs if r.janus_version})
    date = date or _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join([
        "---",
        f"- config hash: `{config_hash or 'n/a'}`",
        f"- janus version: {__version__} (report); runs: {', '.join(versions) or 'n/a'}",
        f"- seeds: {', '.join(map(str, res.seeds))} (mean ± sample std, ddof = 1)",
        f"- runs: {len(res.runs)} metrics files",
        f"- generated: {date}",
        *(footer_lines(prov) if prov else []),
    ]) + "\n"


def cross_matrix_md(res: Results) -> str:
    parts = ["# Cross-dataset AUROC\n",
             "Rows: the dataset a model was trained on; columns: the dataset it was evaluated "
             "on (the diagonal is within-dataset). Cells: AUROC mean ± std over seeds.\n"]
    jd = res.main_janus()
    if jd is not None:
        header = ["train ↓ / test →"]
        for t in res.datasets:
            header += [f"{t}: OAS", f"{t}: {REFERENCE_SCORE}", f"{t}: Δ"]
        rows = []
        for s in res.datasets:
            row = [s]
            for t in res.datasets:
                row += [fmt(res.stat(jd, s, t, "oas")), fmt(res.stat(jd, s, t, REFERENCE_SCORE)),
                        fmt(res.delta(jd, s, t, "oas", REFERENCE_SCORE), signed=True)]
            rows.append(row)
        parts += [f"## {jd}: Mahalanobis-OAS vs {REFERENCE_SCORE}\n",
                  f"Δ = OAS − {REFERENCE_SCORE}, paired by seed.\n", md_table(header, rows)]
    for e in res.entries():
        if e.detector == jd and e.column in ("oas", REFERENCE_SCORE):
            continue
        rows = [[s] + [fmt(res.stat(e.detector, s, t, e.column)) for t in res.datasets]
                for s in res.datasets]
        parts += [f"## {e.label} (`{e.column}`)\n",
                  md_table(["train ↓ / test →"] + res.datasets, rows)]
    parts += ["## Averages over dataset pairs\n",
              "Mean over pairs of the seed-mean AUROC.\n",
              md_table(["detector", "within (diagonal)", "cross (off-diagonal)"],
                       [[e.label, _pair_mean(res, e, False), _pair_mean(res, e, True)]
                        for e in res.entries()])]
    return "\n".join(parts)


def _pair_mean(res: Results, e: Entry, cross: bool) -> str:
    means = [res.stat(e.detector, s, t, e.column)[0] for s, t in res.pairs(cross)]
    stat = mean_std([m for m in means if not math.isnan(m)])
    return MISSING if stat[2] == 0 else f"{stat[0]:.3f}"


def within_md(res: Results) -> str:
    parts = ["# Within-dataset AUROC per score\n",
             "Models trained and evaluated on the same dataset; mean ± std over seeds. `oas` is "
             "the aggregated JANUS score, the other rows the 10 raw scores it aggregates "
             "(and, scored with `--extended`, the path scores after them, not aggregated).\n"]
    for d in res.detectors:
        if d not in JANUS_DETECTORS or not res.columns_of(d):
            continue
        cols = [c for c in ("oas",) + contract.SCORE_COLUMNS + contract.EXTENDED_SCORE_COLUMNS
                if c in res.columns_of(d)]
        rows = [[f"`{c}`"] + [fmt(res.stat(d, t, t, c)) for t in res.datasets] for c in cols]
        parts += [f"## {d}\n", md_table(["score"] + res.datasets, rows)]
    others = [e for e in res.entries() if e.detector not in JANUS_DETECTORS]
    if others:
        rows = [[e.label] + [fmt(res.stat(e.detector, t, t, e.column)) for t in res.datasets]
                for e in others]
        parts += ["## Other detectors\n", md_table(["detector"] + res.datasets, rows)]
    return "\n".join(parts)


_THRESH_COLS = [("P@P95", ("p95", "precision")), ("R@P95", ("p95", "recall")),
                ("F1@P95", ("p95", "f1")), ("P@P99", ("p99", "precision")),
                ("R@P99", ("p99", "recall")), ("F1@P99", ("p99", "f1")),
                ("TPR@1%FPR", ("tpr_at_1fpr",))]


def thresholded_md(res: Results) -> str:
    parts = ["# Thresholded detection\n",
             "Thresholds are the 95th / 99th percentiles of each score on the target's benign "
             "validation flows (no attack label used); precision, recall and F1 on its test "
             "flows, and the TPR at 1 % FPR. Mean ± std over seeds.\n"]
    for title, cross in (("Within-dataset", False), ("Cross-dataset", True)):
        rows = [[f"{s} → {t}", e.label] + [fmt(res.stat(e.detector, s, t, e.column, path))
                                            for _, path in _THRESH_COLS]
                for s, t in res.pairs(cross) for e in res.entries()
                if (e.detector, s, t) in res.index]
        if rows:
            parts += [f"## {title}\n",
                      md_table(["train → test", "detector"] + [c for c, _ in _THRESH_COLS], rows)]
    return "\n".join(parts)


def per_attack_md(res: Results) -> str:
    parts = ["# Per-attack AUROC (within-dataset)\n",
             "Each attack class against all benign test flows; mean ± std over seeds.\n"]
    entries = res.entries()
    for t in res.datasets:
        classes = _unique(cls for e in entries for r in res.index.get((e.detector, t, t), {})
                          .values() for cls in (r.columns.get(e.column, {}).get("per_attack")
                                                or {}))
        if not classes:
            continue
        rows = [[cls] + [fmt(res.stat(e.detector, t, t, e.column, ("per_attack", cls)))
                         for e in entries] for cls in sorted(classes)]
        parts += [f"## {t}\n", md_table(["attack"] + [e.label for e in entries], rows)]
    return "\n".join(parts)


def aggregators_md(res: Results) -> str:
    parts = ["# Aggregators of the 10-d score vector\n",
             "All fitted on the target's benign validation scores; AUROC mean ± std over "
             "seeds. `oas` is the default scalar (the `aggregate` options of the config: by "
             "default one-sided, without the exact sum `disc_nll_total`); "
             "`oas_paper` is the paper's two-sided OAS over every score; `maxz`, "
             "`mahalanobis` and `ledoit_wolf` take the same options as `oas`. "
             f"`{REFERENCE_SCORE}` is the best single raw score, for reference.\n"]
    for d in res.detectors:
        cols = res.columns_of(d)
        if d not in JANUS_DETECTORS or not cols:
            continue
        shown = [c for c in AGGREGATORS + (REFERENCE_SCORE,) if c in cols]
        rows = [[f"{s} → {t}"] + [fmt(res.stat(d, s, t, c)) for c in shown]
                for s, t in res.pairs() if (d, s, t) in res.index]
        parts += [f"## {d}\n", md_table(["train → test"] + [f"`{c}`" for c in shown], rows)]
    return "\n".join(parts)


def baselines_md(res: Results) -> str:
    """Every detector side by side: a summary (within per dataset, pair means), then the
    cross-dataset pairs with one column per detector."""
    entries = res.entries()
    rows = [[e.label] + [fmt(res.stat(e.detector, t, t, e.column)) for t in res.datasets]
            + [_pair_mean(res, e, False), _pair_mean(res, e, True)] for e in entries]
    parts = [
        "# Detectors compared\n",
        "Within-dataset AUROC per dataset (mean ± std over seeds), and the mean over dataset "
        "pairs within and across datasets. Every detector uses the same splits.\n",
        md_table(["detector"] + res.datasets + ["mean within", "mean cross"], rows)]
    cross = res.pairs(cross=True)
    if cross:
        rows = [[f"{s} → {t}"] + [fmt(res.stat(e.detector, s, t, e.column)) for e in entries]
                for s, t in cross]
        rows.append(["mean"] + [_pair_mean(res, e, True) for e in entries])
        parts += ["## Cross-dataset\n",
                  "Trained on the first dataset, evaluated on the second: AUROC mean ± std "
                  "over seeds, one column per detector; the last row is the mean over pairs.\n",
                  md_table(["train → test"] + [e.label for e in entries], rows)]
    return "\n".join(parts)


# --------------------------------------------------------------------------- figures
def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def _empty_figure(path: Path, message: str) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 2))
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    _save(fig, path)


def cross_matrix_png(res: Results, path: Path) -> None:
    """Heatmaps of terminal_norm, JANUS-OAS and their paired Δ, annotated mean (± std)."""
    import matplotlib.pyplot as plt

    jd = res.main_janus()
    if jd is None:
        _empty_figure(path, "no JANUS detector with oas and terminal_norm scores")
        return
    n = len(res.datasets)
    panels = [(f"{jd} {REFERENCE_SCORE}", lambda s, t: res.stat(jd, s, t, REFERENCE_SCORE)),
              (f"{jd}-OAS", lambda s, t: res.stat(jd, s, t, "oas")),
              ("Δ = OAS − terminal_norm", lambda s, t: res.delta(jd, s, t, "oas", REFERENCE_SCORE))]
    fig, axes = plt.subplots(1, 3, figsize=(4.4 * 3, 0.7 * n + 2.0), layout="constrained")
    for k, (ax, (title, getter)) in enumerate(zip(axes, panels)):
        stats = [[getter(s, t) for t in res.datasets] for s in res.datasets]
        grid = np.array([[st[0] for st in row] for row in stats])   # (n_source, n_target)
        lim = 0.0
        if k < 2:
            im = ax.imshow(grid, vmin=0.5, vmax=1.0, cmap="viridis")
        else:
            lim = max(0.05, float(np.nanmax(np.abs(grid))) if np.isfinite(grid).any() else 0.05)
            im = ax.imshow(grid, vmin=-lim, vmax=lim, cmap="RdBu")
        for i in range(n):
            for j in range(n):
                text = fmt(stats[i][j], signed=(k == 2), digits=2).replace(" ± ", "\n±")
                v = grid[i, j]
                # Light text on the dark ends of each colour map.
                dark = np.isfinite(v) and (v < 0.75 if k < 2 else abs(v) > 0.6 * lim)
                ax.text(j, i, text, ha="center", va="center", fontsize=8,
                        color="white" if dark else "black")
        ax.set_xticks(range(n), res.datasets, rotation=45, ha="right")
        # The rows are the same datasets in every panel: name them once, on the left, so
        # they never collide with the previous panel's colour bar.
        ax.set_yticks(range(n), res.datasets if k == 0 else [])
        ax.set_xlabel("evaluated on")
        if k == 0:
            ax.set_ylabel("trained on")
        ax.set_title(title)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle(f"AUROC, mean over seeds {', '.join(map(str, res.seeds))}")
    _save(fig, path)


def flow_scores(run: Run, column: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-flow ``(score (n,), label (n,) 0/1)`` of a run's labelled test flows.

    Reads the scores, labels and splits files the METRICS.json names (paths as evaluate saw
    them, so relative to the working directory of the workflow).
    """
    import pyarrow.parquet as pq

    from janus.datasets.splits import load_splits
    from janus.evaluation.aggregate import rows_of
    from janus.evaluation.evaluate import rank_finite, read_labels

    for key in ("scores_file", "labels_file", "splits_file"):
        if not getattr(run, key):
            raise JanusError(f"{run.path}: key {key!r} is missing; figures need per-flow scores")
    table = pq.read_table(run.scores_file, columns=["flow_id", column])
    flow_id = table.column("flow_id").to_numpy().astype(np.int64)
    score = table.column(column).to_numpy().astype(np.float64)
    splits = load_splits(run.splits_file)
    lab_id, label, _ = read_labels(run.labels_file)
    y = label[rows_of(lab_id, splits["test"], f"{run.labels_file} vs {run.splits_file}")]
    s = score[rows_of(flow_id, splits["test"], f"{run.scores_file} vs {run.splits_file}")]
    known = y >= 0
    # Infinite scores (an overflowing detector) keep their rank, as in janus evaluate.
    _, s, _ = rank_finite(np.zeros(0), s[known], f"{run.scores_file}: column {column!r}")
    return s, y[known].astype(np.int8)


def roc_png(res: Results, dataset: str, seed: int, path: Path) -> None:
    """ROC curves of every entry on ``dataset`` (within-dataset runs of ``seed``)."""
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_auc_score, roc_curve

    fig, ax = plt.subplots(figsize=(5.5, 5))
    drawn = 0
    for e in res.entries():
        run = res.index.get((e.detector, dataset, dataset), {}).get(seed)
        if run is None:
            continue
        s, y = flow_scores(run, e.column)
        if y.min(initial=1) == y.max(initial=0):
            continue
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, label=f"{e.label} (AUROC {roc_auc_score(y, s):.3f})")
        drawn += 1
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax.set(xlabel="false-positive rate", ylabel="true-positive rate", xlim=(0, 1), ylim=(0, 1),
           title=f"{dataset}: ROC (seed {seed})")
    if drawn:
        ax.legend(loc="lower right", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no test set with both classes", ha="center")
    _save(fig, path)


def hist_png(res: Results, dataset: str, seed: int, path: Path, bins: int = 60) -> None:
    """Benign vs attack score histograms, one panel per entry, on ``dataset``."""
    import matplotlib.pyplot as plt

    panels = [(e, res.index.get((e.detector, dataset, dataset), {}).get(seed))
              for e in res.entries()]
    panels = [(e, r) for e, r in panels if r is not None]
    if not panels:
        _empty_figure(path, f"{dataset}: no within-dataset run of seed {seed}")
        return
    fig, axes = plt.subplots(len(panels), 1, figsize=(6, 2.2 * len(panels)), squeeze=False)
    for ax, (e, run) in zip(axes[:, 0], panels):
        s, y = flow_scores(run, e.column)
        # Clip to the central 99.8 % so a few extreme flows do not squash every bin into one.
        lo, hi = np.quantile(s, [0.001, 0.999]) if s.size else (0.0, 1.0)
        edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
        for cls, name, colour in ((0, "benign", "tab:blue"), (1, "attack", "tab:red")):
            part = np.clip(s[y == cls], edges[0], edges[-1])
            if part.size:
                ax.hist(part, bins=edges, density=True, alpha=0.55, color=colour,
                        label=f"{name} (n={part.size})")
        ax.set_title(f"{e.label}", fontsize=9)
        ax.set_ylabel("density")
        ax.legend(fontsize=7)
    axes[-1, 0].set_xlabel("score (higher = more anomalous)")
    fig.suptitle(f"{dataset}: test scores (seed {seed})")
    _save(fig, path)


# --------------------------------------------------------------------------- CLI
#: Which figures --figures writes.
FIGURE_SETS: tuple[str, ...] = ("all", "matrix", "datasets", "none")


def write_report(res: Results, out_dir: Path, config_hash: str | None = None,
                 figure_seed: int | None = None, tables: bool = True, figures: str = "all",
                 prov: dict | None = None) -> list[Path]:
    """Write the tables and the figures of ``figures`` (one of :data:`FIGURE_SETS`) under
    ``out_dir``; returns the written paths."""
    if figures not in FIGURE_SETS:
        raise JanusError(f"figures={figures!r} is not one of {FIGURE_SETS}")
    written = []
    if tables:
        footer = provenance(res, config_hash, prov=prov)
        builders = {"cross_matrix.md": cross_matrix_md, "within.md": within_md,
                    "thresholded.md": thresholded_md, "per_attack.md": per_attack_md,
                    "aggregators.md": aggregators_md, "baselines.md": baselines_md}
        for name in TABLES:
            path = out_dir / name
            write_text(path, builders[name](res) + "\n" + footer)
            written.append(path)
    if figures == "none":
        return written
    import matplotlib

    matplotlib.use("Agg")
    fig_dir = out_dir / "figures"
    if figures in ("all", "matrix"):
        cross_matrix_png(res, fig_dir / "cross_matrix.png")
        written.append(fig_dir / "cross_matrix.png")
    if figures in ("all", "datasets"):
        seed = res.seeds[0] if figure_seed is None else figure_seed
        if seed not in res.seeds:
            raise JanusError(f"--figure-seed {seed} has no run; seeds found: {res.seeds}")
        for t in res.datasets:
            for kind, draw in (("roc", roc_png), ("hist", hist_png)):
                path = fig_dir / f"{kind}_{t}.png"
                draw(res, t, seed, path)
                written.append(path)
    return written


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="janus report",
        description="Markdown tables (cross-dataset matrix, within-dataset scores, thresholded "
        "metrics, per-attack AUROC, aggregators, detectors) and figures from METRICS.json files.",
    )
    p.add_argument("--metrics", nargs="+", required=True, type=Path,
                   help="METRICS.json files written by 'janus evaluate' (one per detector, "
                   "source, target and seed)")
    p.add_argument("--out-dir", required=True, type=Path,
                   help="folder for the tables; figures go to OUT_DIR/figures")
    p.add_argument("--datasets", nargs="+", default=None,
                   help="dataset order of rows and columns (default: order of first appearance)")
    p.add_argument("--detectors", nargs="+", default=None,
                   help="detector order of the tables (default: order of first appearance)")
    p.add_argument("--figure-seed", type=int, default=None,
                   help="seed whose per-flow scores the ROC and histogram figures show "
                   "(default: the smallest seed)")
    p.add_argument("--config-hash", default=None,
                   help="hash of the workflow config, printed in each table's provenance lines")
    p.add_argument("--no-tables", action="store_true", help="write figures only")
    p.add_argument("--figures", choices=FIGURE_SETS, default="all",
                   help="figures to write: all (default), matrix (cross_matrix.png, from the "
                   "metrics alone), datasets (roc_/hist_<dataset>.png, which read the per-flow "
                   "score, label and split files each METRICS.json names) or none")
    return p


def run(args: argparse.Namespace) -> int:
    res = Results(load_runs(args.metrics), args.datasets, args.detectors)
    log.info("%d runs: %d detectors, %d datasets, seeds %s", len(res.runs), len(res.detectors),
             len(res.datasets), res.seeds)
    prov = collect_provenance(config={k: [str(v) for v in val] if k == "metrics" else
                                      str(val) if isinstance(val, Path) else val
                                      for k, val in vars(args).items()},
                              inputs=args.metrics)
    written = write_report(res, args.out_dir, args.config_hash, args.figure_seed,
                           tables=not args.no_tables, figures=args.figures, prov=prov)
    log.info("wrote %d files under %s", len(written), args.out_dir)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(build_parser, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
