"""janus.capture.pcap: formats, link types, chunking, damaged files, dpkt equivalence, real captures."""

from __future__ import annotations

import gzip
import ipaddress
import logging
import random
import socket
import struct
from pathlib import Path

import dpkt
import numpy as np
import pytest
from capture_builders import (
    ACK,
    ETH_ARP,
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
    SYN,
    TPID_8021AD,
    Ext,
    Record,
    epb,
    ethernet,
    icmp,
    idb,
    ipv4,
    ipv6,
    null_loop,
    packet_block,
    pcap_bytes,
    pcap_header,
    pcap_record,
    pcapng_bytes,
    raw_block,
    shb,
    sll,
    sll2,
    spb,
    tcp,
    udp,
)

from janus.capture.batch import PacketBatch, SkipCounter, ip_text_from_words
from janus.capture.pcap import detect_format, iter_capture
from janus.errors import CaptureError

T0 = 1_499_083_680.0  # 2017-07-03 12:08 UTC


def write(tmp_path: Path, data: bytes, name: str = "x.pcap") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def read(path: Path, **kw) -> tuple[PacketBatch, SkipCounter]:
    skips = SkipCounter()
    batches = list(iter_capture(path, skips=skips, **kw))
    return (PacketBatch.concat(batches) if batches else PacketBatch.empty()), skips


def tcp_frame(i: int, **kw) -> bytes:
    return ethernet(ipv4(tcp(1000 + i, 80, flags=SYN, window=100 + i), "10.0.0.1",
                         f"10.0.{i // 256}.{i % 256}"), **kw)


def batch_equal(a: PacketBatch, b: PacketBatch) -> bool:
    return all(np.array_equal(getattr(a, k), getattr(b, k)) for k in a.__dataclass_fields__)


# --------------------------------------------------------------------------- detect_format
def test_detect_format(tmp_path):
    assert detect_format(write(tmp_path, pcap_bytes([]))) == "pcap"
    ns_be = pcap_bytes([], big_endian=True, nanosecond=True)
    assert detect_format(write(tmp_path, ns_be)) == "pcap"
    assert detect_format(write(tmp_path, pcapng_bytes([shb(big_endian=True)]))) == "pcapng"


@pytest.mark.parametrize(
    "data, words",
    [
        (gzip.compress(pcap_bytes([])), ["1f 8b", "gzip", "gunzip"]),
        (b"PK\x03\x04" + b"\x00" * 40, ["50 4b 03 04", "zip"]),
        (b"Flow ID,Source IP,Source Port\n1,2,3\n", ["46 6c 6f 77", "text"]),
        (b"\x0a\x0d\x0d\x0a\x1c\x00\x00\x00\x00\x00\x00\x00", ["pcapng", "byte-order"]),
        (bytes(range(7)), ["00 01 02 03 04 05 06"]),
    ],
)
def test_not_a_capture_names_file_bytes_and_hint(tmp_path, data, words):
    path = write(tmp_path, data, "weird.bin")
    with pytest.raises(CaptureError) as err:
        list(iter_capture(path))
    msg = str(err.value)
    assert str(path) in msg and "not a pcap or pcapng" in msg
    for w in words:
        assert w in msg


def test_empty_and_missing_files(tmp_path):
    with pytest.raises(CaptureError, match="empty"):
        detect_format(write(tmp_path, b""))
    with pytest.raises(CaptureError, match="no such file"):
        list(iter_capture(tmp_path / "absent.pcap"))
    with pytest.raises(CaptureError, match="header is truncated"):
        list(iter_capture(write(tmp_path, pcap_bytes([])[:20])))


def test_header_only_pcap_has_no_packets(tmp_path):
    batch, skips = read(write(tmp_path, pcap_bytes([])))
    assert len(batch) == 0 and not skips


# --------------------------------------------------------------------------- pcap variants
@pytest.mark.parametrize("nanosecond", [False, True])
@pytest.mark.parametrize("big_endian", [False, True])
def test_pcap_resolutions_and_byte_orders(tmp_path, nanosecond, big_endian):
    times = [T0 + 0.000001, T0 + 0.5, T0 + 61.123456]
    if nanosecond:
        times.append(T0 + 2.000000123)
    recs = [Record(t, tcp_frame(i), orig_len=1514 - i) for i, t in enumerate(times)]
    data = pcap_bytes(recs, nanosecond=nanosecond, big_endian=big_endian)
    batch, skips = read(write(tmp_path, data), file_index=7)
    assert not skips
    units = 10**9 if nanosecond else 10**6
    expected = [round(t * units) // units + (round(t * units) % units) / units for t in times]
    assert batch.ts.tolist() == expected
    assert batch.wire_len.tolist() == [1514 - i for i in range(len(times))]
    assert batch.src_port.tolist() == [1000 + i for i in range(len(times))]
    assert batch.tcp_win.tolist() == [100 + i for i in range(len(times))]
    assert batch.file_index.tolist() == [7] * len(times)
    assert batch.ts.dtype == np.float64 and batch.wire_len.dtype == np.uint32


V4 = ipv4(udp(5000, 53), "172.16.0.5", "192.168.50.4", PROTO_UDP)
V6 = ipv6(tcp(443, 50000, flags=ACK, window=8), "2001:db8::1", "2001:db8::2", PROTO_TCP)


@pytest.mark.parametrize(
    "linktype, frames",
    [
        (1, [ethernet(V4), ethernet(V6, vlans=[(TPID_8021AD, 3), 4])]),
        (113, [sll(V4), sll(V6)]),
        (276, [sll2(V4), sll2(V6)]),
        (101, [V4, V6]),
        (12, [V4, V6]),
        (14, [V4, V6]),
        (0, [null_loop(V4, 2), null_loop(V6, 30)]),
        (108, [null_loop(V4, 2, big_endian=True), null_loop(V6, 24, big_endian=True)]),
    ],
)
def test_every_link_type_in_a_pcap(tmp_path, linktype, frames):
    batch, skips = read(write(tmp_path, pcap_bytes([(T0, f) for f in frames], linktype)))
    assert not skips
    assert ip_text_from_words(batch.src_ip) == ["172.16.0.5", "2001:db8::1"]
    assert ip_text_from_words(batch.dst_ip) == ["192.168.50.4", "2001:db8::2"]
    assert batch.proto.tolist() == [17, 6]
    assert batch.src_port.tolist() == [5000, 443] and batch.dst_port.tolist() == [53, 50000]


def test_unsupported_link_type_and_skip_reasons(tmp_path):
    batch, skips = read(write(tmp_path, pcap_bytes([(T0, V4)] * 3, linktype=147)))
    assert len(batch) == 0 and skips == {"unsupported_linktype_147": 3}
    frames = [ethernet(b"\x00" * 28, ETH_ARP), tcp_frame(1),
              ethernet(ipv4(b"\x00" * 8, proto=PROTO_UDP, frag_offset=8)), tcp_frame(2)[:20]]
    batch, skips = read(write(tmp_path, pcap_bytes([(T0 + i, f) for i, f in enumerate(frames)])))
    assert batch.ts.tolist() == [T0 + 1]
    assert skips == {"non_ip": 1, "ip_fragment_non_first": 1, "truncated_l3": 1}


def test_fcs_bits_of_the_link_type_field_are_ignored(tmp_path):
    data = bytearray(pcap_bytes([(T0, tcp_frame(0))]))
    data[20:24] = struct.pack("<I", 1 | 0x10000000 | 0x04000000)  # FCS length 1 + F bit
    batch, _ = read(write(tmp_path, bytes(data)))
    assert len(batch) == 1


# --------------------------------------------------------------------------- pcapng
def test_pcapng_two_interfaces_two_sections(tmp_path):
    eth_v4 = tcp_frame(5)
    raw_v6 = ipv6(udp(1, 2), "2001:db8::7", "2001:db8::8", PROTO_UDP)
    blocks = [
        shb(),
        idb(1, snaplen=65535),  # Ethernet, default microseconds
        raw_block(5, b"\x00" * 20),  # Interface Statistics: ignored
        idb(101, tsresol=9, tsoffset=1000),  # raw IP, nanoseconds, +1000 s
        epb(eth_v4, T0 + 0.25, iface=0),
        epb(raw_v6, T0 + 0.123456789 - 1000, iface=1, tsresol=9),
        spb(eth_v4),  # interface 0, the previous record's timestamp
        raw_block(0x12345, b"\x00" * 8),  # unknown: counted
        packet_block(eth_v4, T0 + 3, iface=0),
        # A second section, big-endian, with a 2^-20 s interface: a fresh interface list.
        shb(big_endian=True),
        idb(113, tsresol=0x80 | 20, big_endian=True),
        epb(sll(V4), T0 + 4.5, iface=0, tsresol=0x80 | 20, big_endian=True),
        spb(sll(V4), big_endian=True),
    ]
    path = write(tmp_path, pcapng_bytes(blocks), "two.pcapng")
    assert detect_format(path) == "pcapng"
    batch, skips = read(path, file_index=2)
    assert skips == {"pcapng_unknown_block": 1}
    t_v6 = (round((T0 + 0.123456789 - 1000) * 10**9) / 10**9) + 1000
    assert batch.ts.tolist() == pytest.approx([T0 + 0.25, t_v6, t_v6, T0 + 3, T0 + 4.5, T0 + 4.5],
                                              abs=1e-6, rel=0)
    assert abs(batch.ts[1] - (T0 + 0.123456789)) < 1e-6
    assert ip_text_from_words(batch.src_ip) == ["10.0.0.1", "2001:db8::7", "10.0.0.1",
                                                "10.0.0.1", "172.16.0.5", "172.16.0.5"]
    assert batch.proto.tolist() == [6, 17, 6, 6, 17, 17]
    assert batch.file_index.tolist() == [2] * 6


def test_pcapng_tsresol_exact(tmp_path):
    # 2^-10 s units: 1024 units per second; raw value 5 * 1024 + 512 = 5.5 s.
    blocks = [shb(), idb(1, tsresol=0x8A), epb(tcp_frame(0), 5.5, tsresol=0x8A),
              idb(1, tsresol=3), epb(tcp_frame(0), 7.125, iface=1, tsresol=3)]
    batch, _ = read(write(tmp_path, pcapng_bytes(blocks), "r.pcapng"))
    assert batch.ts.tolist() == [5.5, 7.125]


def test_pcapng_spb_truncated_by_snaplen_and_first_record(tmp_path):
    frame = ethernet(ipv4(udp(1, 2, b"p" * 100), proto=PROTO_UDP))
    blocks = [shb(), idb(1, snaplen=14 + 20 + 8), spb(frame)]
    batch, _ = read(write(tmp_path, pcapng_bytes(blocks), "s.pcapng"))
    # No earlier record: timestamp 0.0; the wire length is the original one.
    assert batch.ts.tolist() == [0.0] and batch.wire_len.tolist() == [len(frame)]


def test_pcapng_bad_interface_id(tmp_path, caplog):
    blocks = [shb(), idb(1), epb(tcp_frame(0), 1.0, iface=3), epb(tcp_frame(1), 2.0)]
    path = write(tmp_path, pcapng_bytes(blocks), "i.pcapng")
    with pytest.raises(CaptureError, match=r"byte 48 refers to interface 3.*1 interface"):
        read(path, strict=True)
    with caplog.at_level(logging.WARNING, logger="janus.capture.pcap"):
        batch, skips = read(path)
    assert batch.src_port.tolist() == [1001] and skips == {"pcapng_bad_interface": 1}
    assert "byte 48 refers to interface 3" in caplog.text and "counted as pcapng_bad_interface" in caplog.text


# --------------------------------------------------------------------------- chunking
def mixed_frames(n: int, seed: int = 0) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        payload = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300)))
        if rng.random() < 0.5:
            pkt = ipv4(tcp(rng.randrange(65536), 443, flags=rng.randrange(256),
                           window=rng.randrange(65536), payload=payload),
                       f"10.0.0.{rng.randrange(256)}", "10.1.1.1")
        else:
            pkt = ipv6(udp(rng.randrange(65536), 53, payload), "2001:db8::5",
                       f"2001:db8::{rng.randrange(65536):x}", PROTO_UDP,
                       ext=[Ext(0)] * rng.randrange(3))
        out.append(ethernet(pkt, vlans=[7] * rng.randrange(3)) if i % 7 else
                   ethernet(b"\x00" * 28, ETH_ARP))
    return out


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_chunk_size_does_not_change_the_output(tmp_path, fmt):
    frames = mixed_frames(400)
    if fmt == "pcap":
        data = pcap_bytes([(T0 + i * 0.001, f) for i, f in enumerate(frames)])
    else:
        blocks, be = [shb(), idb(1), idb(1, tsresol=9)], False
        for i, f in enumerate(frames):
            blocks.append(epb(f, T0 + i * 0.001, iface=i % 2, tsresol=9 if i % 2 else None,
                              big_endian=be) if i % 5 else spb(f, big_endian=be))
            if i == 200:  # a second section, in the other byte order
                be = True
                blocks += [shb(big_endian=be), idb(1, big_endian=be),
                           idb(1, tsresol=9, big_endian=be)]
        data = pcapng_bytes(blocks)
    path = write(tmp_path, data, "c." + fmt)
    whole, whole_skips = read(path)
    assert len(whole) + whole_skips["non_ip"] == 400 and whole_skips["non_ip"] == 58
    for chunk in (1, 100, 333, 4096):
        skips = SkipCounter()
        batches = list(iter_capture(path, skips=skips, chunk_bytes=chunk))
        assert len(batches) > 1
        assert batch_equal(PacketBatch.concat(batches), whole) and skips == whole_skips


# --------------------------------------------------------------------------- damage
@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
@pytest.mark.parametrize("cut", [1, 10, 17, 40])
def test_truncated_tail_keeps_every_good_record(tmp_path, caplog, fmt, cut):
    frames = [tcp_frame(i) for i in range(5)]
    if fmt == "pcap":
        data = pcap_bytes([(T0 + i, f) for i, f in enumerate(frames)])
        last = 16 + len(frames[-1])
    else:
        data = pcapng_bytes([shb(), idb(1)] + [epb(f, T0 + i) for i, f in enumerate(frames)])
        last = len(epb(frames[-1], 0))
    path = write(tmp_path, data[:-cut], "t." + fmt)
    with caplog.at_level(logging.WARNING, logger="janus.capture.pcap"):
        batch, skips = read(path, chunk_bytes=64)
    assert batch.src_port.tolist() == [1000, 1001, 1002, 1003]
    assert skips == {"truncated_tail_bytes": last - cut}
    assert f"dropped its {last - cut} bytes" in caplog.text and str(path) in caplog.text


def test_corrupt_pcap_length_in_the_middle(tmp_path):
    frames = [tcp_frame(i) for i in range(6)]
    data = bytearray(pcap_bytes([(T0 + i, f) for i, f in enumerate(frames)]))
    third = 24 + 2 * (16 + len(frames[0]))
    data[third + 8: third + 12] = struct.pack("<I", 0x00FFFFFF)
    path = write(tmp_path, bytes(data))
    skips = SkipCounter()
    got: list[PacketBatch] = []
    with pytest.raises(CaptureError, match=f"record at byte {third} claims 16777215"):
        got.extend(iter_capture(path, skips=skips, strict=True))  # keeps what came before
    assert PacketBatch.concat(got).src_port.tolist() == [1000, 1001]  # good ones delivered


def test_corrupt_pcap_length_past_eof_beyond_snaplen(tmp_path):
    data = bytearray(pcap_bytes([(T0, tcp_frame(0)), (T0, tcp_frame(1))], snaplen=96))
    data[24 + 16 + 54 + 8: 24 + 16 + 54 + 12] = struct.pack("<I", 5000)
    path = write(tmp_path, bytes(data))
    with pytest.raises(CaptureError, match=r"byte 94 claims 5000.*snaplen 96.*corrupt"):
        read(path, strict=True)
    batch, skips = read(path)  # not a cut record: damage, skipped to the end with a count
    assert batch.src_port.tolist() == [1000]
    assert skips == {"damaged_bytes_skipped": 16 + 54, "damaged_regions": 1}


@pytest.mark.parametrize(
    "mangle, match",
    [
        (lambda blk: blk[:4] + struct.pack("<I", 1 << 30) + blk[8:], "impossible length"),
        (lambda blk: blk[:4] + struct.pack("<I", len(blk) + 2) + blk[8:], "impossible length"),
        (lambda blk: blk[:-4] + struct.pack("<I", 12), "trailing length"),
        (lambda blk: blk[:20] + struct.pack("<I", 999) + blk[24:], "impossible length"),
    ],
)
def test_corrupt_pcapng_block_in_the_middle(tmp_path, mangle, match):
    frames = [tcp_frame(i) for i in range(4)]
    head = shb() + idb(1)
    blocks = [epb(f, T0 + i) for i, f in enumerate(frames)]
    offset = len(head) + len(blocks[0])
    blocks[1] = mangle(blocks[1])
    path = write(tmp_path, head + b"".join(blocks), "m.pcapng")
    with pytest.raises(CaptureError, match=f"block at byte {offset} .*{match}"):
        read(path, strict=True)


# --------------------------------------------------------------------------- dpkt equivalence
def random_capture(n: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    frames = []
    for _ in range(n):
        v6 = rng.random() < 0.3
        kind = rng.choice(["tcp", "tcp", "udp", "icmp"])
        payload = bytes(rng.randrange(256) for _ in range(rng.choice([0, 0, 6, 40, 700])))
        sport, dport = rng.randrange(65536), rng.randrange(65536)
        if kind == "tcp":
            l4 = tcp(sport, dport, flags=rng.randrange(256), window=rng.randrange(65536),
                     seq=rng.randrange(2**32), payload=payload,
                     options=b"\x02\x04\x05\xb4" if rng.random() < 0.3 else b"")
            proto = PROTO_TCP
        elif kind == "udp":
            l4, proto = udp(sport, dport, payload), PROTO_UDP
        else:
            l4 = icmp(8, 0, b"\x00\x01\x00\x02" + payload)
            proto = PROTO_ICMPV6 if v6 else PROTO_ICMP
        if v6:
            pkt = ipv6(l4, str(ipaddress_v6(rng)), str(ipaddress_v6(rng)), proto)
        else:
            pkt = ipv4(l4, ".".join(str(rng.randrange(256)) for _ in range(4)),
                       ".".join(str(rng.randrange(256)) for _ in range(4)), proto,
                       ident=rng.randrange(65536), dont_fragment=rng.random() < 0.5)
        frames.append(ethernet(pkt, vlans=[rng.randrange(1, 4095)] * rng.choice([0, 0, 0, 1, 2])))
    return frames


def ipaddress_v6(rng: random.Random) -> str:
    return str(ipaddress.IPv6Address(rng.getrandbits(128)))


def dpkt_rows(path: Path) -> list[tuple]:
    """(ts, wire_len, src, dst, sport, dport, proto, flags, win) of every IP packet, by dpkt."""
    rows = []
    with open(path, "rb") as fh:
        reader = dpkt.pcap.UniversalReader(fh)
        for ts, raw in reader:
            eth = dpkt.ethernet.Ethernet(raw)
            ip = eth.data
            if isinstance(ip, dpkt.ip.IP):
                src, dst = (socket.inet_ntop(socket.AF_INET, a) for a in (ip.src, ip.dst))
                if ip.offset:
                    continue
            elif isinstance(ip, dpkt.ip6.IP6):
                src, dst = (socket.inet_ntop(socket.AF_INET6, a) for a in (ip.src, ip.dst))
            else:
                continue
            l4 = ip.data
            sport = dport = flags = win = 0
            if isinstance(l4, (dpkt.tcp.TCP, dpkt.udp.UDP)):
                sport, dport = l4.sport, l4.dport
            if isinstance(l4, dpkt.tcp.TCP):
                flags, win = l4.flags, l4.win
            rows.append((float(ts), len(raw), src, dst, sport, dport, ip.p, flags, win))
    return rows


def our_rows(batch: PacketBatch) -> list[tuple]:
    return list(zip(batch.ts.tolist(), batch.wire_len.tolist(), ip_text_from_words(batch.src_ip),
                    ip_text_from_words(batch.dst_ip), batch.src_port.tolist(),
                    batch.dst_port.tolist(), batch.proto.tolist(), batch.tcp_flags.tolist(),
                    batch.tcp_win.tolist()))


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_equivalence_with_dpkt(tmp_path, fmt):
    frames = random_capture(3000, seed=11 if fmt == "pcap" else 12)
    times = T0 + np.cumsum(np.random.default_rng(0).exponential(0.01, len(frames)))
    if fmt == "pcap":
        data = pcap_bytes([(float(t), f) for t, f in zip(times, frames)])
    else:
        data = pcapng_bytes([shb(), idb(1)] + [epb(f, float(t)) for t, f in zip(times, frames)])
    path = write(tmp_path, data, "eq." + fmt)
    batch, skips = read(path, chunk_bytes=50_000)
    assert not skips
    expected = dpkt_rows(path)
    assert len(expected) == len(frames)
    ours = our_rows(batch)
    assert [r[1:] for r in ours] == [r[1:] for r in expected]
    assert np.allclose([r[0] for r in ours], [r[0] for r in expected], rtol=0, atol=1e-6)


# --------------------------------------------------------------------------- real captures
REAL_COUNTS = {
    "cicids2017-monday-benign.pcapng": 6000,
    "cicddos2019-synflood.pcap": 26316,
    "cicddos2019-webddos.pcap": 3104,
    "cicids2017-thursday-sqli.pcap": 94,
    "nmap-synscan.pcap": 2011,
    "ssh-bruteforce.pcap": 1178,
}


@pytest.mark.real
def test_real_captures_read_whole_and_match_dpkt(real_data_dir):
    files = sorted(p for p in real_data_dir.iterdir() if p.suffix in (".pcap", ".pcapng"))
    assert files
    for path in files:
        batch, skips = read(path, chunk_bytes=1 << 18)
        records = len(batch) + sum(v for k, v in skips.items()
                                   if k not in ("truncated_tail_bytes", "pcapng_unknown_block"))
        if path.name in REAL_COUNTS:
            assert records == REAL_COUNTS[path.name], (path.name, dict(skips))
        ours, expected = our_rows(batch), dpkt_rows(path)
        assert [r[1:] for r in ours] == [r[1:] for r in expected], path.name
        assert np.allclose([r[0] for r in ours], [r[0] for r in expected], rtol=0, atol=1e-6)


# --------------------------------------------------------------------------- resynchronisation
def _records(n: int) -> list[bytes]:
    return [pcap_record(Record(T0 + i, tcp_frame(i))) for i in range(n)]


@pytest.mark.parametrize("chunk", [64, 100, 1 << 20])
def test_pcap_corrupt_length_resyncs_on_the_next_record(tmp_path, caplog, chunk):
    recs = _records(6)
    third = 24 + len(recs[0]) + len(recs[1])
    bad = bytearray(recs[2])
    bad[8:12] = struct.pack("<I", 0x00FFFFFF)
    path = write(tmp_path, pcap_header() + b"".join(recs[:2]) + bytes(bad) + b"".join(recs[3:]))
    with caplog.at_level(logging.WARNING, logger="janus.capture.pcap"):
        batch, skips = read(path, chunk_bytes=chunk)
    assert batch.src_port.tolist() == [1000, 1001, 1003, 1004, 1005]
    assert skips == {"damaged_bytes_skipped": len(recs[2]), "damaged_regions": 1}
    assert (f"record at byte {third} claims 16777215 captured bytes" in caplog.text
            and f"skipped {len(recs[2])} bytes" in caplog.text
            and f"resumes at the valid record at byte {third + len(recs[2])}" in caplog.text)


@pytest.mark.parametrize("chunk", [64, 1 << 20])
@pytest.mark.parametrize("size", [1, 333, 5000])
def test_garbage_inside_a_capture_is_skipped_exactly(tmp_path, caplog, chunk, size):
    rng = random.Random(size)
    garbage = bytes([0xFF]) + bytes(rng.randrange(256) for _ in range(size - 1))
    recs = _records(8)
    path = write(tmp_path, pcap_header() + b"".join(recs[:3]) + garbage + b"".join(recs[3:]))
    frames = [tcp_frame(i) for i in range(8)]
    blocks = [epb(f, T0 + i) for i, f in enumerate(frames)]
    ng = write(tmp_path, shb() + idb(1) + b"".join(blocks[:3]) + garbage + b"".join(blocks[3:]),
               "g.pcapng")
    for p in (path, ng):
        batch, skips = read(p, chunk_bytes=chunk)
        assert batch.src_port.tolist() == list(range(1000, 1008)), p.name
        assert skips == {"damaged_bytes_skipped": size, "damaged_regions": 1}, p.name
        # strict: today's reading, which stops at the damage (an error or, when the garbage
        # claims a length past the end of the file, a truncated tail)
        got: list[PacketBatch] = []
        try:
            got.extend(iter_capture(p, chunk_bytes=chunk, strict=True))
        except CaptureError as exc:
            assert "corrupt from there on" in str(exc)
        assert PacketBatch.concat(got).src_port.tolist() == [1000, 1001, 1002]


@pytest.mark.parametrize(
    "mangle",
    [
        lambda blk: blk[:4] + struct.pack("<I", 1 << 30) + blk[8:],
        lambda blk: blk[:4] + struct.pack("<I", len(blk) + 2) + blk[8:],
        lambda blk: blk[:4] + struct.pack("<I", len(blk) + 8) + blk[8:],  # trailer mismatch
        lambda blk: blk[:-4] + struct.pack("<I", 12),
        lambda blk: blk[:20] + struct.pack("<I", 999) + blk[24:],
    ],
)
def test_pcapng_bad_block_is_skipped_alone(tmp_path, caplog, mangle):
    frames = [tcp_frame(i) for i in range(4)]
    head = shb() + idb(1)
    blocks = [epb(f, T0 + i) for i, f in enumerate(frames)]
    offset = len(head) + len(blocks[0])
    size = len(blocks[1])
    blocks[1] = mangle(blocks[1])
    path = write(tmp_path, head + b"".join(blocks), "m.pcapng")
    with caplog.at_level(logging.WARNING, logger="janus.capture.pcap"):
        batch, skips = read(path)
    assert batch.src_port.tolist() == [1000, 1002, 1003]
    assert skips == {"damaged_bytes_skipped": size, "damaged_regions": 1}
    assert f"block at byte {offset} " in caplog.text and f"skipped {size} bytes" in caplog.text


def test_damage_with_nothing_valid_after_skips_the_rest(tmp_path, caplog):
    recs = _records(3)
    data = pcap_header() + b"".join(recs) + b"\xff" * 100
    with caplog.at_level(logging.WARNING, logger="janus.capture.pcap"):
        batch, skips = read(write(tmp_path, data))
    assert batch.src_port.tolist() == [1000, 1001, 1002]
    assert skips == {"damaged_bytes_skipped": 100, "damaged_regions": 1}
    assert "no valid record follows: skipped the remaining 100 bytes" in caplog.text


def test_a_length_running_past_eof_over_valid_records_is_damage(tmp_path):
    # A cut last record is a truncated tail; a "cut" record that has valid records inside
    # its claimed length had a corrupt length: only it is lost.
    recs = _records(5)
    bad = bytearray(recs[1])
    bad[8:12] = struct.pack("<I", 60_000)  # under the snaplen, past the end of the file
    path = write(tmp_path, pcap_header() + recs[0] + bytes(bad) + b"".join(recs[2:]))
    batch, skips = read(path)
    assert batch.src_port.tolist() == [1000, 1002, 1003, 1004]
    assert skips == {"damaged_bytes_skipped": len(recs[1]), "damaged_regions": 1}
    batch, skips = read(path, strict=True)  # strict: today's reading, a truncated tail
    assert batch.src_port.tolist() == [1000]
    assert skips == {"truncated_tail_bytes": sum(map(len, recs[1:]))}


def test_resync_needs_a_timestamp_near_the_last_good_record(tmp_path):
    # Records dated 30 days later right after the damage are not taken as the resync point.
    recs = _records(2)
    late = [pcap_record(Record(T0 + 30 * 86400 + i, tcp_frame(10 + i))) for i in range(3)]
    path = write(tmp_path, pcap_header() + b"".join(recs) + b"\xff" * 20 + b"".join(late))
    batch, skips = read(path)
    assert batch.src_port.tolist() == [1000, 1001]
    assert skips == {"damaged_bytes_skipped": 20 + sum(map(len, late)), "damaged_regions": 1}


# --------------------------------------------------------------------------- many interfaces
def test_pcapng_with_an_interface_per_packet(tmp_path):
    # 5,000 IDB/EPB pairs over three sections, link types and resolutions alternating: the
    # same packets and timestamps as the plain reading of each pair (and linear time).
    n = 5000
    blocks, want_ts = [], []
    for i in range(n):
        if i in (0, 2000, 4000):
            blocks.append(shb(big_endian=i == 2000))
            base = i
        be = 2000 <= i < 4000
        tsres = 9 if i % 3 == 0 else None
        frame = tcp_frame(i % 256) if i % 2 == 0 else ipv4(tcp(5000 + i % 256, 80), "10.9.0.1")
        blocks.append(idb(1 if i % 2 == 0 else 101, tsresol=tsres, tsoffset=i % 5,
                          big_endian=be))
        ts = T0 + i * 0.001
        blocks.append(epb(frame, ts - i % 5, iface=i - base, tsresol=tsres, big_endian=be))
        want_ts.append(ts)
    path = write(tmp_path, pcapng_bytes(blocks), "many.pcapng")
    batch, skips = read(path, chunk_bytes=1 << 16)
    assert not skips and len(batch) == n
    assert batch.src_port.tolist() == [1000 + i % 256 if i % 2 == 0 else 5000 + i % 256
                                       for i in range(n)]
    np.testing.assert_allclose(batch.ts, want_ts, rtol=0, atol=2e-6)


def test_resync_needs_a_chain_of_valid_records(tmp_path):
    # A lone plausible header inside the garbage (right caplen, orig_len and time) is not
    # followed by another valid one: reading does not resume there.
    recs = _records(4)
    fake = struct.pack("<IIII", int(T0) + 2, 0, 20, 20) + b"\xff" * 20
    garbage = b"\xff" * 7 + fake + b"\xff" * 9
    path = write(tmp_path, pcap_header() + b"".join(recs[:2]) + garbage + b"".join(recs[2:]))
    batch, skips = read(path)
    assert batch.src_port.tolist() == [1000, 1001, 1002, 1003]
    assert skips == {"damaged_bytes_skipped": len(garbage), "damaged_regions": 1}


def test_simple_packet_block_before_any_interface(tmp_path):
    blocks = [shb(), spb(tcp_frame(0)), idb(1), spb(tcp_frame(1)), epb(tcp_frame(2), T0)]
    path = write(tmp_path, pcapng_bytes(blocks), "s0.pcapng")
    batch, skips = read(path)
    assert batch.src_port.tolist() == [1001, 1002] and skips == {"pcapng_bad_interface": 1}
    with pytest.raises(CaptureError, match=r"block at byte 28 refers to interface 0, but its"
                                           r" section has 0 interface"):
        read(path, strict=True)


def test_pcapng_resync_needs_two_valid_blocks(tmp_path):
    # A self-consistent name-resolution block inside the garbage (type, length, trailer) that
    # is followed by more garbage is not where reading resumes.
    frames = [tcp_frame(i) for i in range(4)]
    blocks = [epb(f, T0 + i) for i, f in enumerate(frames)]
    fake = struct.pack("<III", 4, 16, 0) + struct.pack("<I", 16)
    garbage = b"\xff" * 5 + fake + b"\xff" * 11
    path = write(tmp_path, shb() + idb(1) + b"".join(blocks[:2]) + garbage + b"".join(blocks[2:]),
                 "f.pcapng")
    batch, skips = read(path)
    assert batch.src_port.tolist() == [1000, 1001, 1002, 1003]
    assert skips == {"damaged_bytes_skipped": len(garbage), "damaged_regions": 1}
