"""The packet-level engine: hosts, the flow registry and a TCP connection model.

Times are seconds at the *capture point* (Unix UTC). Each connection knows two round
trips: ``rt[0]`` from the capture point to the client and back, ``rt[1]`` to the server
and back; a packet seen leaving side ``i`` at ``t`` is answered by side ``j`` at
``t + rt[j]`` (plus that side's processing time). A capture next to the clients (office)
has a small ``rt[0]``; one next to the servers (datacenter) a small ``rt[1]``.

A flow under construction is a list of packet tuples
``(ts, direction, tcp_flags, tcp_win, payload_len, seq, ack, extra)`` (direction 0 from
the initiator). :meth:`Trace.commit` gives it ports that keep every flow's 5-tuple and start
unambiguous, then stores it. Frames are built later (:mod:`janus.datasets.synth.generator`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from janus.capture.pcapwrite import ACK, FIN, PSH, RST, SYN

PROTO_TCP, PROTO_UDP, PROTO_ICMP = 6, 17, 1

#: Two flows on the same 5-tuple must be this far apart (seconds) unless the first one
#: was closed (FIN/RST) and the second opens with a SYN: longer than any sensible idle
#: timeout, so that no flow extractor can merge them.
REUSE_GAP_S = 150.0
#: After a closed TCP connection the same 5-tuple may open again this much later.
TCP_REUSE_AFTER_CLOSE_S = 2.0


@dataclass(slots=True)
class Host:
    """One endpoint: its address and the stack behaviour that shows in its headers."""

    ip: int  # address as an integer (IPv4 or IPv6)
    v6: bool
    mac: bytes  # the MAC its frames carry on the captured link (the router's for remote hosts)
    ttl: int = 64  # initial TTL / hop limit (64 Linux, 128 Windows, 255 some embedded stacks)
    win0: int = 64240  # window field of its SYN / SYN-ACK
    wscale: int = 7  # window scale shift it applies after the handshake
    rcv_max: int = 3_000_000  # receive-buffer ceiling of its window auto-tuning, bytes
    mss: int = 1460  # its MSS, bytes (MTU - 40 for IPv4)
    eph_lo: int = 32768  # ephemeral port range
    eph_hi: int = 60999
    sequential: bool = False  # Windows-like sequential ephemeral ports, else random
    hops: int = 0  # routers between it and the capture point (TTL seen = ttl - hops)
    next_port: int = 0


@dataclass(slots=True)
class Flow:
    """A committed flow: the ground truth of one CSV row, plus its packets."""

    client: Host
    server: Host
    cport: int
    sport: int
    proto: int
    start: float
    end: float
    label: str
    variant: str
    packets: list = field(default_factory=list)  # packet tuples, see the module docstring


def _key(a: int, pa: int, b: int, pb: int, proto: int) -> tuple:
    """Direction-free 5-tuple key."""
    return (a, pa, b, pb, proto) if (a, pa) <= (b, pb) else (b, pb, a, pa, proto)


class Trace:
    """All flows of one site: port allocation, 5-tuple registry and the capture window."""

    def __init__(self, rnd: random.Random, t_begin: float, t_end: float):
        self.r = rnd
        self.t_begin = t_begin
        self.t_end = t_end
        self.flows: list[Flow] = []
        self._reg: dict[tuple, list[tuple[float, float, bool, bool]]] = {}
        self.dropped_conflicts = 0

    def _free(self, key: tuple, start: float, end: float, closed: bool, opens_syn: bool) -> bool:
        for s0, e0, closed0, syn0 in self._reg.get(key, ()):
            if opens_syn and closed0 and start >= e0 + TCP_REUSE_AFTER_CLOSE_S:
                continue  # port reuse after a closed connection: a new SYN, a new flow
            if syn0 and closed and end + TCP_REUSE_AFTER_CLOSE_S <= s0:
                continue
            if start < e0 + REUSE_GAP_S and end > s0 - REUSE_GAP_S:
                return False
        return True

    def _ephemeral(self, h: Host) -> int:
        if h.sequential:
            if not h.next_port:
                h.next_port = self.r.randint(h.eph_lo, h.eph_hi)
            port = h.next_port
            h.next_port = h.eph_lo if port >= h.eph_hi else port + 1
            return port
        return self.r.randint(h.eph_lo, h.eph_hi)

    def commit(
        self,
        packets: list,
        client: Host,
        server: Host,
        proto: int,
        sport: int,
        label: str,
        variant: str = "",
        *,
        cport: int | None = None,
        closed: bool = False,
        vary_sport: bool = False,
    ) -> Flow | None:
        """Store a flow; returns it, or None when it falls outside the capture or no port fits.

        ``cport=None`` draws the client's ephemeral port (re-drawing on a clash);
        ``vary_sport`` re-draws the *server-side* port instead (reflection attacks, where
        the victim's port is the attacker's choice). Packets after the capture's end are
        cut, as a real capture would.
        """
        if not packets:
            return None
        if client.v6 != server.v6:
            raise AssertionError(f"flow {label}/{variant}: client and server address families differ")
        start = min(p[0] for p in packets)
        if start < self.t_begin or start >= self.t_end:
            return None
        if packets[0][0] != start or packets[0][1] != 0:
            raise AssertionError(f"flow {label}/{variant}: first packet must be the initiator's")
        kept = [p for p in packets if p[0] < self.t_end]
        end = max(p[0] for p in kept)
        opens_syn = proto == PROTO_TCP and packets[0][2] & SYN and not packets[0][2] & ACK
        for _ in range(64):
            cp = cport if cport is not None else (0 if proto == PROTO_ICMP else self._ephemeral(client))
            sp = sport
            if vary_sport:
                sp = self.r.randint(1024, 65535)
            key = _key(client.ip, cp, server.ip, sp, proto)
            if self._free(key, start, end, closed, bool(opens_syn)):
                break
            if cport is not None and not vary_sport:
                self.dropped_conflicts += 1
                return None
        else:
            self.dropped_conflicts += 1
            return None
        self._reg.setdefault(key, []).append((start, end, closed, bool(opens_syn)))
        flow = Flow(client, server, cp, sp, proto, start, end, label, variant, kept)
        self.flows.append(flow)
        return flow


class TcpConn:
    """One TCP connection's packets as seen at the capture point.

    Models the three-way handshake, MSS-sized segments with slow start, delayed ACKs (one
    ACK per two segments), receive-window growth, random retransmissions and FIN/RST
    teardown. Methods advance :attr:`t`, the time of the connection's latest packet.
    """

    def __init__(
        self,
        rnd: random.Random,
        client: Host,
        server: Host,
        t0: float,
        rt_client: float,
        rt_server: float,
        *,
        loss: float = 0.0,
        max_packets: int = 400,
        bandwidth: float = 50e6,
    ):
        self.r = rnd
        self.h = (client, server)
        self.rt = (rt_client, rt_server)
        self.t = t0
        self.pk: list = []
        self.nxt = [rnd.getrandbits(32), rnd.getrandbits(32)]  # next sequence number per side
        self.mss = min(client.mss, server.mss) - (20 if client.v6 else 0)  # IPv6 header is 20 B longer
        self.space = [client.win0, server.win0]  # receive space per side, bytes
        self.cwnd = [10, 10]  # congestion window per sending side, segments
        self.loss = loss
        self.max_packets = max_packets
        self.byte_time = 8.0 / bandwidth  # seconds per byte on the bottleneck
        self.pending_ack: list[float | None] = [None, None]  # due time of a delayed ACK per side
        self.established = False
        self.closed = False

    # ------------------------------------------------------------------ helpers
    @property
    def full(self) -> bool:
        return len(self.pk) >= self.max_packets

    def _win(self, side: int) -> int:
        h = self.h[side]
        if not self.established:
            return h.win0
        # Receive space minus a little unread data, scaled: the field the peer sees.
        unread = int(self.r.random() * 3.0) * self.mss
        return max(1, min(65535, (self.space[side] - unread) >> h.wscale))

    def _emit(self, t: float, side: int, flags: int, plen: int = 0) -> None:
        seq = self.nxt[side]
        ack = self.nxt[1 - side] if flags & ACK else 0
        self.pk.append((t, side, flags, self._win(side), plen, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, None))
        self.nxt[side] += plen + (1 if flags & (SYN | FIN) else 0)
        self.t = max(self.t, t)

    def _flush_ack(self, side: int, before: float | None = None) -> None:
        """Send side's pending delayed ACK if it falls due before ``before`` (None: now)."""
        due = self.pending_ack[side]
        if due is not None and (before is None or due <= before):
            self._emit(due, side, ACK)
            self.pending_ack[side] = None

    # ------------------------------------------------------------------ phases
    def handshake(self, outcome: str = "ok", server_delay: float = 0.0) -> bool:
        """SYN, SYN-ACK, ACK. ``outcome``: ``ok``, ``refused`` (RST-ACK), ``silent`` (SYN
        retransmitted at 1 s and 3 s, no answer). True when the connection is established."""
        t = self.t
        self._emit(t, 0, SYN)
        if outcome == "refused":
            self._emit(t + self.rt[1] + server_delay, 1, RST | ACK)
            self.closed = True
            return False
        if outcome == "silent":
            self.nxt[0] -= 1
            self._emit(t + 1.0 + self.r.random() * 0.01, 0, SYN)
            self.nxt[0] -= 1
            self._emit(t + 3.0 + self.r.random() * 0.02, 0, SYN)
            self.closed = True
            return False
        t1 = t + self.rt[1] + server_delay
        self._emit(t1, 1, SYN | ACK)
        self.established = True
        self._emit(t1 + self.rt[0] + self.r.random() * 1e-4, 0, ACK)
        return True

    def send(self, side: int, nbytes: int, at: float | None = None, *, segment: int | None = None) -> float:
        """Side ``side`` sends an ``nbytes`` message starting at ``at`` (default: now).

        Segments are ``segment`` bytes (default the MSS), sent in slow-start flights; the
        receiver ACKs every second segment and delays the ACK of an odd last one (40 ms),
        cancelled if it answers with data first. Returns the time of the last segment.
        """
        if self.closed or nbytes <= 0:
            return self.t
        t = self.t if at is None else max(at, self.t)
        peer = 1 - side
        self._flush_ack(side, t)  # our own pending ACK goes out before new data...
        self.pending_ack[side] = None  # ...or rides on it
        seg = min(segment or self.mss, self.mss)
        rtt = self.rt[0] + self.rt[1]
        left = nbytes
        flight_start = t
        unacked = 0
        last = t
        while left > 0 and not self.full:
            n = min(self.cwnd[side], max(1, (self.space[peer]) // seg))
            tt = flight_start
            for _ in range(n):
                if left <= 0 or self.full:
                    break
                size = min(seg, left)
                left -= size
                tt += size * self.byte_time
                flags = ACK | (PSH if left == 0 else 0)
                if self.loss and self.r.random() < self.loss:
                    # Lost after the capture point: the segment shows twice, the receiver
                    # sends a duplicate ACK, the sender retransmits after ~1.5 RTT.
                    seq0 = self.nxt[side]
                    self._emit(tt, side, flags, size)
                    self._emit(tt + self.rt[peer], peer, ACK)
                    self.pk.append((tt + max(0.2, 1.5 * rtt), side, flags, self._win(side), size, seq0, self.nxt[peer] & 0xFFFFFFFF, None))
                else:
                    self._emit(tt, side, flags, size)
                last = tt
                unacked += 1
                if unacked == 2:
                    self._emit(tt + self.rt[peer] + self.r.random() * 2e-4, peer, ACK)
                    unacked = 0
            self.cwnd[side] = min(self.cwnd[side] * 2, 400)
            flight_start = tt + rtt if left > 0 else tt
        # The receiver's buffer grows with what it has received (window auto-tuning).
        self.space[peer] = min(self.h[peer].rcv_max, self.space[peer] + 2 * nbytes)
        if unacked:
            self.pending_ack[peer] = last + self.rt[peer] + 0.04
        self.t = max(self.t, last)
        return last

    def exchange(self, req: int, resp: int, at: float | None = None, server_time: float = 0.0) -> float:
        """Client request of ``req`` bytes, server response of ``resp`` bytes after
        ``server_time`` seconds of processing. Returns the time of the last packet."""
        last = self.send(0, req, at)
        if resp > 0:
            self._flush_ack(1, last + self.rt[1] + server_time)
            last = self.send(1, resp, last + self.rt[1] + server_time)
        return last

    def close(self, side: int = 0, at: float | None = None, how: str = "fin") -> None:
        """Tear down from ``side``: ``fin`` (FIN, peer FIN, last ACK), ``rst`` (RST-ACK),
        ``rst_bare`` (RST without ACK), or ``none`` (left open)."""
        if self.closed:
            return
        t = self.t if at is None else max(at, self.t)
        self._flush_ack(0, t)
        self._flush_ack(1, t)
        self.pending_ack = [None, None]
        if how == "none":
            return
        self.closed = True
        if how in ("rst", "rst_bare"):
            self._emit(t, side, RST | (ACK if how == "rst" else 0))
            return
        peer = 1 - side
        self._emit(t, side, FIN | ACK)
        t2 = t + self.rt[peer]
        if self.r.random() < 0.3:  # peer ACKs the FIN before sending its own
            self._emit(t2, peer, ACK)
            t2 += 0.0005 + self.r.random() * 0.002
        self._emit(t2, peer, FIN | ACK)
        self._emit(t2 + self.rt[side], side, ACK)


def udp_packet(pk: list, t: float, side: int, payload_len: int, extra=None) -> None:
    """Append a UDP packet (``extra`` may hold an IPv4 MTU for fragmentation)."""
    pk.append((t, side, 0, 0, payload_len, 0, 0, extra))


def icmp_packet(pk: list, t: float, side: int, icmp_type: int, code: int, rest: int, payload_len: int,
                extra=None) -> None:
    """Append an ICMP packet; ``extra`` is ``(type, code, rest)`` plus an optional quoted
    datagram description for errors."""
    pk.append((t, side, 0, 0, payload_len, 0, 0, (icmp_type, code, rest) + (extra or ())))
