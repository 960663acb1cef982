"""Read pcap and pcapng capture files into :class:`~janus.capture.batch.PacketBatch`es.

Memory is O(chunk), not O(file): :func:`iter_capture` reads a window of the file (at most
``chunk_bytes``, and at most 4 MiB so that it stays in the CPU cache), walks the records in
it with a small compiled loop, decodes all their frames at once with
:func:`janus.capture.decode.decode_frames`, and joins the decoded windows into batches covering
about ``chunk_bytes`` of file each. A record split across a window boundary is carried over
to the next window, so the output (rows, order, values) does not depend on ``chunk_bytes``.
Every record that is not in a batch is counted in the caller's
:class:`~janus.capture.batch.SkipCounter` by reason.

Formats:

* pcap -- magic ``a1b2c3d4`` (microsecond) or ``a1b23c4d`` (nanosecond), in either byte
  order; the link type comes from the file header.
* pcapng -- any number of sections (each Section Header Block sets its own byte order and
  starts a fresh interface list), any number of interfaces (Interface Description Block:
  link type, snaplen, ``if_tsresol`` as a power of 10 or of 2, default microseconds,
  ``if_tsoffset`` in seconds). Packets come from Enhanced Packet Blocks, Simple Packet
  Blocks and the obsolete Packet Block (type 2). A Simple Packet Block has neither an
  interface nor a timestamp: it belongs to the section's first interface and is given the
  timestamp of the record before it in the file (0.0 if it is the first record). Known
  non-packet blocks (name resolution, interface statistics, decryption secrets, journal
  export, custom) are ignored; blocks of unknown type are counted as
  ``pcapng_unknown_block``. Interfaces live in arrays and the packets of a window are decoded
  together however many IDBs and SHBs lie between them, so the cost is linear in the blocks
  (an IDB before every packet costs about what one IDB does).

Damage is handled without losing good records: a truncated final record is dropped with a
warning and its bytes counted in ``skips["truncated_tail_bytes"]``. A record or block whose
length is impossible in the middle of a file (pcap: more captured bytes than the maximum;
pcapng: a bad length, a trailing length that differs from the leading one, a packet longer
than its block, a damaged section or interface header) is *damage*. Every record before it
has already been delivered. With ``strict=True`` the reader then raises
:class:`~janus.errors.CaptureError` naming the byte offset. By default it resynchronises: it
scans forward for the first offset where the damage demonstrably ends, warns with the offset
of the damage, the number of bytes skipped and where reading resumed, counts the skipped bytes
in ``skips["damaged_bytes_skipped"]`` and the event in ``skips["damaged_regions"]``, and reads
on. "Demonstrably" means a chain of records that each pass every check a real one passes:

* pcap -- :data:`RESYNC_CHAIN` consecutive record headers, each with 1 <= caplen <= the
  maximum, caplen <= orig_len <= :data:`MAX_BLOCK_BYTES`, a sub-second field below one second
  and whole seconds within :data:`RESYNC_MAX_GAP_S` of the last good record (the chain may
  instead end exactly at the end of the file). Any byte offset is tried.
* pcapng -- two consecutive blocks (or one that ends the file) of a known type, each with a
  valid length, a matching trailing length and, for packet blocks, a packet that fits the
  block and an interface the section has. Every byte offset is tried (inserted garbage need
  not be a multiple of 4 bytes long).

If no such chain follows, the rest of the file is skipped, with the same warning. A packet
block naming an interface its section does not have (or a Simple Packet Block in a section
without one) is dropped alone and counted as ``pcapng_bad_interface`` (strict: an error). A final record that runs past the end
of the file but is followed, inside its claimed length, by such a chain was a corrupt length,
not a cut: it is damage too.
"""

from __future__ import annotations

import contextlib
import io
import logging
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
from numba import njit

from janus.capture.batch import PacketBatch, SkipCounter
from janus.capture.decode import count_skips, decode_frames
from janus.errors import CaptureError

log = logging.getLogger(__name__)

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D
PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_BYTE_ORDER_MAGIC = 0x1A2B3C4D
PCAPNG_IDB = 1
#: Largest packet a record may claim, as in Wireshark (``WTAP_MAX_PACKET_SIZE_STANDARD``).
MAX_RECORD_BYTES = 262_144
#: Largest pcapng block accepted (Wireshark's limit too); anything bigger is corruption.
MAX_BLOCK_BYTES = 16 << 20
#: Bytes walked and decoded at a time. Decoding re-reads header bytes several times, so a
#: window that stays in the CPU cache is ~1.5x faster than one 32 MiB pass; the decoded
#: windows are joined into batches of about ``chunk_bytes`` of file.
READ_WINDOW = 4 << 20
#: Skip-counter keys that count something other than packets: bytes of a cut final record,
#: pcapng blocks of unknown type, bytes and regions skipped over damage (below). Every other
#: key counts skipped packets.
TRUNCATED_TAIL_BYTES = "truncated_tail_bytes"
PCAPNG_UNKNOWN_BLOCK = "pcapng_unknown_block"
#: Bytes skipped over damage while resynchronising, and how many damaged regions there were.
DAMAGED_BYTES = "damaged_bytes_skipped"
DAMAGED_REGIONS = "damaged_regions"
#: Packets of a pcapng packet block naming an interface its section does not have.
PCAPNG_BAD_INTERFACE = "pcapng_bad_interface"
NON_PACKET_SKIP_KEYS: frozenset[str] = frozenset(
    {TRUNCATED_TAIL_BYTES, PCAPNG_UNKNOWN_BLOCK, DAMAGED_BYTES, DAMAGED_REGIONS})
#: pcap record headers in a row that must pass every check before reading resumes there.
RESYNC_CHAIN = 3
#: pcapng blocks in a row (each also checked by its trailing length) before reading resumes.
RESYNC_CHAIN_PCAPNG = 2
#: Largest step in whole seconds between the last good pcap record and a resync candidate
#: (and between the records of the candidate chain).
RESYNC_MAX_GAP_S = 7 * 86400
#: Known pcapng block types that hold no packet: NRB, ISB, journal, DSB, custom x2.
PCAPNG_NON_PACKET_BLOCKS = (4, 5, 9, 10, 0x00000BAD, 0x40000BAD)

# Walker stop codes.
_NEED_MORE = 0  # the next record is not wholly in the buffer (or the buffer is used up)
_ERR_LENGTH = 1  # a record / block length is impossible
_ERR_TRAILER = 2  # a pcapng block's trailing length differs from its leading length
_STOP_SHB = 3  # a pcapng Section Header Block: handled in Python
_STOP_IDB = 4  # a pcapng Interface Description Block: handled in Python


# Why numba: walking length-prefixed records is a sequential dependency (record k+1 starts
# where record k ends), so it cannot be vectorised; a Python loop would cost ~1 us per
# record. The walk is a few integer reads per record, compiled here to ~10 ns per record.
# Everything after the walk (header decoding) is vectorised NumPy in janus.capture.decode.


@njit(cache=True)
def _u32(buf, p, big):
    if big:
        return ((np.int64(buf[p]) << 24) | (np.int64(buf[p + 1]) << 16)
                | (np.int64(buf[p + 2]) << 8) | np.int64(buf[p + 3]))
    return ((np.int64(buf[p + 3]) << 24) | (np.int64(buf[p + 2]) << 16)
            | (np.int64(buf[p + 1]) << 8) | np.int64(buf[p]))


@njit(cache=True)
def _u16(buf, p, big):
    if big:
        return (np.int64(buf[p]) << 8) | np.int64(buf[p + 1])
    return (np.int64(buf[p + 1]) << 8) | np.int64(buf[p])


@njit(cache=True)
def _walk_pcap(buf, big, limit):
    """Walk pcap records from ``buf[0]`` until one is not wholly in ``buf``.

    Returns ``(count, pos, status, need, data_off, caplen, orig_len, ts_sec, ts_frac)``:
    records ``[:count]`` are complete; ``pos`` is where the walk stopped; ``need`` is the
    size of the record there (header + data) when known. Two passes (count, then fill
    exactly-sized arrays) are ~4x faster than one pass into growing arrays.
    """
    n = buf.shape[0]
    count = 0
    pos = 0
    status = _NEED_MORE
    need = 16
    while True:
        if pos + 16 > n:
            need = 16
            break
        incl = _u32(buf, pos + 8, big)
        if incl > limit:
            status = _ERR_LENGTH
            need = incl
            break
        if pos + 16 + incl > n:
            need = 16 + incl
            break
        count += 1
        pos += 16 + incl
    data_off = np.empty(count, np.int64)
    caplen = np.empty(count, np.int64)
    orig = np.empty(count, np.int64)
    sec = np.empty(count, np.int64)
    frac = np.empty(count, np.int64)
    p = 0
    for i in range(count):
        incl = _u32(buf, p + 8, big)
        sec[i] = _u32(buf, p, big)
        frac[i] = _u32(buf, p + 4, big)
        caplen[i] = incl
        orig[i] = _u32(buf, p + 12, big)
        data_off[i] = p + 16
        p += 16 + incl
    return count, pos, status, need, data_off, caplen, orig, sec, frac


@njit(cache=True)
def _pcapng_packet(buf, pos, btype, blen, big, snaplen0):
    """(data offset, caplen, orig_len, interface, raw timestamp) of a packet block;
    caplen -1 if the block is too short for what it claims."""
    if btype == 3:  # Simple Packet Block: no interface, no timestamp
        olen = _u32(buf, pos + 8, big)
        clen = min(olen, blen - 16)
        if snaplen0 > 0:
            clen = min(clen, snaplen0)
        if blen < 16:
            clen = -1
        return pos + 12, clen, olen, np.int64(-1), np.uint64(0)
    if blen < 32:
        return pos + 28, np.int64(-1), np.int64(0), np.int64(0), np.uint64(0)
    if btype == 6:
        itf = _u32(buf, pos + 8, big)
    else:  # obsolete Packet Block: 16-bit interface id, 16-bit drop count
        itf = _u16(buf, pos + 8, big)
    t = (np.uint64(_u32(buf, pos + 12, big)) << np.uint64(32)) | np.uint64(
        _u32(buf, pos + 16, big))
    clen = _u32(buf, pos + 20, big)
    olen = _u32(buf, pos + 24, big)
    if clen > blen - 32:
        clen = -1
    return pos + 28, clen, olen, itf, t


@njit(cache=True)
def _walk_pcapng(buf, start, big, snaplen0, max_block):
    """Walk pcapng blocks of one section from ``start`` until a SHB/IDB or the buffer's end.

    Returns ``(count, pos, status, need, unknown, data_off, caplen, orig_len, iface,
    ts_raw)``. ``iface`` is the section-local interface id, -1 for a Simple Packet Block
    (interface 0, no timestamp); ``ts_raw`` is the 64-bit timestamp in interface units.
    ``unknown`` counts blocks of unknown type. On an error, ``pos`` is the block's offset.
    Two passes, as in :func:`_walk_pcap`: validate and count, then fill.
    """
    n = buf.shape[0]
    count = 0
    unknown = 0
    pos = start
    status = _NEED_MORE
    need = 12
    while True:
        if pos + 12 > n:
            need = 12
            break
        btype = _u32(buf, pos, big)
        if btype == 0x0A0D0D0A:
            status = _STOP_SHB
            break
        blen = _u32(buf, pos + 4, big)
        need = blen
        if blen < 12 or blen % 4 != 0 or blen > max_block:
            status = _ERR_LENGTH
            break
        if pos + blen > n:
            break
        if _u32(buf, pos + blen - 4, big) != blen:
            status = _ERR_TRAILER
            break
        if btype == 1:
            status = _STOP_IDB
            break
        if btype == 6 or btype == 2 or btype == 3:
            if _pcapng_packet(buf, pos, btype, blen, big, snaplen0)[1] < 0:
                status = _ERR_LENGTH
                break
            count += 1
        elif not (btype == 4 or btype == 5 or btype == 9 or btype == 10
                  or btype == 0x00000BAD or btype == 0x40000BAD):
            unknown += 1
        pos += blen
    data_off = np.empty(count, np.int64)
    caplen = np.empty(count, np.int64)
    orig = np.empty(count, np.int64)
    iface = np.empty(count, np.int64)
    ts = np.empty(count, np.uint64)
    p = start
    i = 0
    while i < count:
        btype = _u32(buf, p, big)
        blen = _u32(buf, p + 4, big)
        if btype == 6 or btype == 2 or btype == 3:
            doff, clen, olen, itf, t = _pcapng_packet(buf, p, btype, blen, big, snaplen0)
            data_off[i] = doff
            caplen[i] = clen
            orig[i] = olen
            iface[i] = itf
            ts[i] = t
            i += 1
        p += blen
    return count, pos, status, need, unknown, data_off, caplen, orig, iface, ts


# Resynchronisation scans (run only after damage). Each returns ``(q, found)``: ``found`` 1:
# a valid chain starts at ``q``; 0: no candidate before ``q`` and ``q`` needs bytes past the
# buffer's end to be judged (at end of file: ``q`` is the buffer's end, nothing was found).
@njit(cache=True)
def _pcap_header_ok(buf, q, big, limit, units, sec_ref, check_ts):
    """caplen of a plausible pcap record header at ``buf[q]``, -1 if implausible."""
    incl = _u32(buf, q + 8, big)
    orig = _u32(buf, q + 12, big)
    if incl < 1 or incl > limit or orig < incl or orig > MAX_BLOCK_BYTES:
        return np.int64(-1)
    if _u32(buf, q + 4, big) >= units:
        return np.int64(-1)
    if check_ts and abs(_u32(buf, q, big) - sec_ref) > RESYNC_MAX_GAP_S:
        return np.int64(-1)
    return incl


@njit(cache=True)
def _scan_pcap(buf, start, big, limit, units, sec_ref, check_ts, eof, chain):
    n = buf.shape[0]
    q = start
    while q + 16 <= n:
        incl = _pcap_header_ok(buf, q, big, limit, units, sec_ref, check_ts)
        if incl >= 0:
            p = q
            k = 0
            ok = True
            sec = sec_ref
            ts_ok = check_ts
            while k < chain:
                if p == n and eof and k > 0:
                    break  # the chain ends exactly at the end of the file
                if p + 16 > n:
                    if not eof:
                        return q, 0
                    ok = False
                    break
                c = _pcap_header_ok(buf, p, big, limit, units, sec, ts_ok)
                if c < 0:
                    ok = False
                    break
                if p + 16 + c > n:
                    if not eof:
                        return q, 0
                    ok = False
                    break
                sec = _u32(buf, p, big)
                ts_ok = True
                p += 16 + c
                k += 1
            if ok:
                return q, 1
        q += 1
    if eof:
        return n, 0
    return q, 0


@njit(cache=True)
def _pcapng_block_ok(buf, q, big, n_if, max_block):
    """Length of a plausible pcapng block at ``buf[q]``; 0 if it does not fit in ``buf``,
    -1 if implausible. Also returns the byte order and interface count after it."""
    n = buf.shape[0]
    if q + 12 > n:
        return np.int64(0), big, n_if
    btype = _u32(buf, q, big)
    if btype == 0x0A0D0D0A:  # a Section Header Block sets its own byte order
        m = _u32(buf, q + 8, False)
        if m == 0x1A2B3C4D:
            big = False
        elif m == 0x4D3C2B1A:
            big = True
        else:
            return np.int64(-1), big, n_if
        n_if = 0
        min_len = 28
    elif btype == 6 or btype == 2:
        min_len = 32
    elif btype == 1:
        min_len = 20
    elif btype == 3:
        min_len = 16
    elif (btype == 4 or btype == 5 or btype == 9 or btype == 10
          or btype == 0x00000BAD or btype == 0x40000BAD):
        min_len = 12
    else:
        return np.int64(-1), big, n_if
    blen = _u32(buf, q + 4, big)
    if blen < min_len or blen % 4 != 0 or blen > max_block:
        return np.int64(-1), big, n_if
    if q + blen > n:
        return np.int64(0), big, n_if
    if _u32(buf, q + blen - 4, big) != blen:
        return np.int64(-1), big, n_if
    if btype == 6 or btype == 2:
        itf = _u32(buf, q + 8, big) if btype == 6 else _u16(buf, q + 8, big)
        if itf >= n_if or _u32(buf, q + 20, big) > blen - 32:
            return np.int64(-1), big, n_if
    elif btype == 1:
        n_if += 1
    return blen, big, n_if


@njit(cache=True)
def _scan_pcapng(buf, start, big, n_if, eof, chain, max_block):
    n = buf.shape[0]
    q = start
    while q + 12 <= n:
        p = q
        k = 0
        ok = True
        b = big
        m = n_if
        while k < chain:
            if p == n and eof and k > 0:
                break
            blen, b, m = _pcapng_block_ok(buf, p, b, m, max_block)
            if blen < 0:
                ok = False
                break
            if blen == 0:
                if not eof:
                    return q, 0
                ok = False
                break
            p += blen
            k += 1
        if ok:
            return q, 1
        q += 1
    if eof:
        return n, 0
    return q, 0


def load_kernels() -> None:
    """Load the record walkers' compiled code now instead of on the first record.

    Part of :func:`janus.capture.extract.load_runtime`; called with the argument types of the
    readers below, so the real calls find the code already loaded.
    """
    empty = np.zeros(0, np.uint8)
    _walk_pcap(empty, False, MAX_RECORD_BYTES)
    _walk_pcapng(empty, 0, False, 0, MAX_BLOCK_BYTES)
    _scan_pcap(empty, 0, False, MAX_RECORD_BYTES, 10**6, 0, False, True, RESYNC_CHAIN)
    _scan_pcapng(empty, 0, False, 0, True, RESYNC_CHAIN_PCAPNG, MAX_BLOCK_BYTES)


# --------------------------------------------------------------------------- format detection
def _hint(head: bytes) -> str:
    if head[:2] == b"\x1f\x8b":
        return " It looks gzip-compressed: decompress it first (gunzip)."
    if head[:4] == b"PK\x03\x04":
        return " It looks like a zip archive: extract the capture from it first (unzip)."
    if head[:3] == b"BZh":
        return " It looks bzip2-compressed: decompress it first (bunzip2)."
    if head[:6] == b"\xfd7zXZ\x00":
        return " It looks xz-compressed: decompress it first (unxz)."
    if head[:4] == b"\x28\xb5\x2f\xfd":
        return " It looks zstd-compressed: decompress it first (unzstd)."
    if head[:4] in (b"\x34\xcd\xb2\xa1", b"\xa1\xb2\xcd\x34"):
        return (" It is a 'modified' (Kuznetzov) pcap, which is not supported: convert it with"
                " editcap -F pcap.")
    if head[:4] == b"\x0a\x0d\x0d\x0a":
        return " It starts like pcapng but its byte-order magic is wrong: the file is damaged."
    if head and all(32 <= c < 127 or c in (9, 10, 13) for c in head):
        return (" It looks like text (a CSV, a log or an HTML error page?), not a capture.")
    return ""


def _read_head(path: Path, n: int) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(n)
    except FileNotFoundError:
        raise CaptureError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CaptureError(f"{path}: is a folder, not a capture file") from None
    except OSError as exc:
        raise CaptureError(f"{path}: cannot read ({exc.strerror or exc})") from None


def detect_format(path: str | Path, head: bytes | None = None) -> str:
    """``"pcap"`` or ``"pcapng"`` from the file's magic number (``head``: its first 16 bytes,
    already read, for a stream that cannot be opened twice; ``path`` then only names it).

    Raises:
        CaptureError: the file is missing, empty, or not a pcap/pcapng file (the message
            names the file, shows its first bytes in hex and hints at what it might be).
    """
    path = Path(path)
    if head is None:
        head = _read_head(path, 16)
    if not head:
        raise CaptureError(f"{path}: the file is empty (0 bytes), not a capture")
    if len(head) >= 4:
        magic_le, magic_be = struct.unpack("<I", head[:4])[0], struct.unpack(">I", head[:4])[0]
        if PCAP_MAGIC_US in (magic_le, magic_be) or PCAP_MAGIC_NS in (magic_le, magic_be):
            return "pcap"
        if magic_le == PCAPNG_SHB and len(head) >= 12 and head[8:12] in (
            b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d"
        ):
            return "pcapng"
    raise CaptureError(
        f"{path}: not a pcap or pcapng capture (first bytes: {head.hex(' ')})." + _hint(head)
    )


# --------------------------------------------------------------------------- chunked reading
class _Chunks:
    """A reusable chunk buffer over an open file; ``base`` is the file offset of ``buf[0]``.

    Plain reads into one reused buffer: a memory-mapped window (no copy) was measured
    ~1.4x slower here, its page faults cost more than the copy saves.
    """

    def __init__(self, fh: BinaryIO, chunk_bytes: int, base: int) -> None:
        self.fh = fh
        self.buf = np.empty(max(int(chunk_bytes), 64), np.uint8)
        self.filled = 0
        self.base = base
        self.eof = False

    def view(self) -> np.ndarray:
        return self.buf[: self.filled]

    def advance(self, consumed: int, need: int = 0) -> None:
        """Drop ``buf[:consumed]``, then read until the buffer is full or the file ends.

        The buffer grows if fewer than ``need`` bytes would fit after the kept tail.
        """
        keep = self.filled - consumed
        if keep:
            self.buf[:keep] = self.buf[consumed: self.filled]
        self.base += consumed
        self.filled = keep
        if need > self.buf.shape[0]:
            grown = np.empty(max(need, 2 * self.buf.shape[0]), np.uint8)
            grown[:keep] = self.buf[:keep]
            self.buf = grown
        view = memoryview(self.buf)
        while self.filled < self.buf.shape[0]:
            got = self.fh.readinto(view[self.filled:])
            if not got:
                self.eof = True
                break
            self.filled += got


def _open(path: Path) -> BinaryIO:
    try:
        return open(path, "rb")
    except OSError as exc:
        raise CaptureError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _truncated_tail(path: Path, offset: int, dropped: int, skips: SkipCounter) -> None:
    log.warning("%s: the last record (at byte %d) is truncated; dropped its %d bytes",
                path, offset, dropped)
    skips[TRUNCATED_TAIL_BYTES] += dropped


def _batch(buf, data_off, caplen, orig, ts, linktype, file_index, skips) -> PacketBatch | None:
    """Decode one run of records; count the skipped ones; the kept ones as a batch."""
    dec = decode_frames(buf, data_off, caplen, linktype)
    count_skips(dec.reason, linktype, skips)
    keep = dec.reason == 0
    if not keep.any():
        return None
    all_kept = bool(keep.all())

    def pick(a: np.ndarray) -> np.ndarray:
        return a if all_kept else a[keep]

    n = int(keep.sum())
    return PacketBatch(
        ts=pick(ts),
        wire_len=pick(orig).astype(np.uint32),
        src_ip=pick(dec.src_ip),
        dst_ip=pick(dec.dst_ip),
        src_port=pick(dec.src_port),
        dst_port=pick(dec.dst_port),
        proto=pick(dec.proto),
        tcp_flags=pick(dec.tcp_flags),
        tcp_win=pick(dec.tcp_win),
        file_index=np.full(n, file_index, np.int32),
    )


def _damaged(path: Path, what: str, strict: bool) -> None:
    """Raise for damage in strict mode (``what`` says where and how it is damaged)."""
    if strict:
        raise CaptureError(f"{path}: {what}: the file is corrupt from there on (without --strict"
                           " the reader skips to the next valid record)")


def _resynced(path: Path, what: str, at: int, resume: int, eof_reached: bool,
              skips: SkipCounter) -> None:
    """Warn about and count one damaged region, ``[at, resume)`` in file offsets."""
    skips[DAMAGED_BYTES] += resume - at
    skips[DAMAGED_REGIONS] += 1
    if eof_reached:
        log.warning("%s: %s; no valid record follows: skipped the remaining %d bytes (bytes %d-%d)",
                    path, what, resume - at, at, resume)
    else:
        log.warning("%s: %s; skipped %d bytes of damaged data (bytes %d-%d), reading resumes at"
                    " the valid record at byte %d", path, what, resume - at, at, resume, resume)


def _resync(chunks: _Chunks, pos: int, scan, step: int) -> tuple[int, bool]:
    """Scan from buffer offset ``pos + step`` with ``scan(buf, start, eof) -> (q, found)``,
    reading on as needed. Returns the file offset where reading resumes and whether the end
    of the file was reached without finding a valid record. The chunk buffer then starts at
    the resume offset."""
    start = pos + step
    while True:
        q, found = scan(chunks.view(), start, chunks.eof)
        if found:
            chunks.advance(q)
            return chunks.base, False
        if chunks.eof:
            chunks.advance(chunks.filled)
            return chunks.base, True
        # The candidate at q needs more bytes than the buffer holds after it: drop what lies
        # before it; if nothing does, grow the buffer (a chain is at most a few max lengths).
        keep_from = min(q, chunks.filled)
        start = q - keep_from
        chunks.advance(keep_from, 0 if keep_from else 2 * chunks.buf.shape[0])


def _iter_pcap(path: Path, fh: BinaryIO, file_index: int, skips: SkipCounter,
               chunk_bytes: int, strict: bool) -> Iterator[tuple[PacketBatch | None, int]]:
    """(batch of one window or None, file offset the walk reached) pairs of a pcap file."""
    header = fh.read(24)
    if len(header) < 24:
        raise CaptureError(f"{path}: pcap file header is truncated ({len(header)} of 24 bytes)")
    big = struct.unpack(">I", header[:4])[0] in (PCAP_MAGIC_US, PCAP_MAGIC_NS)
    order = ">" if big else "<"
    magic, _vmaj, _vmin, _zone, _sigfigs, snaplen, linktype = struct.unpack(
        order + "IHHiIII", header)
    frac_units = 10**9 if magic == PCAP_MAGIC_NS else 10**6
    # The upper bits of the link-type field hold FCS information (pcap-linktype(7)).
    linktype &= 0xFFFF
    limit = max(MAX_RECORD_BYTES, snaplen if snaplen <= MAX_BLOCK_BYTES else 0)
    chunks = _Chunks(fh, min(chunk_bytes, READ_WINDOW), base=24)
    chunks.advance(0)
    last_sec = -1  # whole seconds of the last good record (-1: none yet)

    def scan(buf, start, eof):
        return _scan_pcap(buf, start, big, limit, frac_units, max(last_sec, 0), last_sec >= 0,
                          eof, RESYNC_CHAIN)

    while True:
        buf = chunks.view()
        count, pos, status, need, data_off, caplen, orig, sec, frac = _walk_pcap(
            buf, big, limit)
        if count:
            ts = sec.astype(np.float64) + frac / float(frac_units)
            batch = _batch(buf, data_off, caplen, orig, ts, linktype, file_index, skips)
            last_sec = int(sec[-1])
            yield batch, chunks.base + pos
        at = chunks.base + pos
        what = None
        if status == _ERR_LENGTH:
            what = (f"record at byte {at} claims {need} captured bytes, more than the maximum"
                    f" of {limit}")
        elif chunks.eof:
            left = chunks.filled - pos
            if not left:
                return
            incl = None
            if left >= 16:
                incl = struct.unpack(order + "I", bytes(buf[pos + 8: pos + 12]))[0]
            if incl is not None and 0 < snaplen < incl:
                what = (f"record at byte {at} claims {incl} captured bytes, more than the"
                        f" snaplen {snaplen}, and runs past the end of the file")
            elif strict or scan(buf, pos + 1, True)[1] == 0:
                _truncated_tail(path, at, left, skips)
                return
            else:  # a valid record lies inside the "cut" record: its length was corrupt
                what = (f"record at byte {at} claims {incl} captured bytes, running past the"
                        " end of the file over valid records")
        if what is None:
            chunks.advance(pos, need)
            continue
        _damaged(path, what, strict)
        resume, eof_reached = _resync(chunks, pos, scan, 1)
        _resynced(path, what, at, resume, eof_reached, skips)
        if eof_reached:
            return


class _Interfaces:
    """Interfaces of a pcapng file: one global id per IDB, numbered across sections.

    Held in NumPy arrays grown by doubling, so that looking up the interfaces of a window's
    packets costs O(packets), not O(interfaces) (a file with an IDB before every packet).
    """

    def __init__(self) -> None:
        self.n = 0
        self.linktype = np.zeros(8, np.int64)
        self.snaplen = np.zeros(8, np.int64)
        self.units = np.ones(8, np.uint64)  # timestamp units per second
        self.offset = np.zeros(8, np.int64)  # if_tsoffset, seconds
        self.section_base = 0  # global id of the current section's interface 0

    def new_section(self) -> None:
        self.section_base = self.n

    @property
    def in_section(self) -> int:
        return self.n - self.section_base

    def seconds(self, ts_raw: np.ndarray, g: np.ndarray) -> np.ndarray:
        """Raw timestamps (uint64, interface units) of interfaces ``g`` -> float64 seconds.

        Whole seconds and the fraction are split in integers first, so a nanosecond
        timestamp keeps the precision float64 has at today's dates (~0.2 us).
        """
        if g.shape[0] == 0 or g.min() == g.max():  # one interface: scalar arithmetic
            i = int(g[0]) if g.shape[0] else 0
            units = self.units[i]
            whole, frac = np.divmod(ts_raw, units)
            return whole.astype(np.float64) + frac / float(units) + int(self.offset[i])
        units = self.units[g]
        whole, frac = np.divmod(ts_raw, units)
        return whole.astype(np.float64) + frac / units.astype(np.float64) + self.offset[g]

    def add(self, path: Path, block: bytes, offset: int, order: str) -> None:
        if len(block) < 20:
            raise CaptureError(f"{path}: interface block at byte {offset} is {len(block)} bytes,"
                               " shorter than the minimum of 20: the file is corrupt")
        linktype, _reserved, snaplen = struct.unpack(order + "HHI", block[8:16])
        units, tsoffset = 10**6, 0
        p, end = 16, len(block) - 4
        while p + 4 <= end:
            code, length = struct.unpack(order + "HH", block[p: p + 4])
            value = block[p + 4: p + 4 + length]
            if code == 0:
                break
            if p + 4 + length > end:
                raise CaptureError(f"{path}: interface block at byte {offset} has an option"
                                   f" (code {code}) running past the block's end")
            if code == 9 and length >= 1:  # if_tsresol
                exp = value[0] & 0x7F
                if value[0] & 0x80:
                    units = 2**exp
                else:
                    units = 10**exp
                if units >= 2**64:
                    raise CaptureError(f"{path}: interface block at byte {offset} has an"
                                       f" unsupported if_tsresol byte 0x{value[0]:02x}")
            elif code == 14 and length >= 8:  # if_tsoffset
                tsoffset = struct.unpack(order + "q", value[:8])[0]
            p += 4 + ((length + 3) & ~3)
        if self.n == self.linktype.shape[0]:
            for name in ("linktype", "snaplen", "units", "offset"):
                old = getattr(self, name)
                grown = np.ones(2 * old.shape[0], old.dtype)
                grown[: self.n] = old
                setattr(self, name, grown)
        i = self.n
        self.linktype[i], self.snaplen[i], self.units[i] = linktype, snaplen, units
        self.offset[i] = tsoffset
        self.n += 1


def _section_header(path: Path, buf: np.ndarray, pos: int, base: int) -> tuple[str, int] | None:
    """Byte order and length of the SHB at ``buf[pos]``; None if it is not wholly in ``buf``."""
    if pos + 12 > buf.shape[0]:
        return None
    magic = bytes(buf[pos + 8: pos + 12])
    if magic == b"\x4d\x3c\x2b\x1a":
        order = "<"
    elif magic == b"\x1a\x2b\x3c\x4d":
        order = ">"
    else:
        raise CaptureError(f"{path}: section header block at byte {base + pos} has a bad"
                           f" byte-order magic ({magic.hex(' ')})")
    blen = struct.unpack(order + "I", bytes(buf[pos + 4: pos + 8]))[0]
    if blen < 28 or blen % 4 or blen > MAX_BLOCK_BYTES:
        raise CaptureError(f"{path}: section header block at byte {base + pos} claims an"
                           f" impossible length of {blen} bytes")
    if pos + blen > buf.shape[0]:
        return order, blen
    trailer = struct.unpack(order + "I", bytes(buf[pos + blen - 4: pos + blen]))[0]
    if trailer != blen:
        raise CaptureError(f"{path}: section header block at byte {base + pos} has length"
                           f" {blen} but trailer {trailer}")
    return order, blen


def _pcapng_batch(path: Path, buf: np.ndarray, base: int, runs: list, ifaces: _Interfaces,
                  last_ts: float, file_index: int, skips: SkipCounter,
                  warned: set[str]) -> tuple[PacketBatch | None, float]:
    """Decode the packet runs of one window at once; returns the batch and the timestamp a
    Simple Packet Block after them would get. A packet naming an interface its section does
    not have is dropped (strict mode has cut the runs before such a packet); the first such
    packet of the file is warned about (``warned`` holds what was warned already)."""
    if len(runs) == 1:
        data_off, caplen, orig, iface, ts_raw, sec_base, n_if = runs[0]
    else:
        counts = [r[0].shape[0] for r in runs]
        data_off, caplen, orig, iface, ts_raw = (
            np.concatenate([r[k] for r in runs]) for k in range(5))
        sec_base = np.repeat(np.concatenate([r[5] for r in runs]), counts)
        n_if = np.repeat(np.concatenate([r[6] for r in runs]), counts)
    bad = np.maximum(iface, 0) >= n_if  # a Simple Packet Block (-1) belongs to interface 0
    if bad.any():
        if PCAPNG_BAD_INTERFACE not in warned:
            warned.add(PCAPNG_BAD_INTERFACE)
            first = int(np.argmax(bad))
            head = 12 if iface[first] < 0 else 28  # SPB / EPB and PB headers
            log.warning("%s: packet block at byte %d refers to interface %d, but its section has"
                        " %d interface(s): dropped it (and any other such packet: counted as %s)",
                        path, base + int(data_off[first]) - head, max(int(iface[first]), 0),
                        int(np.broadcast_to(n_if, bad.shape)[first]), PCAPNG_BAD_INTERFACE)
        skips[PCAPNG_BAD_INTERFACE] += int(bad.sum())
        keep = ~bad
        data_off, caplen, orig, iface, ts_raw = (
            a[keep] for a in (data_off, caplen, orig, iface, ts_raw))
        sec_base = np.broadcast_to(sec_base, bad.shape)[keep]
    if data_off.shape[0] == 0:
        return None, last_ts
    g = np.maximum(iface, 0) + sec_base
    ts = ifaces.seconds(ts_raw, g)
    spb = iface < 0
    if spb.any():
        # Forward-fill: a Simple Packet Block takes the previous record's timestamp.
        idx = np.maximum.accumulate(np.where(spb, -1, np.arange(spb.shape[0])))
        ts = np.where(idx >= 0, ts[np.maximum(idx, 0)], last_ts)
    lts = ifaces.linktype[g]
    linktype = int(lts[0]) if (lts == lts[0]).all() else lts
    return _batch(buf, data_off, caplen, orig, ts, linktype, file_index, skips), float(ts[-1])


def _iter_pcapng(path: Path, fh: BinaryIO, file_index: int, skips: SkipCounter,
                 chunk_bytes: int, strict: bool) -> Iterator[tuple[PacketBatch | None, int]]:
    """(batch of one window or None, file offset the walk reached) pairs of a pcapng file.

    The packet runs walked between SHBs and IDBs of one window are decoded together, once
    per window: a file with an IDB before every packet costs what one IDB would.
    """
    chunks = _Chunks(fh, min(chunk_bytes, READ_WINDOW), base=0)
    chunks.advance(0)
    ifaces = _Interfaces()
    big, order = False, "<"
    last_ts = 0.0  # timestamp of the previous record, given to Simple Packet Blocks
    pos = 0
    warned: set[str] = set()

    def scan(buf, start, eof):
        # Every byte offset is tried, not only multiples of 4: inserted garbage need not
        # keep the blocks after it aligned.
        return _scan_pcapng(buf, start, big, ifaces.in_section, eof, RESYNC_CHAIN_PCAPNG,
                            MAX_BLOCK_BYTES)

    while True:
        buf = chunks.view()
        # Packet runs walked in this window, each with its section's interface 0 and count.
        runs: list[tuple[np.ndarray, ...]] = []
        what = None  # set on damage
        while True:
            snap0 = int(ifaces.snaplen[ifaces.section_base]) if ifaces.in_section else 0
            (count, pos, status, need, unknown, data_off, caplen, orig, iface,
             ts_raw) = _walk_pcapng(buf, pos, big, snap0, MAX_BLOCK_BYTES)
            at = chunks.base + pos
            if unknown:
                skips[PCAPNG_UNKNOWN_BLOCK] += unknown
            if count:
                n_if = ifaces.in_section
                # A Simple Packet Block (iface -1) belongs to interface 0.
                if strict and max(int(iface.max()), 0) >= n_if:
                    first = int(np.argmax(np.maximum(iface, 0) >= n_if))
                    head = 12 if iface[first] < 0 else 28  # SPB / EPB and PB headers
                    what = (f"packet block at byte {chunks.base + int(data_off[first]) - head}"
                            f" refers to interface {max(int(iface[first]), 0)}, but its section"
                            f" has {n_if} interface(s)")
                    data_off, caplen, orig, iface, ts_raw = (
                        a[:first] for a in (data_off, caplen, orig, iface, ts_raw))
                runs.append((data_off, caplen, orig, iface, ts_raw,
                             np.full(1, ifaces.section_base), np.full(1, n_if)))
                if what is not None:
                    break
            try:
                if status == _ERR_LENGTH:
                    what = f"block at byte {at} claims an impossible length of {need} bytes"
                elif status == _ERR_TRAILER:
                    what = (f"block at byte {at} has length {need} but a different trailing"
                            " length")
                elif status == _STOP_SHB:
                    shb = _section_header(path, buf, pos, chunks.base)
                    if shb is not None and pos + shb[1] <= buf.shape[0]:
                        order, blen = shb
                        big = order == ">"
                        ifaces.new_section()
                        pos += blen
                        continue
                    need = 12 if shb is None else shb[1]
                elif status == _STOP_IDB:
                    ifaces.add(path, bytes(buf[pos: pos + need]), at, order)
                    pos += need
                    continue
            except CaptureError as exc:
                what = str(exc).removeprefix(f"{path}: ").removesuffix(": the file is corrupt")
            break
        if runs:
            batch, last_ts = _pcapng_batch(path, buf, chunks.base, runs, ifaces, last_ts,
                                           file_index, skips, warned)
            yield batch, at
        if what is None and chunks.eof:
            left = chunks.filled - pos
            if not left:
                return
            if strict or scan(buf, pos + 1, True)[1] == 0:
                _truncated_tail(path, at, left, skips)
                return
            what = (f"block at byte {at} claims {need} bytes, running past the end of the"
                    " file over valid blocks")
        if what is None:
            chunks.advance(pos, need)
            pos = 0
            continue
        _damaged(path, what, strict)
        resume, eof_reached = _resync(chunks, pos, scan, 1)
        _resynced(path, what, at, resume, eof_reached, skips)
        if eof_reached:
            return
        pos = 0


def iter_capture(
    path: str | Path,
    file_index: int = 0,
    skips: SkipCounter | None = None,
    chunk_bytes: int = 32 << 20,
    strict: bool = False,
    stream: BinaryIO | None = None,
) -> Iterator[PacketBatch]:
    """Decoded packets of one pcap/pcapng file, as batches in file order.

    Args:
        path: the capture file (with ``stream``: only its name in messages).
        file_index: stored in every row's ``file_index`` (the file's index in the caller's
            list of files).
        skips: counter incremented, by reason, for every record that is not in a batch
            (reasons: see :mod:`janus.capture.decode`, and ``pcapng_bad_interface``). The keys in
            :data:`NON_PACKET_SKIP_KEYS` count something else than packets:
            ``truncated_tail_bytes`` (bytes of a cut final record), ``pcapng_unknown_block``
            (pcapng blocks of unknown type), ``damaged_bytes_skipped`` and
            ``damaged_regions`` (bytes skipped over damage, and how many regions).
        chunk_bytes: about how many bytes of file each batch covers; memory is a small
            multiple of ``min(chunk_bytes, 4 MiB)`` plus the batch. The rows do not depend
            on it.
        strict: raise at the first damaged record or block instead of skipping to the next
            valid one (see the module docstring; the skipped bytes are counted in ``skips``).
        stream: read this open binary stream (a pipe: standard input) instead of opening
            ``path``; it is read once, front to back, and never closed here.

    Yields:
        :class:`~janus.capture.batch.PacketBatch` es (never empty) with ``ts`` in Unix seconds
        (float64, the record's timestamp at the capture's resolution) and ``wire_len`` the
        record's original length in bytes.

    Raises:
        CaptureError: not a capture, empty, header truncated, or (``strict``) damage in the
            middle of the file (the message names the byte offset). The good batches before
            the damage are yielded first.
    """
    path = Path(path)
    if skips is None:
        skips = SkipCounter()
    if stream is None:
        kind = detect_format(path)
        opened = _open(path)
    else:
        # A pipe cannot be reopened: the magic number is read from it and put back in front.
        head = _read_exactly(stream, 16)
        kind = detect_format(path, head)
        opened = contextlib.nullcontext(_Prefixed(head, stream))
    reader = _iter_pcap if kind == "pcap" else _iter_pcapng
    pending: list[PacketBatch] = []
    start = 0  # file offset where the pending batches begin
    with opened as fh:
        try:
            for batch, reached in reader(path, fh, file_index, skips, chunk_bytes, strict):
                if batch is not None:
                    pending.append(batch)
                if pending and reached - start >= chunk_bytes:
                    yield _join(pending)
                    pending, start = [], reached
        except CaptureError:
            if pending:  # the good records before the damage
                yield _join(pending)
            raise
    if pending:
        yield _join(pending)


def _read_exactly(stream: BinaryIO, n: int) -> bytes:
    """Up to ``n`` bytes of ``stream``, fewer only at its end (a pipe returns short reads)."""
    parts, got = [], 0
    while got < n:
        part = stream.read(n - got)
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


class _Prefixed(io.RawIOBase):
    """``head`` followed by the rest of ``stream``: what the readers need of a file object.
    ``read(n)`` returns ``n`` bytes unless the stream ends, as a regular file's does (a header
    read of 24 bytes must not come back short because the pipe did)."""

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        self._head = memoryview(head)
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        if len(self._head):
            k = min(len(buf), len(self._head))
            buf[:k] = self._head[:k]
            self._head = self._head[k:]
            return k
        return self._stream.readinto(buf)

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            return bytes(self._head) + self._stream.read()
        buf = bytearray(n)
        view, got = memoryview(buf), 0
        while got < n:
            k = self.readinto(view[got:])
            if not k:
                break
            got += k
        return bytes(buf[:got])


def _join(batches: list[PacketBatch]) -> PacketBatch:
    return batches[0] if len(batches) == 1 else PacketBatch.concat(batches)
