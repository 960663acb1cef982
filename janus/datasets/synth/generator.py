"""Generate one site: run its models, build the frames, write pcap + label CSV + site.json."""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
import zlib
from collections import Counter
from operator import itemgetter
from pathlib import Path

import numpy as np

from janus import __version__
from janus.capture.pcapwrite import (
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
    icmp_message,
    ip_frame,
    ipv4_fragment_frames,
    ipv4_header,
    tcp_segment,
    udp_datagram,
    write_pcap,
)
from janus.datasets.synth.context import SiteContext
from janus.datasets.synth.csvout import write_label_csv
from janus.datasets.synth.sites import SITES
from janus.datasets.synth.tcp import Flow
from janus.io import write_json

log = logging.getLogger(__name__)

PCAP_NAME = "capture.pcap"
CSV_NAME = "GeneratedLabelledFlows.csv"
META_NAME = "site.json"
#: Capture length at --scale 1.0, seconds; it scales with --scale (at least 720 s).
BASE_DURATION_S = 7200.0
#: Bytes kept per frame: every header (Ethernet + IPv6 + TCP is 74 bytes, an ICMP error
#: quoting IPv4 + UDP 70) and the start of the payload, like ``tcpdump -s 96``. Whole
#: frames would make a site's pcap ~6x larger for no extra information (payloads are zeros).
DEFAULT_SNAPLEN = 96
#: ICMP type numbers -> ICMPv6 equivalents (echo request/reply, destination unreachable).
_ICMP6_TYPE = {8: 128, 0: 129, 3: 1}


def site_seed(seed: int, site: str) -> np.random.SeedSequence:
    """A site's seed depends on the run seed and its name only, so generating a subset of
    the sites gives the same files for each of them."""
    return np.random.SeedSequence([seed, zlib.crc32(site.encode())])


def build_frames(flows: list[Flow], rnd, snaplen: int) -> tuple[list[float], list[bytes], list[int]]:
    """All packets of all flows as Ethernet frames in time order (stable for equal times).

    Returns timestamps (Unix s), frames cut to ``snaplen`` bytes and their wire lengths.
    IPv4 UDP datagrams marked ``("frag", mtu)`` that exceed the MTU become fragments.
    """
    rows = [(p[0], fid, p) for fid, f in enumerate(flows) for p in f.packets]
    rows.sort(key=itemgetter(0))
    ends = []
    for f in flows:
        c, s = f.client, f.server
        ends.append((
            (c, s, f.cport, f.sport, c.ttl - c.hops, rnd.getrandbits(16), rnd.getrandbits(20)),
            (s, c, f.sport, f.cport, s.ttl - s.hops, rnd.getrandbits(16), rnd.getrandbits(20)),
        ))
    ip_id = [[e[0][5], e[1][5]] for e in ends]
    out_ts: list[float] = []
    out_frames: list[bytes] = []
    out_len: list[int] = []
    for ts, fid, (t, d, flags, win, plen, seq, ack, extra) in rows:
        f = flows[fid]
        src, dst, sp, dp, ttl, _, label6 = ends[fid][d]
        v6 = src.v6
        ident = ip_id[fid][d]
        ip_id[fid][d] = (ident + 1) & 0xFFFF
        if f.proto == PROTO_TCP:
            l4 = tcp_segment(src.ip, dst.ip, sp, dp, seq=seq, ack=ack, flags=flags, win=win, payload=plen, ipv6=v6)
            frames = [ip_frame(src.ip, dst.ip, PROTO_TCP, l4, ipv6=v6, ttl=ttl, ident=ident, flow_label=label6,
                               src_mac=src.mac, dst_mac=dst.mac)]
        elif f.proto == PROTO_UDP:
            l4 = udp_datagram(src.ip, dst.ip, sp, dp, payload=plen, ipv6=v6)
            if extra and extra[0] == "frag" and not v6 and len(l4) + 20 > extra[1]:
                frames = ipv4_fragment_frames(src.ip, dst.ip, PROTO_UDP, l4, extra[1], ttl=ttl, ident=ident,
                                              src_mac=src.mac, dst_mac=dst.mac)
            else:
                frames = [ip_frame(src.ip, dst.ip, PROTO_UDP, l4, ipv6=v6, ttl=ttl, ident=ident, flow_label=label6,
                                   src_mac=src.mac, dst_mac=dst.mac)]
        else:
            icmp_type, code, rest = extra[:3]
            payload: bytes | int = plen
            if len(extra) > 3 and not v6:  # an error quoting the offending datagram's headers
                q_src, q_dst, q_sp, q_dp, q_len = extra[3:]
                payload = ipv4_header(q_src, q_dst, PROTO_UDP, 8 + q_len, ttl=ttl) + \
                    udp_datagram(q_src, q_dst, q_sp, q_dp, payload=q_len)[:8]
            if v6:
                icmp_type = _ICMP6_TYPE.get(icmp_type, icmp_type)
                code = 4 if icmp_type == 1 else code
            l4 = icmp_message(icmp_type, code, rest, payload=payload, ipv6=v6, src=src.ip, dst=dst.ip)
            frames = [ip_frame(src.ip, dst.ip, PROTO_ICMPV6 if v6 else PROTO_ICMP, l4, ipv6=v6, ttl=ttl,
                               ident=ident, flow_label=label6, src_mac=src.mac, dst_mac=dst.mac)]
        for fr in frames:
            out_ts.append(ts)
            out_len.append(len(fr))
            out_frames.append(fr[:snaplen] if len(fr) > snaplen else fr)
    return out_ts, out_frames, out_len


def generate_site(
    name: str,
    out_dir: str | os.PathLike,
    *,
    seed: int = 0,
    scale: float = 1.0,
    start_local: dt.datetime = dt.datetime(2026, 1, 5, 9, 0, 0),
    snaplen: int = DEFAULT_SNAPLEN,
) -> dict:
    """Write ``out_dir/<name>/{capture.pcap, GeneratedLabelledFlows.csv, site.json}``.

    ``start_local`` is the capture's start in the *site's* local time (naive datetime).
    Returns the ``site.json`` dict. Same seed and arguments -> byte-identical pcap and CSV
    (``site.json`` differs only in ``generation_seconds``).
    """
    spec = SITES[name]
    t_wall = time.perf_counter()
    offset = dt.timedelta(hours=spec.utc_offset_hours)
    start_utc = (start_local - offset).replace(tzinfo=dt.timezone.utc)
    duration = BASE_DURATION_S * max(scale, 0.1)
    ctx = SiteContext(name, site_seed(seed, name), start_utc.timestamp(), duration, scale, mtu=spec.mtu)
    spec.build(ctx)
    flows = ctx.trace.flows
    ts, frames, wire = build_frames(flows, ctx.r, snaplen)
    folder = Path(out_dir) / name
    pcap_size = write_pcap(folder / PCAP_NAME, ts, frames, snaplen=snaplen, orig_lens=wire)
    write_label_csv(folder / CSV_NAME, flows, spec.utc_offset_hours)

    counts = Counter(f.label for f in flows)
    variants: dict[str, Counter] = {}
    for f in flows:
        variants.setdefault(f.label, Counter())[f.variant] += 1
    meta = {
        "site": name,
        "description": spec.description,
        "generator": f"janus.datasets.synth {__version__}",
        "seed": seed,
        "scale": scale,
        "utc_offset_hours": spec.utc_offset_hours,
        "capture_start_local": start_local.isoformat(),
        "capture_start_utc": start_utc.isoformat(),
        "capture_seconds": duration,
        "mtu": spec.mtu,
        "snaplen": snaplen,
        "files": {"pcap": PCAP_NAME, "labels_csv": CSV_NAME},
        "n_flows": len(flows),
        "n_benign_flows": counts.get("BENIGN", 0),
        "n_attack_flows": len(flows) - counts.get("BENIGN", 0),
        "n_frames": len(frames),
        "pcap_bytes": pcap_size,
        "counts": dict(sorted(counts.items())),
        "variants": {k: dict(sorted(v.items())) for k, v in sorted(variants.items())},
        "attacker_ips": {ip: sorted(v) for ip, v in sorted(ctx.attackers.items())},
        "victim_ips": {ip: sorted(v) for ip, v in sorted(ctx.victims.items())},
        "flows_dropped_for_5tuple_clash": ctx.trace.dropped_conflicts,
        "generation_seconds": round(time.perf_counter() - t_wall, 3),
    }
    write_json(folder / META_NAME, meta)
    log.info("%s: %d flows (%d attack), %d frames, %.1f MB in %.1f s", name, len(flows),
             meta["n_attack_flows"], len(frames), pcap_size / 1e6, meta["generation_seconds"])
    return meta

