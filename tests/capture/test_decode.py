"""janus.capture.decode: hand-built frames of every link type and header chain, field by field."""

from __future__ import annotations

import ipaddress

import numpy as np
import pytest
from capture_builders import (
    ACK,
    ETH_ARP,
    ETH_LLDP,
    FIN,
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_SCTP,
    PROTO_TCP,
    PROTO_UDP,
    PSH,
    SYN,
    TPID_8021AD,
    TPID_9100,
    Ext,
    ethernet,
    icmp,
    icmpv6,
    ipv4,
    ipv6,
    null_loop,
    sctp,
    sll,
    sll2,
    tcp,
    udp,
)

from janus.capture.batch import SkipCounter, ip_text_from_words
from janus.capture.decode import REASON_NAMES, count_skips, decode_frames

V4_TCP = ipv4(tcp(40000, 443, flags=SYN | ACK, window=29200), "192.168.1.10", "93.184.216.34")
V6_UDP = ipv6(udp(5353, 53, b"q" * 12), "fe80::1", "2001:db8::53", PROTO_UDP)


def decode(frames: list[bytes], linktype: int | list[int] = 1) -> list[dict]:
    """Decode frames laid end to end in one buffer (with a gap, so that reads past a frame's
    end would see 0xEE bytes, not zeros); one dict of fields per frame."""
    gap = b"\xee" * 3
    buf = gap.join(frames) + gap
    offsets, pos = [], 0
    for f in frames:
        offsets.append(pos)
        pos += len(f) + len(gap)
    lt = linktype if isinstance(linktype, int) else np.array(linktype)
    d = decode_frames(np.frombuffer(buf, np.uint8), np.array(offsets, np.int64),
                      np.array([len(f) for f in frames], np.int64), lt)
    src, dst = ip_text_from_words(d.src_ip), ip_text_from_words(d.dst_ip)
    return [
        {"reason": REASON_NAMES[d.reason[i]], "src": src[i], "dst": dst[i],
         "sport": int(d.src_port[i]), "dport": int(d.dst_port[i]), "proto": int(d.proto[i]),
         "flags": int(d.tcp_flags[i]), "win": int(d.tcp_win[i])}
        for i in range(len(frames))
    ]


def one(frame: bytes, linktype: int = 1) -> dict:
    return decode([frame], linktype)[0]


def fields(reason="ok", src="", dst="", sport=0, dport=0, proto=0, flags=0, win=0) -> dict:
    return {"reason": reason, "src": src, "dst": dst, "sport": sport, "dport": dport,
            "proto": proto, "flags": flags, "win": win}


V4_TCP_FIELDS = fields(src="192.168.1.10", dst="93.184.216.34", sport=40000, dport=443,
                       proto=6, flags=SYN | ACK, win=29200)
V6_UDP_FIELDS = fields(src="fe80::1", dst="2001:db8::53", sport=5353, dport=53, proto=17)


# --------------------------------------------------------------------------- link layers
@pytest.mark.parametrize(
    "frame, linktype",
    [
        (ethernet(V4_TCP), 1),
        (ethernet(V4_TCP, vlans=[100]), 1),
        (ethernet(V4_TCP, vlans=[(TPID_8021AD, 10), 20]), 1),  # QinQ
        (ethernet(V4_TCP, vlans=[(TPID_9100, 10), (TPID_8021AD, 20), 30]), 1),
        (sll(V4_TCP), 113),
        (sll(V4_TCP, packet_type=4, address=b"\x01\x02\x03\x04\x05\x06\x07\x08"), 113),
        (sll2(V4_TCP), 276),
        (V4_TCP, 101),
        (V4_TCP, 12),
        (V4_TCP, 14),
        (V4_TCP, 228),
        (null_loop(V4_TCP, 2), 0),
        (null_loop(V4_TCP, 2, big_endian=True), 0),
        (null_loop(V4_TCP, 2, big_endian=True), 108),
        (null_loop(V4_TCP, 2), 108),
    ],
)
def test_ipv4_over_every_link_type(frame, linktype):
    assert one(frame, linktype) == V4_TCP_FIELDS


@pytest.mark.parametrize(
    "frame, linktype",
    [
        (ethernet(V6_UDP), 1),
        (ethernet(V6_UDP, vlans=[(TPID_8021AD, 7), 8]), 1),
        (sll(V6_UDP), 113),
        (sll2(V6_UDP), 276),
        (V6_UDP, 101),
        (V6_UDP, 229),
        (null_loop(V6_UDP, 24), 0),
        (null_loop(V6_UDP, 28), 0),
        (null_loop(V6_UDP, 30, big_endian=True), 0),
        (null_loop(V6_UDP, 30, big_endian=True), 108),
        (null_loop(V6_UDP, 24), 108),
    ],
)
def test_ipv6_over_every_link_type(frame, linktype):
    assert one(frame, linktype) == V6_UDP_FIELDS


def test_mixed_link_types_in_one_call():
    frames = [ethernet(V4_TCP), V6_UDP, sll(V4_TCP), null_loop(V6_UDP, 30), b"\x00" * 40]
    out = decode(frames, [1, 101, 113, 0, 147])
    assert out[:4] == [V4_TCP_FIELDS, V6_UDP_FIELDS, V4_TCP_FIELDS, V6_UDP_FIELDS]
    assert out[4]["reason"] == "unsupported_linktype"


@pytest.mark.parametrize(
    "frame, linktype",
    [
        (ethernet(b"\x00" * 28, ETH_ARP), 1),
        (ethernet(b"\x00" * 30, ETH_LLDP), 1),
        (ethernet(b"\x00" * 30, ETH_ARP, vlans=[5]), 1),
        (ethernet(b"\x00" * 46, 0x002E), 1),  # 802.3 length field, LLC follows
        (sll(b"\x00" * 28, ETH_ARP), 113),
        (b"\x50" + b"\x00" * 39, 101),  # version nibble 5
        (null_loop(V4_TCP, 7), 0),  # AF 7 is neither IPv4 nor IPv6
    ],
)
def test_non_ip(frame, linktype):
    assert one(frame, linktype)["reason"] == "non_ip"


def test_unsupported_link_type_is_counted_by_number():
    frames = [b"\x00" * 40] * 3 + [ethernet(V4_TCP), ethernet(b"", ETH_ARP)]
    lts = np.array([147, 147, 127, 1, 1])
    buf = np.frombuffer(b"".join(frames), np.uint8)
    offsets = np.cumsum([0] + [len(f) for f in frames[:-1]])
    d = decode_frames(buf, offsets, np.array([len(f) for f in frames]), lts)
    skips = SkipCounter()
    count_skips(d.reason, lts, skips)
    assert skips == {"unsupported_linktype_147": 2, "unsupported_linktype_127": 1, "non_ip": 1}


def test_vlan_stack_too_deep():
    assert one(ethernet(V4_TCP, vlans=list(range(1, 10))))["reason"] == "vlan_stack_too_deep"
    assert one(ethernet(V4_TCP, vlans=list(range(1, 9)))) == V4_TCP_FIELDS


# --------------------------------------------------------------------------- IPv4
def test_ipv4_options_move_the_transport_header():
    pkt = ipv4(udp(1, 2), "1.2.3.4", "5.6.7.8", PROTO_UDP, options=b"\x94\x04\x00\x00" * 3)
    assert one(ethernet(pkt)) == fields(src="1.2.3.4", dst="5.6.7.8", sport=1, dport=2,
                                        proto=17)


def test_ipv4_fragments():
    first = ipv4(udp(1000, 2000, b"x" * 32), proto=PROTO_UDP, more_fragments=True, ident=9)
    middle = ipv4(b"\x00\x01\x00\x02" + b"y" * 28, proto=PROTO_UDP, frag_offset=40,
                  more_fragments=True, ident=9)
    last = ipv4(b"z" * 16, proto=PROTO_UDP, frag_offset=80, ident=9)
    out = decode([ethernet(first), ethernet(middle), ethernet(last)])
    assert out[0]["reason"] == "ok" and (out[0]["sport"], out[0]["dport"]) == (1000, 2000)
    # Later fragments hold payload bytes, not ports: skipped, never given invented ports.
    assert [o["reason"] for o in out[1:]] == ["ip_fragment_non_first"] * 2
    assert all(o["sport"] == o["dport"] == 0 for o in out[1:])


@pytest.mark.parametrize("first_byte", [0x44, 0x55, 0x65])
def test_bad_ipv4_header(first_byte):
    pkt = bytearray(V4_TCP)
    pkt[0] = first_byte  # IHL 4 (< 20 bytes), or version 5
    assert one(bytes(pkt), 228)["reason"] == "bad_ip_header"


def test_ethernet_padding_is_not_read_as_a_header():
    # IPv4 says 20 bytes, nothing after the header; the frame is padded to 60 bytes.
    pkt = ipv4(b"", proto=PROTO_TCP) + b"\x01" * 26
    assert one(ethernet(pkt))["reason"] == "truncated_l4"
    # Total length 0 (TSO): bounded by the capture only.
    assert one(ethernet(ipv4(tcp(1, 2), total_length=0)))["sport"] == 1


# --------------------------------------------------------------------------- IPv6
@pytest.mark.parametrize(
    "ext",
    [
        [Ext(0)],
        [Ext(0, b"\x01\x04\x00\x00\x00\x00" + b"\x00" * 8)],
        [Ext(0), Ext(43, b"\x00" * 22), Ext(60)],
        [Ext(44, frag_offset=0, more=True, ident=77)],
        [Ext(51, b"\xaa" * 12)],
        [Ext(0), Ext(51, b"\xaa" * 4), Ext(44, more=True), Ext(60, b"\x00" * 30)],
        [Ext(135, b"\x00" * 6)],
    ],
)
def test_ipv6_extension_headers_are_walked(ext):
    pkt = ipv6(tcp(22, 51000, flags=PSH | ACK, window=501), "2001:db8::a", "2001:db8::b",
               PROTO_TCP, ext=ext)
    assert one(ethernet(pkt)) == fields(src="2001:db8::a", dst="2001:db8::b", sport=22,
                                        dport=51000, proto=6, flags=PSH | ACK, win=501)


def test_ipv6_non_first_fragment_is_skipped():
    pkt = ipv6(b"\x00\x16\xc7\x38" + b"\x00" * 20, proto=PROTO_TCP,
               ext=[Ext(0), Ext(44, frag_offset=1448, more=False)])
    assert one(ethernet(pkt))["reason"] == "ip_fragment_non_first"


def test_ipv6_no_next_header_and_esp_are_kept_without_ports():
    out = decode([ethernet(ipv6(b"", proto=59, ext=[Ext(60)])),
                  ethernet(ipv6(b"\x00" * 16, proto=50))])
    assert [(o["reason"], o["proto"], o["sport"], o["dport"]) for o in out] == [
        ("ok", 59, 0, 0), ("ok", 50, 0, 0)]


def test_ipv6_ext_chain_too_long():
    pkt = ipv6(udp(1, 2), proto=PROTO_UDP, ext=[Ext(60)] * 13)
    assert one(ethernet(pkt))["reason"] == "ipv6_ext_chain_too_long"
    assert one(ethernet(ipv6(udp(1, 2), proto=PROTO_UDP, ext=[Ext(60)] * 12)))["sport"] == 1


# --------------------------------------------------------------------------- transport
def test_transport_protocols():
    frames = [
        ethernet(ipv4(icmp(8, 0), "10.0.0.1", "10.0.0.2", PROTO_ICMP)),
        ethernet(ipv6(icmpv6(128, 0), "::1", "::2", PROTO_ICMPV6)),
        ethernet(ipv4(sctp(2905, 2906, b"\x00" * 16), proto=PROTO_SCTP)),
        ethernet(ipv4(b"\x00" * 24, proto=47)),  # GRE: kept, no ports
        ethernet(ipv4(tcp(80, 1025, flags=FIN | ACK, window=0xFFFF))),
        ethernet(ipv4(udp(68, 67, b"\x00" * 300), proto=PROTO_UDP)),
    ]
    got = [(o["reason"], o["proto"], o["sport"], o["dport"], o["flags"], o["win"])
           for o in decode(frames)]
    assert got == [
        ("ok", 1, 0, 0, 0, 0), ("ok", 58, 0, 0, 0, 0), ("ok", 132, 2905, 2906, 0, 0),
        ("ok", 47, 0, 0, 0, 0), ("ok", 6, 80, 1025, FIN | ACK, 0xFFFF),
        ("ok", 17, 68, 67, 0, 0),
    ]


# --------------------------------------------------------------------------- truncation
@pytest.mark.parametrize(
    "frame, linktype, reason",
    [
        (b"", 1, "truncated_l2"),
        (ethernet(V4_TCP)[:13], 1, "truncated_l2"),
        (ethernet(V4_TCP, vlans=[1, 2])[:19], 1, "truncated_l2"),  # second tag cut
        (sll(V4_TCP)[:15], 113, "truncated_l2"),
        (sll2(V4_TCP)[:19], 276, "truncated_l2"),
        (null_loop(V4_TCP, 2)[:3], 0, "truncated_l2"),
        (b"", 101, "truncated_l2"),
        (ethernet(V4_TCP)[:14 + 19], 1, "truncated_l3"),
        (ethernet(ipv4(tcp(1, 2), options=b"\x01" * 8))[:14 + 24], 1, "truncated_l3"),
        (ethernet(V6_UDP)[:14 + 39], 1, "truncated_l3"),
        (ethernet(ipv6(udp(1, 2), proto=PROTO_UDP, ext=[Ext(0, b"\x00" * 14)]))[:14 + 50], 1,
         "truncated_l3"),
        (ethernet(V4_TCP)[:14 + 20 + 15], 1, "truncated_l4"),
        (ethernet(ipv4(udp(1, 2), proto=PROTO_UDP))[:14 + 20 + 3], 1, "truncated_l4"),
        (ethernet(ipv6(tcp(1, 2)))[:14 + 40 + 10], 1, "truncated_l4"),
    ],
)
def test_truncated_headers(frame, linktype, reason):
    assert one(frame, linktype)["reason"] == reason


def test_tcp_needs_only_the_bytes_it_reads():
    # 16 bytes reach the window field: enough, even if the rest of the header is cut.
    out = one(ethernet(V4_TCP)[:14 + 20 + 16])
    assert out == V4_TCP_FIELDS


def test_ipv6_address_words_round_trip():
    src = "2001:db8:85a3::8a2e:370:7334"
    out = decode_frames(np.frombuffer(ipv6(udp(1, 2), src, "::1", PROTO_UDP), np.uint8),
                        np.array([0]), np.array([48]), 101)
    value = int(ipaddress.IPv6Address(src))
    assert out.src_ip[0].tolist() == [value >> 64, value & (2**64 - 1)]
    assert out.dst_ip[0].tolist() == [0, 1]


def test_empty_input():
    d = decode_frames(np.zeros(0, np.uint8), np.zeros(0, np.int64), np.zeros(0, np.int64), 1)
    assert d.reason.shape == (0,) and d.src_ip.shape == (0, 2)


@pytest.mark.parametrize("linktype", [0, 1, 101, 113, 276])
def test_frames_shorter_than_the_link_header_in_a_tiny_buffer(linktype):
    d = decode_frames(np.zeros(2, np.uint8), np.array([0, 1]), np.array([1, 1]), linktype)
    assert d.reason.tolist() == ([4, 4] if linktype == 101 else [1, 1])  # raw: version 0
