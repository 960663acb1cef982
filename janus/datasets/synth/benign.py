"""Benign application models. Each emits whole flows through :class:`~janus.datasets.synth.tcp.TcpConn`
or UDP/ICMP packet lists and commits them with the label ``BENIGN``.

Sizes are application payload bytes; heavy-tailed sizes are lognormal or Pareto with caps
(the pcap keeps whole flows, and a flow's packet count is capped by ``max_packets``).
"""

from __future__ import annotations

from janus.datasets.synth.context import SiteContext
from janus.datasets.synth.tcp import (
    PROTO_ICMP,
    PROTO_TCP,
    PROTO_UDP,
    Host,
    TcpConn,
    icmp_packet,
    udp_packet,
)

BENIGN = "BENIGN"
CELL = 586  # bytes of TCP payload per tunnel cell (a 512-byte cell in its TLS record)


# --------------------------------------------------------------------------- building blocks
def close_conn(ctx: SiteContext, conn: TcpConn, idle: float, weights=(0.5, 0.3, 0.15, 0.05)) -> bool:
    """Close after ``idle`` seconds: client FIN, server FIN, client RST, or left open.
    Returns whether the connection ended with FIN/RST."""
    how = ctx.r.choices(("cfin", "sfin", "rst", "open"), weights=weights)[0]
    at = conn.t + idle
    if how == "cfin":
        conn.close(0, at)
    elif how == "sfin":
        conn.close(1, at)
    elif how == "rst":
        conn.close(0, at, "rst")
    else:
        conn.close(0, at, "none")
    return conn.closed


def commit_tcp(ctx: SiteContext, conn: TcpConn, client: Host, server: Host, port: int, variant: str,
               label: str = BENIGN):
    return ctx.trace.commit(conn.pk, client, server, PROTO_TCP, port, label, variant, closed=conn.closed)


def tls_handshake(ctx: SiteContext, conn: TcpConn, server_time: float = 0.002) -> float:
    """TLS 1.2/1.3 handshake: ClientHello, server flight (certificate chain), Finished."""
    hello = ctx.r.choice((517, 517, 571, 583, 1782))  # 1782: post-quantum key share
    conn.exchange(hello, int(ctx.lognorm(3800, 0.35, 1200, 9000)), server_time=server_time)
    return conn.exchange(ctx.r.choice((64, 74, 80, 126)), ctx.r.choice((0, 0, 249, 498)))


def dns_lookup(ctx: SiteContext, client: Host, resolver: Host, t: float, rt_c: float, rt_s: float,
               label: str = BENIGN, variant: str = "dns") -> float:
    """One resolver exchange from an ephemeral port (A and, half the time, AAAA on the same
    socket, as glibc does; 2 % of queries time out and are retried after 1 s)."""
    pk: list = []
    q = ctx.r.randint(28, 60)
    n_q = 2 if ctx.r.random() < 0.5 else 1
    tt = t
    for i in range(n_q):
        udp_packet(pk, tt, 0, q)
        tt += ctx.r.random() * 2e-4
    lost = ctx.r.random() < 0.02
    if lost:
        udp_packet(pk, t + 1.0 + ctx.r.random() * 0.01, 0, q)
        tt = t + 1.0
    done = tt
    for i in range(n_q):
        resp_t = tt + rt_s + ctx.lognorm(0.001, 1.5, 0.0001, 0.3)
        udp_packet(pk, resp_t, 1, q + ctx.r.randint(16, 200))
        done = max(done, resp_t)
    ctx.trace.commit(pk, client, resolver, PROTO_UDP, 53, label, variant)
    return done + rt_c


def ntp_poll(ctx: SiteContext, client: Host, server: Host, t: float, rt_s: float) -> None:
    pk: list = []
    udp_packet(pk, t, 0, 48)
    udp_packet(pk, t + rt_s + ctx.r.random() * 1e-4, 1, 48)
    ctx.trace.commit(pk, client, server, PROTO_UDP, 123, BENIGN, "ntp")


def ping(ctx: SiteContext, client: Host, server: Host, t: float, rt_s: float, count: int = 4) -> None:
    """ICMP echo: ``count`` requests one second apart, 56 data bytes."""
    pk: list = []
    ident = ctx.r.getrandbits(16)
    for k in range(count):
        tt = t + k * (1.0 + ctx.r.random() * 0.002)
        icmp_packet(pk, tt, 0, 8, 0, ident << 16 | (k + 1), 56)
        icmp_packet(pk, tt + ctx.rtt(rt_s, 0.1), 1, 0, 0, ident << 16 | (k + 1), 56)
    ctx.trace.commit(pk, client, server, PROTO_ICMP, 0, BENIGN, "ping", cport=0)


# --------------------------------------------------------------------------- web
def https_visit(ctx: SiteContext, client: Host, servers: list[Host], resolver: Host, t: float, rt_c: float,
                rt_s: float, port: int = 443, *, label: str = BENIGN, variant: str = "web") -> None:
    """A page visit: a DNS lookup (unless cached), then 1-6 parallel keep-alive
    connections with heavy-tailed responses and think times between requests."""
    server = servers[min(len(servers) - 1, int(ctx.pareto(1, 1.1, 10 ** 6)) - 1)]  # Zipf-like popularity
    if ctx.r.random() < 0.5:
        t = dns_lookup(ctx, client, resolver, t, rt_c, ctx.rtt(0.004 if rt_c < 0.005 else rt_s))
    for k in range(min(6, ctx.geometric(1.8))):
        srt = ctx.rtt(rt_s, 0.15)
        conn = TcpConn(ctx.r, client, server, t + k * ctx.r.random() * 0.05, rt_c, srt,
                       loss=0.004, max_packets=120, bandwidth=ctx.lognorm(40e6, 0.7, 2e6, 1e9))
        conn.handshake()
        if port == 443:
            tls_handshake(ctx, conn)
        for i in range(ctx.geometric(3.0)):
            think = 0.0 if i == 0 else ctx.lognorm(1.5, 1.2, 0.01, 60.0)
            req = int(ctx.lognorm(480, 0.6, 120, 4000))
            resp = int(ctx.lognorm(4000, 1.5, 200, 600_000))
            conn.exchange(req, resp, conn.t + think, server_time=ctx.lognorm(0.02, 1.0, 0.001, 2.0))
        close_conn(ctx, conn, ctx.lognorm(6.0, 1.0, 0.05, 100.0))
        commit_tcp(ctx, conn, client, server, port, variant, label)


def quic_session(ctx: SiteContext, client: Host, server: Host, t: float, rt_c: float, rt_s: float) -> None:
    """HTTP/3 over UDP 443: padded Initial packets, then data with client ACK frames."""
    pk: list = []
    udp_packet(pk, t, 0, ctx.r.choice((1250, 1252, 1350)))
    tt = t + rt_s
    for _ in range(ctx.r.randint(2, 3)):
        udp_packet(pk, tt, 1, ctx.r.choice((1252, 1232, 1200)))
        tt += 0.0003
    tt += rt_c
    udp_packet(pk, tt, 0, ctx.r.randint(40, 90))
    for _ in range(ctx.geometric(2.0)):
        tt += ctx.lognorm(0.8, 1.2, 0.01, 40.0)
        udp_packet(pk, tt, 0, ctx.r.randint(60, 400))
        n = min(60, int(ctx.lognorm(8, 1.2, 1, 1000)))
        ts = tt + rt_s + ctx.lognorm(0.02, 1.0, 0.001, 1.0)
        for j in range(n):
            udp_packet(pk, ts, 1, 1252 if j < n - 1 else ctx.r.randint(80, 1252))
            if j % 2:
                udp_packet(pk, ts + rt_c, 0, ctx.r.randint(33, 45))
            ts += ctx.r.random() * 4e-4
        tt = ts
    ctx.trace.commit(pk, client, server, PROTO_UDP, 443, BENIGN, "quic")


def telemetry_post(ctx: SiteContext, client: Host, server: Host, t: float, rt_c: float, rt_s: float,
                   variant: str = "telemetry") -> None:
    """A short HTTPS POST of a small report (OS telemetry, update check, sync heartbeat)."""
    conn = TcpConn(ctx.r, client, server, t, rt_c, rt_s, loss=0.002)
    conn.handshake()
    tls_handshake(ctx, conn)
    conn.exchange(int(ctx.lognorm(700, 0.6, 200, 6000)), int(ctx.lognorm(400, 0.7, 100, 5000)),
                  server_time=ctx.lognorm(0.05, 0.8))
    close_conn(ctx, conn, ctx.lognorm(1.0, 1.0, 0.01, 60), weights=(0.4, 0.4, 0.2, 0.0))
    commit_tcp(ctx, conn, client, server, 443, variant)


def upload_sync(ctx: SiteContext, client: Host, server: Host, t: float, rt_c: float, rt_s: float,
                variant: str = "cloud_sync") -> None:
    """A long TLS session pushing files (cloud sync, backup, camera upload): upstream-heavy."""
    conn = TcpConn(ctx.r, client, server, t, rt_c, rt_s, loss=0.003, max_packets=200,
                   bandwidth=ctx.lognorm(20e6, 0.6, 1e6, 2e8))
    conn.handshake()
    tls_handshake(ctx, conn)
    for i in range(ctx.geometric(4)):
        gap = 0.0 if i == 0 else ctx.lognorm(8.0, 1.2, 0.05, 100)
        conn.exchange(int(ctx.lognorm(60_000, 1.5, 500, 2_000_000)), int(ctx.lognorm(300, 0.5, 50, 2000)),
                      conn.t + gap, server_time=ctx.lognorm(0.03, 0.8))
        if conn.full:
            break
    close_conn(ctx, conn, ctx.lognorm(5.0, 1.0, 0.1, 90), weights=(0.6, 0.3, 0.1, 0.0))
    commit_tcp(ctx, conn, client, server, 443, variant)


# --------------------------------------------------------------------------- ssh, mail, ftp
def ssh_kex(ctx: SiteContext, conn: TcpConn) -> None:
    """Banners (server first), KEXINIT both ways, ECDH, NEWKEYS, service request."""
    conn.send(1, ctx.r.randint(21, 41), conn.t + ctx.lognorm(0.003, 0.6))
    conn.send(0, ctx.r.randint(21, 45), conn.t + conn.rt[0] + ctx.lognorm(0.001, 0.5))
    conn.send(0, ctx.r.randint(1380, 1620), conn.t + 0.0002)
    conn.send(1, ctx.r.randint(1020, 1120), conn.t + conn.rt[1])
    conn.exchange(48, ctx.r.choice((564, 628, 1076)), conn.t + conn.rt[0], server_time=ctx.lognorm(0.004, 0.4))
    conn.exchange(16, 0, conn.t + conn.rt[0])
    conn.exchange(52, 52, conn.t + 0.0005, server_time=0.0002)


def ssh_session(ctx: SiteContext, client: Host, server: Host, t: float, rt_c: float, rt_s: float) -> None:
    """An interactive SSH login: key exchange, publickey (or a mistyped password first),
    then keystrokes echoed one by one, command output, idle pauses; or an scp transfer."""
    conn = TcpConn(ctx.r, client, server, t, rt_c, rt_s, loss=0.002, max_packets=150)
    conn.handshake()
    ssh_kex(ctx, conn)
    if ctx.r.random() < 0.15:  # a mistyped password: one failure after the PAM delay
        conn.exchange(ctx.r.choice((84, 100)), 52, conn.t + ctx.lognorm(4.0, 0.6), server_time=ctx.lognorm(2.0, 0.1))
        conn.exchange(ctx.r.choice((84, 100)), 36, conn.t + ctx.lognorm(4.0, 0.6), server_time=0.02)
    else:
        conn.exchange(ctx.r.choice((96, 512, 628)), 36, conn.t + ctx.lognorm(0.05, 0.5), server_time=0.002)
    conn.exchange(112, 52, conn.t + 0.001)  # channel open / confirmation
    conn.exchange(ctx.r.randint(300, 500), ctx.r.randint(600, 2500), conn.t + 0.001, server_time=0.05)
    if ctx.r.random() < 0.2:  # scp / git: one bulk transfer
        conn.send(ctx.r.choice((0, 1)), int(ctx.lognorm(200_000, 1.5, 5000, 5_000_000)), conn.t + 0.5)
    else:
        for _ in range(ctx.geometric(15)):
            if conn.full:
                break
            gap = ctx.lognorm(0.18, 0.9, 0.03, 30.0) if ctx.r.random() > 0.03 else ctx.lognorm(20, 1.0, 2, 100)
            out = 36 if ctx.r.random() > 0.1 else int(ctx.lognorm(1500, 1.5, 60, 100_000))
            conn.exchange(36, out, conn.t + gap, server_time=ctx.lognorm(0.0005, 1.0))
    conn.exchange(36, 100, conn.t + ctx.lognorm(1.0, 1.0, 0.1, 30))  # "exit"
    conn.close(1 if ctx.r.random() < 0.7 else 0, conn.t + 0.002)
    commit_tcp(ctx, conn, client, server, 22, "ssh")


def imap_session(ctx: SiteContext, client: Host, server: Host, t: float, rt_c: float, rt_s: float) -> None:
    """IMAPS: TLS, login, a few FETCHes of heavy-tailed messages, NOOP/IDLE pauses."""
    conn = TcpConn(ctx.r, client, server, t, rt_c, rt_s, loss=0.002, max_packets=300)
    conn.handshake()
    tls_handshake(ctx, conn)
    conn.exchange(ctx.r.randint(60, 120), ctx.r.randint(200, 600), server_time=0.05)
    for _ in range(ctx.geometric(4)):
        conn.exchange(ctx.r.randint(40, 160), int(ctx.pareto(300, 1.2, 400_000)),
                      conn.t + ctx.lognorm(5.0, 1.2, 0.05, 100), server_time=ctx.lognorm(0.02, 1.0))
    close_conn(ctx, conn, ctx.lognorm(10, 1.0, 0.2, 100), weights=(0.5, 0.2, 0.2, 0.1))
    commit_tcp(ctx, conn, client, server, 993, "imaps")


def smtp_submission(ctx: SiteContext, client: Host, server: Host, t: float, rt_c: float, rt_s: float) -> None:
    """SMTP on 587: server greets first, EHLO, STARTTLS, TLS, AUTH, DATA, QUIT."""
    conn = TcpConn(ctx.r, client, server, t, rt_c, rt_s, loss=0.002, max_packets=300)
    conn.handshake()
    conn.send(1, ctx.r.randint(40, 90), conn.t + ctx.lognorm(0.05, 0.8))
    conn.exchange(ctx.r.randint(14, 30), ctx.r.randint(120, 260), conn.t + conn.rt[0], server_time=0.002)
    conn.exchange(10, 30, conn.t + conn.rt[0])
    tls_handshake(ctx, conn)
    conn.exchange(ctx.r.randint(40, 90), 30, server_time=ctx.lognorm(0.1, 0.5))
    conn.exchange(int(ctx.pareto(1500, 1.1, 3_000_000)), 40, server_time=ctx.lognorm(0.2, 0.8))
    conn.exchange(6, 20)
    conn.close(1, conn.t + 0.001)
    commit_tcp(ctx, conn, client, server, 587, "smtp")


def ftp_session(ctx: SiteContext, client: Host, server: Host, t: float, rt_c: float, rt_s: float) -> None:
    """A successful FTP login and a passive-mode download (control + data flows)."""
    conn = TcpConn(ctx.r, client, server, t, rt_c, rt_s, loss=0.002)
    conn.handshake()
    conn.send(1, ctx.r.randint(20, 60), conn.t + 0.002)
    conn.exchange(ctx.r.randint(10, 20), 34, conn.t + ctx.lognorm(0.5, 0.8))
    conn.exchange(ctx.r.randint(10, 20), 23, conn.t + ctx.lognorm(1.5, 0.8), server_time=0.01)
    conn.exchange(6, 70, conn.t + 0.1)  # PASV
    conn.exchange(ctx.r.randint(14, 40), 60, conn.t + 0.01)  # RETR -> 150
    data = TcpConn(ctx.r, client, server, conn.t + conn.rt[0], rt_c, rt_s, loss=0.003)
    data.handshake()
    data.send(1, int(ctx.pareto(2000, 1.1, 5_000_000)))
    data.close(1, data.t + 0.001)
    ctx.trace.commit(data.pk, client, server, PROTO_TCP, ctx.r.randint(30000, 31000), BENIGN, "ftp_data",
                     closed=True)
    conn.send(1, 24, data.t + 0.01)
    conn.exchange(6, 14, conn.t + ctx.lognorm(2.0, 1.0))
    conn.close(1, conn.t + 0.001)
    commit_tcp(ctx, conn, client, server, 21, "ftp")


# --------------------------------------------------------------------------- datacenter
def api_session(ctx: SiteContext, client: Host, server: Host, t: float, rt_c: float, rt_s: float,
                port: int = 443, variant: str = "api") -> None:
    """A keep-alive API client: TLS, then many short request/response pairs, closed by the
    server's keep-alive timeout."""
    conn = TcpConn(ctx.r, client, server, t, rt_c, rt_s, loss=0.002, max_packets=150)
    conn.handshake()
    if port == 443:
        tls_handshake(ctx, conn, server_time=0.0005)
    for i in range(ctx.geometric(6)):
        if conn.full:
            break
        think = ctx.lognorm(0.3, 1.2, 0.002, 20.0) if i else 0.0
        conn.exchange(int(ctx.lognorm(350, 0.5, 80, 4000)), int(ctx.lognorm(1200, 1.2, 60, 200_000)),
                      conn.t + think, server_time=ctx.lognorm(0.008, 1.0, 0.0005, 1.0))
    if ctx.r.random() < 0.7:
        conn.close(1, conn.t + ctx.r.uniform(5.0, 15.0))  # server keep-alive timeout
    else:
        conn.close(0, conn.t + ctx.lognorm(0.5, 1.0))
    commit_tcp(ctx, conn, client, server, port, variant)


def health_check(ctx: SiteContext, lb: Host, backend: Host, t: float, rt: float) -> None:
    """Load-balancer probe: connect, GET /health, 200 OK, client FIN."""
    conn = TcpConn(ctx.r, lb, backend, t, rt, rt, max_packets=20)
    conn.handshake()
    conn.exchange(ctx.r.choice((96, 112)), ctx.r.choice((151, 163)), server_time=ctx.lognorm(0.001, 0.5))
    conn.close(0, conn.t + 0.0003)
    commit_tcp(ctx, conn, lb, backend, 8080, "healthcheck")


def db_session(ctx: SiteContext, app: Host, db: Host, t: float, rt: float, port: int = 5432) -> None:
    """A PostgreSQL (5432) or MySQL (3306, server greets first) session: startup/auth, then
    queries with heavy-tailed result sets."""
    conn = TcpConn(ctx.r, app, db, t, rt, rt, max_packets=150, bandwidth=1e9)
    conn.handshake()
    if port == 3306:
        conn.send(1, ctx.r.randint(74, 110), conn.t + 0.0005)
        conn.exchange(ctx.r.randint(150, 300), 11, conn.t + rt)
    else:
        conn.exchange(8, 1)
        conn.exchange(ctx.r.randint(60, 110), 24, server_time=0.0005)
        conn.exchange(ctx.r.randint(40, 110), ctx.r.randint(320, 400), server_time=0.003)
    for _ in range(ctx.geometric(10)):
        if conn.full:
            break
        conn.exchange(int(ctx.lognorm(180, 0.8, 20, 6000)), int(ctx.pareto(80, 0.9, 300_000)),
                      conn.t + ctx.lognorm(0.05, 1.5, 0.0005, 30.0), server_time=ctx.lognorm(0.002, 1.5, 0.0001, 2.0))
    conn.close(0, conn.t + ctx.lognorm(0.5, 1.5, 0.001, 60))
    commit_tcp(ctx, conn, app, db, port, "db")


def bulk_transfer(ctx: SiteContext, client: Host, server: Host, t: float, rt: float, port: int,
                  upload: bool, variant: str) -> None:
    """Backup / replication / object-store transfer: one large transfer, then FIN."""
    conn = TcpConn(ctx.r, client, server, t, rt, rt, loss=0.001, max_packets=200, bandwidth=5e9)
    conn.handshake()
    size = int(ctx.pareto(200_000, 1.1, 80_000_000))
    if upload:
        conn.exchange(size, 120, server_time=0.01)
    else:
        conn.exchange(ctx.r.randint(150, 400), size, server_time=0.005)
    conn.close(0, conn.t + 0.01)
    commit_tcp(ctx, conn, client, server, port, variant)


# --------------------------------------------------------------------------- iot
def mqtt_session(ctx: SiteContext, dev: Host, broker: Host, t: float, rt_c: float, rt_s: float,
                 period: float, qos1: bool) -> None:
    """MQTT 3.1.1 on 1883: CONNECT/CONNACK, PUBLISH every ``period`` s (+-3 % jitter;
    PUBACK with QoS 1), PINGREQ/PINGRESP in quiet spells, then DISCONNECT or a NAT drop."""
    conn = TcpConn(ctx.r, dev, broker, t, rt_c, rt_s, loss=0.01, max_packets=100, bandwidth=1e6)
    conn.handshake()
    conn.exchange(ctx.r.randint(30, 80), 4, server_time=0.002)
    size = ctx.r.randint(18, 180)
    for _ in range(ctx.geometric(25)):
        if conn.full:
            break
        at = conn.t + period * ctx.r.uniform(0.97, 1.03)
        if ctx.r.random() < 0.1:
            conn.exchange(2, 2, at)  # PINGREQ / PINGRESP
        else:
            conn.exchange(size + ctx.r.randint(-4, 4), 4 if qos1 else 0, at)
    if ctx.r.random() < 0.6:
        conn.send(0, 2, conn.t + period)
        conn.close(0, conn.t + 0.001)
    else:
        conn.close(0, conn.t + period, "none")
    commit_tcp(ctx, conn, dev, broker, 1883, "mqtt")


def coap_exchange(ctx: SiteContext, dev: Host, server: Host, t: float, rt_s: float) -> None:
    """CoAP confirmable request with a piggybacked response (1 % lost and retransmitted
    after the 2-3 s ACK_TIMEOUT)."""
    pk: list = []
    req = ctx.r.randint(14, 70)
    udp_packet(pk, t, 0, req)
    if ctx.r.random() < 0.01:
        t += ctx.r.uniform(2.0, 3.0)
        udp_packet(pk, t, 0, req)
    udp_packet(pk, t + rt_s + ctx.lognorm(0.003, 0.8), 1, ctx.r.randint(8, 90))
    ctx.trace.commit(pk, dev, server, PROTO_UDP, 5683, BENIGN, "coap")


def video_stream(ctx: SiteContext, cam: Host, server: Host, t: float, rt_s: float) -> None:
    """RTP/UDP camera stream to a recorder: ~1200-byte packets in frame bursts, RTCP-ish
    reports back every second (packet count capped)."""
    pk: list = []
    dport = 5004 + 2 * ctx.r.randint(0, 20)
    tt = t
    fps = ctx.r.choice((10, 15, 25))
    for f in range(min(40, ctx.geometric(25))):
        for _ in range(ctx.r.randint(1, 4)):
            udp_packet(pk, tt, 0, ctx.r.randint(900, 1400) if f else 1400)
            tt += 0.0004
        if f % fps == fps - 1:
            udp_packet(pk, tt + rt_s, 1, 52)
        tt += 1.0 / fps
    ctx.trace.commit(pk, cam, server, PROTO_UDP, dport, BENIGN, "rtp")


# --------------------------------------------------------------------------- tunnel
def tor_connection(ctx: SiteContext, client: Host, relay: Host, t: float, rt_c: float, rt_s: float,
                   *, label: str = BENIGN, variant: str = "tor", up_extra: tuple[int, int] = (0, 0),
                   bursts_mean: float = 3.0, think_median: float = 15.0, directory: bool = False) -> None:
    """A TLS link to a relay carrying fixed-size cells: link handshake, circuit builds, then
    bursts (a page load: 1-3 request cells up, heavy-tailed cells down, SENDMEs up).

    ``up_extra=(lo, hi)`` adds that many extra upstream cells per burst (exfiltration
    hiding in browsing-shaped traffic); ``directory`` is a short consensus fetch."""
    conn = TcpConn(ctx.r, client, relay, t, rt_c, rt_s, loss=0.003, max_packets=80 if directory else 100,
                   bandwidth=ctx.lognorm(8e6, 0.6, 5e5, 1e8))
    conn.handshake()
    tls_handshake(ctx, conn)
    conn.exchange(CELL, 3 * CELL)  # VERSIONS -> VERSIONS, CERTS, AUTH_CHALLENGE
    conn.exchange(2 * CELL, CELL)  # NETINFO, CREATE2 -> CREATED2
    n_bursts = 1 if directory else ctx.geometric(bursts_mean)
    for i in range(n_bursts):
        if conn.full:
            break
        at = conn.t + (0.05 if i == 0 else ctx.lognorm(think_median, 1.0, 0.3, 100))
        up = ctx.r.randint(1, 3) + (ctx.r.randint(*up_extra) if up_extra[1] else 0)
        down = int(ctx.lognorm(20 if directory else 12, 1.2, 1, 2000))
        conn.send(0, up * CELL, at, segment=CELL)
        last = conn.send(1, down * CELL, conn.t + conn.rt[1] + ctx.lognorm(0.25, 0.8), segment=2 * CELL)
        if down > 50:  # SENDME cells for long downloads
            conn.send(0, CELL * (down // 100 + 1), last + conn.rt[0], segment=CELL)
    close_conn(ctx, conn, ctx.lognorm(2.0 if directory else 30.0, 1.0, 0.05, 100), weights=(0.5, 0.3, 0.1, 0.1))
    ctx.trace.commit(conn.pk, client, relay, PROTO_TCP, relay_port(ctx, relay), label, variant, closed=conn.closed)


def relay_port(ctx: SiteContext, relay: Host) -> int:
    """Relays listen on 443 or 9001, fixed per relay (the low bits of its address)."""
    return 443 if relay.ip % 3 else 9001


def wireguard_session(ctx: SiteContext, client: Host, endpoint: Host, t: float, rt_s: float) -> None:
    """WireGuard on 51820: handshake (148/92 bytes), padded data, 32-byte keepalives."""
    pk: list = []
    udp_packet(pk, t, 0, 148)
    udp_packet(pk, t + rt_s, 1, 92)
    tt = t + rt_s + 0.001
    for _ in range(ctx.geometric(3)):
        tt += ctx.lognorm(4.0, 1.2, 0.01, 25.0)
        up = ctx.r.randint(1, 4)
        for _ in range(up):
            udp_packet(pk, tt, 0, 32 + 16 * ctx.r.randint(3, 90))
            tt += 0.0003
        tt += rt_s
        for _ in range(int(ctx.lognorm(6, 1.0, 1, 40))):
            udp_packet(pk, tt, 1, 32 + 16 * (ctx.r.randint(3, 86) if ctx.r.random() < 0.3 else 86))
            tt += 0.0004
        udp_packet(pk, tt + 0.002, 0, 32)
        if len(pk) > 100:  # keep long sessions to a bounded packet count
            break
    ctx.trace.commit(pk, client, endpoint, PROTO_UDP, 51820, BENIGN, "wireguard")
