"""Detection metrics on anomaly scores (higher = more anomalous); every function returns floats.

Conventions (the report's tables depend on them):

* Labels are 0 (benign) / 1 (attack). Callers drop unknown (-1) flows before calling.
* A metric that is undefined for the given data (one class only, no flows) is ``nan``,
  never an exception, so one degenerate attack class does not abort a whole evaluation.
* Thresholds come from the **benign validation** scores: the ``q``-th percentile with
  NumPy's default linear interpolation. A flow is flagged when ``score > threshold``
  (strictly), so at most ``100 - q`` percent of the validation flows are flagged.
* Precision and F1 at a realistic attack prevalence ``pi`` (:func:`at_prevalence`) reweight
  the test flows instead of subsampling them: with the test TPR and FPR of a threshold,
  ``precision = pi TPR / (pi TPR + (1 - pi) FPR)``, the precision a stream with that share of
  attacks would see (recall is the TPR whatever the prevalence).
* Bootstrap intervals (:func:`bootstrap_auroc`) resample the benign and the attack test
  flows separately (stratified), so every replicate has both classes in the test counts.
* TPR at a fixed FPR reads the ROC curve (all operating points, ``drop_intermediate=False``)
  at exactly that FPR, interpolating linearly between the two operating points around it.
  Linear interpolation is the ROC convex combination: it is the TPR a randomised threshold
  mixing the two neighbouring thresholds would achieve. Where the curve has a vertical
  step exactly at the FPR (ties or several attacks between two benign scores), the top of
  the step (the highest TPR reachable without exceeding that FPR) is reported.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

NAN = float("nan")


def _as_binary(y: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 1:
        raise ValueError(f"labels {y.shape} and scores {s.shape} must be equal-length 1-d arrays")
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (benign) or 1 (attack); drop unknown (-1) flows first")
    return y.astype(np.int8), s


def _two_classes(y: np.ndarray) -> bool:
    return bool(y.size) and 0 < int(y.sum()) < y.size


def auroc(y: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """Area under the ROC curve; nan with one class.

    The Mann-Whitney statistic on mid-ranks (ties count one half), the same value as
    :func:`sklearn.metrics.roc_auc_score` (a test holds them equal): the evaluate step calls
    this ~500 times a job, and sklearn's argument validation was ~4 of its ~12 s."""
    from scipy.stats import rankdata

    y, s = _as_binary(y, scores)
    if not _two_classes(y):
        return NAN
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    pos = y == 1
    n_pos = int(pos.sum())
    n_neg = y.size - n_pos
    r_pos = float(rankdata(s)[pos].sum())
    return (r_pos - n_pos * (n_pos + 1) / 2) / (n_neg * n_pos)


def average_precision(y: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray
                      ) -> float:
    """Area under the precision-recall curve (sklearn's step-wise average precision)."""
    from sklearn.metrics import average_precision_score

    y, s = _as_binary(y, scores)
    if not _two_classes(y):
        return NAN
    return float(average_precision_score(y, s))


def per_attack_auroc(attack: Sequence[str] | np.ndarray, y: Sequence[int] | np.ndarray,
                     scores: Sequence[float] | np.ndarray) -> dict[str, float]:
    """AUROC of each attack class against all benign flows: ``{class name: auroc}``.

    ``attack`` holds the class name of every flow (the benign ones' names are ignored);
    classes are sorted by name. A class is its attack flows (``y == 1``) with that name.
    """
    y, s = _as_binary(y, scores)
    attack = np.asarray(attack, dtype=object)
    benign = y == 0
    out: dict[str, float] = {}
    for name in sorted(set(attack[y == 1].tolist())):
        sel = benign | ((y == 1) & (attack == name))
        out[str(name)] = auroc(y[sel], s[sel])
    return out


def threshold_at_percentile(val_scores: Sequence[float] | np.ndarray, q: float) -> float:
    """The ``q``-th percentile (0..100, linear interpolation) of benign validation scores."""
    v = np.asarray(val_scores, dtype=np.float64)
    if v.size == 0:
        return NAN
    return float(np.percentile(v, q))


def prf_at_threshold(y: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray,
                     threshold: float) -> dict[str, float]:
    """Precision, recall, F1 (attack = positive) and FPR when flagging ``score > threshold``.

    Uses :func:`sklearn.metrics.precision_recall_fscore_support` (binary, ``zero_division``
    = nan: precision with no flagged flow, or recall with no attack, is undefined).
    """
    from sklearn.metrics import precision_recall_fscore_support

    y, s = _as_binary(y, scores)
    if y.size == 0 or math.isnan(threshold):
        return {"threshold": float(threshold), "precision": NAN, "recall": NAN, "f1": NAN,
                "fpr": NAN, "flagged": 0.0}
    pred = (s > threshold).astype(np.int8)
    p, r, f, _ = precision_recall_fscore_support(
        y, pred, average="binary", pos_label=1, zero_division=np.nan, labels=[0, 1]
    )
    n_benign = int((y == 0).sum())
    fpr = float(pred[y == 0].sum() / n_benign) if n_benign else NAN
    return {"threshold": float(threshold), "precision": float(p), "recall": float(r),
            "f1": float(f), "fpr": fpr, "flagged": float(pred.sum())}


def tpr_at_fpr(y: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray,
               fpr: float = 0.01) -> float:
    """TPR of the ROC curve at false-positive rate ``fpr`` (see the module docstring)."""
    from sklearn.metrics import roc_curve

    y, s = _as_binary(y, scores)
    if not _two_classes(y):
        return NAN
    fprs, tprs, _ = roc_curve(y, s, drop_intermediate=False)  # both non-decreasing
    # Last operating point with FPR <= target: on a vertical step that is its top.
    i = int(np.searchsorted(fprs, fpr, side="right")) - 1
    if fprs[i] == fpr or i == len(fprs) - 1:
        return float(tprs[i])
    w = (fpr - fprs[i]) / (fprs[i + 1] - fprs[i])
    return float(tprs[i] + w * (tprs[i + 1] - tprs[i]))


def at_prevalence(tpr: float, fpr: float, prevalence: float) -> dict[str, float]:
    """Precision and F1 of an operating point (``tpr``, ``fpr``) on a stream whose share of
    attacks is ``prevalence`` (0..1): ``{"precision", "f1"}``; nan where undefined."""
    if any(math.isnan(v) for v in (tpr, fpr)) or not 0.0 < prevalence < 1.0:
        return {"precision": NAN, "f1": NAN}
    flagged = prevalence * tpr + (1.0 - prevalence) * fpr
    if flagged == 0.0:
        return {"precision": NAN, "f1": NAN}
    precision = prevalence * tpr / flagged
    f1 = 2 * precision * tpr / (precision + tpr) if precision + tpr > 0 else 0.0
    return {"precision": float(precision), "f1": float(f1)}


def bootstrap_auroc(y: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray,
                    n_boot: int = 200, seed: int = 0) -> np.ndarray:
    """``(n_boot,)`` AUROCs of stratified bootstrap resamples of the flows (benign and attack
    resampled separately with replacement, ``numpy.random.default_rng(seed)``); empty with
    one class. Computed as the Mann-Whitney statistic on mid-ranks (ties count one half),
    which equals :func:`auroc` on each resample."""
    from scipy.stats import rankdata

    y, s = _as_binary(y, scores)
    if not _two_classes(y) or n_boot <= 0:
        return np.zeros(0)
    rng = np.random.default_rng(seed)
    neg, pos = s[y == 0], s[y == 1]
    b = neg[rng.integers(0, neg.size, (n_boot, neg.size))]  # (B, n0)
    a = pos[rng.integers(0, pos.size, (n_boot, pos.size))]  # (B, n1)
    ranks = rankdata(np.concatenate([b, a], axis=1), axis=1)  # (B, n0 + n1), mid-ranks
    r_pos = ranks[:, neg.size:].sum(axis=1)
    return (r_pos - pos.size * (pos.size + 1) / 2) / (neg.size * pos.size)


def nan_to_none(obj):
    """Replace float nan/inf by ``None`` recursively, so the result is strict JSON."""
    if isinstance(obj, dict):
        return {k: nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [nan_to_none(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
