"""Hand-built frames and capture files for tests (``struct`` only, no capture library).

Frames are built inside-out::

    from capture_builders import ethernet, ipv4, tcp, pcap_bytes, Record  # tests/ is on sys.path
    frame = ethernet(ipv4(tcp(1234, 80, flags=0x02, window=512), "10.0.0.1", "10.0.0.2"))
    data = pcap_bytes([Record(1.5, frame)])

Builders fill in lengths and next-header fields; checksums are left 0 (decoders here do
not check them). Addresses are text (``"10.0.0.1"``, ``"2001:db8::1"``).

Files: :func:`pcap_bytes` (micro/nanosecond, either byte order) and :func:`pcapng_bytes`
over blocks from :func:`shb`, :func:`idb`, :func:`epb`, :func:`spb`, :func:`packet_block`
and :func:`raw_block` (several sections and interfaces, ``if_tsresol``, ``if_tsoffset``).
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# --------------------------------------------------------------------------- constants
ETH_IPV4, ETH_IPV6, ETH_ARP, ETH_LLDP = 0x0800, 0x86DD, 0x0806, 0x88CC
TPID_8021Q, TPID_8021AD, TPID_9100 = 0x8100, 0x88A8, 0x9100
PROTO_ICMP, PROTO_TCP, PROTO_UDP, PROTO_ICMPV6, PROTO_SCTP = 1, 6, 17, 58, 132
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
LINKTYPE_NULL, LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_LOOP = 0, 1, 101, 108
LINKTYPE_LINUX_SLL, LINKTYPE_IPV4, LINKTYPE_IPV6, LINKTYPE_LINUX_SLL2 = 113, 228, 229, 276

MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")


def _ethertype_of(payload: bytes) -> int:
    """0x0800 / 0x86DD from an IP packet's version nibble (for ``ethertype=None``)."""
    if payload and payload[0] >> 4 == 6:
        return ETH_IPV6
    return ETH_IPV4


def _pad(data: bytes, multiple: int) -> bytes:
    return data + b"\x00" * (-len(data) % multiple)


# --------------------------------------------------------------------------- link layer
def ethernet(payload: bytes, ethertype: int | None = None, *,
             vlans: Sequence[int | tuple[int, int]] = (), src: bytes = MAC_A,
             dst: bytes = MAC_B) -> bytes:
    """Ethernet II frame (``ethertype`` None: IPv4/IPv6 from the payload's version).

    ``vlans`` are tags outermost first, each a VLAN id (802.1Q) or a ``(tpid, vid)`` pair
    (e.g. ``(0x88a8, 100)`` for an 802.1ad service tag).
    """
    tags = b""
    for tag in vlans:
        tpid, vid = (TPID_8021Q, tag) if isinstance(tag, int) else tag
        tags += struct.pack(">HH", tpid, vid & 0x0FFF)
    # Each tag's TPID sits where the ethertype would be; the real ethertype comes last.
    if ethertype is None:
        ethertype = _ethertype_of(payload)
    return dst + src + tags + struct.pack(">H", ethertype) + payload


def sll(payload: bytes, protocol: int | None = None, *, packet_type: int = 0,
        arphrd: int = 1, address: bytes = MAC_A) -> bytes:
    """Linux cooked capture v1 (LINKTYPE_LINUX_SLL, 113): 16-byte header."""
    addr = _pad(address[:8], 8)
    protocol = _ethertype_of(payload) if protocol is None else protocol
    return struct.pack(">HHH", packet_type, arphrd, len(address)) + addr + struct.pack(
        ">H", protocol) + payload


def sll2(payload: bytes, protocol: int | None = None, *, ifindex: int = 1, arphrd: int = 1,
         packet_type: int = 0, address: bytes = MAC_A) -> bytes:
    """Linux cooked capture v2 (LINKTYPE_LINUX_SLL2, 276): 20-byte header."""
    addr = _pad(address[:8], 8)
    protocol = _ethertype_of(payload) if protocol is None else protocol
    return struct.pack(">HHIHBB", protocol, 0, ifindex, arphrd, packet_type,
                       len(address)) + addr + payload


def null_loop(payload: bytes, family: int, *, big_endian: bool = False) -> bytes:
    """BSD NULL (0) / LOOP (108) frame: a 4-byte address family, then the packet."""
    return struct.pack(">I" if big_endian else "<I", family) + payload


# --------------------------------------------------------------------------- network layer
def ipv4(payload: bytes, src: str = "10.0.0.1", dst: str = "10.0.0.2", proto: int = PROTO_TCP,
         *, ttl: int = 64, ident: int = 0, frag_offset: int = 0, more_fragments: bool = False,
         dont_fragment: bool = False, options: bytes = b"",
         total_length: int | None = None) -> bytes:
    """IPv4 packet. ``frag_offset`` is in bytes (a multiple of 8); ``options`` are padded to
    4 bytes and raise the IHL; ``total_length`` overrides the computed one."""
    options = _pad(options, 4)
    ihl = 5 + len(options) // 4
    flags = (0x4000 if dont_fragment else 0) | (0x2000 if more_fragments else 0)
    total = ihl * 4 + len(payload) if total_length is None else total_length
    header = struct.pack(">BBHHHBBH4s4s", 0x40 | ihl, 0, total, ident,
                         flags | (frag_offset // 8), ttl, proto, 0,
                         ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)
    return header + options + payload


@dataclass(frozen=True)
class Ext:
    """One IPv6 extension header for :func:`ipv6`.

    ``kind`` is its protocol number: 0 hop-by-hop, 43 routing, 60 destination options,
    135 mobility (``data`` padded to a multiple of 8 bytes with the 2-byte head); 44
    fragment (``frag_offset`` in bytes, ``more``, ``ident``); 51 AH (``data`` is the ICV,
    padded to 4 bytes).
    """

    kind: int
    data: bytes = b""
    frag_offset: int = 0
    more: bool = False
    ident: int = 0

    def encode(self, next_header: int) -> bytes:
        if self.kind == 44:
            return struct.pack(">BBHI", next_header, 0,
                               (self.frag_offset // 8) << 3 | int(self.more), self.ident)
        if self.kind == 51:
            body = struct.pack(">HII", 0, 0x100, 1) + _pad(self.data, 4)  # reserved, SPI, seq
            return struct.pack(">BB", next_header, (len(body) + 2) // 4 - 2) + body
        body = self.data + b"\x00" * (-(len(self.data) + 2) % 8)  # whole 8-byte units
        return struct.pack(">BB", next_header, (len(body) + 2) // 8 - 1) + body


def ipv6(payload: bytes, src: str = "2001:db8::1", dst: str = "2001:db8::2",
         proto: int = PROTO_TCP, *, ext: Sequence[Ext] = (), hop_limit: int = 64,
         payload_length: int | None = None) -> bytes:
    """IPv6 packet with optional extension headers (in order) before ``proto``."""
    kinds = [e.kind for e in ext] + [proto]
    chain = b"".join(e.encode(kinds[i + 1]) for i, e in enumerate(ext))
    body = chain + payload
    plen = len(body) if payload_length is None else payload_length
    return struct.pack(">IHBB16s16s", 6 << 28, plen, kinds[0], hop_limit,
                       ipaddress.IPv6Address(src).packed,
                       ipaddress.IPv6Address(dst).packed) + body


# --------------------------------------------------------------------------- transport layer
def tcp(sport: int, dport: int, *, flags: int = ACK, window: int = 1024, seq: int = 0,
        ack: int = 0, options: bytes = b"", payload: bytes = b"") -> bytes:
    """TCP segment; ``options`` are padded to 4 bytes and raise the data offset."""
    options = _pad(options, 4)
    offset = (5 + len(options) // 4) << 4
    return struct.pack(">HHIIBBHHH", sport, dport, seq, ack, offset, flags, window, 0,
                       0) + options + payload


def udp(sport: int, dport: int, payload: bytes = b"") -> bytes:
    return struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload


def sctp(sport: int, dport: int, payload: bytes = b"") -> bytes:
    """SCTP common header (ports, verification tag, checksum) and raw chunks."""
    return struct.pack(">HHII", sport, dport, 1, 0) + payload


def icmp(type_: int = 8, code: int = 0, payload: bytes = b"\x00\x01\x00\x01") -> bytes:
    """ICMP (or, with an IPv6 header, ICMPv6) message: type, code, checksum, rest."""
    return struct.pack(">BBH", type_, code, 0) + payload


icmpv6 = icmp


# --------------------------------------------------------------------------- pcap files
@dataclass(frozen=True)
class Record:
    """One captured frame: ``ts`` Unix seconds; ``orig_len`` defaults to ``len(frame)``."""

    ts: float
    frame: bytes
    orig_len: int | None = None


def _split_ts(ts: float, units: int) -> tuple[int, int]:
    total = round(ts * units)
    return total // units, total % units


def pcap_header(linktype: int = LINKTYPE_ETHERNET, *, nanosecond: bool = False,
                big_endian: bool = False, snaplen: int = 65535) -> bytes:
    """The 24-byte pcap file header."""
    order = ">" if big_endian else "<"
    magic = 0xA1B23C4D if nanosecond else 0xA1B2C3D4
    return struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)


def pcap_record(rec: Record, *, nanosecond: bool = False, big_endian: bool = False) -> bytes:
    """One pcap record: 16-byte header (seconds, fraction, caplen, orig_len) + frame."""
    order = ">" if big_endian else "<"
    sec, frac = _split_ts(rec.ts, 10**9 if nanosecond else 10**6)
    orig = len(rec.frame) if rec.orig_len is None else rec.orig_len
    return struct.pack(order + "IIII", sec, frac, len(rec.frame), orig) + rec.frame


def pcap_bytes(records: Iterable[Record | tuple[float, bytes]], linktype: int = LINKTYPE_ETHERNET,
               *, nanosecond: bool = False, big_endian: bool = False,
               snaplen: int = 65535) -> bytes:
    """A whole pcap file."""
    parts = [pcap_header(linktype, nanosecond=nanosecond, big_endian=big_endian, snaplen=snaplen)]
    for rec in records:
        rec = rec if isinstance(rec, Record) else Record(*rec)
        parts.append(pcap_record(rec, nanosecond=nanosecond, big_endian=big_endian))
    return b"".join(parts)


# --------------------------------------------------------------------------- pcapng files
def _block(btype: int, body: bytes, order: str) -> bytes:
    body = _pad(body, 4)
    length = 12 + len(body)
    return struct.pack(order + "II", btype, length) + body + struct.pack(order + "I", length)


def _options(options: Sequence[tuple[int, bytes]], order: str) -> bytes:
    if not options:
        return b""
    out = b"".join(struct.pack(order + "HH", code, len(v)) + _pad(v, 4) for code, v in options)
    return out + struct.pack(order + "HH", 0, 0)


def shb(*, big_endian: bool = False, options: Sequence[tuple[int, bytes]] = ()) -> bytes:
    """Section Header Block (starts a section: byte order, fresh interface list)."""
    order = ">" if big_endian else "<"
    body = struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1) + _options(options, order)
    return _block(0x0A0D0D0A, body, order)


def tsresol_units(tsresol: int | None) -> int:
    """Timestamp units per second of an ``if_tsresol`` byte (None: the default, 10^6)."""
    if tsresol is None:
        return 10**6
    return 2 ** (tsresol & 0x7F) if tsresol & 0x80 else 10 ** tsresol


def idb(linktype: int = LINKTYPE_ETHERNET, *, snaplen: int = 0, tsresol: int | None = None,
        tsoffset: int | None = None, big_endian: bool = False, name: str | None = None) -> bytes:
    """Interface Description Block; ``tsresol`` is the raw ``if_tsresol`` byte (6 = us,
    9 = ns, 0x80 | k = 2^-k), ``tsoffset`` whole seconds added to every timestamp."""
    order = ">" if big_endian else "<"
    opts: list[tuple[int, bytes]] = []
    if name is not None:
        opts.append((2, name.encode()))
    if tsresol is not None:
        opts.append((9, bytes([tsresol])))
    if tsoffset is not None:
        opts.append((14, struct.pack(order + "q", tsoffset)))
    body = struct.pack(order + "HHI", linktype, 0, snaplen) + _options(opts, order)
    return _block(1, body, order)


def epb(frame: bytes, ts: float, *, iface: int = 0, tsresol: int | None = None,
        orig_len: int | None = None, big_endian: bool = False) -> bytes:
    """Enhanced Packet Block; ``ts`` seconds since the interface's ``tsoffset``, written in
    the units of ``tsresol`` (pass the interface's ``if_tsresol`` byte)."""
    order = ">" if big_endian else "<"
    raw = round(ts * tsresol_units(tsresol))
    orig = len(frame) if orig_len is None else orig_len
    body = struct.pack(order + "IIIII", iface, raw >> 32, raw & 0xFFFFFFFF, len(frame),
                       orig) + frame
    return _block(6, body, order)


def packet_block(frame: bytes, ts: float, *, iface: int = 0, tsresol: int | None = None,
                 orig_len: int | None = None, big_endian: bool = False) -> bytes:
    """Obsolete Packet Block (type 2): 16-bit interface id and drop count."""
    order = ">" if big_endian else "<"
    raw = round(ts * tsresol_units(tsresol))
    orig = len(frame) if orig_len is None else orig_len
    body = struct.pack(order + "HHIIII", iface, 0, raw >> 32, raw & 0xFFFFFFFF, len(frame),
                       orig) + frame
    return _block(2, body, order)


def spb(frame: bytes, *, orig_len: int | None = None, big_endian: bool = False) -> bytes:
    """Simple Packet Block: no interface (interface 0), no timestamp."""
    order = ">" if big_endian else "<"
    orig = len(frame) if orig_len is None else orig_len
    return _block(3, struct.pack(order + "I", orig) + frame, order)


def raw_block(btype: int, body: bytes = b"", *, big_endian: bool = False) -> bytes:
    """Any block (e.g. an Interface Statistics Block, type 5, or an unknown type)."""
    return _block(btype, body, ">" if big_endian else "<")


def pcapng_bytes(blocks: Iterable[bytes]) -> bytes:
    """A pcapng file: the blocks in order (start with :func:`shb`)."""
    return b"".join(blocks)
