"""The data contract: the single source of truth for channels, features and file layout.

Every dataset becomes a row-aligned triple, indexed by ``flow_id = arange(N)``:

* ``packets.npz`` -- ``packets`` float32 ``(N, T, 9)`` (first ``T`` packets of each flow,
  zero-padded) and ``lengths`` int32 ``(N,)`` (number of valid packet rows, ``1..T``).
  Large datasets hold the same tensor in the sharded store ``packets/`` instead
  (:data:`PACKETS_STORE_DIR`, :mod:`janus.datasets.store`); readers open either through
  :func:`janus.datasets.store.open_packets`.
* ``flows.parquet`` -- one row per flow, columns :data:`FLOW_COLUMNS`.
* ``flow_features.parquet`` -- ``flow_id`` plus the 20 columns of :data:`FLOW_FEATURES`,
  computed from the packet tensor alone (so row alignment holds by construction).

Labels live beside them in ``labels.parquet`` (columns :data:`LABEL_COLUMNS`), written by
the labels step; extraction never guesses a label.

Everything else imports the names and indices below instead of repeating literals.
"""

from __future__ import annotations

# --------------------------------------------------------------------------- channels
#: The 9 packet channels, in tensor order.
CHANNELS: tuple[str, ...] = ("size", "iat", "direction", "syn", "fin", "rst", "psh", "ack", "win")
CHANNEL_DOCS: dict[str, str] = {
    "size": "bytes of the frame on the wire (the capture's original length)",
    "iat": "seconds since the previous packet of the same flow; 0 for the first packet",
    "direction": "0 = sent by the flow's initiator, 1 = sent towards the initiator",
    "syn": "TCP SYN flag (0/1; 0 for non-TCP)",
    "fin": "TCP FIN flag (0/1; 0 for non-TCP)",
    "rst": "TCP RST flag (0/1; 0 for non-TCP)",
    "psh": "TCP PSH flag (0/1; 0 for non-TCP)",
    "ack": "TCP ACK flag (0/1; 0 for non-TCP)",
    "win": "TCP receive window field as sent (unscaled, 0..65535); 0 for non-TCP",
}
N_CHANNELS = len(CHANNELS)
SIZE, IAT, DIRECTION, SYN, FIN, RST, PSH, ACK, WIN = range(N_CHANNELS)

#: Continuous channels (modelled by the OT-CFM head), in this order.
CONTINUOUS: tuple[int, ...] = (SIZE, IAT, WIN)
#: Binary channels (modelled by the discrete flow-matching head), in this order.
BINARY: tuple[int, ...] = (DIRECTION, SYN, FIN, RST, PSH, ACK)
CONTINUOUS_NAMES: tuple[str, ...] = tuple(CHANNELS[i] for i in CONTINUOUS)
BINARY_NAMES: tuple[str, ...] = tuple(CHANNELS[i] for i in BINARY)

#: Default number of packets kept per flow.
DEFAULT_MAX_PACKETS = 64

# --------------------------------------------------------------------------- flow features
#: Gap (seconds) above which two consecutive packets of a flow are in different
#: activity periods; used by ``active_mean`` and ``idle_mean``.
ACTIVITY_GAP_S = 1.0

#: The 20 flow features, computed from the first ``T`` packets of each flow (the packet
#: tensor), in column order. "fwd" = direction 0 (from the initiator), "bwd" = direction 1.
#: A statistic over an empty set (no bwd packets, a single packet) is 0.
FLOW_FEATURES: tuple[str, ...] = (
    "duration",
    "n_packets",
    "fwd_ratio",
    "fwd_size_mean",
    "fwd_size_max",
    "fwd_size_std",
    "bwd_size_mean",
    "bwd_size_max",
    "bwd_size_std",
    "iat_mean",
    "iat_std",
    "iat_max",
    "active_mean",
    "idle_mean",
    "bytes_per_s",
    "packets_per_s",
    "syn_count",
    "fin_count",
    "rst_count",
    "psh_count",
)
FLOW_FEATURE_DOCS: dict[str, str] = {
    "duration": "seconds from the first to the last kept packet (sum of iat)",
    "n_packets": "number of kept packets (lengths; at most T)",
    "fwd_ratio": "fraction of kept packets sent by the initiator (direction 0), 0..1",
    "fwd_size_mean": "mean size of initiator packets, bytes",
    "fwd_size_max": "largest initiator packet, bytes",
    "fwd_size_std": "population std of initiator packet sizes, bytes",
    "bwd_size_mean": "mean size of responder packets, bytes",
    "bwd_size_max": "largest responder packet, bytes",
    "bwd_size_std": "population std of responder packet sizes, bytes",
    "iat_mean": "mean inter-arrival time over packets 2..n, seconds",
    "iat_std": "population std of inter-arrival times over packets 2..n, seconds",
    "iat_max": "largest inter-arrival time, seconds",
    "active_mean": "mean length of activity periods (runs of packets whose gaps are "
    f"<= {ACTIVITY_GAP_S} s), seconds",
    "idle_mean": f"mean of the gaps > {ACTIVITY_GAP_S} s (0 when none), seconds",
    "bytes_per_s": "total kept bytes / duration (0 when duration is 0), bytes/s",
    "packets_per_s": "n_packets / duration (0 when duration is 0), packets/s",
    "syn_count": "kept packets with SYN set",
    "fin_count": "kept packets with FIN set",
    "rst_count": "kept packets with RST set",
    "psh_count": "kept packets with PSH set",
}
N_FLOW_FEATURES = len(FLOW_FEATURES)
assert N_FLOW_FEATURES == 20 and set(FLOW_FEATURE_DOCS) == set(FLOW_FEATURES)

#: Seconds per unit of the time features in the fixed transform ``sign(x) log1p(|x| / s)``
#: (microseconds: a 1 us gap is one unit).
TIME_SCALE_S = 1e-6
_FLOW_TIME = {"duration", "iat_mean", "iat_std", "iat_max", "active_mean", "idle_mean"}
_FLOW_IDENTITY = {"fwd_ratio"}
#: Per-feature scale ``s`` of that transform (``janus.model.data.FLOW_SCALE`` as a tuple, here
#: so that label-free steps need not import torch); ``0`` = identity.
FLOW_LOG_SCALE: tuple[float, ...] = tuple(
    0.0 if f in _FLOW_IDENTITY else TIME_SCALE_S if f in _FLOW_TIME else 1.0 for f in FLOW_FEATURES
)

# --------------------------------------------------------------------------- tables
#: Columns of ``flows.parquet``, with their Arrow types. Addresses are text
#: (dotted quad or RFC 5952 IPv6); ports are 0 for protocols without ports.
FLOW_COLUMNS: dict[str, str] = {
    "flow_id": "int64",  # arange(N), the row index everywhere
    "src_ip": "string",  # the initiator
    "dst_ip": "string",
    "src_port": "int32",
    "dst_port": "int32",
    "proto": "int16",  # IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6, ...)
    "start_time": "float64",  # Unix seconds (UTC) of the first packet
    "end_time": "float64",  # Unix seconds (UTC) of the last packet
    "n_packets": "int64",  # whole flow, not only the first T
    "n_bytes": "int64",  # whole flow, sum of frame sizes on the wire
    "end_reason": "string",  # one of END_REASONS
    "source_file": "string",  # capture file of the flow's first packet, as given
}
END_REASONS: tuple[str, ...] = ("fin", "rst", "idle", "active", "new_syn", "eof")

#: Columns of ``labels.parquet`` (row-aligned with flows.parquet).
LABEL_COLUMNS: dict[str, str] = {
    "flow_id": "int64",
    "label": "int8",  # 0 benign, 1 attack, -1 unknown (never evaluated)
    "attack": "string",  # "benign", a clean attack class name, or "unknown"
    "label_source": "string",  # "csv", "ip_rule", "file", "default", "none"
}
BENIGN = "benign"
UNKNOWN = "unknown"

#: File names inside one extracted dataset folder.
PACKETS_FILE = "packets.npz"
#: The sharded packet store (large datasets; instead of PACKETS_FILE): a folder of
#: ``shard-KKKKK.npy`` + ``lengths-KKKKK.npy`` files and STORE_MANIFEST_FILE, written last
#: (see :mod:`janus.datasets.store`).
PACKETS_STORE_DIR = "packets"
STORE_MANIFEST_FILE = "manifest.json"
FLOWS_FILE = "flows.parquet"
FEATURES_FILE = "flow_features.parquet"
LABELS_FILE = "labels.parquet"
STATS_FILE = "extract_stats.json"
LABELS_REPORT_FILE = "labels_report.json"

#: The 10-d score vector, in column order (see janus.model.score for definitions).
SCORE_COLUMNS: tuple[str, ...] = (
    "terminal_norm",
    "terminal_flow",
    "terminal_packet",
    "disc_nll_total",
    "disc_nll_direction",
    "disc_nll_syn",
    "disc_nll_fin",
    "disc_nll_rst",
    "disc_nll_psh",
    "disc_nll_ack",
)
assert len(SCORE_COLUMNS) == 10

#: The optional Phase-1 scores of the learned ODE path (``janus score --extended``), written
#: after the 10 and never aggregated (see janus.model.extended_scores for definitions).
EXTENDED_SCORE_COLUMNS: tuple[str, ...] = (
    "ode_terminal_norm",
    "kinetic_energy",
    "path_curvature",
    "cnf_nll",
    "velocity_t1.0",
    "velocity_t0.5",
    "velocity_t0.0",
)

#: Parquet schema-metadata key of a scores file: a JSON list of the score columns the
#: aggregator should combine (all 10, or the 3 continuous ones for a model trained with
#: lambda_disc = 0, whose flag head is untrained).
AGGREGATE_COLUMNS_KEY = "janus.aggregate_columns"
