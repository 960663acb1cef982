"""Read pcap and pcapng capture files into :class:`~janus.batch.PacketBatch`es.

Memory is O(chunk), not O(file): :func:`iter_capture` reads a window of the file (at most
``chunk_bytes``, and at most 4 MiB so that it stays in the CPU cache), walks the records in
it with a small compiled loop, decodes all their frames at once with
:func:`janus.decode.decode_frames`, and joins the decoded windows into batches covering
about ``chunk_bytes`` of file each. A record split across a window boundary is carried over
to the next window, so the output (rows, order, values) does not depend on ``chunk_bytes``.
Every record that is not in a batch is counted in the caller's
:class:`~janus.batch.SkipCounter` by reason.

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
  ``pcapng_unknown_block``.

Damage is handled without losing good records: a truncated final record is dropped with a
warning and its bytes counted in ``skips["truncated_tail_bytes"]``; a record or block whose
length is corrupt in the middle of a file raises :class:`~janus.errors.CaptureError` naming
the byte offset (everything after it would be garbage).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
from numba import njit

from .batch import PacketBatch, SkipCounter
from .decode import count_skips, decode_frames
from .errors import CaptureError

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
#: pcapng blocks of unknown type. Every other key counts skipped packets.
TRUNCATED_TAIL_BYTES = "truncated_tail_bytes"
PCAPNG_UNKNOWN_BLOCK = "pcapng_unknown_block"
NON_PACKET_SKIP_KEYS: frozenset[str] = frozenset({TRUNCATED_TAIL_BYTES, PCAPNG_UNKNOWN_BLOCK})
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
# Everything after the walk (header decoding) is vectorised NumPy in janus.decode.


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


def load_kernels() -> None:
    """Load the record walkers' compiled code now instead of on the first record.

    Part of :func:`janus.extract.load_runtime`; called with the argument types of the
    readers below, so the real calls find the code already loaded.
    """
    empty = np.zeros(0, np.uint8)
    _walk_pcap(empty, False, MAX_RECORD_BYTES)
    _walk_pcapng(empty, 0, False, 0, MAX_BLOCK_BYTES)


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


def detect_format(path: str | Path) -> str:
    """``"pcap"`` or ``"pcapng"`` from the file's magic number.

    Raises:
        CaptureError: the file is missing, empty, or not a pcap/pcapng file (the message
            names the file, shows its first bytes in hex and hints at what it might be).
    """
    path = Path(path)
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


def _iter_pcap(path: Path, fh: BinaryIO, file_index: int, skips: SkipCounter,
               chunk_bytes: int) -> Iterator[tuple[PacketBatch | None, int]]:
    """(batch of one window or None, file offset the walk reached) pairs of a pcap file."""
    header = fh.read(24)
    if len(header) < 24:
        raise CaptureError(f"{path}: pcap file header is truncated ({len(header)} of 24 bytes)")
    big = struct.unpack(">I", header[:4])[0] in (PCAP_MAGIC_US, PCAP_MAGIC_NS)
    order = ">" if big else "<"
    magic, _vmaj, _vmin, _zone, _sigfigs, snaplen, linktype = struct.unpack(
        order + "IHHiIII", header)
    frac_units = 1e9 if magic == PCAP_MAGIC_NS else 1e6
    # The upper bits of the link-type field hold FCS information (pcap-linktype(7)).
    linktype &= 0xFFFF
    limit = max(MAX_RECORD_BYTES, snaplen if snaplen <= MAX_BLOCK_BYTES else 0)
    chunks = _Chunks(fh, min(chunk_bytes, READ_WINDOW), base=24)
    chunks.advance(0)
    while True:
        buf = chunks.view()
        count, pos, status, need, data_off, caplen, orig, sec, frac = _walk_pcap(
            buf, big, limit)
        if count:
            ts = sec.astype(np.float64) + frac / frac_units
            batch = _batch(buf, data_off, caplen, orig, ts, linktype, file_index, skips)
            yield batch, chunks.base + pos
        if status == _ERR_LENGTH:
            raise CaptureError(
                f"{path}: record at byte {chunks.base + pos} claims {need} captured bytes, more"
                f" than the maximum of {limit}: the file is corrupt from there on"
            )
        if chunks.eof:
            left = chunks.filled - pos
            if left:
                if left >= 16:
                    incl = struct.unpack(order + "I", bytes(buf[pos + 8: pos + 12]))[0]
                    if 0 < snaplen < incl:
                        raise CaptureError(
                            f"{path}: record at byte {chunks.base + pos} claims {incl} captured"
                            f" bytes, more than the snaplen {snaplen}, and runs past the end of"
                            " the file: its length is corrupt"
                        )
                _truncated_tail(path, chunks.base + pos, left, skips)
            return
        chunks.advance(pos, need)


class _Interfaces:
    """Interfaces of a pcapng file: one global id per IDB, numbered across sections."""

    def __init__(self) -> None:
        self.linktype: list[int] = []
        self.snaplen: list[int] = []
        self.units: list[int] = []  # timestamp units per second
        self.offset: list[int] = []  # if_tsoffset, seconds
        self.section_base = 0  # global id of the current section's interface 0

    def new_section(self) -> None:
        self.section_base = len(self.linktype)

    @property
    def in_section(self) -> int:
        return len(self.linktype) - self.section_base

    def seconds(self, ts_raw: np.ndarray, g: np.ndarray) -> np.ndarray:
        """Raw timestamps (uint64, interface units) of interfaces ``g`` -> float64 seconds.

        Whole seconds and the fraction are split in integers first, so a nanosecond
        timestamp keeps the precision float64 has at today's dates (~0.2 us).
        """
        used = np.unique(g) if g.shape[0] and g.min() != g.max() else g[:1]
        ts = np.empty(ts_raw.shape[0], np.float64)
        for i in used.tolist():
            rows = slice(None) if used.shape[0] == 1 else g == i
            units = np.uint64(self.units[i])
            whole, frac = np.divmod(ts_raw[rows], units)
            ts[rows] = whole.astype(np.float64) + frac / float(self.units[i]) + self.offset[i]
        return ts

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
        self.linktype.append(linktype)
        self.snaplen.append(snaplen)
        self.units.append(units)
        self.offset.append(tsoffset)


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
                           f" byte-order magic ({magic.hex(' ')}): the file is corrupt from"
                           " there on")
    blen = struct.unpack(order + "I", bytes(buf[pos + 4: pos + 8]))[0]
    if blen < 28 or blen % 4 or blen > MAX_BLOCK_BYTES:
        raise CaptureError(f"{path}: section header block at byte {base + pos} claims an"
                           f" impossible length of {blen} bytes: the file is corrupt")
    if pos + blen > buf.shape[0]:
        return order, blen
    trailer = struct.unpack(order + "I", bytes(buf[pos + blen - 4: pos + blen]))[0]
    if trailer != blen:
        raise CaptureError(f"{path}: section header block at byte {base + pos} has length"
                           f" {blen} but trailer {trailer}: the file is corrupt from there on")
    return order, blen


def _iter_pcapng(path: Path, fh: BinaryIO, file_index: int, skips: SkipCounter,
                 chunk_bytes: int) -> Iterator[tuple[PacketBatch | None, int]]:
    """(batch of one window or None, file offset the walk reached) pairs of a pcapng file."""
    chunks = _Chunks(fh, min(chunk_bytes, READ_WINDOW), base=0)
    chunks.advance(0)
    ifaces = _Interfaces()
    big, order = False, "<"
    last_ts = 0.0  # timestamp of the previous record, given to Simple Packet Blocks
    pos = 0
    while True:
        buf = chunks.view()
        snap0 = ifaces.snaplen[ifaces.section_base] if ifaces.in_section else 0
        (count, pos, status, need, unknown, data_off, caplen, orig, iface,
         ts_raw) = _walk_pcapng(buf, pos, big, snap0, MAX_BLOCK_BYTES)
        at = chunks.base + pos
        if unknown:
            skips[PCAPNG_UNKNOWN_BLOCK] += unknown
        if count:
            n_if = ifaces.in_section
            bad = iface >= n_if
            if n_if == 0 or bad.any():
                first = int(np.argmax(bad)) if n_if else 0
                raise CaptureError(
                    f"{path}: packet block at byte {chunks.base + int(data_off[first]) - 28}"
                    f" refers to interface {max(int(iface[first]), 0)}, but its section has"
                    f" {n_if} interface(s): the file is corrupt")
            g = np.maximum(iface, 0) + ifaces.section_base
            ts = ifaces.seconds(ts_raw, g)
            spb = iface < 0
            if spb.any():
                # Forward-fill: a Simple Packet Block takes the previous record's timestamp.
                idx = np.maximum.accumulate(np.where(spb, -1, np.arange(count)))
                ts = np.where(idx >= 0, ts[np.maximum(idx, 0)], last_ts)
            last_ts = float(ts[-1])
            lts = np.asarray(ifaces.linktype, np.int64)[g]
            linktype = int(lts[0]) if (lts == lts[0]).all() else lts
            batch = _batch(buf, data_off, caplen, orig, ts, linktype, file_index, skips)
            yield batch, chunks.base + pos
        if status == _ERR_LENGTH:
            raise CaptureError(f"{path}: block at byte {at} claims an impossible length of"
                               f" {need} bytes: the file is corrupt from there on")
        if status == _ERR_TRAILER:
            raise CaptureError(f"{path}: block at byte {at} has length {need} but a different"
                               " trailing length: the file is corrupt from there on")
        if status == _STOP_SHB:
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
        # _NEED_MORE (or a SHB not wholly in the buffer)
        if chunks.eof:
            left = chunks.filled - pos
            if left:
                _truncated_tail(path, at, left, skips)
            return
        chunks.advance(pos, need)
        pos = 0


def iter_capture(
    path: str | Path,
    file_index: int = 0,
    skips: SkipCounter | None = None,
    chunk_bytes: int = 32 << 20,
) -> Iterator[PacketBatch]:
    """Decoded packets of one pcap/pcapng file, as batches in file order.

    Args:
        path: the capture file.
        file_index: stored in every row's ``file_index`` (the file's index in the caller's
            list of files).
        skips: counter incremented, by reason, for every record that is not in a batch
            (reasons: see :mod:`janus.decode`). The keys in :data:`NON_PACKET_SKIP_KEYS`
            count something else than packets: ``truncated_tail_bytes`` (bytes of a cut
            final record) and ``pcapng_unknown_block`` (pcapng blocks of unknown type).
        chunk_bytes: about how many bytes of file each batch covers; memory is a small
            multiple of ``min(chunk_bytes, 4 MiB)`` plus the batch. The rows do not depend
            on it.

    Yields:
        :class:`~janus.batch.PacketBatch` es (never empty) with ``ts`` in Unix seconds
        (float64, the record's timestamp at the capture's resolution) and ``wire_len`` the
        record's original length in bytes.

    Raises:
        CaptureError: not a capture, empty, header truncated, or a corrupt record/block
            length in the middle of the file (the message names the byte offset). The
            good batches before the corruption are yielded first.
    """
    path = Path(path)
    if skips is None:
        skips = SkipCounter()
    kind = detect_format(path)
    reader = _iter_pcap if kind == "pcap" else _iter_pcapng
    pending: list[PacketBatch] = []
    start = 0  # file offset where the pending batches begin
    with _open(path) as fh:
        try:
            for batch, reached in reader(path, fh, file_index, skips, chunk_bytes):
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


def _join(batches: list[PacketBatch]) -> PacketBatch:
    return batches[0] if len(batches) == 1 else PacketBatch.concat(batches)
