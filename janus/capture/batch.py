"""`PacketBatch`: the decoded header fields of a run of packets, as parallel NumPy arrays.

This is the hand-off between reading captures (:mod:`janus.capture.pcap`, :mod:`janus.capture.decode`) and
flow assembly (:mod:`janus.capture.flows`). Only packets that decoded to an IPv4/IPv6 packet with a
usable transport key are in a batch; everything else is counted in
:class:`SkipCounter` by reason and never silently dropped.

Addresses are 16 bytes (IPv4 as IPv4-mapped IPv6, ``::ffff:a.b.c.d``) held as two
``uint64`` words, most significant first, so that comparing ``(hi, lo)`` orders addresses
numerically.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from dataclasses import dataclass, fields

import numpy as np


@dataclass
class PacketBatch:
    """``n`` decoded packets in capture (file) order. All arrays have length ``n``."""

    ts: np.ndarray  # float64 (n,), Unix seconds (UTC) with the capture's resolution
    wire_len: np.ndarray  # uint32 (n,), frame length on the wire in bytes (record orig_len)
    src_ip: np.ndarray  # uint64 (n, 2), 16-byte address, hi word first
    dst_ip: np.ndarray  # uint64 (n, 2)
    src_port: np.ndarray  # uint16 (n,), 0 for protocols without ports
    dst_port: np.ndarray  # uint16 (n,)
    proto: np.ndarray  # uint8 (n,), IP protocol number of the transport header
    tcp_flags: np.ndarray  # uint8 (n,), TCP flags byte (FIN=1 SYN=2 RST=4 PSH=8 ACK=16); 0 if not TCP
    tcp_win: np.ndarray  # uint16 (n,), TCP window field; 0 if not TCP
    file_index: np.ndarray  # int32 (n,), index of the capture file in the extraction's file list

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    def take(self, index: np.ndarray) -> PacketBatch:
        """Rows ``index`` (a boolean mask or integer indices) as a new batch."""
        return PacketBatch(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    @staticmethod
    def concat(batches: list[PacketBatch]) -> PacketBatch:
        """Concatenate batches in order."""
        return PacketBatch(
            **{f.name: np.concatenate([getattr(b, f.name) for b in batches]) for f in fields(PacketBatch)}
        )

    @staticmethod
    def empty() -> PacketBatch:
        return PacketBatch(
            ts=np.zeros(0, np.float64),
            wire_len=np.zeros(0, np.uint32),
            src_ip=np.zeros((0, 2), np.uint64),
            dst_ip=np.zeros((0, 2), np.uint64),
            src_port=np.zeros(0, np.uint16),
            dst_port=np.zeros(0, np.uint16),
            proto=np.zeros(0, np.uint8),
            tcp_flags=np.zeros(0, np.uint8),
            tcp_win=np.zeros(0, np.uint16),
            file_index=np.zeros(0, np.int32),
        )


# TCP flag bits in the flags byte.
TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK = 0x01, 0x02, 0x04, 0x08, 0x10

_V4_MAPPED_HI = np.uint64(0)
_V4_MAPPED_LO_PREFIX = np.uint64(0x0000FFFF00000000)


def ip_words_from_text(addresses: list[str]) -> np.ndarray:
    """Text addresses -> uint64 ``(n, 2)`` words (IPv4 mapped into IPv6)."""
    out = np.zeros((len(addresses), 2), np.uint64)
    for i, text in enumerate(addresses):
        ip = ipaddress.ip_address(text)
        value = int(ip) | (0xFFFF << 32) if ip.version == 4 else int(ip)
        out[i, 0] = value >> 64
        out[i, 1] = value & 0xFFFFFFFFFFFFFFFF
    return out


def ip_text_from_words(words: np.ndarray) -> list[str]:
    """uint64 ``(n, 2)`` words -> text (dotted quad for IPv4-mapped, RFC 5952 otherwise).

    Vectorised for IPv4 (the common case); IPv6 goes through :mod:`ipaddress`.
    """
    words = np.asarray(words, dtype=np.uint64)
    is_v4 = (words[:, 0] == _V4_MAPPED_HI) & ((words[:, 1] >> np.uint64(32)) == np.uint64(0xFFFF))
    out = np.empty(words.shape[0], dtype=object)
    if is_v4.any():
        v4 = (words[is_v4, 1] & np.uint64(0xFFFFFFFF)).astype(np.uint32)
        octets = [((v4 >> np.uint32(s)) & np.uint32(0xFF)).astype(str) for s in (24, 16, 8, 0)]
        dotted = np.char.add(np.char.add(np.char.add(octets[0], "."), np.char.add(octets[1], ".")),
                             np.char.add(np.char.add(octets[2], "."), octets[3]))
        out[is_v4] = dotted
    for i in np.flatnonzero(~is_v4):
        value = (int(words[i, 0]) << 64) | int(words[i, 1])
        out[i] = str(ipaddress.IPv6Address(value))
    return out.tolist()


class SkipCounter(Counter):
    """Packets not turned into flow packets, counted by reason (a ``collections.Counter``).

    Reasons are short snake_case strings, e.g. ``non_ip``, ``ip_fragment_non_first``,
    ``truncated_l3``, ``unsupported_linktype_113``. A few keys count something other than
    packets (``truncated_tail_bytes`` counts bytes, ``pcapng_unknown_block`` counts blocks);
    :data:`janus.capture.pcap.NON_PACKET_SKIP_KEYS` lists them.
    """
