"""Streaming bidirectional flow assembly: :class:`PacketBatch` stream -> flows.

Semantics (one flow = one row of ``flows.parquet`` and one ``(T, 9)`` slice of the tensor):

* **Key.** The canonical 5-tuple: the two ``(address, port)`` endpoints, unordered, plus the
  IP protocol. Both directions of a conversation share a key.
* **Initiator.** The sender of the flow's first packet, except that for TCP a first packet
  carrying SYN+ACK makes its *receiver* the initiator (the SYN was sent before the capture
  started). ``direction`` of every packet (0 = from the initiator) is fixed against that
  initiator for the flow's whole life; packets arriving out of order never swap it (a known
  CICFlowMeter fault, Engelen et al. 2021).
* **TCP closure.** A TCP flow is *closed* once it has carried an RST (``end_reason="rst"``)
  or a FIN from each side (``"fin"``). The first FIN alone does not close it (the other
  CICFlowMeter fault). A closed flow keeps receiving its key's packets (the last ACK,
  retransmitted FIN/RST) until a *pure SYN* (SYN without ACK) arrives on the key, which starts
  a new flow. A pure SYN on an open flow that is already past its handshake (it carried a
  packet without SYN) also starts a new flow and ends the old one with ``"new_syn"`` (a port
  reused after an unseen teardown); a retransmitted SYN of an unanswered attempt does not.
* **Timeouts.** The assembler keeps a *capture clock*, the newest timestamp seen so far (as
  read through the timestamp guard below). A packet arriving when ``clock -
  last_packet_time > idle_timeout`` starts a new flow and the old one ends ``"idle"``; a packet more than ``active_timeout`` seconds after its flow's
  first packet starts a new flow and the old one ends ``"active"``. A closed TCP flow that
  times out keeps ``"fin"``/``"rst"``. Flows still open at the end of input end ``"eof"``, or
  ``"idle"`` if the clock had already passed their idle timeout. Measuring idleness against
  the clock (not against the arriving packet's own time) makes expiry at batch ends exactly
  equivalent to expiry at the next packet, so results do not depend on how the input is
  chunked, even when timestamps step backwards (the timestamp guard below looks ahead
  across batch ends too: a packet it must judge near a batch's end waits for the next batch).
* **Timestamps.** One bad timestamp must not expire every flow, so the clock only follows
  timestamps that the packets after them confirm. A packet dated more than
  ``max_clock_jump`` seconds (default: ``idle_timeout``, the jump that would by itself expire
  every open flow) after the clock is *confirmed* when at least :data:`CLOCK_CONFIRM` of the
  :data:`CLOCK_LOOKAHEAD` packets after it are dated no earlier than its time less
  ``max_clock_jump`` (a real silence or a forward clock step: the clock jumps, flows idle out
  as they should); otherwise it is a lone outlier (a corrupt or far-future record) and is
  given the clock's time (``clamped_ahead``), so it stays in its flow without moving the
  clock. A packet dated more than ``max_clock_jump`` before the clock is confirmed when at
  least as many of the packets after it stay within ``max_clock_jump`` after its time: the
  capture's clock was stepped back (NTP), and from there on every timestamp is read shifted
  forward by the step, so the clock carries on from where it was and no flow breaks
  (``steps_back``; the flows still report the capture's own timestamps). Unconfirmed, it is
  given the clock's time (``clamped_behind``). Near the end of the stream, where fewer than
  :data:`CLOCK_CONFIRM` packets follow, all of those that follow must confirm (the last
  packet is taken as it is). Absolute bounds (say, before 1990) are deliberately not used:
  devices without a real-time clock write whole captures dated 1970, and synthetic captures
  often start at 0. :attr:`FlowAssembler.timestamp_stats` counts each kind, and
  :meth:`FlowAssembler.finish` warns once per kind with the first packet concerned.
* **Per-flow record.** The first ``T`` packets' 9 channels in :data:`janus.contract.CHANNELS`
  order (``iat`` = seconds since the newest earlier packet of the flow, clamped at 0 so that a
  slightly reordered capture never yields negative gaps; 0 for the first packet) and
  whole-flow totals: packets, bytes on the wire, first and newest timestamps.
* **Order.** Output flows are sorted by ``start_time``, ties broken by the position of their
  first packet in the input. The result is a pure function of the packet sequence.

Memory scales with the number of *active* flows: per-flow state lives in slot arrays that are
recycled; at the end of every batch flows idle for longer than ``idle_timeout`` (against the
clock) are moved to compact output buffers (only their kept packet rows, no padding).
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime

import numba
import numpy as np

from janus.capture.batch import TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, PacketBatch
from janus.contract import (
    ACK,
    DEFAULT_MAX_PACKETS,
    DIRECTION,
    END_REASONS,
    FIN,
    IAT,
    N_CHANNELS,
    PSH,
    RST,
    SIZE,
    SYN,
    WIN,
)
from janus.errors import ConfigError

log = logging.getLogger(__name__)

_PROTO_TCP = 6
REASON_FIN, REASON_RST, REASON_IDLE, REASON_ACTIVE, REASON_NEW_SYN, REASON_EOF = (
    END_REASONS.index(r) for r in ("fin", "rst", "idle", "active", "new_syn", "eof")
)

# Columns of the per-slot integer state ``st_i`` (int64) and float state ``st_f`` (float64).
_I_LEN, _I_NPK, _I_NBYTES, _I_SEQ, _I_FILE, _I_INIT_A, _I_FINS, _I_EST, _I_REASON, _I_DONE = range(10)
_N_I = 10
# Start and newest time on the assembler's clock (see "Timestamps" in the module docstring),
# and the same two as the capture's own timestamps (what the output reports).
_F_START, _F_LAST, _F_RAW_START, _F_RAW_END = range(4)
_N_F = 4
# Timestamp guard: packets looked ahead at a jump, how many of them must confirm it; the
# counters (``tstats``) and first-packet records (``tfirst``: stream position, timestamp,
# file index per kind) it keeps.
CLOCK_LOOKAHEAD = 16
CLOCK_CONFIRM = 8
_T_AHEAD, _T_BEHIND, _T_STEP_BACK = range(3)
_T_KINDS = ("clamped_ahead", "clamped_behind", "steps_back")
# kernel stop codes
_DONE, _NO_SLOT, _NEED_LOOKAHEAD = range(3)
# Bits of ``_I_FINS``: FIN seen from the initiator / from the responder.
_FIN_FWD, _FIN_BWD = 1, 2

# Capacity reserved up front: ~64 MiB of slot packet rows (29k slots at T = 64), at most
# 32k slots, and 1 Mi compact kept rows (36 MiB). Arrays this large come from calloc/mmap,
# so only the pages that get written are ever backed: RSS follows the active flows and the
# kept rows, not these sizes, while growing (a copy of every slot, or a realloc plus zero
# fill) becomes rare. The cap matters for small T: the other per-slot state (~130 B) is
# written whole when allocated, and 64 MiB of rows at T = 2 would be 932k slots.
_RESERVED_SLOT_BYTES = 64 << 20
_MIN_SLOTS = 1024
_MAX_RESERVED_SLOTS = 1 << 15
_RESERVED_ROWS = 1 << 20


@dataclass
class FlowResult:
    """Assembled flows, ordered by ``start_time`` (ties: first-packet order). Length ``N``.

    The kept packet rows are held compact (no padding): flow ``i``'s rows are
    ``rows[row_start[i] : row_start[i] + lengths[i]]``. :attr:`packets` builds the padded
    ``(N, T, 9)`` tensor on first use; the extract step never does, it streams padded blocks
    straight into ``packets.npz`` (a 2 GB capture's tensor is ~0.3 GB of mostly zeros).
    """

    rows: np.ndarray  # float32 (K, 9), every flow's kept rows, K = lengths.sum()
    row_start: np.ndarray  # int64 (N,), first row of each flow in ``rows``
    max_packets: int  # T
    lengths: np.ndarray  # int32 (N,), valid rows per flow, 1..T
    src_ip: np.ndarray  # uint64 (N, 2), the initiator's address words
    dst_ip: np.ndarray  # uint64 (N, 2)
    src_port: np.ndarray  # int32 (N,)
    dst_port: np.ndarray  # int32 (N,)
    proto: np.ndarray  # int16 (N,)
    start_time: np.ndarray  # float64 (N,), Unix seconds of the first packet
    end_time: np.ndarray  # float64 (N,), Unix seconds of the newest packet
    n_packets: np.ndarray  # int64 (N,), whole flow
    n_bytes: np.ndarray  # int64 (N,), whole flow, wire bytes
    end_reason: np.ndarray  # int8 (N,), index into contract.END_REASONS
    file_index: np.ndarray  # int32 (N,), capture file of the first packet
    # int64 (N,), position of the first packet in the packet stream: the tie-break of the
    # order, which the extract step's writer merges by (None where not kept).
    seq: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.lengths.shape[0])

    @functools.cached_property
    def packets(self) -> np.ndarray:
        """float32 ``(N, T, 9)``: the first ``T`` packets of each flow, zero-padded."""
        return self.padded_block(0, len(self))

    def padded_block(self, lo: int, hi: int, out: np.ndarray | None = None) -> np.ndarray:
        """Flows ``lo..hi-1`` as a padded float32 ``(hi - lo, T, 9)`` block (written into
        ``out``, a C-contiguous buffer of at least that many flows, when given)."""
        k = hi - lo
        if out is None:
            out = np.empty((k, self.max_packets, N_CHANNELS), np.float32)
        block = out[:k]
        _pad_rows(self.rows, self.row_start, self.lengths, lo, hi, block)
        return block

    def end_reason_text(self) -> list[str]:
        """``end_reason`` as the strings of :data:`janus.contract.END_REASONS`."""
        return np.asarray(END_REASONS, dtype=object)[self.end_reason].tolist()


@numba.njit(cache=True, nogil=True)
def _pad_rows(rows, row_start, lengths, lo, hi, out):  # pragma: no cover - compiled
    """``out[i - lo]`` = flow ``i``'s kept rows followed by zero rows, for ``i`` in ``lo..hi-1``."""
    T = out.shape[1]
    C = out.shape[2]
    for i in range(lo, hi):
        dst = out[i - lo]
        r0 = row_start[i]
        n = lengths[i]
        for t in range(n):
            for c in range(C):
                dst[t, c] = rows[r0 + t, c]
        for t in range(n, T):
            for c in range(C):
                dst[t, c] = 0.0


# --------------------------------------------------------------------------- key mapping
def canonical_keys(batch: PacketBatch) -> tuple[np.ndarray, np.ndarray]:
    """Canonical key columns and orientation of every packet.

    Returns ``keys`` uint64 ``(n, 5)`` = ``(a_hi, a_lo, b_hi, b_lo, a_port<<24 | b_port<<8 |
    proto)`` where endpoint ``a = (address, port)`` is the numerically smaller one, and
    ``src_is_a`` bool ``(n,)``.
    """
    s_hi, s_lo, d_hi, d_lo = batch.src_ip[:, 0], batch.src_ip[:, 1], batch.dst_ip[:, 0], batch.dst_ip[:, 1]
    sp, dp = batch.src_port.astype(np.uint64), batch.dst_port.astype(np.uint64)
    src_is_a = (s_hi < d_hi) | ((s_hi == d_hi) & ((s_lo < d_lo) | ((s_lo == d_lo) & (sp <= dp))))
    keys = np.empty((len(batch), 5), np.uint64)
    keys[:, 0] = np.where(src_is_a, s_hi, d_hi)
    keys[:, 1] = np.where(src_is_a, s_lo, d_lo)
    keys[:, 2] = np.where(src_is_a, d_hi, s_hi)
    keys[:, 3] = np.where(src_is_a, d_lo, s_lo)
    a_port, b_port = np.where(src_is_a, sp, dp), np.where(src_is_a, dp, sp)
    keys[:, 4] = (a_port << np.uint64(24)) | (b_port << np.uint64(8)) | batch.proto.astype(np.uint64)
    return keys, src_is_a


def hash_keys(keys: np.ndarray, seed: int) -> np.ndarray:
    """64-bit hash of each key row (uint64 ``(n, 5)`` -> uint64 ``(n,)``), salted by ``seed``.

    A multiply-xorshift mix per column (wrapping uint64 arithmetic). Distinct keys can collide;
    the assembler's key table only starts its probe at the hash and compares full keys.
    """
    mult = _U64_MULT
    h = np.full(keys.shape[0], _hash_seed(seed))
    with np.errstate(over="ignore"):
        for j in range(keys.shape[1]):
            h ^= keys[:, j]
            h *= mult
            h ^= h >> np.uint64(31)
        h *= _U64_FINAL
        h ^= h >> np.uint64(29)
    return h


def _hash_seed(seed: int) -> np.uint64:
    """Starting value of :func:`hash_keys`' state for ``seed``."""
    return np.uint64((0x243F6A8885A308D3 + seed * 0x9E3779B9) & (2**64 - 1))


_U64_MULT = np.uint64(0x9E3779B97F4A7C15)
_U64_FINAL = np.uint64(0xBF58476D1CE4E5B9)


# canonical_keys + hash_keys(keys, seed) in one pass: the NumPy forms make ~25 temporary
# arrays per batch (~0.1 us per packet, a tenth of the whole step on a large capture).
# Same integer arithmetic, so the same keys, orientation and hashes bit for bit.
@numba.njit(cache=True, nogil=True)
def _keys_and_hashes(src_ip, dst_ip, src_port, dst_port, proto, h0):  # pragma: no cover - compiled
    n = src_ip.shape[0]
    keys = np.empty((n, 5), np.uint64)
    src_is_a = np.empty(n, np.bool_)
    hashes = np.empty(n, np.uint64)
    s24, s8, s31, s29 = np.uint64(24), np.uint64(8), np.uint64(31), np.uint64(29)
    for i in range(n):
        s_hi, s_lo, d_hi, d_lo = src_ip[i, 0], src_ip[i, 1], dst_ip[i, 0], dst_ip[i, 1]
        sp, dp = np.uint64(src_port[i]), np.uint64(dst_port[i])
        a = (s_hi < d_hi) or (s_hi == d_hi and (s_lo < d_lo or (s_lo == d_lo and sp <= dp)))
        src_is_a[i] = a
        if a:
            keys[i, 0], keys[i, 1], keys[i, 2], keys[i, 3] = s_hi, s_lo, d_hi, d_lo
            keys[i, 4] = (sp << s24) | (dp << s8) | np.uint64(proto[i])
        else:
            keys[i, 0], keys[i, 1], keys[i, 2], keys[i, 3] = d_hi, d_lo, s_hi, s_lo
            keys[i, 4] = (dp << s24) | (sp << s8) | np.uint64(proto[i])
        h = h0
        for j in range(5):
            h ^= keys[i, j]
            h *= _U64_MULT
            h ^= h >> s31
        h *= _U64_FINAL
        h ^= h >> s29
        hashes[i] = h
    return keys, src_is_a, hashes


# --------------------------------------------------------------------------- the state machine
# The key table maps the key of every flow that can still receive packets to its slot: open
# addressing with linear probing over ``tab`` (slot ids, -1 = empty), probed from the key's
# 64-bit hash and confirmed against the full key in ``slot_key``, so a hash collision costs a
# longer probe, never a wrong flow. It is looked up inside the per-packet loop: a sorted-hash
# table needs an np.unique (a sort) of every batch's hashes and a searchsorted, ~5x the cost.
@numba.njit(cache=True, nogil=True)
def _probe(tab, slot_key, keys, i, h):  # pragma: no cover - compiled
    """Position in ``tab`` of key row ``keys[i]``: its entry, or the empty cell where it goes."""
    mask = tab.shape[0] - 1
    p = np.int64(h & np.uint64(mask))
    while True:
        s = tab[p]
        if s < 0:
            return p
        k = slot_key[s]
        if (k[0] == keys[i, 0] and k[1] == keys[i, 1] and k[2] == keys[i, 2]
                and k[3] == keys[i, 3] and k[4] == keys[i, 4]):
            return p
        p = (p + 1) & mask


@numba.njit(cache=True, nogil=True)
def _rebuild_table(tab, slots, slot_hash):  # pragma: no cover - compiled
    """Refill ``tab`` (size a power of 2, more than ``len(slots)``) with ``slots``."""
    tab[:] = -1
    mask = tab.shape[0] - 1
    for s in slots:
        p = np.int64(slot_hash[s] & np.uint64(mask))
        while tab[p] >= 0:
            p = (p + 1) & mask
        tab[p] = s


@numba.njit(cache=True, nogil=True)
def _confirmations(ts, i, offset, lo, hi, look):  # pragma: no cover - compiled
    """(how many of the ``look`` packets after ``i`` have a clock time in ``[lo, hi]``, how
    many were looked at)."""
    n = ts.shape[0]
    c = 0
    m = 0
    for j in range(i + 1, min(n, i + 1 + look)):
        m += 1
        u = ts[j] + offset
        if lo <= u <= hi:
            c += 1
    return c, m


# The per-packet state machine is sequential by nature: whether packet i opens a flow, joins
# one or closes one depends on every earlier packet of its key (FIN/RST state, timeouts,
# initiator). NumPy cannot express that recurrence without a Python-level loop over packets
# (~1 us each), so the loop is compiled with numba; key canonicalisation and hashing around
# it stay vectorised NumPy.
@numba.njit(cache=True, nogil=True)
def _assemble(
    start, keys, hashes, src_is_a, ts, wire_len, flags, win, proto, file_index, seq0,
    tab, slot_key, slot_hash, st_i, st_f, pk, free, n_free, alloc, n_alloc, clock, offset,
    max_packets, idle_timeout, active_timeout, max_jump, look, confirm, final, tstats, tfirst,
):  # pragma: no cover - compiled
    """Feed packets ``start..n-1`` into the slot state.

    Returns ``(next, status, clock, offset, n_free, n_alloc)``. ``status`` ``_NO_SLOT``: the
    free-slot stack ran dry at packet ``next`` (caller grows and resumes); ``_NEED_LOOKAHEAD``:
    packet ``next`` jumps the clock and fewer than ``look`` packets follow it in this batch
    (caller feeds ``next..n-1`` again with the next batch, or with ``final`` at the end).
    """
    n = ts.shape[0]
    inf = np.inf
    for i in range(start, n):
        raw = ts[i]
        t = raw + offset
        kind = -1
        if clock > -inf and (t > clock + max_jump or t < clock - max_jump):
            if not final and n - 1 - i < look:
                return i, _NEED_LOOKAHEAD, clock, offset, n_free, n_alloc
            if t > clock:  # ahead: confirmed when the next packets are about as late
                c, m = _confirmations(ts, i, offset, t - max_jump, inf, look)
                if c < min(confirm, m):
                    kind = _T_AHEAD
                    t = clock
            else:  # behind: confirmed when the next packets stay about as early
                c, m = _confirmations(ts, i, offset, -inf, t + max_jump, look)
                if c < min(confirm, m):
                    kind = _T_BEHIND
                else:  # the clock was stepped back: carry on from the clock
                    kind = _T_STEP_BACK
                    offset += clock - t
                t = clock
            if kind >= 0:
                tstats[kind] += 1
                if tstats[kind] == 1:
                    tfirst[kind, 0] = seq0 + i
                    tfirst[kind, 1] = raw
                    tfirst[kind, 2] = file_index[i]
        r = t - offset  # the time reported: the packet's own, or the clock's for a clamped one
        clock = max(clock, t)
        f = flags[i]
        is_tcp = proto[i] == _PROTO_TCP
        pure_syn = is_tcp and (f & TCP_SYN) != 0 and (f & TCP_ACK) == 0
        cell = _probe(tab, slot_key, keys, i, hashes[i])
        s = tab[cell]
        if s >= 0:
            end = -1
            if clock - st_f[s, _F_LAST] > idle_timeout:
                end = REASON_IDLE
            elif t - st_f[s, _F_START] > active_timeout:
                end = REASON_ACTIVE
            elif pure_syn and (st_i[s, _I_REASON] >= 0 or st_i[s, _I_EST] != 0):
                end = REASON_NEW_SYN
            if end >= 0:
                if st_i[s, _I_REASON] < 0:  # a closed flow keeps "fin"/"rst"
                    st_i[s, _I_REASON] = end
                st_i[s, _I_DONE] = 1
                s = -1
        if s < 0:
            if n_free == 0:
                return i, _NO_SLOT, clock, offset, n_free, n_alloc
            n_free -= 1
            s = free[n_free]
            alloc[n_alloc] = s
            n_alloc += 1
            tab[cell] = s
            slot_key[s] = keys[i]
            slot_hash[s] = hashes[i]
            first_from_a = src_is_a[i]
            if is_tcp and (f & TCP_SYN) != 0 and (f & TCP_ACK) != 0:
                first_from_a = not first_from_a  # a SYN-ACK is sent by the responder
            st_i[s, _I_LEN] = 0
            st_i[s, _I_NPK] = 0
            st_i[s, _I_NBYTES] = 0
            st_i[s, _I_SEQ] = seq0 + i
            st_i[s, _I_FILE] = file_index[i]
            st_i[s, _I_INIT_A] = 1 if first_from_a else 0
            st_i[s, _I_FINS] = 0
            st_i[s, _I_EST] = 0
            st_i[s, _I_REASON] = -1
            st_i[s, _I_DONE] = 0
            st_f[s, _F_START] = t
            st_f[s, _F_LAST] = t
            st_f[s, _F_RAW_START] = r
            st_f[s, _F_RAW_END] = r
        backward = (st_i[s, _I_INIT_A] != 0) != src_is_a[i]
        pos = st_i[s, _I_LEN]
        if pos < max_packets:
            gap = t - st_f[s, _F_LAST] if pos > 0 else 0.0
            row = pk[s, pos]
            row[SIZE] = wire_len[i]
            row[IAT] = max(0.0, gap)
            row[DIRECTION] = 1.0 if backward else 0.0
            row[SYN] = 1.0 if (f & TCP_SYN) != 0 else 0.0
            row[FIN] = 1.0 if (f & TCP_FIN) != 0 else 0.0
            row[RST] = 1.0 if (f & TCP_RST) != 0 else 0.0
            row[PSH] = 1.0 if (f & TCP_PSH) != 0 else 0.0
            row[ACK] = 1.0 if (f & TCP_ACK) != 0 else 0.0
            row[WIN] = win[i]
            st_i[s, _I_LEN] = pos + 1
        st_i[s, _I_NPK] += 1
        st_i[s, _I_NBYTES] += wire_len[i]
        st_f[s, _F_LAST] = max(st_f[s, _F_LAST], t)
        st_f[s, _F_RAW_END] = max(st_f[s, _F_RAW_END], r)
        if is_tcp:
            if (f & TCP_SYN) == 0:
                st_i[s, _I_EST] = 1
            if st_i[s, _I_REASON] < 0:
                if (f & TCP_RST) != 0:
                    st_i[s, _I_REASON] = REASON_RST
                elif (f & TCP_FIN) != 0:
                    st_i[s, _I_FINS] |= _FIN_BWD if backward else _FIN_FWD
                    if st_i[s, _I_FINS] == (_FIN_FWD | _FIN_BWD):
                        st_i[s, _I_REASON] = REASON_FIN
    return n, _DONE, clock, offset, n_free, n_alloc


# Moving finished flows out of the slot array and into the compact output buffers copies only
# each flow's kept rows. The NumPy form (``pk[done][mask]``, then a masked scatter) copies
# every flow's whole (T, 9) slice twice and builds (k, T) index arrays: ~8x slower, and
# ~0.3 us per packet of the whole extract step on typical traffic (flows much shorter than T).
@numba.njit(cache=True, nogil=True)
def _gather_rows(pk, slots, lengths, out, r):  # pragma: no cover - compiled
    """Copy rows ``pk[s, :len]`` of each slot ``s`` in ``slots`` into ``out[r:]``, stacked."""
    for j in range(slots.shape[0]):
        src = pk[slots[j]]
        for t in range(lengths[j]):
            out[r] = src[t]
            r += 1


# --------------------------------------------------------------------------- the assembler
class FlowAssembler:
    """Assemble flows from a stream of :class:`PacketBatch` (see the module docstring).

    ``max_packets`` is ``T``; timeouts are in seconds (``active_timeout=None``: never split a
    flow for its length). ``max_clock_jump`` (seconds, default ``idle_timeout``) is how far a
    timestamp may lie from the clock before the next packets must confirm it (see
    "Timestamps" in the module docstring). Call :meth:`add` with batches in capture order,
    then :meth:`finish`; :attr:`timestamp_stats` then counts the timestamps handled.
    """

    def __init__(
        self,
        max_packets: int = DEFAULT_MAX_PACKETS,
        idle_timeout: float = 120.0,
        active_timeout: float | None = None,
        max_clock_jump: float | None = None,
        *,
        sources: list[str] | None = None,
    ) -> None:
        # ``sources``: the name of each file index, for the warnings only.
        self._sources = sources
        # ConfigError is a ValueError that the CLI prints as one line; the option names are
        # those of `janus extract`, the only place users set these.
        if max_packets < 1:
            raise ConfigError(f"--max-packets must be >= 1, got {max_packets}")
        if not idle_timeout > 0:
            raise ConfigError(f"--idle-timeout must be > 0 seconds, got {idle_timeout}")
        if active_timeout is not None and not active_timeout > 0:
            raise ConfigError(f"--active-timeout must be > 0 seconds or None, got {active_timeout}")
        self.max_packets = int(max_packets)
        self.idle_timeout = float(idle_timeout)
        self.active_timeout = math.inf if active_timeout is None else float(active_timeout)
        if max_clock_jump is not None and not max_clock_jump > 0:
            raise ConfigError(f"max_clock_jump must be > 0 seconds or None, got {max_clock_jump}")
        self.max_clock_jump = self.idle_timeout if max_clock_jump is None else float(max_clock_jump)
        self._clock = -math.inf
        self._offset = 0.0  # seconds added to every timestamp since the clock stepped back
        self._tstats = np.zeros(len(_T_KINDS), np.int64)
        self._tfirst = np.full((len(_T_KINDS), 3), -1.0)
        self._pending: PacketBatch | None = None  # packets waiting for their lookahead
        self._seq = 0  # packets consumed so far (global first-packet order)
        self._finished = False
        # Slot state; a slot holds one active (or just-ended) flow.
        self._cap = 0
        self._st_i = np.zeros((0, _N_I), np.int64)
        self._st_f = np.zeros((0, _N_F), np.float64)
        self._pk = np.zeros((0, self.max_packets, N_CHANNELS), np.float32)
        self._slot_key = np.zeros((0, 5), np.uint64)
        self._slot_hash = np.zeros(0, np.uint64)
        self._inuse = np.zeros(0, bool)
        self._free = np.zeros(0, np.int64)
        self._n_free = 0
        reserved = _RESERVED_SLOT_BYTES // (self.max_packets * N_CHANNELS * 4)
        self._grow(min(_MAX_RESERVED_SLOTS, max(_MIN_SLOTS, reserved)))
        # Key table of flows that can still receive packets (see _probe): a power-of-2 size.
        self._tab = np.full(1, -1, np.int64)
        self._out: list[dict[str, np.ndarray]] = []
        # Kept rows of every finished flow, compact, in harvest order: rows 0.._n_rows-1 of
        # _rows. Grown in place (ndarray.resize -> realloc, which moves big blocks by
        # remapping pages): no per-chunk arrays to concatenate at the end, no second copy.
        self._rows = np.empty((_RESERVED_ROWS, N_CHANNELS), np.float32)
        self._n_rows = 0

    # ----------------------------------------------------------------- public API
    @property
    def n_active(self) -> int:
        """Flows currently held in memory (not yet moved to the output buffers)."""
        return int(self._inuse.sum())

    @property
    def timestamp_stats(self) -> dict:
        """What the timestamp guard did so far: packets whose timestamp was replaced by the
        clock's (``clamped_ahead``: unconfirmed jump forward, ``clamped_behind``: unconfirmed
        jump back), confirmed backward clock steps (``steps_back``) and the seconds they
        stepped back in all (``steps_back_s``); ``first`` gives, for each kind seen, the
        first packet's position in the stream (0-based), its own timestamp and file index."""
        out: dict = {k: int(v) for k, v in zip(_T_KINDS, self._tstats)}
        out["steps_back_s"] = round(self._offset, 6)
        out["max_clock_jump_s"] = self.max_clock_jump
        out["first"] = {k: {"packet": int(f[0]), "ts": float(f[1]), "file_index": int(f[2])}
                        for k, f, c in zip(_T_KINDS, self._tfirst, self._tstats) if c}
        return out

    def add(self, batch: PacketBatch) -> None:
        """Feed the next packets of the stream (in capture order).

        Up to :data:`CLOCK_LOOKAHEAD` packets at the batch's end may be held back until the
        next call (or :meth:`finish`): a packet that jumps the clock is judged by the
        packets after it.
        """
        if self._finished:
            raise RuntimeError("FlowAssembler.add() after finish()")
        if len(batch) == 0:
            return
        if self._pending is not None:
            batch = PacketBatch.concat([self._pending, batch])
            self._pending = None
        self._feed(batch, final=False)

    def _feed(self, batch: PacketBatch, final: bool) -> None:
        n = len(batch)
        keys, src_is_a, hashes = _keys_and_hashes(
            np.ascontiguousarray(batch.src_ip, np.uint64), np.ascontiguousarray(batch.dst_ip, np.uint64),
            batch.src_port, batch.dst_port, batch.proto, _hash_seed(0))
        # At most one new table entry per packet: keep the load factor at or under 1/2.
        self._ensure_table(self.n_active + n)
        alloc = np.empty(n, np.int64)
        n_alloc, i = 0, 0
        flags = batch.tcp_flags.astype(np.uint8, copy=False)
        while True:
            i, status, self._clock, self._offset, self._n_free, n_alloc = _assemble(
                i, keys, hashes, src_is_a, batch.ts.astype(np.float64, copy=False),
                batch.wire_len.astype(np.int64, copy=False), flags,
                batch.tcp_win.astype(np.float32, copy=False), batch.proto.astype(np.uint8, copy=False),
                batch.file_index.astype(np.int32, copy=False), self._seq,
                self._tab, self._slot_key, self._slot_hash, self._st_i, self._st_f, self._pk,
                self._free, self._n_free, alloc, n_alloc, self._clock, self._offset,
                self.max_packets, self.idle_timeout, self.active_timeout,
                self.max_clock_jump, CLOCK_LOOKAHEAD, CLOCK_CONFIRM, final, self._tstats, self._tfirst,
            )
            if status != _NO_SLOT:
                break
            self._grow(2 * self._cap)
        if status == _NEED_LOOKAHEAD:
            self._pending = batch.take(slice(i, None))
        self._seq += i
        self._inuse[alloc[:n_alloc]] = True
        self._expire(final=False)

    def finish(self) -> FlowResult:
        """End every remaining flow and return all flows, ordered by start time."""
        if not self._finished:
            if self._pending is not None:
                pending, self._pending = self._pending, None
                self._feed(pending, final=True)
            self._expire(final=True)
            self._finished = True
            self._warn_timestamps()
        return self._collect()

    @property
    def n_finished(self) -> int:
        """Finished flows held in the output buffers (handed out by :meth:`drain` or
        :meth:`finish`)."""
        return sum(len(c["lengths"]) for c in self._out)

    def drain(self) -> FlowResult:
        """Hand out the flows finished so far and forget them: what keeps a long stream's
        memory bounded (``janus detect`` scores each drained chunk, then drops it).

        The chunk is ordered by start time within itself; a later chunk (and :meth:`finish`,
        which then returns only the flows not drained yet) may hold flows that started
        earlier. Together the chunks hold exactly the flows, with exactly the values, that one
        :meth:`finish` without drains returns.
        """
        res = self._collect()
        res.rows = res.rows.copy()  # _rows is reused for the next flows
        self._out = []
        self._n_rows = 0
        return res

    def emit_bound(self) -> tuple[float, int]:
        """``(start_time, seq)``: every flow not handed out yet that is still open, or still to
        start, sorts after this key in the output order (``start_time``, then ``seq``); a
        finished flow whose key is smaller can be written out now (the extract step's writer).

        A flow still to start begins with a packet not yet consumed (stream position at least
        the packets consumed so far) whose time passes the timestamp guard: at most
        ``max_clock_jump`` before the clock, else it is clamped to the clock. So it reports a
        start no earlier than ``(clock - max_clock_jump) - offset``, computed with the same
        float operations as the kernel (rounding is monotone). The one exception is a
        confirmed backward clock step (``steps_back``), after which flows report the
        capture's earlier times: the writer detects a flow arriving below what it already
        wrote and the extraction is redone without early writes.
        """
        if self._clock == -math.inf:
            return (-math.inf, 0)
        bound = ((self._clock - self.max_clock_jump) - self._offset, self._seq)
        open_slots = np.flatnonzero(self._inuse & (self._st_i[:, _I_DONE] == 0))
        if open_slots.size:
            start = self._st_f[open_slots, _F_RAW_START]
            seq = self._st_i[open_slots, _I_SEQ]
            j = np.lexsort((seq, start))[0]
            if (start[j], seq[j]) < bound:
                bound = (float(start[j]), int(seq[j]))
        return bound

    # ----------------------------------------------------------------- internals
    def _warn_timestamps(self) -> None:
        st = self.timestamp_stats
        what = {
            "clamped_ahead": f"packet(s) dated more than {self.max_clock_jump:g} s after the capture"
                             " clock, which the next packets do not confirm, were given the clock's time",
            "clamped_behind": f"packet(s) dated more than {self.max_clock_jump:g} s before the capture"
                              " clock, which the next packets do not confirm, were given the clock's time",
            "steps_back": f"time(s) the capture's clock stepped back by more than {self.max_clock_jump:g} s"
                          f" ({st['steps_back_s']:g} s in all); flows carry on across the step",
        }
        for kind, first in st["first"].items():
            f = first["file_index"]
            where = self._sources[f] if self._sources and 0 <= f < len(self._sources) else f"file {f}"
            log.warning("%d %s (the first: packet %d of the stream, in %s, dated %s)",
                        st[kind], what[kind], first["packet"], where, _date(first["ts"]))

    def _grow(self, cap: int) -> None:
        old = self._cap
        self._st_i = np.concatenate([self._st_i, np.zeros((cap - old, _N_I), np.int64)])
        self._st_f = np.concatenate([self._st_f, np.zeros((cap - old, _N_F), np.float64)])
        pk = np.zeros((cap, self.max_packets, N_CHANNELS), np.float32)
        pk[:old] = self._pk
        self._pk = pk
        self._slot_key = np.concatenate([self._slot_key, np.zeros((cap - old, 5), np.uint64)])
        self._slot_hash = np.concatenate([self._slot_hash, np.zeros(cap - old, np.uint64)])
        self._inuse = np.concatenate([self._inuse, np.zeros(cap - old, bool)])
        # Free stack: pop from the end, so lower slot numbers are handed out first.
        free = np.empty(cap, np.int64)
        free[: self._n_free] = self._free[: self._n_free]
        free[self._n_free : self._n_free + cap - old] = np.arange(cap - 1, old - 1, -1)
        self._n_free += cap - old
        self._free = free
        self._cap = cap

    def _ensure_table(self, entries: int) -> None:
        """Grow the key table (rebuilding it) so that ``entries`` fill at most half of it."""
        if 2 * entries > self._tab.shape[0]:
            self._tab = np.empty(1 << (2 * entries - 1).bit_length(), np.int64)
            _rebuild_table(self._tab, np.flatnonzero(self._inuse), self._slot_hash)

    def _expire(self, final: bool) -> None:
        """Move finished flows to the output buffers and free their slots.

        Finished = ended inside a batch, or idle past ``idle_timeout`` against the clock, or
        (``final``) anything left at end of input.
        """
        st_i, st_f = self._st_i, self._st_f
        idle = self._inuse & (st_i[:, _I_DONE] == 0) & (self._clock - st_f[:, _F_LAST] > self.idle_timeout)
        reason = st_i[:, _I_REASON]
        reason[idle & (reason < 0)] = REASON_IDLE
        st_i[idle, _I_DONE] = 1
        if final:
            rest = self._inuse & (st_i[:, _I_DONE] == 0)
            reason[rest & (reason < 0)] = REASON_EOF
            st_i[rest, _I_DONE] = 1
        done = np.flatnonzero(self._inuse & (st_i[:, _I_DONE] != 0))
        if done.size == 0:
            return
        self._harvest(done)
        # Drop table entries whose flow just left (their key may reappear as a new flow).
        self._inuse[done] = False
        _rebuild_table(self._tab, np.flatnonzero(self._inuse), self._slot_hash)
        k = done.shape[0]
        self._free[self._n_free : self._n_free + k] = done[::-1]
        self._n_free += k

    def _harvest(self, done: np.ndarray) -> None:
        st_i, st_f = self._st_i, self._st_f
        lengths = st_i[done, _I_LEN].astype(np.int32)
        init_a = st_i[done, _I_INIT_A] != 0
        key = self._slot_key[done]
        a, b = key[:, 0:2], key[:, 2:4]
        a_port = ((key[:, 4] >> np.uint64(24)) & np.uint64(0xFFFF)).astype(np.int32)
        b_port = ((key[:, 4] >> np.uint64(8)) & np.uint64(0xFFFF)).astype(np.int32)
        need = self._n_rows + int(lengths.sum())
        if need > self._rows.shape[0]:
            # Nothing else refers to _rows before finish(), and add() is refused after it.
            self._rows.resize((max(need, 2 * self._rows.shape[0]), N_CHANNELS), refcheck=False)
        _gather_rows(self._pk, done, lengths, self._rows, self._n_rows)
        self._out.append({
            "row_start": np.cumsum(lengths, dtype=np.int64) - lengths + self._n_rows,
            "lengths": lengths,
            "src_ip": np.where(init_a[:, None], a, b),
            "dst_ip": np.where(init_a[:, None], b, a),
            "src_port": np.where(init_a, a_port, b_port),
            "dst_port": np.where(init_a, b_port, a_port),
            "proto": (key[:, 4] & np.uint64(0xFF)).astype(np.int16),
            "start_time": st_f[done, _F_RAW_START].copy(),
            "end_time": st_f[done, _F_RAW_END].copy(),
            "n_packets": st_i[done, _I_NPK].copy(),
            "n_bytes": st_i[done, _I_NBYTES].copy(),
            "end_reason": st_i[done, _I_REASON].astype(np.int8),
            "file_index": st_i[done, _I_FILE].astype(np.int32),
            "seq": st_i[done, _I_SEQ].copy(),
        })
        self._n_rows = need

    def _collect(self) -> FlowResult:
        chunks = self._out
        if chunks:
            cat = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
        else:
            cat = {"row_start": np.zeros(0, np.int64), "lengths": np.zeros(0, np.int32),
                   "src_ip": np.zeros((0, 2), np.uint64), "dst_ip": np.zeros((0, 2), np.uint64),
                   "src_port": np.zeros(0, np.int32), "dst_port": np.zeros(0, np.int32),
                   "proto": np.zeros(0, np.int16), "start_time": np.zeros(0), "end_time": np.zeros(0),
                   "n_packets": np.zeros(0, np.int64), "n_bytes": np.zeros(0, np.int64),
                   "end_reason": np.zeros(0, np.int8), "file_index": np.zeros(0, np.int32),
                   "seq": np.zeros(0, np.int64)}
        order = np.lexsort((cat["seq"], cat["start_time"]))
        # The rows stay in harvest order (no padding, no reordering copy): each output flow
        # points at its own rows through row_start.
        return FlowResult(
            rows=self._rows[: self._n_rows], row_start=cat["row_start"][order], max_packets=self.max_packets,
            lengths=cat["lengths"][order].astype(np.int32),
            **{k: cat[k][order] for k in ("src_ip", "dst_ip", "src_port", "dst_port", "proto",
                                          "start_time", "end_time", "n_packets", "n_bytes",
                                          "end_reason", "file_index", "seq")},
        )


def _date(ts: float) -> str:
    """``ts`` (Unix seconds) as UTC ISO text, or the number where no calendar date fits."""
    try:
        return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError):
        return f"{ts:g} s"


def assemble_flows(
    batches, max_packets: int = DEFAULT_MAX_PACKETS, idle_timeout: float = 120.0,
    active_timeout: float | None = None, max_clock_jump: float | None = None,
) -> FlowResult:
    """Convenience: run a :class:`FlowAssembler` over an iterable of batches."""
    asm = FlowAssembler(max_packets, idle_timeout, active_timeout, max_clock_jump)
    for batch in batches:
        asm.add(batch)
    return asm.finish()


def load_kernels() -> FlowResult:
    """Load the assembler's compiled code now instead of on the first batch.

    Part of :func:`janus.capture.extract.load_runtime`: assembles one two-packet TCP flow (SYN,
    SYN/ACK) through the same calls as a real run, so every kernel is loaded with the
    argument types the extraction passes. Returns that one-flow result.
    """
    ip = np.array([[0, 0x0000FFFF0A000001], [0, 0x0000FFFF0A000002]], np.uint64)
    batch = PacketBatch(
        ts=np.array([0.0, 0.001]), wire_len=np.array([60, 60], np.uint32),
        src_ip=ip, dst_ip=ip[::-1].copy(),
        src_port=np.array([40000, 80], np.uint16), dst_port=np.array([80, 40000], np.uint16),
        proto=np.array([6, 6], np.uint8), tcp_flags=np.array([TCP_SYN, TCP_SYN | TCP_ACK], np.uint8),
        tcp_win=np.array([1024, 1024], np.uint16), file_index=np.zeros(2, np.int32),
    )
    res = assemble_flows([batch], max_packets=2)
    res.padded_block(0, len(res))
    return res
