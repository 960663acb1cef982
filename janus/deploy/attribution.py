"""Why a flow scores high: its Mahalanobis distance split over score columns and packets.

For the fitted aggregator (:class:`janus.evaluation.aggregate.Aggregator`) a flow's distance is
``d^2 = u^T P u`` with ``u`` the centred z-scores of the kept columns (clipped at 0 from below
when one-sided). Column ``j`` contributes ``m_j = u_j (P u)_j``; the ``m_j`` sum to ``d^2``
exactly, and ``m_j / d^2`` is the column's *share* (a column pulled back by its correlation
with others has a negative share).

Packet level. Four kinds of score column are sums of per-packet terms
(:func:`janus.model.score.packet_terms`): ``terminal_packet = sum_{i,c} x0[i,c]^2 / (3n)``
over size/iat/win, the same squares over ``20 + 3n`` inside ``terminal_norm``, ``disc_nll_c
= sum_i nll[i,c] / n`` and ``disc_nll_total`` = the sum of the six. Each such column's
contribution ``m_j`` is shared out over its terms in proportion to their part of the
column's value, so packet ``i``'s channel ``c`` receives ``a[i,c] = sum_j m_j t_j[i,c] /
s_j``; the largest ``a[i,c]`` names the packet and channel, and ``a / d^2`` is its share of
the distance (the flow-feature part of ``terminal_flow`` and ``terminal_norm`` belongs to no
packet). A flow with ``d = 0`` (inside the benign region on every column) has no positive
``a``; its packet is then the one with the largest term relative to its own column
(``sum_j t_j[i,c] / s_j``), with share 0.
"""

from __future__ import annotations

import numpy as np

from janus.contract import BINARY, CHANNELS, CONTINUOUS, N_CHANNELS, N_FLOW_FEATURES

#: Explanation columns of a detect output, in order.
EXPLAIN_COLUMNS: tuple[str, ...] = ("top1", "top1_share", "top2", "top2_share", "top3",
                                    "top3_share", "top_packet", "top_channel", "top_packet_share")
N_TOP = 3


def column_contributions(agg, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(m (N, d) in agg.columns order, 0 for unused columns; d2 (N,))`` with
    ``m.sum(1) == d2 == agg.apply(scores) ** 2`` (up to rounding)."""
    z = agg.standardise(scores)  # (N, k)
    u = z - agg.location
    if agg.options.sided == "one":
        u = np.maximum(u, 0.0)
    pu = u @ agg.precision  # (N, k); P is symmetric
    m_k = u * pu
    m = np.zeros((z.shape[0], len(agg.columns)))
    m[:, agg.keep] = m_k
    return m, np.maximum(m_k.sum(1), 0.0)


def top_columns(columns: tuple[str, ...], keep: np.ndarray, m: np.ndarray, d2: np.ndarray,
                n_top: int = N_TOP) -> tuple[np.ndarray, np.ndarray]:
    """Names ``(N, n_top)`` (object) and shares ``(N, n_top)`` of the largest contributions
    among the used columns ``keep`` (fewer than ``n_top`` used: the rest ``""`` and 0)."""
    used = np.asarray(keep, dtype=np.int64)
    order = used[np.argsort(-m[:, used], axis=1, kind="stable")[:, :n_top]]  # (N, <=n_top)
    names = np.full((m.shape[0], n_top), "", dtype=object)
    shares = np.zeros((m.shape[0], n_top))
    k = order.shape[1]
    names[:, :k] = np.asarray(columns, dtype=object)[order]
    safe = np.where(d2 > 0, d2, 1.0)[:, None]
    shares[:, :k] = np.where(d2[:, None] > 0, np.take_along_axis(m, order, 1) / safe, 0.0)
    return names, shares


def packet_attribution(columns: tuple[str, ...], m: np.ndarray, scores10: np.ndarray,
                       sq_packet: np.ndarray, nll: np.ndarray, lengths: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    """``(a, rel)``, each float64 ``(B, L, 9)`` in :data:`CHANNELS` order: ``a`` the share-out of
    the column contributions ``m`` ``(B, d)`` over packets (see the module docstring), ``rel``
    the unweighted ``sum_j t_j / s_j`` (the fallback ranking). ``scores10`` ``(B, 10)`` in
    :data:`janus.contract.SCORE_COLUMNS` order; ``sq_packet`` ``(B, L, 3)``, ``nll`` ``(B, L, 6)``
    from :func:`janus.model.score.packet_terms`; ``lengths`` ``(B,)``."""
    from janus.contract import SCORE_COLUMNS

    b, L = sq_packet.shape[:2]
    n = lengths.astype(np.float64)[:, None, None]  # (B, 1, 1)
    a = np.zeros((b, L, N_CHANNELS))
    rel = np.zeros((b, L, N_CHANNELS))
    cont, disc = list(CONTINUOUS), list(BINARY)
    sq = sq_packet.astype(np.float64)
    nl = nll.astype(np.float64)
    parts: dict[str, tuple[list[int], np.ndarray]] = {
        "terminal_packet": (cont, sq / (3 * n)),
        "terminal_norm": (cont, sq / (N_FLOW_FEATURES + 3 * n)),
        "disc_nll_total": (disc, nl / n),
    }
    for k, ch in enumerate(disc):
        parts[f"disc_nll_{CHANNELS[ch]}"] = ([ch], nl[..., k:k + 1] / n)
    for j, col in enumerate(columns):
        if col not in parts:
            continue
        chans, t = parts[col]
        s = scores10[:, SCORE_COLUMNS.index(col)].astype(np.float64)[:, None, None]  # (B,1,1)
        frac = np.where(s > 0, t / np.where(s > 0, s, 1.0), 0.0)  # (B, L, len(chans))
        a[..., chans] += m[:, j][:, None, None] * frac
        rel[..., chans] += frac
    return a, rel


def top_packet(a: np.ndarray, rel: np.ndarray, d2: np.ndarray, lengths: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(packet index (B,) int64, channel name (B,) object, share (B,))`` of the largest
    attribution over the valid packets (fallback to ``rel`` where none is positive)."""
    b, L = a.shape[:2]
    valid = (np.arange(L)[None, :] < lengths[:, None])[..., None]  # (B, L, 1)
    a_v = np.where(valid, a, -np.inf).reshape(b, -1)
    best = a_v.argmax(1)
    best_val = a_v[np.arange(b), best]
    fallback = ~(best_val > 0)
    if fallback.any():
        r_v = np.where(valid, rel, -np.inf).reshape(b, -1)
        best = np.where(fallback, r_v.argmax(1), best)
    safe = np.where(d2 > 0, d2, 1.0)
    share = np.where(fallback, 0.0, best_val / safe)
    names = np.asarray(CHANNELS, dtype=object)[best % N_CHANNELS]
    return (best // N_CHANNELS).astype(np.int64), names, share
