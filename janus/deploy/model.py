"""A loaded model folder: score captures or dataset folders into one verdict row per flow.

:func:`load_model` reads a model folder (:mod:`janus.deploy.folder`) and returns a
:class:`DeployedModel`. Its :meth:`~DeployedModel.score_capture` extracts the captures with the
model's own parameters, in chunks of finished flows (:mod:`janus.capture.stream`), scores,
aggregates and explains each chunk, and returns one row per flow with
:data:`OUTPUT_COLUMNS`; :meth:`~DeployedModel.iter_capture` yields the same rows chunk by chunk
(``janus detect`` writes them as they come, so memory stays bounded).
:meth:`~DeployedModel.calibrate` refits the aggregator and thresholds on benign captures of a
new site and returns a new model; the network and the folder are never changed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from janus.contract import SCORE_COLUMNS
from janus.deploy.attribution import (
    EXPLAIN_COLUMNS,
    N_TOP,
    column_contributions,
    packet_attribution,
    top_columns,
    top_packet,
)
from janus.deploy.folder import (
    Calibration,
    read_calibration,
    read_manifest,
    thresholds_from,
)
from janus.errors import ConfigError, JanusError

log = logging.getLogger(__name__)

#: Flow columns of a detect output (as in flows.parquet), then the verdict.
FLOW_OUT_COLUMNS: tuple[str, ...] = ("src_ip", "src_port", "dst_ip", "dst_port", "proto",
                                     "start_time", "end_time", "n_packets", "n_bytes")
OUTPUT_COLUMNS: tuple[str, ...] = (*FLOW_OUT_COLUMNS, "score", "alert", *EXPLAIN_COLUMNS)


def parse_threshold(spec: str | float | None, cal: Calibration) -> tuple[str, float]:
    """``(name, value)`` of a threshold: ``p95``, ``p99``, ``fpr`` (the folder's target FPR),
    ``fpr=X`` (the ``1 - X`` quantile of the benign scalars), or a number (the value itself).
    ``None`` = ``fpr``."""
    if spec is None:
        spec = "fpr"
    if isinstance(spec, int | float):
        return f"{float(spec):g}", float(spec)
    text = str(spec).strip().lower()
    if text in ("p95", "p99"):
        return text, cal.thresholds[text]
    if text == "fpr":
        return f"fpr={cal.thresholds['target_fpr']:g}", cal.thresholds["fpr"]
    if text.startswith("fpr="):
        try:
            fpr = float(text[4:])
        except ValueError:
            fpr = -1.0
        if not 0 < fpr < 1:
            raise ConfigError(f"--threshold {spec}: the FPR must be a number in (0, 1), e.g. fpr=0.01")
        n = cal.benign_scores.size
        if fpr < 1 / n:
            log.warning("--threshold %s: below 1/%d, the resolution of the %d benign flows the "
                        "threshold is read from; it is their maximum", spec, n, n)
        return f"fpr={fpr:g}", float(np.percentile(cal.benign_scores, 100 * (1 - fpr)))
    try:
        return f"{float(text):g}", float(text)
    except ValueError:
        raise ConfigError(f"--threshold {spec!r}: use p95, p99, fpr, fpr=X (0 < X < 1) or a "
                          "number") from None


class _InMemoryPackets:
    """A padded ``(N, T, 9)`` array behind the :class:`janus.datasets.store.PacketStore` calls
    :meth:`janus.model.data.FeatureStats.prepare` makes (a chunk of a capture is in memory)."""

    def __init__(self, packets: np.ndarray) -> None:
        self._a = packets
        self.shape = packets.shape
        self.n_flows = packets.shape[0]

    def packets(self, rows: np.ndarray | None = None, t: int | None = None) -> np.ndarray:
        a = self._a if rows is None else self._a[rows]
        return a if t is None else a[:, :t]

    def __getitem__(self, key):
        return self._a[key]


@dataclass
class ScoredChunk:
    """Scores of ``N`` flows: the 10 scores, the scalar, and the explanation arrays."""

    scores: np.ndarray  # float64 (N, 10), SCORE_COLUMNS order
    scalar: np.ndarray  # float64 (N,), the aggregated distance
    top_names: np.ndarray  # object (N, N_TOP)
    top_shares: np.ndarray  # float64 (N, N_TOP)
    packet: np.ndarray  # int64 (N,), 0-based packet index of the largest packet contribution
    channel: np.ndarray  # object (N,), its channel
    packet_share: np.ndarray  # float64 (N,)
    detail: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)  # row -> terms


@dataclass
class DeployedModel:
    """A model folder in memory (see :func:`load_model`)."""

    folder: Path
    manifest: dict[str, Any]
    calibration: Calibration
    net: Any  # janus.model.network.JanusNet, eval mode
    stats: Any  # janus.model.data.FeatureStats
    options: Any  # janus.model.score.ScoreOptions
    device: Any = "cpu"
    batch_size: int = 1024

    # ------------------------------------------------------------------ parameters
    @property
    def extraction(self) -> dict[str, Any]:
        """``max_packets``, ``idle_timeout`` and ``active_timeout`` the model was trained with."""
        ex = self.manifest["extraction"]
        return {"max_packets": int(ex["max_packets"]), "idle_timeout": float(ex["idle_timeout_s"]),
                "active_timeout": None if ex.get("active_timeout_s") is None
                else float(ex["active_timeout_s"])}

    @property
    def columns(self) -> tuple[str, ...]:
        """The score columns the aggregator combines."""
        return self.calibration.aggregator.columns

    def threshold(self, spec: str | float | None = None) -> tuple[str, float]:
        return parse_threshold(spec, self.calibration)

    # ------------------------------------------------------------------ scoring
    def score_arrays(self, packets: np.ndarray, lengths: np.ndarray, features: np.ndarray,
                     detail_rows: Sequence[int] = ()) -> ScoredChunk:
        """Score ``N`` flows given as a padded packet tensor ``(N, T, 9)``, ``lengths`` ``(N,)`` and
        the 20 flow features ``(N, 20)``. ``detail_rows``: rows whose per-packet terms and
        attributions are kept (for :mod:`janus.deploy.explain`)."""
        import torch

        from janus.model.data import Dataset, length_batches
        from janus.model.score import MAX_TOKENS, packet_terms, scores_from_terms

        n = int(lengths.shape[0])
        ds = Dataset(path=self.folder, packets=_InMemoryPackets(packets), lengths=lengths.astype(np.int64),
                     features=np.asarray(features, np.float64))
        T = self.net.cfg.max_packets
        prep = self.stats.prepare(ds, np.arange(n), T)
        agg = self.calibration.aggregator
        sel = [SCORE_COLUMNS.index(c) for c in agg.columns]
        out = ScoredChunk(scores=np.empty((n, len(SCORE_COLUMNS))), scalar=np.empty(n),
                          top_names=np.empty((n, N_TOP), object), top_shares=np.empty((n, N_TOP)),
                          packet=np.empty(n, np.int64), channel=np.empty(n, object),
                          packet_share=np.empty(n))
        wanted = {int(r) for r in detail_rows}
        with torch.no_grad():
            for idx in length_batches(prep.lengths, self.batch_size, max_tokens=MAX_TOKENS):
                batch = prep.batch(idx).to(self.device)
                sq_f, sq_p, nll = packet_terms(self.net, batch, self.options)
                s = scores_from_terms(sq_f, sq_p, nll, batch.mask).cpu().numpy().astype(np.float64)
                sq_p, nll = sq_p.cpu().numpy(), nll.cpu().numpy()
                m, d2 = column_contributions(agg, s[:, sel])
                out.scores[idx] = s
                out.scalar[idx] = agg.apply(s[:, sel])
                out.top_names[idx], out.top_shares[idx] = top_columns(agg.columns, agg.keep, m, d2)
                a, rel = packet_attribution(agg.columns, m, s, sq_p, nll, prep.lengths[idx])
                out.packet[idx], out.channel[idx], out.packet_share[idx] = top_packet(
                    a, rel, d2, prep.lengths[idx])
                for k in np.flatnonzero(np.isin(idx, list(wanted))):
                    L = int(prep.lengths[idx[k]])
                    out.detail[int(idx[k])] = {
                        "attribution": a[k, :L], "sq_packet": sq_p[k, :L], "nll": nll[k, :L],
                        "contribution": m[k], "d2": float(d2[k]),
                        "z": agg.standardise(s[k:k + 1, sel])[0], "raw": packets[idx[k], :L]}
        return out

    def _rows(self, flows, scored: ScoredChunk, threshold: float):
        """A pyarrow table of :data:`OUTPUT_COLUMNS` from flow columns and scores."""
        import pyarrow as pa

        cols = {c: flows.column(c) for c in FLOW_OUT_COLUMNS}
        cols["score"] = pa.array(scored.scalar, pa.float64())
        cols["alert"] = pa.array(scored.scalar > threshold, pa.bool_())
        for k in range(N_TOP):
            cols[f"top{k + 1}"] = pa.array(scored.top_names[:, k].tolist(), pa.string())
            cols[f"top{k + 1}_share"] = pa.array(scored.top_shares[:, k], pa.float64())
        cols["top_packet"] = pa.array(scored.packet, pa.int32())
        cols["top_channel"] = pa.array(scored.channel.tolist(), pa.string())
        cols["top_packet_share"] = pa.array(scored.packet_share, pa.float64())
        return pa.table(cols)

    def _with_scores(self, table, scored: ScoredChunk):
        import pyarrow as pa

        for j, c in enumerate(SCORE_COLUMNS):
            table = table.append_column(c, pa.array(scored.scores[:, j], pa.float64()))
        return table

    def iter_capture(self, paths: Sequence[str | os.PathLike], threshold: str | float | None = None,
                     *, chunk_flows: int | None = None, progress: bool | None = False,
                     with_scores: bool = False, skips=None) -> Iterator[Any]:
        """Pyarrow tables of :data:`OUTPUT_COLUMNS` (plus the 10 score columns with
        ``with_scores``), one per chunk of finished flows of ``paths`` (``-`` = stdin)."""
        from janus.capture.extract import flows_table
        from janus.capture.features import compact_flow_features
        from janus.capture.stream import DEFAULT_CHUNK_FLOWS, check_sources, iter_flow_chunks

        paths = check_sources(paths)
        _, value = self.threshold(threshold)
        step = chunk_flows or DEFAULT_CHUNK_FLOWS
        for res in iter_flow_chunks(paths, **self.extraction, skips=skips, chunk_flows=step,
                                    progress=progress):
            # One capture batch can finish many more flows than a chunk (a flood's flows all
            # idle out together): score them `step` at a time, so the padded tensor and the
            # model's inputs stay bounded by the chunk size, not by the batch.
            flows = flows_table(res, paths)
            for lo in range(0, len(res), step):
                hi = min(len(res), lo + step)
                features = compact_flow_features(res.rows, res.row_start[lo:hi], res.lengths[lo:hi])
                scored = self.score_arrays(res.padded_block(lo, hi), res.lengths[lo:hi], features)
                table = self._rows(flows.slice(lo, hi - lo), scored, value)
                yield self._with_scores(table, scored) if with_scores else table

    def score_capture(self, paths: Sequence[str | os.PathLike] | str | os.PathLike,
                      threshold: str | float | None = None, *, with_scores: bool = False,
                      chunk_flows: int | None = None):
        """One row per flow of the captures, as a polars DataFrame (``.to_pandas()`` for
        pandas): :data:`OUTPUT_COLUMNS`, plus the 10 score columns with ``with_scores``."""
        import polars as pl
        import pyarrow as pa

        if isinstance(paths, str | os.PathLike):
            paths = [paths]
        tables = list(self.iter_capture(paths, threshold, with_scores=with_scores,
                                        chunk_flows=chunk_flows))
        if not tables:
            return pl.DataFrame(schema=_empty_schema(with_scores))
        return pl.from_arrow(pa.concat_tables(tables))

    def score_dataset(self, data_dir: str | os.PathLike, threshold: str | float | None = None,
                      *, with_scores: bool = False):
        """One row per flow of an extracted dataset folder (``flow_id`` order), as a polars
        DataFrame with ``flow_id`` first. The folder should be extracted with the model's
        :attr:`extraction` parameters (a different ``T`` is refused)."""
        import polars as pl

        from janus.contract import FLOWS_FILE
        from janus.io import read_parquet
        from janus.model.data import load_dataset

        data_dir = Path(data_dir)
        ds = load_dataset(data_dir)
        T = self.extraction["max_packets"]
        if ds.packets.shape[1] != T:
            raise JanusError(f"{data_dir}: extracted with T = {ds.packets.shape[1]} packets per flow, "
                             f"the model with T = {T}; extract it with --max-packets {T}")
        flows = read_parquet(data_dir / FLOWS_FILE, "flows file")
        if flows.num_rows != ds.n_flows:
            raise JanusError(f"{data_dir / FLOWS_FILE}: {flows.num_rows} rows for {ds.n_flows} flows")
        _, value = self.threshold(threshold)
        rows = np.arange(ds.n_flows)
        scored = self.score_arrays(ds.packets.packets(rows), ds.packets.lengths(rows), ds.features[rows])
        table = self._rows(flows, scored, value)
        if with_scores:
            table = self._with_scores(table, scored)
        table = table.add_column(0, "flow_id", flows.column("flow_id"))
        return pl.from_arrow(table)

    # ------------------------------------------------------------------ calibration
    def calibrate(self, benign: Sequence[str | os.PathLike] | str | os.PathLike,
                  target_fpr: float | None = None, *, chunk_flows: int | None = None) -> DeployedModel:
        """A new model whose aggregator and thresholds are refitted on every flow of the benign
        captures ``benign`` (the new site's traffic), with the same method and options; the
        network, its input statistics and this model are unchanged (the paper's calibrated
        cross-domain transfer). ``target_fpr`` defaults to this model's."""
        from janus.capture.features import compact_flow_features
        from janus.capture.stream import DEFAULT_CHUNK_FLOWS, check_sources, iter_flow_chunks
        from janus.evaluation.aggregate import cross_fitted

        if isinstance(benign, str | os.PathLike):
            benign = [benign]
        paths = check_sources(benign)
        target = self.calibration.thresholds["target_fpr"] if target_fpr is None else target_fpr
        parts = []
        step = chunk_flows or DEFAULT_CHUNK_FLOWS
        for res in iter_flow_chunks(paths, **self.extraction, chunk_flows=step):
            for lo in range(0, len(res), step):  # as in iter_capture: bounded by the chunk
                hi = min(len(res), lo + step)
                features = compact_flow_features(res.rows, res.row_start[lo:hi], res.lengths[lo:hi])
                parts.append(self.score_arrays(res.padded_block(lo, hi), res.lengths[lo:hi],
                                               features).scores)
        scores = np.concatenate(parts) if parts else np.zeros((0, len(SCORE_COLUMNS)))
        if scores.shape[0] < 2:
            raise JanusError(f"calibration needs at least 2 benign flows; {', '.join(paths)} "
                             f"hold {scores.shape[0]}")
        old = self.calibration.aggregator
        sel = [SCORE_COLUMNS.index(c) for c in old.columns]
        # Out-of-fold scalars of the calibration flows (as janus.aggregate does), so the
        # thresholds are not set on the flows the aggregator was fitted on.
        fit = scores[:, sel]
        benign_scalar, agg = cross_fitted(fit, fit, np.arange(len(fit)), old.method,
                                          old.columns, old.options)
        cal = Calibration(aggregator=agg, benign_scores=np.sort(benign_scalar),
                          thresholds=thresholds_from(benign_scalar, target),
                          source={"kind": "captures", "captures": paths,
                                  "n_flows": int(scores.shape[0]),
                                  "calibrated_from": str(self.folder)})
        log.info("calibrated on %d benign flows of %s: thresholds %s", scores.shape[0],
                 ", ".join(paths), cal.thresholds)
        return replace(self, calibration=cal)

    def save(self, out: str | os.PathLike) -> Path:
        """Write this model (e.g. a calibrated one) as a new model folder ``out``: the same
        checkpoint (linked or copied), this aggregator and thresholds, an updated card. ``out``
        must not be the folder the model was loaded from."""
        from janus.deploy.card import model_card
        from janus.deploy.folder import CHECKPOINT_FILE, write_folder

        out = Path(out)
        if out.exists() and out.resolve() == self.folder.resolve():
            raise JanusError(f"{out}: is the folder the model was loaded from; a calibrated model "
                             "is written to a new folder, the original stays unchanged")
        manifest = {k: v for k, v in self.manifest.items() if k not in ("format", "files")}
        write_folder(out, self.folder / CHECKPOINT_FILE, manifest, self.calibration,
                     model_card(manifest, self.calibration))
        return out


def _empty_schema(with_scores: bool) -> dict:
    import polars as pl

    types = {"src_ip": pl.String, "dst_ip": pl.String, "src_port": pl.Int32, "dst_port": pl.Int32,
             "proto": pl.Int16, "start_time": pl.Float64, "end_time": pl.Float64,
             "n_packets": pl.Int64, "n_bytes": pl.Int64, "score": pl.Float64, "alert": pl.Boolean,
             "top_packet": pl.Int32, "top_channel": pl.String}
    schema = {c: types.get(c, pl.String if c in ("top1", "top2", "top3") else pl.Float64)
              for c in OUTPUT_COLUMNS}
    if with_scores:
        schema.update({c: pl.Float64 for c in SCORE_COLUMNS})
    return schema


def load_model(folder: str | os.PathLike, device: str = "cpu") -> DeployedModel:
    """Read a model folder (never executing code: JSON and a ``weights_only`` checkpoint whose
    SHA-256 is checked first) -> :class:`DeployedModel`. A missing, damaged or foreign folder
    raises a one-line :class:`JanusError` naming the file."""
    from janus.deploy.folder import CHECKPOINT_FILE
    from janus.model.checkpoint import load_checkpoint, model_from_checkpoint
    from janus.model.score import ScoreOptions
    from janus.model.train import resolve_device

    folder = Path(folder)
    manifest = read_manifest(folder)
    calibration = read_calibration(folder)
    ckpt = load_checkpoint(folder / CHECKPOINT_FILE, require_finished=True)
    net, cfg, stats = model_from_checkpoint(ckpt)
    if cfg.max_packets != manifest["extraction"]["max_packets"]:
        raise JanusError(f"{folder / 'model.json'}: extraction T = "
                         f"{manifest['extraction']['max_packets']} but the checkpoint's model has "
                         f"T = {cfg.max_packets}; rebuild the model folder")
    try:
        options = ScoreOptions(**manifest["score_options"])
    except (TypeError, JanusError) as exc:
        raise JanusError(f"{folder / 'model.json'}: score_options are invalid ({exc}); rebuild "
                         "the model folder") from None
    dev = resolve_device(device)
    return DeployedModel(folder=folder, manifest=manifest, calibration=calibration,
                         net=net.to(dev).eval(), stats=stats, options=options, device=dev)
