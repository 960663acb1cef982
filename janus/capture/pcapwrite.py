"""Build Ethernet/IPv4/IPv6/TCP/UDP/ICMP frames and write classic pcap files.

Used by the synthetic traffic generator (:mod:`janus.datasets.synth`) and by tests that need
hand-built captures. Frames are built with one ``struct.pack`` per header, which is fast
enough for a few hundred thousand packets; checksums are correct (IPv4 header, TCP, UDP,
ICMP and ICMPv6 including the pseudo-header), so strict parsers and Wireshark accept them.

Addresses are passed as integers (``int(ipaddress.ip_address(text))``) or text; the
``ipv6`` flag says which family an integer is. A payload is ``bytes`` or an ``int`` byte
count, meaning that many zero bytes (the generator's case: zeros add nothing to a
checksum, so it costs nothing to keep checksums correct).
"""

from __future__ import annotations

import ipaddress
import os
import struct
from collections.abc import Sequence

import numpy as np

from janus.io import atomic_path

ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ICMPV6 = 58

#: pcap link-layer header type for Ethernet (LINKTYPE_ETHERNET).
LINKTYPE_ETHERNET = 1
PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D

#: TCP flag bits.
FIN, SYN, RST, PSH, ACK, URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20

_ETH = struct.Struct("!6s6sH")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_IPV6 = struct.Struct("!IHBB16s16s")
_TCP = struct.Struct("!HHIIBBHHH")
_UDP = struct.Struct("!HHHH")
_ICMP = struct.Struct("!BBHI")
_PCAP_HDR = struct.Struct("<IHHiIII")
_REC_HDR = struct.Struct("<IIII")


def _addr(value: int | str, ipv6: bool) -> int:
    """An address as an integer; text is parsed (and must match ``ipv6``)."""
    if isinstance(value, str):
        ip = ipaddress.ip_address(value)
        if (ip.version == 6) != ipv6:
            raise ValueError(f"address {value!r} is not IPv{6 if ipv6 else 4}")
        return int(ip)
    return int(value)


def _fold(total: int) -> int:
    """One's-complement checksum of a sum of 16-bit words."""
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _sum_words(data: bytes) -> int:
    """Sum of the big-endian 16-bit words of ``data`` (zero-padded to even length)."""
    if len(data) % 2:
        data = data + b"\x00"
    return int(np.frombuffer(data, dtype=">u2").sum(dtype=np.uint64)) if data else 0


def _addr_sum(a: int, ipv6: bool) -> int:
    """Sum of the 16-bit words of an address (2 words for IPv4, 8 for IPv6)."""
    if not ipv6:
        return (a >> 16) + (a & 0xFFFF)
    total = 0
    for _ in range(8):
        total += a & 0xFFFF
        a >>= 16
    return total


def _payload(payload: bytes | int) -> tuple[bytes, int]:
    """(payload bytes, sum of its words); an int means that many zero bytes (sum 0)."""
    if isinstance(payload, int):
        return bytes(payload), 0
    return payload, _sum_words(payload)


def internet_checksum(data: bytes) -> int:
    """RFC 1071 checksum of ``data``; 0 when ``data`` already holds a correct checksum."""
    return _fold(_sum_words(data))


# --------------------------------------------------------------------------- layer 3
def ipv4_header(
    src: int | str,
    dst: int | str,
    proto: int,
    payload_len: int,
    *,
    ttl: int = 64,
    ident: int = 0,
    df: bool = True,
    mf: bool = False,
    frag_offset: int = 0,
    tos: int = 0,
) -> bytes:
    """A 20-byte IPv4 header (no options) with a correct header checksum.

    ``payload_len`` is the bytes after this header; ``frag_offset`` is in bytes (a
    multiple of 8).
    """
    s, d = _addr(src, False), _addr(dst, False)
    if frag_offset % 8:
        raise ValueError(f"fragment offset {frag_offset} is not a multiple of 8")
    total = 20 + payload_len
    if total > 0xFFFF:
        raise ValueError(f"IPv4 packet of {total} bytes exceeds 65535")
    flags_frag = (0x4000 if df else 0) | (0x2000 if mf else 0) | (frag_offset >> 3)
    ident &= 0xFFFF
    csum = _fold(
        0x4500 + tos + total + ident + flags_frag + (ttl << 8 | proto)
        + (s >> 16) + (s & 0xFFFF) + (d >> 16) + (d & 0xFFFF)
    )
    return _IPV4.pack(
        0x45, tos, total, ident, flags_frag, ttl, proto, csum, s.to_bytes(4, "big"), d.to_bytes(4, "big")
    )


def ipv6_header(
    src: int | str,
    dst: int | str,
    next_header: int,
    payload_len: int,
    *,
    hop_limit: int = 64,
    flow_label: int = 0,
    traffic_class: int = 0,
) -> bytes:
    """A 40-byte IPv6 header (no extension headers)."""
    s, d = _addr(src, True), _addr(dst, True)
    first = (6 << 28) | (traffic_class << 20) | (flow_label & 0xFFFFF)
    return _IPV6.pack(first, payload_len, next_header, hop_limit, s.to_bytes(16, "big"), d.to_bytes(16, "big"))


def _pseudo_sum(s: int, d: int, proto: int, length: int, ipv6: bool) -> int:
    return _addr_sum(s, ipv6) + _addr_sum(d, ipv6) + proto + (length >> 16) + (length & 0xFFFF)


# --------------------------------------------------------------------------- layer 4
def tcp_segment(
    src: int | str,
    dst: int | str,
    sport: int,
    dport: int,
    *,
    seq: int = 0,
    ack: int = 0,
    flags: int = ACK,
    win: int = 65535,
    payload: bytes | int = 0,
    ipv6: bool = False,
) -> bytes:
    """A 20-byte TCP header (no options) plus payload, checksummed over the pseudo-header."""
    s, d = _addr(src, ipv6), _addr(dst, ipv6)
    data, data_sum = _payload(payload)
    seq &= 0xFFFFFFFF
    ack &= 0xFFFFFFFF
    length = 20 + len(data)
    total = (
        _pseudo_sum(s, d, PROTO_TCP, length, ipv6) + data_sum + sport + dport
        + (seq >> 16) + (seq & 0xFFFF) + (ack >> 16) + (ack & 0xFFFF) + (0x50 << 8 | flags) + win
    )
    return _TCP.pack(sport, dport, seq, ack, 0x50, flags, win, _fold(total), 0) + data


def udp_datagram(
    src: int | str, dst: int | str, sport: int, dport: int, *, payload: bytes | int = 0, ipv6: bool = False
) -> bytes:
    """An 8-byte UDP header plus payload, checksummed over the pseudo-header."""
    s, d = _addr(src, ipv6), _addr(dst, ipv6)
    data, data_sum = _payload(payload)
    length = 8 + len(data)
    csum = _fold(_pseudo_sum(s, d, PROTO_UDP, length, ipv6) + data_sum + sport + dport + length)
    # An all-zero result is sent as 0xFFFF (0 means "no checksum" in UDP over IPv4).
    return _UDP.pack(sport, dport, length, csum or 0xFFFF) + data


def icmp_message(
    icmp_type: int,
    code: int,
    rest: int = 0,
    *,
    payload: bytes | int = 0,
    ipv6: bool = False,
    src: int | str = 0,
    dst: int | str = 0,
) -> bytes:
    """An ICMP (or ICMPv6, with ``ipv6``; then ``src``/``dst`` feed the pseudo-header)
    message: type, code, checksum, the 4-byte ``rest`` field (echo id << 16 | seq), payload."""
    data, data_sum = _payload(payload)
    total = (icmp_type << 8 | code) + (rest >> 16) + (rest & 0xFFFF) + data_sum
    if ipv6:
        total += _pseudo_sum(_addr(src, True), _addr(dst, True), PROTO_ICMPV6, 8 + len(data), True)
    return _ICMP.pack(icmp_type, code, _fold(total), rest) + data


# --------------------------------------------------------------------------- frames
def ethernet_frame(src_mac: bytes, dst_mac: bytes, ethertype: int, payload: bytes) -> bytes:
    """Ethernet II: destination MAC, source MAC, ethertype, payload (no FCS, no padding)."""
    return _ETH.pack(dst_mac, src_mac, ethertype) + payload


def ip_frame(
    src: int | str,
    dst: int | str,
    proto: int,
    l4: bytes,
    *,
    ipv6: bool = False,
    ttl: int = 64,
    ident: int = 0,
    flow_label: int = 0,
    src_mac: bytes = b"\x02\x00\x00\x00\x00\x01",
    dst_mac: bytes = b"\x02\x00\x00\x00\x00\x02",
) -> bytes:
    """Ethernet + IPv4/IPv6 + the transport bytes ``l4`` (already checksummed)."""
    if ipv6:
        l3 = ipv6_header(src, dst, proto, len(l4), hop_limit=ttl, flow_label=flow_label)
        return _ETH.pack(dst_mac, src_mac, ETH_IPV6) + l3 + l4
    l3 = ipv4_header(src, dst, proto, len(l4), ttl=ttl, ident=ident)
    return _ETH.pack(dst_mac, src_mac, ETH_IPV4) + l3 + l4


def tcp_frame(
    src: int | str,
    dst: int | str,
    sport: int,
    dport: int,
    *,
    seq: int = 0,
    ack: int = 0,
    flags: int = ACK,
    win: int = 65535,
    payload: bytes | int = 0,
    ipv6: bool = False,
    ttl: int = 64,
    ident: int = 0,
    flow_label: int = 0,
    src_mac: bytes = b"\x02\x00\x00\x00\x00\x01",
    dst_mac: bytes = b"\x02\x00\x00\x00\x00\x02",
) -> bytes:
    """A complete Ethernet/IP/TCP frame. Length on the wire: 14 + 20|40 + 20 + payload."""
    l4 = tcp_segment(src, dst, sport, dport, seq=seq, ack=ack, flags=flags, win=win, payload=payload, ipv6=ipv6)
    return ip_frame(src, dst, PROTO_TCP, l4, ipv6=ipv6, ttl=ttl, ident=ident, flow_label=flow_label,
                    src_mac=src_mac, dst_mac=dst_mac)


def udp_frame(
    src: int | str,
    dst: int | str,
    sport: int,
    dport: int,
    *,
    payload: bytes | int = 0,
    ipv6: bool = False,
    ttl: int = 64,
    ident: int = 0,
    flow_label: int = 0,
    src_mac: bytes = b"\x02\x00\x00\x00\x00\x01",
    dst_mac: bytes = b"\x02\x00\x00\x00\x00\x02",
) -> bytes:
    """A complete Ethernet/IP/UDP frame (unfragmented; see :func:`ipv4_fragment_frames`)."""
    l4 = udp_datagram(src, dst, sport, dport, payload=payload, ipv6=ipv6)
    return ip_frame(src, dst, PROTO_UDP, l4, ipv6=ipv6, ttl=ttl, ident=ident, flow_label=flow_label,
                    src_mac=src_mac, dst_mac=dst_mac)


def icmp_frame(
    src: int | str,
    dst: int | str,
    icmp_type: int,
    code: int,
    rest: int = 0,
    *,
    payload: bytes | int = 0,
    ipv6: bool = False,
    ttl: int = 64,
    ident: int = 0,
    src_mac: bytes = b"\x02\x00\x00\x00\x00\x01",
    dst_mac: bytes = b"\x02\x00\x00\x00\x00\x02",
) -> bytes:
    """A complete Ethernet/IP/ICMP (protocol 1) or ICMPv6 (protocol 58) frame."""
    l4 = icmp_message(icmp_type, code, rest, payload=payload, ipv6=ipv6, src=src, dst=dst)
    return ip_frame(src, dst, PROTO_ICMPV6 if ipv6 else PROTO_ICMP, l4, ipv6=ipv6, ttl=ttl, ident=ident,
                    src_mac=src_mac, dst_mac=dst_mac)


def ipv4_fragment_frames(
    src: int | str,
    dst: int | str,
    proto: int,
    l4: bytes,
    mtu: int,
    *,
    ttl: int = 64,
    ident: int = 0,
    src_mac: bytes = b"\x02\x00\x00\x00\x00\x01",
    dst_mac: bytes = b"\x02\x00\x00\x00\x00\x02",
) -> list[bytes]:
    """Split the transport bytes ``l4`` into IPv4 fragments that fit ``mtu`` (IP bytes).

    The first fragment carries the transport header; every fragment but the last has MF
    set; offsets are multiples of 8 bytes. One frame is returned when ``l4`` fits.
    """
    chunk = (mtu - 20) // 8 * 8
    if chunk <= 0:
        raise ValueError(f"MTU {mtu} leaves no room for a fragment")
    frames = []
    for off in range(0, max(len(l4), 1), chunk):
        piece = l4[off:off + chunk]
        more = off + chunk < len(l4)
        l3 = ipv4_header(src, dst, proto, len(piece), ttl=ttl, ident=ident, df=False, mf=more, frag_offset=off)
        frames.append(_ETH.pack(dst_mac, src_mac, ETH_IPV4) + l3 + piece)
    return frames


# --------------------------------------------------------------------------- pcap
def pcap_bytes(
    ts: Sequence[float] | np.ndarray,
    frames: Sequence[bytes],
    *,
    linktype: int = LINKTYPE_ETHERNET,
    nanosecond: bool = False,
    snaplen: int = 262144,
    orig_lens: Sequence[int] | np.ndarray | None = None,
) -> bytes:
    """The bytes of a classic pcap file (little-endian, version 2.4).

    ``ts`` are Unix seconds (float64; with ``nanosecond`` the float's ~0.2 us resolution at
    present-day epochs limits the precision). Frames longer than ``snaplen`` are truncated
    (``incl_len = snaplen``); ``orig_len`` is ``orig_lens[i]`` when given (for frames built
    without their payload) and the frame's own length otherwise.
    """
    if len(ts) != len(frames):
        raise ValueError(f"{len(ts)} timestamps for {len(frames)} frames")
    if snaplen <= 0:
        raise ValueError(f"snaplen must be positive, got {snaplen}")
    scale = 1_000_000_000 if nanosecond else 1_000_000
    ticks = np.round(np.asarray(ts, dtype=np.float64) * scale).astype(np.int64)
    if ticks.size and ticks.min() < 0:
        raise ValueError("pcap timestamps must not be before 1970")
    secs = (ticks // scale).tolist()
    fracs = (ticks % scale).tolist()
    if orig_lens is None:
        origs = [len(f) for f in frames]
    else:
        origs = [int(n) for n in orig_lens]
        if len(origs) != len(frames):
            raise ValueError(f"{len(origs)} orig_lens for {len(frames)} frames")
    parts = [_PCAP_HDR.pack(PCAP_MAGIC_NS if nanosecond else PCAP_MAGIC_US, 2, 4, 0, 0, snaplen, linktype)]
    rec = _REC_HDR.pack
    for sec, frac, frame, orig in zip(secs, fracs, frames, origs):
        if len(frame) > snaplen:
            frame = frame[:snaplen]
        if orig < len(frame):
            raise ValueError(f"orig_len {orig} is shorter than the {len(frame)} captured bytes")
        parts.append(rec(sec, frac, len(frame), orig))
        parts.append(frame)
    return b"".join(parts)


def write_pcap(
    path: str | os.PathLike,
    ts: Sequence[float] | np.ndarray,
    frames: Sequence[bytes],
    linktype: int = LINKTYPE_ETHERNET,
    nanosecond: bool = False,
    *,
    snaplen: int = 262144,
    orig_lens: Sequence[int] | np.ndarray | None = None,
) -> int:
    """Write frames as a classic pcap file atomically; returns the file size in bytes.

    See :func:`pcap_bytes` for the arguments.
    """
    data = pcap_bytes(ts, frames, linktype=linktype, nanosecond=nanosecond, snaplen=snaplen,
                      orig_lens=orig_lens)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
    return len(data)
