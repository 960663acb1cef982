"""janus.capture.pcapwrite: every header field checked against dpkt's parse and independent checksums."""

from __future__ import annotations

import ipaddress
import struct

import dpkt
import pytest

from janus.capture import pcapwrite as pw

MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("02aabbccddee")


def csum(data: bytes) -> int:
    """Plain RFC 1071 sum (independent of the module): 0 over data with a correct checksum."""
    if len(data) % 2:
        data += b"\0"
    total = sum((data[i] << 8) | data[i + 1] for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def pseudo(src: str, dst: str, proto: int, length: int) -> bytes:
    s, d = ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed
    if len(s) == 4:
        return s + d + struct.pack("!BBH", 0, proto, length)
    return s + d + struct.pack("!IxxxB", length, proto)


def test_ipv4_header_matches_textbook_example():
    # The classic worked example: 192.168.0.1 -> 192.168.0.199, UDP, total length 0x73.
    hdr = pw.ipv4_header("192.168.0.1", "192.168.0.199", 17, 0x73 - 20, ttl=64, ident=0)
    assert hdr == bytes.fromhex("4500007300004000" "4011b861c0a80001c0a800c7")


@pytest.mark.parametrize("payload", [0, 1, 1000, b"GET / HTTP/1.1\r\n\r\n", b"odd"])
def test_tcp_ipv4_frame_fields(payload):
    flags = pw.PSH | pw.ACK
    frame = pw.tcp_frame("10.1.2.3", "203.0.113.9", 51515, 443, seq=0xFFFFFFF0, ack=12345, flags=flags,
                         win=502, payload=payload, ttl=128, ident=0xBEEF, src_mac=MAC_A, dst_mac=MAC_B)
    n = payload if isinstance(payload, int) else len(payload)
    assert len(frame) == 14 + 20 + 20 + n
    eth = dpkt.ethernet.Ethernet(frame)
    assert (eth.src, eth.dst, eth.type) == (MAC_A, MAC_B, dpkt.ethernet.ETH_TYPE_IP)
    ip = eth.data
    assert (ip.v, ip.hl, ip.tos, ip.len, ip.id, ip.ttl, ip.p) == (4, 5, 0, 40 + n, 0xBEEF, 128, 6)
    assert ip.df == 1 and ip.mf == 0 and ip.offset == 0
    assert (ip.src, ip.dst) == (bytes([10, 1, 2, 3]), bytes([203, 0, 113, 9]))
    assert csum(frame[14:34]) == 0
    tcp = ip.data
    assert (tcp.sport, tcp.dport, tcp.seq, tcp.ack, tcp.off, tcp.flags, tcp.win, tcp.urp) == (
        51515, 443, 0xFFFFFFF0, 12345, 5, flags, 502, 0)
    assert tcp.data == (bytes(payload) if isinstance(payload, int) else payload)
    assert csum(pseudo("10.1.2.3", "203.0.113.9", 6, 20 + n) + frame[34:]) == 0


def test_tcp_ipv6_frame_fields():
    src, dst = "2001:db8::1", "2606:4700::6810:84e5"
    frame = pw.tcp_frame(src, dst, 40000, 80, seq=7, ack=9, flags=pw.SYN, win=64800, payload=3, ipv6=True,
                         ttl=57, flow_label=0xABCDE)
    assert len(frame) == 14 + 40 + 20 + 3
    eth = dpkt.ethernet.Ethernet(frame)
    assert eth.type == dpkt.ethernet.ETH_TYPE_IP6
    ip6 = eth.data
    assert (ip6.v, ip6.plen, ip6.nxt, ip6.hlim, ip6.flow) == (6, 23, 6, 57, 0xABCDE)
    assert ip6.src == ipaddress.ip_address(src).packed and ip6.dst == ipaddress.ip_address(dst).packed
    tcp = ip6.data
    assert (tcp.sport, tcp.dport, tcp.seq, tcp.ack, tcp.flags, tcp.win) == (40000, 80, 7, 9, pw.SYN, 64800)
    assert csum(pseudo(src, dst, 6, 23) + frame[54:]) == 0


@pytest.mark.parametrize("v6", [False, True])
def test_udp_frame_fields(v6):
    src, dst = ("2001:db8::5", "2001:db8::35") if v6 else ("10.0.0.5", "10.0.0.53")
    frame = pw.udp_frame(src, dst, 5353, 53, payload=b"\x12\x34query", ipv6=v6, ttl=63, ident=7)
    ip = dpkt.ethernet.Ethernet(frame).data
    udp = ip.data
    assert (udp.sport, udp.dport, udp.ulen, udp.data) == (5353, 53, 15, b"\x12\x34query")
    l3 = 40 if v6 else 20
    assert csum(pseudo(src, dst, 17, 15) + frame[14 + l3:]) == 0
    if not v6:
        assert (ip.len, ip.id, ip.ttl, ip.p) == (35, 7, 63, 17) and csum(frame[14:34]) == 0
    else:
        assert (ip.plen, ip.nxt, ip.hlim) == (15, 17, 63)


def test_icmp_echo_and_icmpv6():
    frame = pw.icmp_frame("10.0.0.1", "8.8.8.8", 8, 0, 0x1234 << 16 | 7, payload=56)
    ip = dpkt.ethernet.Ethernet(frame).data
    assert ip.p == 1 and ip.len == 20 + 8 + 56
    icmp = ip.data
    assert (icmp.type, icmp.code) == (8, 0)
    assert frame[38:42] == struct.pack("!HH", 0x1234, 7)
    assert csum(frame[34:]) == 0
    f6 = pw.icmp_frame("2001:db8::1", "2001:db8::2", 128, 0, 1, payload=8, ipv6=True)
    ip6 = dpkt.ethernet.Ethernet(f6).data
    assert ip6.nxt == 58 and ip6.plen == 16 and ip6.data.type == 128
    assert csum(pseudo("2001:db8::1", "2001:db8::2", 58, 16) + f6[54:]) == 0


def test_ipv4_fragments_reassemble():
    l4 = pw.udp_datagram("198.51.100.7", "10.0.0.9", 53, 40000, payload=bytes(range(256)) * 12)
    frames = pw.ipv4_fragment_frames("198.51.100.7", "10.0.0.9", 17, l4, 1500, ident=0x4242)
    assert len(frames) == 3  # 3080 bytes in 1480-byte pieces
    data, offsets = b"", []
    for i, f in enumerate(frames):
        ip = dpkt.ethernet.Ethernet(f).data
        assert len(f) - 14 <= 1500 and ip.id == 0x4242 and ip.df == 0
        assert ip.mf == (1 if i < len(frames) - 1 else 0)
        assert csum(f[14:34]) == 0
        offsets.append(ip.offset * 8)
        data += f[34:]
    assert offsets == [0, 1480, 2960] and data == l4


def test_frame_errors():
    with pytest.raises(ValueError, match="not IPv4"):
        pw.tcp_frame("2001:db8::1", "10.0.0.1", 1, 2)
    with pytest.raises(ValueError, match="multiple of 8"):
        pw.ipv4_header(1, 2, 17, 10, frag_offset=12)
    with pytest.raises(ValueError, match="2 timestamps for 1 frames"):
        pw.pcap_bytes([0.0, 1.0], [b"x"])


@pytest.mark.parametrize("nanosecond", [False, True])
def test_write_pcap_roundtrip(tmp_path, nanosecond):
    frames = [pw.tcp_frame("10.0.0.1", "10.0.0.2", 1000 + i, 80, payload=300 * i) for i in range(4)]
    ts = [1767614400.0, 1767614400.000001, 1767614400.5, 1767614401.25]
    path = tmp_path / "x.pcap"
    size = pw.write_pcap(path, ts, frames, nanosecond=nanosecond, snaplen=96)
    raw = path.read_bytes()
    assert size == len(raw)
    magic, vmaj, vmin, _, _, snaplen, linktype = struct.unpack("<IHHiIII", raw[:24])
    assert magic == (0xA1B23C4D if nanosecond else 0xA1B2C3D4)
    assert (vmaj, vmin, snaplen, linktype) == (2, 4, 96, 1)
    off, scale = 24, 10**9 if nanosecond else 10**6
    for t, f in zip(ts, frames):
        sec, frac, incl, orig = struct.unpack("<IIII", raw[off:off + 16])
        assert sec == int(t) and abs(frac - round((t - int(t)) * scale)) <= (256 if nanosecond else 0)
        assert incl == min(96, len(f)) and orig == len(f)
        assert raw[off + 16:off + 16 + incl] == f[:incl]
        off += 16 + incl
    assert off == len(raw)
    with open(path, "rb") as fh:
        got = list(dpkt.pcap.Reader(fh))
    assert len(got) == 4 and float(got[1][0]) == pytest.approx(ts[1], abs=1e-6)
    assert not list(tmp_path.glob(".*tmp"))  # the atomic writer left no temporary behind


def test_write_pcap_orig_lens(tmp_path):
    frame = pw.udp_frame("10.0.0.1", "10.0.0.2", 1, 2)
    pw.write_pcap(tmp_path / "y.pcap", [1.0], [frame], orig_lens=[1514])
    assert struct.unpack("<IIII", (tmp_path / "y.pcap").read_bytes()[24:40])[2:] == (len(frame), 1514)
    with pytest.raises(ValueError, match="shorter than"):
        pw.pcap_bytes([1.0], [frame], orig_lens=[10])
