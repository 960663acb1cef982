"""Vectorised link / network / transport decoding of captured frames into header fields.

:func:`decode_frames` takes one chunk of a capture file as a ``uint8`` array plus the
offset and captured length of every frame in it, and returns the header fields of all
frames at once. There is no Python object per packet: every step is a NumPy gather over
the frames that reached it, grouped by link type, then by ethertype / IP version, then by
transport protocol. The two variable-length walks of a header chain (stacked VLAN tags,
IPv6 extension headers) are loops over at most a few header *positions*, each iteration
vectorised over all the packets still walking.

What is read, and what a packet needs to be kept (``reason == OK``):

* link layer -- Ethernet (1) with any stack of 802.1Q / 802.1ad tags (0x8100, 0x88a8,
  0x9100); Linux cooked SLL (113) and SLL2 (276); raw IP (101, 12, 14: version nibble
  decides; 228 IPv4, 229 IPv6); BSD NULL (0) and LOOP (108) with the address family in
  either byte order (AF_INET 2; AF_INET6 24, 28, 30). Other link types are skipped as
  ``unsupported_linktype_<n>``; other ethertypes (ARP, LLDP, MPLS, PPPoE, 802.3 length
  fields) as ``non_ip``.
* IPv4 -- version 4 and IHL >= 5 (else ``bad_ip_header``); the header, options included,
  must be captured (else ``truncated_l3``). A non-first fragment (offset > 0) carries no
  transport header, so it is skipped as ``ip_fragment_non_first`` rather than given
  invented ports; a first fragment is decoded normally.
* IPv6 -- the extension chain is walked (hop-by-hop 0, routing 43, fragment 44,
  destination options 60, AH 51 with its length in 4-byte units + 2, mobility 135, HIP
  139, shim6 140); a fragment header with offset > 0 gives ``ip_fragment_non_first``.
  No-next-header (59), ESP (50) and any other protocol end the walk and are kept with
  ports 0.
* transport -- the transport header must lie inside both the captured bytes and the IP
  datagram (IPv4 total length / IPv6 payload length, when non-zero; zero is what
  TSO-offloaded captures write), so Ethernet padding is never read as a header. TCP
  needs 16 bytes (ports, flags byte 13, window 14..15); UDP, SCTP, DCCP and UDP-Lite need
  their 4 port bytes; otherwise ``truncated_l4``. ICMP, ICMPv6 and all other protocols are
  kept with ports 0.

Addresses follow :mod:`janus.capture.batch`: 16 bytes as two big-endian ``uint64`` words, IPv4 as
IPv4-mapped IPv6 (``::ffff:a.b.c.d``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# --------------------------------------------------------------------------- skip reasons
OK = 0
TRUNCATED_L2 = 1
TRUNCATED_L3 = 2
TRUNCATED_L4 = 3
NON_IP = 4
IP_FRAGMENT_NON_FIRST = 5
BAD_IP_HEADER = 6
UNSUPPORTED_LINKTYPE = 7
VLAN_STACK_TOO_DEEP = 8
IPV6_EXT_CHAIN_TOO_LONG = 9

#: Skip-reason name of each code (code 0 is a kept packet). ``UNSUPPORTED_LINKTYPE`` is
#: counted as ``unsupported_linktype_<n>`` with the link type number instead.
REASON_NAMES: tuple[str, ...] = (
    "ok",
    "truncated_l2",
    "truncated_l3",
    "truncated_l4",
    "non_ip",
    "ip_fragment_non_first",
    "bad_ip_header",
    "unsupported_linktype",
    "vlan_stack_too_deep",
    "ipv6_ext_chain_too_long",
)

# --------------------------------------------------------------------------- constants
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW_12 = 12  # OpenBSD's DLT_RAW number
LINKTYPE_RAW_14 = 14  # BSD/OS's DLT_RAW number
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276
#: Link types :func:`decode_frames` understands.
SUPPORTED_LINKTYPES: frozenset[int] = frozenset(
    {LINKTYPE_NULL, LINKTYPE_ETHERNET, LINKTYPE_RAW_12, LINKTYPE_RAW_14, LINKTYPE_RAW,
     LINKTYPE_LOOP, LINKTYPE_LINUX_SLL, LINKTYPE_IPV4, LINKTYPE_IPV6, LINKTYPE_LINUX_SLL2}
)

ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
VLAN_TPIDS: tuple[int, ...] = (0x8100, 0x88A8, 0x9100)
#: Most VLAN tags walked before giving up (real stacks have 1 or 2).
MAX_VLAN_TAGS = 8
#: Most IPv6 extension headers walked before giving up (RFC 8200 orders at most ~8).
MAX_IPV6_EXT = 12

AF_INET = 2
AF_INET6 = (24, 28, 30)  # NetBSD/OpenBSD, FreeBSD/DragonFly, macOS/iOS

IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_DCCP = 33
IPPROTO_FRAGMENT = 44
IPPROTO_AH = 51
IPPROTO_SCTP = 132
IPPROTO_UDPLITE = 136
#: Transport protocols whose first 4 bytes are source and destination port.
PORT_PROTOCOLS: tuple[int, ...] = (IPPROTO_UDP, IPPROTO_DCCP, IPPROTO_SCTP, IPPROTO_UDPLITE)
#: IPv6 extension headers walked over (hop-by-hop, routing, fragment, dest-opts, AH,
#: mobility, HIP, shim6).
IPV6_EXT_HEADERS: tuple[int, ...] = (0, 43, 44, 60, 51, 135, 139, 140)

_IS_VLAN = np.zeros(1 << 16, bool)
_IS_VLAN[list(VLAN_TPIDS)] = True
_IS_EXT = np.zeros(256, bool)
_IS_EXT[list(IPV6_EXT_HEADERS)] = True
_HAS_PORTS = np.zeros(256, bool)
_HAS_PORTS[list(PORT_PROTOCOLS)] = True
_V4_MAPPED = np.uint64(0xFFFF << 32)


@dataclass
class Decoded:
    """Header fields of ``n`` frames (row ``i`` = frame ``i`` of the input).

    Fields of a row whose ``reason`` is not :data:`OK` are zero and meaningless.
    """

    reason: np.ndarray  # uint8 (n,), OK or a skip-reason code (see REASON_NAMES)
    src_ip: np.ndarray  # uint64 (n, 2), hi word first, IPv4 mapped into IPv6
    dst_ip: np.ndarray  # uint64 (n, 2)
    src_port: np.ndarray  # uint16 (n,), 0 for protocols without ports
    dst_port: np.ndarray  # uint16 (n,)
    proto: np.ndarray  # uint8 (n,), IP protocol number of the transport header
    tcp_flags: np.ndarray  # uint8 (n,), TCP flags byte; 0 if not TCP
    tcp_win: np.ndarray  # uint16 (n,), TCP window field; 0 if not TCP


class _Bytes:
    """Big-endian field reads at arbitrary byte positions of one buffer.

    ``u16[p]``, ``u32[p]``, ``u64[p]`` are stride-1 views of the buffer with big-endian
    dtypes, so reading a field of ``m`` packets is one fancy index of ``m`` elements (the
    gather the brief of this module is about); ``u8`` is the buffer itself. A read at ``p``
    needs ``p + width <= len(buf)``: every read below is guarded by a length check first.
    """

    def __init__(self, buf: np.ndarray) -> None:
        self.u8 = buf
        self.u16 = self._view(buf, ">u2")
        self.u32 = self._view(buf, ">u4")
        self.u64 = self._view(buf, ">u8")

    @staticmethod
    def _view(buf: np.ndarray, dtype: str) -> np.ndarray:
        width = np.dtype(dtype).itemsize
        return np.ndarray((max(buf.shape[0] - width + 1, 0),), dtype=dtype, buffer=buf,
                          strides=(1,))


def _split(mask: np.ndarray, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """``arrays`` without the rows where ``mask`` is set (no copy when none is)."""
    if not mask.any():
        return arrays
    keep = ~mask
    return tuple(a[keep] for a in arrays)


def _link_layer(
    b: _Bytes, off: np.ndarray, end: np.ndarray, linktype: int, reason: np.ndarray,
    l3: np.ndarray, ethertype: np.ndarray, sel: np.ndarray | None,
) -> None:
    """Fill ``l3`` (network header offset) and ``ethertype`` for frames ``sel`` (None: all)
    of ``linktype``.

    Link types without an ethertype (raw IP, NULL/LOOP) are mapped to 0x0800 / 0x86DD, or
    0 (which becomes ``non_ip``).
    """
    o = off if sel is None else off[sel]
    e = end if sel is None else end[sel]
    if linktype == LINKTYPE_ETHERNET:
        hdr_len, type_at = 14, 12
    elif linktype == LINKTYPE_LINUX_SLL:
        hdr_len, type_at = 16, 14
    elif linktype == LINKTYPE_LINUX_SLL2:
        hdr_len, type_at = 20, 0
    elif linktype in (LINKTYPE_RAW, LINKTYPE_RAW_12, LINKTYPE_RAW_14, LINKTYPE_IPV4,
                      LINKTYPE_IPV6):
        hdr_len, type_at = 0, -1
    elif linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        hdr_len, type_at = 4, -1
    else:
        reason[slice(None) if sel is None else sel] = UNSUPPORTED_LINKTYPE
        return
    # Raw IP needs one byte (the version nibble) to say anything.
    short = o + max(hdr_len, 1) > e
    # Reads of short frames are clamped into the buffer; their result is discarded below.
    o_safe = np.minimum(o, b.u8.shape[0] - max(hdr_len, 4)) if short.any() else o
    if short.all():
        et = np.zeros(o.shape[0], np.int64)
    elif type_at >= 0:
        et = b.u16[o_safe + type_at].astype(np.int64)
    elif linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        # The family is in the capturing host's byte order for NULL and in network order
        # for LOOP, but writers disagree; the values are small, so only one order fits.
        be = b.u32[o_safe].astype(np.uint32)
        le = be.byteswap()
        v6 = np.isin(le, AF_INET6) | np.isin(be, AF_INET6)
        v4 = (le == AF_INET) | (be == AF_INET)
        et = np.where(v4, ETH_IPV4, np.where(v6, ETH_IPV6, 0))
    elif linktype == LINKTYPE_IPV4:
        et = np.full(o.shape[0], ETH_IPV4)
    elif linktype == LINKTYPE_IPV6:
        et = np.full(o.shape[0], ETH_IPV6)
    else:
        version = b.u8[o_safe] >> 4
        et = np.where(version == 4, ETH_IPV4, np.where(version == 6, ETH_IPV6, 0))
    et[short] = 0  # goes no further
    where = slice(None) if sel is None else sel
    reason[where] = np.where(short, TRUNCATED_L2, reason[where])
    l3[where] = o + hdr_len
    ethertype[where] = et


def _strip_vlan(b: _Bytes, end: np.ndarray, reason: np.ndarray, l3: np.ndarray,
                ethertype: np.ndarray) -> None:
    """Walk stacked 802.1Q / 802.1ad tags: each is TCI (2 bytes) + the next ethertype."""
    act = np.flatnonzero(_IS_VLAN[ethertype])  # rows still OK (ethertype 0 otherwise)
    for _ in range(MAX_VLAN_TAGS):
        if act.size == 0:
            return
        p = l3[act]
        short = p + 4 > end[act]
        reason[act[short]] = TRUNCATED_L2
        act, p = _split(short, act, p)
        et = b.u16[p + 2].astype(np.int64)
        ethertype[act] = et
        l3[act] = p + 4
        act = act[_IS_VLAN[et]]
    reason[act] = VLAN_STACK_TOO_DEEP


def _ipv4(b: _Bytes, off_l3, end, sel, reason, out, l4, bound) -> None:
    """Decode the IPv4 headers of frames ``sel``; fill addresses, proto, ``l4`` and ``bound``."""
    o, e = off_l3[sel], end[sel]
    short = o + 20 > e
    reason[sel[short]] = TRUNCATED_L3
    sel, o, e = _split(short, sel, o, e)
    b0 = b.u8[o]
    ihl = (b0 & 15).astype(np.int64) * 4
    bad = ((b0 >> 4) != 4) | (ihl < 20)
    cut = ~bad & (o + ihl > e)
    frag = ~bad & ~cut & ((b.u16[o + 6] & 0x1FFF) > 0)
    reason[sel[bad]] = BAD_IP_HEADER
    reason[sel[cut]] = TRUNCATED_L3
    reason[sel[frag]] = IP_FRAGMENT_NON_FIRST
    sel, o, e, ihl = _split(bad | cut | frag, sel, o, e, ihl)
    out.src_ip[sel, 1] = b.u32[o + 12].astype(np.uint64) | _V4_MAPPED
    out.dst_ip[sel, 1] = b.u32[o + 16].astype(np.uint64) | _V4_MAPPED
    out.proto[sel] = b.u8[o + 9]
    total = b.u16[o + 2].astype(np.int64)
    l4[sel] = o + ihl
    # Total length 0 (TSO on the capturing host) or nonsense: bound by the capture only.
    bound[sel] = np.where(total >= ihl, np.minimum(e, o + total), e)


def _ipv6(b: _Bytes, off_l3, end, sel, reason, out, l4, bound) -> None:
    """Decode IPv6 headers of frames ``sel`` and walk their extension-header chains."""
    o, e = off_l3[sel], end[sel]
    short = o + 40 > e
    reason[sel[short]] = TRUNCATED_L3
    sel, o, e = _split(short, sel, o, e)
    bad = (b.u8[o] >> 4) != 6
    reason[sel[bad]] = BAD_IP_HEADER
    sel, o, e = _split(bad, sel, o, e)
    out.src_ip[sel, 0] = b.u64[o + 8]
    out.src_ip[sel, 1] = b.u64[o + 16]
    out.dst_ip[sel, 0] = b.u64[o + 24]
    out.dst_ip[sel, 1] = b.u64[o + 32]
    payload = b.u16[o + 4].astype(np.int64)
    l4[sel] = o + 40
    # Payload length 0 is a jumbogram or TSO: bound by the capture only.
    bound[sel] = np.where(payload > 0, np.minimum(e, o + 40 + payload), e)
    nh = b.u8[o + 6]
    out.proto[sel] = nh
    act = sel[_IS_EXT[nh]]
    for _ in range(MAX_IPV6_EXT):
        if act.size == 0:
            return
        p, t = l4[act], out.proto[act]
        short = p + 8 > bound[act]  # every extension header is at least 8 bytes
        reason[act[short]] = TRUNCATED_L3
        act, p, t = _split(short, act, p, t)
        length = b.u8[p + 1].astype(np.int64)
        ext_len = np.where(t == IPPROTO_FRAGMENT, 8,
                           np.where(t == IPPROTO_AH, (length + 2) * 4, (length + 1) * 8))
        cut = p + ext_len > bound[act]
        frag = ~cut & (t == IPPROTO_FRAGMENT) & ((b.u16[p + 2] >> 3) > 0)
        reason[act[cut]] = TRUNCATED_L3
        reason[act[frag]] = IP_FRAGMENT_NON_FIRST
        act, p, ext_len = _split(cut | frag, act, p, ext_len)
        nh = b.u8[p]
        out.proto[act] = nh
        l4[act] = p + ext_len
        act = act[_IS_EXT[nh]]
    reason[act] = IPV6_EXT_CHAIN_TOO_LONG


def _transport(b: _Bytes, reason, out, l4, bound) -> None:
    """Read ports (and TCP flags/window) of every kept packet with a port-carrying protocol."""
    ok = reason == OK
    tcp = np.flatnonzero((out.proto == IPPROTO_TCP) & ok)
    p = l4[tcp]
    short = p + 16 > bound[tcp]
    reason[tcp[short]] = TRUNCATED_L4
    tcp, p = _split(short, tcp, p)
    ports = b.u32[p]  # source port in the high half, destination in the low
    out.src_port[tcp] = ports >> 16
    out.dst_port[tcp] = ports & 0xFFFF
    out.tcp_flags[tcp] = b.u8[p + 13]
    out.tcp_win[tcp] = b.u16[p + 14]

    ported = np.flatnonzero(_HAS_PORTS[out.proto] & ok)
    p = l4[ported]
    short = p + 4 > bound[ported]
    reason[ported[short]] = TRUNCATED_L4
    ported, p = _split(short, ported, p)
    ports = b.u32[p]
    out.src_port[ported] = ports >> 16
    out.dst_port[ported] = ports & 0xFFFF


def decode_frames(
    buf: np.ndarray, offsets: np.ndarray, caplen: np.ndarray, linktype: int | np.ndarray
) -> Decoded:
    """Decode ``n`` frames held in ``buf``.

    Args:
        buf: uint8 ``(B,)``, the bytes holding the frames (e.g. one chunk of a capture).
        offsets: int64 ``(n,)``, byte offset of each frame's first byte in ``buf``.
        caplen: int64 ``(n,)``, captured bytes of each frame; ``offsets + caplen <= B``.
        linktype: the link type of every frame, as one int or an int ``(n,)`` array.

    Returns:
        :class:`Decoded` with one row per frame; ``reason`` says which rows are kept.
    """
    buf = np.ascontiguousarray(buf, dtype=np.uint8)
    offsets = np.asarray(offsets, dtype=np.int64)
    end = offsets + np.asarray(caplen, dtype=np.int64)
    n = offsets.shape[0]
    if n and (end.max() > buf.shape[0] or offsets.min() < 0):
        raise ValueError(f"a frame lies outside the buffer of {buf.shape[0]} bytes")
    out = Decoded(
        reason=np.zeros(n, np.uint8),
        src_ip=np.zeros((n, 2), np.uint64),
        dst_ip=np.zeros((n, 2), np.uint64),
        src_port=np.zeros(n, np.uint16),
        dst_port=np.zeros(n, np.uint16),
        proto=np.zeros(n, np.uint8),
        tcp_flags=np.zeros(n, np.uint8),
        tcp_win=np.zeros(n, np.uint16),
    )
    b = _Bytes(buf)
    reason = out.reason
    l3 = np.zeros(n, np.int64)
    ethertype = np.zeros(n, np.int64)
    if np.ndim(linktype) == 0:
        _link_layer(b, offsets, end, int(linktype), reason, l3, ethertype, None)
    else:
        linktype = np.asarray(linktype)
        for lt in np.unique(linktype):
            sel = np.flatnonzero(linktype == lt)
            _link_layer(b, offsets, end, int(lt), reason, l3, ethertype, sel)
    _strip_vlan(b, end, reason, l3, ethertype)

    l4 = np.zeros(n, np.int64)  # offset of the transport header
    bound = np.zeros(n, np.int64)  # end of the IP datagram's captured bytes
    live = reason == OK
    is_v4 = ethertype == ETH_IPV4
    is_v6 = ethertype == ETH_IPV6
    reason[live & ~is_v4 & ~is_v6] = NON_IP
    _ipv4(b, l3, end, np.flatnonzero(live & is_v4), reason, out, l4, bound)
    _ipv6(b, l3, end, np.flatnonzero(live & is_v6), reason, out, l4, bound)
    _transport(b, reason, out, l4, bound)
    return out


def count_skips(reason: np.ndarray, linktype: int | np.ndarray, skips) -> None:
    """Add the skipped rows of ``reason`` to ``skips`` (a Counter) by reason name.

    Unsupported link types are counted as ``unsupported_linktype_<n>``.
    """
    counts = np.bincount(reason, minlength=len(REASON_NAMES))
    for code in np.flatnonzero(counts):
        if code == OK:
            continue
        if code == UNSUPPORTED_LINKTYPE:
            lts = np.broadcast_to(np.asarray(linktype), reason.shape)[reason == code]
            values, per = np.unique(lts, return_counts=True)
            for lt, c in zip(values.tolist(), per.tolist()):
                skips[f"unsupported_linktype_{lt}"] += c
        else:
            skips[REASON_NAMES[code]] += int(counts[code])
