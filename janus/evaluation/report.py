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
from janus.evaluation.figures import flow_scores  # noqa: F401  (the public name lives here too)
from janus.io import write_text
from janus.provenance import collect as collect_provenance
from janus.provenance import footer_lines

log = logging.getLogger(__name__)

#: Detectors built on the JANUS model; their score files hold the aggregated scalars.
JANUS_DETECTORS: tuple[str, ...] = ("janus", "janus_cont")
#: Aggregators compared in aggregators.md, in column order (janus.evaluation.aggregate.METHODS).
AGGREGATORS: tuple[str, ...] = ("oas", "oas_paper", "maxz", "mahalanobis", "ledoit_wolf")
#: The raw score JANUS-OAS is compared against in the headline matrix.
REFERENCE_SCORE = "terminal_norm"
#: The uncalibrated transfer's column (janus.evaluation.aggregate.SOURCE_COLUMN).
SOURCE_COLUMN = "oas_source"
#: Model-free controls: runs exist for (dataset, dataset) only, and a (source, target) cell
#: shows the target's value (the control never sees the source).
CONTROLS: dict[str, str] = {"feature_oas": "feature-OAS control"}
#: Detectors whose label needs a qualifier so nobody compares it with another paper's number.
QUALIFIED: dict[str, str] = {"kitnet": "kitnet (20 flow features)"}
#: Every table's legend of the entries (shown under its introduction).
LEGEND = (
    "- **feature-OAS control**: no model: OAS Mahalanobis on the 20 log-transformed flow "
    "features, fitted on the target's benign calibration flows; a (source, target) cell shows "
    "its value on the target. It gets exactly the target calibration JANUS-OAS gets.\n"
    "- **janus-OAS (target-cal.)**: *calibrated cross-domain transfer* (not zero-shot): the "
    "model is trained on the source only, the OAS aggregator and the thresholds are refitted "
    "on the target's benign calibration flows.\n"
    "- **janus-OAS (source-cal.)**: *uncalibrated* transfer: aggregator and thresholds from "
    "the source's calibration flows; no target flow is used.\n"
    "- Baselines (nf, iforest, ocsvm, lof, kitnet, flowcfm) and `terminal_norm` are single "
    "scores: no aggregator to refit, so their AUROC is the same calibrated or not; their "
    "thresholds are the target's calibration percentiles.\n"
    "- **kitnet (20 flow features)**: KitNET on the 20 flow features, *not* Kitsune's 115 "
    "AfterImage statistics: not comparable with Kitsune's published numbers.\n")
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
        # A control's (t, t) run stands for every (s, t) pair some model was evaluated on.
        model_pairs = {(s, t) for (d, s, t) in self.index if d not in CONTROLS}
        for d in CONTROLS:
            for s, t in model_pairs:
                if s != t and (d, t, t) in self.index:
                    self.index[(d, s, t)] = self.index[(d, t, t)]
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

    def boot_ci(self, detector: str, pairs: Sequence[tuple[str, str]], column: str
                ) -> tuple[float, float] | None:
        """95 % bootstrap interval of the mean AUROC over ``pairs`` and seeds: replicate ``b``
        is the mean of every run's ``b``-th bootstrap AUROC (test flows resampled in each run
        independently), and the interval its 2.5 / 97.5 percentiles. None when a run lacks
        the replicates."""
        reps = []
        for s, t in pairs:
            runs = self.index.get((detector, s, t), {})
            per_seed = [r.columns.get(column, {}).get("auroc_boot") for r in runs.values()]
            if not runs or any(not b for b in per_seed) or len({len(b) for b in per_seed}) > 1:
                return None
            reps.append(np.mean(np.asarray(per_seed, dtype=np.float64), axis=0))  # (B,)
        if not reps or len({len(r) for r in reps}) > 1:
            return None
        mean = np.mean(reps, axis=0)
        return float(np.percentile(mean, 2.5)), float(np.percentile(mean, 97.5))

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
        """One entry per detector (its headline score): the controls first; for JANUS the
        target-calibrated OAS, the source-calibrated one and (janus) terminal_norm."""
        out = []
        for d in sorted(self.detectors, key=lambda d: d not in CONTROLS):
            cols = self.columns_of(d)
            if not cols:
                continue
            if d in CONTROLS:
                out.append(Entry(d, headline_column(d, cols), CONTROLS[d]))
                continue
            head = headline_column(d, cols)
            out.append(Entry(d, head, f"{d}-OAS (target-cal.)" if head == "oas"
                             else QUALIFIED.get(d, d)))
            if head == "oas" and SOURCE_COLUMN in cols:
                out.append(Entry(d, SOURCE_COLUMN, f"{d}-OAS (source-cal.)"))
            if d == "janus" and REFERENCE_SCORE in cols:
                out.append(Entry(d, REFERENCE_SCORE, f"{d} ({REFERENCE_SCORE})"))
        return out

    def seeds_note(self) -> str:
        """``mean ± std over n = 2 seeds (42, 43)``: the n behind every ± in the tables."""
        return (f"mean ± sample std over n = {len(self.seeds)} seeds "
                f"({', '.join(map(str, self.seeds))})")

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


def _inline_html(text: str) -> str:
    import html
    import re

    out = html.escape(text, quote=False)
    out = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", out)
    out = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<i>\1</i>", out)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", out)


#: Style of the HTML tables (the HTML report shows them inline).
_HTML_STYLE = ("body{font-family:sans-serif;font-size:13px;margin:12px}"
               "table{border-collapse:collapse;margin:8px 0 16px}"
               "th,td{border:1px solid #bbb;padding:2px 6px;text-align:right;white-space:nowrap}"
               "th:first-child,td:first-child{text-align:left}th{background:#eee}"
               "tr:nth-child(even) td{background:#f7f7f7}code{font-size:12px}")


def md_to_html(text: str, title: str = "") -> str:
    """The markdown these tables use (headings, paragraphs, ``-`` lists, pipe tables, ``---``,
    bold/italic/code) as a standalone HTML page."""
    import html

    body: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].rstrip()
        if not line:
            i += 1
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{_inline_html(line[level:].strip())}</h{level}>")
            i += 1
        elif line == "---":
            body.append("<hr>")
            i += 1
        elif line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append([c.strip() for c in lines[i].strip().strip("|").split("|")])
                i += 1
            head, rest = rows[0], [r for r in rows[1:] if not set("".join(r)) <= set(":-")]
            body.append("<table><tr>" + "".join(f"<th>{_inline_html(c)}</th>" for c in head)
                        + "</tr>" + "".join("<tr>" + "".join(f"<td>{_inline_html(c)}</td>"
                                                             for c in r) + "</tr>" for r in rest)
                        + "</table>")
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{_inline_html(lines[i][2:])}</li>")
                i += 1
            body.append("<ul>" + "".join(items) + "</ul>")
        else:
            body.append(f"<p>{_inline_html(line)}</p>")
            i += 1
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{_HTML_STYLE}</style></head><body>" + "\n".join(body)
            + "</body></html>\n")


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
        (f"- seeds: {', '.join(map(str, res.seeds))} (n = {len(res.seeds)}; mean ± sample std, "
        "ddof = 1)"),
        f"- runs: {len(res.runs)} metrics files",
        f"- generated: {date}",
        *(footer_lines(prov) if prov else []),
    ]) + "\n"


TPR1 = ("tpr_at_1fpr",)


def _matrix(res: Results, e: Entry, path: Sequence[str] = ("auroc",)) -> str:
    rows = [[s] + [fmt(res.stat(e.detector, s, t, e.column, path)) for t in res.datasets]
            for s in res.datasets]
    return md_table(["train ↓ / test →"] + res.datasets, rows)


def cross_matrix_md(res: Results) -> str:
    parts = ["# Cross-dataset AUROC\n",
             ("Rows: the dataset a model was trained on; columns: the dataset it was evaluated "
             f"on (the diagonal is within-dataset). Cells: AUROC, {res.seeds_note()}; then "
             "the TPR at 1 % FPR of every entry.\n"), LEGEND]
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
        parts += [f"## {jd}: Mahalanobis-OAS (target-cal.) vs {REFERENCE_SCORE}\n",
                  f"Δ = OAS − {REFERENCE_SCORE}, paired by seed.\n", md_table(header, rows)]
    for e in res.entries():
        if e.detector == jd and e.column in ("oas", REFERENCE_SCORE):
            continue
        parts += [f"## {e.label} (`{e.column}`)\n", _matrix(res, e)]
    parts += ["## TPR at 1 % FPR\n",
              ("The operating point of a SOC: the share of attack flows caught when 1 % of the "
              "benign flows raise an alarm (read off the test ROC curve).\n")]
    for e in res.entries():
        parts += [f"### TPR at 1 % FPR: {e.label} (`{e.column}`)\n", _matrix(res, e, TPR1)]
    parts += ["## Averages over dataset pairs\n",
              "Mean over pairs of the seed-mean AUROC and TPR at 1 % FPR.\n",
              md_table(["detector", "AUROC within (diagonal)", "AUROC cross (off-diagonal)",
                        "TPR@1%FPR within", "TPR@1%FPR cross"],
                       [[e.label, _pair_mean(res, e, False), _pair_mean(res, e, True),
                         _pair_mean(res, e, False, TPR1), _pair_mean(res, e, True, TPR1)]
                        for e in res.entries()])]
    return "\n".join(parts)


def _pair_mean(res: Results, e: Entry, cross: bool, path: Sequence[str] = ("auroc",)) -> str:
    means = [res.stat(e.detector, s, t, e.column, path)[0] for s, t in res.pairs(cross)]
    stat = mean_std([m for m in means if not math.isnan(m)])
    return MISSING if stat[2] == 0 else f"{stat[0]:.3f}"


def _with_ci(res: Results, e: Entry, pairs: Sequence[tuple[str, str]], text: str) -> str:
    ci = res.boot_ci(e.detector, pairs, e.column)
    return text if ci is None or text == MISSING else f"{text} [{ci[0]:.3f}, {ci[1]:.3f}]"


def within_md(res: Results) -> str:
    parts = ["# Within-dataset AUROC per score\n",
             (f"Models trained and evaluated on the same dataset; {res.seeds_note()}. `oas` is "
             "the aggregated JANUS score, the other rows the 10 raw scores it aggregates "
             "(and, scored with `--extended`, the path scores after them, not aggregated); "
             "each AUROC table is followed by the TPR at 1 % FPR of the same scores.\n"), LEGEND]
    for d in res.detectors:
        if d not in JANUS_DETECTORS or not res.columns_of(d):
            continue
        cols = [c for c in ("oas",) + contract.SCORE_COLUMNS + contract.EXTENDED_SCORE_COLUMNS
                if c in res.columns_of(d)]
        for title, path in (("AUROC", ("auroc",)), ("TPR at 1 % FPR", TPR1)):
            rows = [[f"`{c}`"] + [fmt(res.stat(d, t, t, c, path)) for t in res.datasets]
                    for c in cols]
            parts += [f"## {d}: {title}\n", md_table(["score"] + res.datasets, rows)]
    others = [e for e in res.entries() if e.detector not in JANUS_DETECTORS]
    if others:
        for title, path in (("", ("auroc",)), (": TPR at 1 % FPR", TPR1)):
            rows = [[e.label] + [fmt(res.stat(e.detector, t, t, e.column, path))
                                 for t in res.datasets] for e in others]
            parts += [f"## Other detectors{title}\n", md_table(["detector"] + res.datasets, rows)]
    return "\n".join(parts)


_THRESH_COLS = [("FPR@P95", ("p95", "fpr")), ("P@P95", ("p95", "precision")),
                ("R@P95", ("p95", "recall")), ("F1@P95", ("p95", "f1")),
                ("FPR@P99", ("p99", "fpr")), ("P@P99", ("p99", "precision")),
                ("R@P99", ("p99", "recall")), ("F1@P99", ("p99", "f1")),
                ("TPR@0.1%FPR", ("tpr_at_0.1fpr",)), ("TPR@1%FPR", TPR1)]
#: Attack prevalences of the precision/F1 table (keys of evaluate's "prevalence").
PREVALENCE_KEYS: tuple[str, ...] = ("0.1", "0.01")


def _p_f1(res: Results, e: Entry, s: str, t: str, q: str, prevalence: str | None) -> str:
    base = (q,) if prevalence is None else (q, "prevalence", prevalence)
    p = res.stat(e.detector, s, t, e.column, base + ("precision",))
    f = res.stat(e.detector, s, t, e.column, base + ("f1",))
    if p[2] == 0 and f[2] == 0:
        return MISSING
    # 0/0 (a threshold that flags nothing) has no precision: shown as "—".
    return " / ".join(MISSING if v[2] == 0 else f"{v[0]:.2f}" for v in (p, f))


def thresholded_md(res: Results) -> str:
    parts = ["# Thresholded detection\n",
             ("Thresholds are the 95th / 99th percentiles of each score on the target's benign "
             "**calibration** flows (disjoint from the validation flows that stopped training; "
             "the aggregated scores of those flows are cross-fitted, so the test FPR should "
             "come out near 5 % / 1 %; `source-cal.` entries use the source's percentiles). No "
             "attack label is used. FPR, precision, recall and F1 on the target's test flows "
             f"(balanced: about half attacks), then the TPR at 0.1 % and 1 % FPR; "
             f"{res.seeds_note()}.\n"), LEGEND]
    for title, cross in (("Within-dataset", False), ("Cross-dataset", True)):
        rows = [[f"{s} → {t}", e.label] + [fmt(res.stat(e.detector, s, t, e.column, path))
                                            for _, path in _THRESH_COLS]
                for s, t in res.pairs(cross) for e in res.entries()
                if (e.detector, s, t) in res.index]
        if rows:
            parts += [f"## {title}\n",
                      md_table(["train → test", "detector"] + [c for c, _ in _THRESH_COLS], rows)]
    parts += ["## Precision / F1 at realistic attack prevalence\n",
              ("The same thresholds on a stream where 10 % or 1 % of the flows are attacks "
              "(the test flows reweighted: precision = π·TPR / (π·TPR + (1 − π)·FPR)); "
              "'test' is the balanced test set as it is. Cells: precision / F1, seed means.\n")]
    header = ["train → test", "detector"] + [
        f"{q.upper()}: {'test' if pv is None else f'{float(pv):.0%}'}"
        for q in ("p95", "p99") for pv in (None,) + PREVALENCE_KEYS]
    rows = [[f"{s} → {t}", e.label] + [_p_f1(res, e, s, t, q, pv) for q in ("p95", "p99")
                                        for pv in (None,) + PREVALENCE_KEYS]
            for s, t in res.pairs() for e in res.entries() if (e.detector, s, t) in res.index]
    if rows:
        parts.append(md_table(header, rows))
    return "\n".join(parts)


def per_attack_md(res: Results) -> str:
    parts = ["# Per-attack AUROC (within-dataset)\n",
             (f"Each attack class against all benign test flows; {res.seeds_note()}. `n` is the "
             "class's attack flows in the test split (seed mean): a class of a few flows has "
             "a wide AUROC interval.\n"), LEGEND]
    entries = res.entries()
    for t in res.datasets:
        classes = _unique(cls for e in entries for r in res.index.get((e.detector, t, t), {})
                          .values() for cls in (r.columns.get(e.column, {}).get("per_attack")
                                                or {}))
        if not classes:
            continue
        rows = []
        for cls in sorted(classes):
            n = [res.stat(e.detector, t, t, e.column, ("per_attack_n", cls)) for e in entries]
            n = next((v for v in n if v[2]), (math.nan, math.nan, 0))
            rows.append([cls, MISSING if n[2] == 0 else f"{n[0]:.0f}"]
                        + [fmt(res.stat(e.detector, t, t, e.column, ("per_attack", cls)))
                           for e in entries])
        parts += [f"## {t}\n", md_table(["attack", "n"] + [e.label for e in entries], rows)]
    return "\n".join(parts)


def aggregators_md(res: Results) -> str:
    parts = ["# Aggregators of the 10-d score vector\n",
             ("All fitted on the target's benign validation scores; AUROC mean ± std over "
             "seeds. `oas` is the default scalar (the `aggregate` options of the config: by "
             "default one-sided, without the exact sum `disc_nll_total`); "
             "`oas_paper` is the paper's two-sided OAS over every score; `maxz`, "
             "`mahalanobis` and `ledoit_wolf` take the same options as `oas`. "
             f"`{REFERENCE_SCORE}` is the best single raw score, for reference.\n")]
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
    cross-dataset pairs with one column per detector, for AUROC and for TPR at 1 % FPR."""
    entries = res.entries()
    rows = [[e.label] + [fmt(res.stat(e.detector, t, t, e.column)) for t in res.datasets]
            + [_with_ci(res, e, res.pairs(False), _pair_mean(res, e, False)),
               _with_ci(res, e, res.pairs(True), _pair_mean(res, e, True))] for e in entries]
    tpr_rows = [[e.label] + [fmt(res.stat(e.detector, t, t, e.column, TPR1))
                             for t in res.datasets]
                + [_pair_mean(res, e, False, TPR1), _pair_mean(res, e, True, TPR1)]
                for e in entries]
    parts = [
        "# Detectors compared\n",
        (f"Within-dataset AUROC per dataset ({res.seeds_note()}), and the mean over dataset "
        "pairs within and across datasets with its bootstrap 95 % interval in brackets (test "
        "flows resampled, benign and attack separately, 200 times per run; the interval is of "
        "the mean over seeds and pairs, so it shows test-set noise, not seed-to-seed spread). "
        "Every detector uses the same splits.\n"), LEGEND,
        md_table(["detector"] + res.datasets + ["mean within", "mean cross"], rows),
        "\n### TPR at 1 % FPR\n",
        md_table(["detector"] + res.datasets + ["mean within", "mean cross"], tpr_rows)]
    cross = res.pairs(cross=True)
    if cross:
        rows = [[f"{s} → {t}"] + [fmt(res.stat(e.detector, s, t, e.column)) for e in entries]
                for s, t in cross]
        rows.append(["mean"] + [_pair_mean(res, e, True) for e in entries])
        rows.append(["95 % interval"] + [
            MISSING if (ci := res.boot_ci(e.detector, cross, e.column)) is None
            else f"[{ci[0]:.3f}, {ci[1]:.3f}]" for e in entries])
        tpr = [[f"{s} → {t}"] + [fmt(res.stat(e.detector, s, t, e.column, TPR1))
                                 for e in entries] for s, t in cross]
        tpr.append(["mean"] + [_pair_mean(res, e, True, TPR1) for e in entries])
        parts += ["## Cross-dataset\n",
                  (f"Trained on the first dataset, evaluated on the second: AUROC "
                  f"({res.seeds_note()}), one column per detector; the last rows are the mean "
                  "over pairs and its bootstrap 95 % interval.\n"),
                  md_table(["train → test"] + [e.label for e in entries], rows),
                  "\n### Cross-dataset TPR at 1 % FPR\n",
                  md_table(["train → test"] + [e.label for e in entries], tpr)]
    return "\n".join(parts)


# --------------------------------------------------------------------------- CLI
#: Which figures --figures writes.
FIGURE_SETS: tuple[str, ...] = ("all", "matrix", "datasets", "none")


def write_report(res: Results, out_dir: Path, config_hash: str | None = None,
                 figure_seed: int | None = None, tables: bool = True, figures: str = "all",
                 prov: dict | None = None, pdf: bool = False) -> list[Path]:
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
            text = builders[name](res) + "\n" + footer
            write_text(path, text)
            # The HTML report shows HTML inline (a markdown file only as a download).
            page = out_dir / "tables" / name.replace(".md", ".html")
            write_text(page, md_to_html(text, name))
            written += [path, page]
    if figures == "none":
        return written
    import matplotlib

    from janus.evaluation.figures import cross_matrix_png, hist_png, roc_png

    matplotlib.use("Agg")
    fig_dir = out_dir / "figures"
    formats = ("png", "pdf") if pdf else ("png",)
    if figures in ("all", "matrix"):
        cross_matrix_png(res, fig_dir / "cross_matrix.png", formats=formats)
        written.append(fig_dir / "cross_matrix.png")
    if figures in ("all", "datasets"):
        seed = res.seeds[0] if figure_seed is None else figure_seed
        if seed not in res.seeds:
            raise JanusError(f"--figure-seed {seed} has no run; seeds found: {res.seeds}")
        for t in res.datasets:
            for kind, draw in (("roc", roc_png), ("hist", hist_png)):
                path = fig_dir / f"{kind}_{t}.png"
                draw(res, t, seed, path, formats=formats)
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
    p.add_argument("--pdf", action="store_true",
                   help="also write every figure as PDF beside its PNG (for a paper)")
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
                           tables=not args.no_tables, figures=args.figures, prov=prov,
                           pdf=args.pdf)
    log.info("wrote %d files under %s", len(written), args.out_dir)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(build_parser, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
