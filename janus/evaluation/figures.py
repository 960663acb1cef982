"""Figures of the report step (:mod:`janus.evaluation.report`), from its :class:`Results`.

* ``cross_matrix.png`` -- heatmaps of the cross-dataset AUROC of JANUS-OAS (target-calibrated
  and, when scored, source-calibrated), ``terminal_norm``, the model-free feature-OAS control
  and the paired lead of JANUS-OAS over the control. AUROC panels share a diverging map
  centred at 0.5 (chance): red cells rank attacks *below* benign flows.
* ``roc_<dataset>.png`` -- within-dataset ROC curves on a log FPR axis (the operating points a
  SOC uses lie at 0.1-1 % FPR), the mean TPR over seeds with the min-max band of the seeds.
* ``hist_<dataset>.png`` -- benign vs attack test-score histograms, one panel per entry, on a
  log (or symmetric-log) score axis where the scores are heavy-tailed.

Every figure is written as PNG (for the HTML report) and PDF (for papers) beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from janus.errors import JanusError
from janus.io import atomic_path

if TYPE_CHECKING:
    from janus.evaluation.report import Results, Run

#: Formats written for every figure; the first is the one the workflow declares.
#: File formats of every figure by default (``janus report --pdf`` adds a PDF beside each:
#: drawing it again doubled the report job's figure time, a serial tail of the cold run).
FORMATS: tuple[str, ...] = ("png",)
#: Grid of the ROC figures' log FPR axis.
FPR_GRID = np.logspace(-3, 0, 200)


def _save(fig, path: Path, formats: Sequence[str] = FORMATS) -> None:
    import matplotlib.pyplot as plt

    for ext in formats:
        with atomic_path(path.with_suffix(f".{ext}")) as tmp:
            fig.savefig(tmp, format=ext, dpi=120, bbox_inches="tight")
    plt.close(fig)


def _empty_figure(path: Path, message: str, formats: Sequence[str] = FORMATS) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 2))
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    _save(fig, path, formats)


def cross_matrix_png(res: Results, path: Path, formats: Sequence[str] = FORMATS) -> None:
    """Heatmaps (rows = training dataset, columns = evaluation dataset), annotated mean (± std)."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm

    from janus.evaluation.report import CONTROLS, REFERENCE_SCORE, SOURCE_COLUMN, fmt

    jd = res.main_janus()
    if jd is None:
        _empty_figure(path, "no JANUS detector with oas and terminal_norm scores", formats)
        return
    control = next((d for d in CONTROLS if res.columns_of(d)), None)
    panels = [(f"{jd}-OAS (target-cal.)", lambda s, t: res.stat(jd, s, t, "oas"), False)]
    if SOURCE_COLUMN in res.columns_of(jd):
        panels.append((f"{jd}-OAS (source-cal.)",
                       lambda s, t: res.stat(jd, s, t, SOURCE_COLUMN), False))
    panels.append((f"{jd} {REFERENCE_SCORE}", lambda s, t: res.stat(jd, s, t, REFERENCE_SCORE),
                   False))
    if control is not None:
        panels.append((CONTROLS[control] + "\n(value of the target)",
                       lambda s, t: res.stat(control, s, t, "oas"), False))
        panels.append(("Δ = OAS (target-cal.) − control",
                       lambda s, t: _paired(res, jd, "oas", control, "oas", s, t), True))
    else:
        panels.append((f"Δ = OAS − {REFERENCE_SCORE}",
                       lambda s, t: res.delta(jd, s, t, "oas", REFERENCE_SCORE), True))
    n = len(res.datasets)
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 0.55 * n + 1.9),
                             layout="constrained", squeeze=False)
    auroc_norm = TwoSlopeNorm(vmin=0.0, vcenter=0.5, vmax=1.0)
    for k, (ax, (title, getter, is_delta)) in enumerate(zip(axes[0], panels)):
        stats = [[getter(s, t) for t in res.datasets] for s in res.datasets]
        grid = np.array([[st[0] for st in row] for row in stats])  # (n_source, n_target)
        if is_delta:
            finite = grid[np.isfinite(grid)]
            lim = max(0.05, float(np.abs(finite).max()) if finite.size else 0.05)
            norm, cmap, label = TwoSlopeNorm(vmin=-lim, vcenter=0.0, vmax=lim), "PuOr", "Δ AUROC"
        else:
            norm, cmap, label = auroc_norm, "RdBu", "AUROC (0.5 = chance)"
        im = ax.imshow(grid, norm=norm, cmap=cmap)
        for i in range(n):
            for j in range(n):
                text = fmt(stats[i][j], signed=is_delta, digits=2).replace(" ± ", "\n±")
                v = grid[i, j]
                # Light text on the saturated ends of the diverging maps.
                dark = np.isfinite(v) and abs(norm(v) - 0.5) > 0.35
                ax.text(j, i, text, ha="center", va="center", fontsize=7.5,
                        color="white" if dark else "black")
        ax.set_xticks(range(n), res.datasets, rotation=45, ha="right")
        # Rows are the same datasets in every panel: named once, on the left.
        ax.set_yticks(range(n), res.datasets if k == 0 else [])
        ax.set_xlabel("evaluated on (target)")
        if k == 0:
            ax.set_ylabel("trained on (source)")
        ax.set_title(title, fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, shrink=0.8).set_label(label)
    fig.suptitle(f"Cross-dataset AUROC, mean over n = {len(res.seeds)} seeds "
                 f"({', '.join(map(str, res.seeds))})")
    _save(fig, path, formats)


def _paired(res: Results, da: str, ca: str, db: str, cb: str, s: str, t: str):
    """Per-seed difference of two entries' AUROC on (s, t), then mean ± std."""
    from janus.evaluation.report import mean_std

    a, b = res.values(da, s, t, ca), res.values(db, s, t, cb)
    return mean_std([a[k] - b[k] for k in a if k in b and a[k] is not None and b[k] is not None])


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


def roc_png(res: Results, dataset: str, seed: int, path: Path,
            formats: Sequence[str] = FORMATS) -> None:
    """ROC curves of every entry on ``dataset`` (within-dataset runs): the mean TPR over the
    seeds whose per-flow files are present on a log FPR grid, with their min-max band."""
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    fig, ax = plt.subplots(figsize=(6.4, 5.2), layout="constrained")
    drawn = 0
    for k, e in enumerate(res.entries()):
        runs = res.index.get((e.detector, dataset, dataset), {})
        curves, aurocs = [], []
        for sd, run in sorted(runs.items()):
            if not run.scores_file or not Path(run.scores_file).is_file():
                continue  # figures draw the seeds whose per-flow scores were kept
            s, y = flow_scores(run, e.column)
            if y.min(initial=1) == y.max(initial=0):
                continue
            fpr, tpr, _ = roc_curve(y, s)
            curves.append(np.interp(FPR_GRID, fpr, tpr))
            aurocs.append(run.columns.get(e.column, {}).get("auroc"))
        if not curves:
            continue
        c = np.array(curves)  # (n_seeds, G)
        colour = f"C{k % 10}"
        a = [v for v in aurocs if v is not None]
        auc = f"{np.mean(a):.3f}" + (f" ± {np.std(a, ddof=1):.3f}" if len(a) > 1 else "")
        ax.plot(FPR_GRID, c.mean(0), color=colour, lw=1.4,
                label=f"{e.label}: AUROC {auc} (n={len(c)})")
        if len(c) > 1:
            ax.fill_between(FPR_GRID, c.min(0), c.max(0), color=colour, alpha=0.18, lw=0)
        drawn += 1
    ax.plot(FPR_GRID, FPR_GRID, color="grey", lw=0.8, ls="--", label="chance")
    for x in (0.001, 0.01):
        ax.axvline(x, color="0.6", lw=0.6, ls=":")
    ax.set_xscale("log")
    ax.set(xlabel="false-positive rate (log scale; dotted: 0.1 % and 1 %)",
           ylabel="true-positive rate", xlim=(1e-3, 1), ylim=(0, 1.01),
           title=f"{dataset}: within-dataset ROC, mean over seeds (band: min-max)")
    if drawn:
        ax.legend(loc="upper left", fontsize=7, framealpha=0.9)
    else:
        ax.text(0.5, 0.5, "no test set with both classes", ha="center", transform=ax.transAxes)
    _save(fig, path, formats)


def _score_bins(s: np.ndarray, lo: float, hi: float, bins: int):
    """``(edges (bins + 1,), (scale, kwargs) or None, axis note)``: log bins for positive
    scores spanning over a decade, symmetric-log bins for other heavy right tails (the upper
    tail more than 10 times as long as the lower part), else linear bins."""
    med = float(np.median(s)) if s.size else 0.5 * (lo + hi)
    if lo > 0 and hi / lo > 10:
        return np.geomspace(lo, hi, bins + 1), ("log", {}), ", log scale"
    if hi - med > 10 * max(med - lo, 1e-12):
        spread = float(np.subtract(*np.quantile(s, [0.75, 0.25]))) if s.size else 1.0
        lt = max(spread, 1e-6)

        def t(x):
            return np.sign(x) * np.log10(1 + np.abs(x) / lt)

        grid = np.linspace(t(lo), t(hi), bins + 1)
        edges = np.sign(grid) * lt * (10 ** np.abs(grid) - 1)
        return edges, ("symlog", {"linthresh": lt}), f", symmetric log scale (linear within ±{lt:.2g})"
    return np.linspace(lo, hi, bins + 1), None, ""


def hist_png(res: Results, dataset: str, seed: int, path: Path, bins: int = 60,
             formats: Sequence[str] = FORMATS) -> None:
    """Benign vs attack test-score histograms (share of each class per bin) of ``seed``'s
    within-dataset runs, one panel per entry, on a log or symmetric-log score axis where the
    scores are heavy-tailed (:func:`_score_bins`)."""
    import matplotlib.pyplot as plt

    panels = [(e, res.index.get((e.detector, dataset, dataset), {}).get(seed))
              for e in res.entries()]
    panels = [(e, r) for e, r in panels if r is not None]
    if not panels:
        _empty_figure(path, f"{dataset}: no within-dataset run of seed {seed}", formats)
        return
    cols = 2 if len(panels) > 3 else 1
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 2.3 * rows), squeeze=False,
                             layout="constrained")
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    for ax, (e, run) in zip(axes.ravel(), panels):
        s, y = flow_scores(run, e.column)
        # The central 99.8 %: a few extreme flows would squash every bin into one.
        lo, hi = np.quantile(s, [0.001, 0.999]) if s.size else (0.0, 1.0)
        hi = hi if hi > lo else lo + 1.0
        edges, scale, note = _score_bins(s[(s >= lo) & (s <= hi)], lo, hi, bins)
        for cls, name, colour in ((0, "benign", "tab:blue"), (1, "attack", "tab:red")):
            part = np.clip(s[y == cls], edges[0], edges[-1])
            if part.size:
                # Shares per bin, not densities: bins of a log axis differ in width.
                ax.hist(part, bins=edges, weights=np.full(part.size, 1.0 / part.size),
                        alpha=0.55, color=colour, label=f"{name} (n={part.size})",
                        histtype="stepfilled")
        if scale is not None:
            ax.set_xscale(*scale[:1], **scale[1])
        ax.set_title(e.label, fontsize=9)
        ax.set_ylabel("share of class per bin", fontsize=8)
        ax.set_xlabel(f"{e.column} (higher = more anomalous{note})", fontsize=8)
        ax.legend(fontsize=7)
    fig.suptitle(f"{dataset}: test scores, within-dataset models (seed {seed}; central 99.8 %)")
    _save(fig, path, formats)
