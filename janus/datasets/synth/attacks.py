"""Attack models, each with intensities (the ``variant`` recorded in ``site.json``).

Labels use CIC spellings. Several variants are deliberately subtle -- low-rate brute
force shaped like a mistyped login, exfiltration hidden in sync- or browsing-shaped TLS,
beaconing with jitter -- so that flow statistics alone do not separate everything; their
packet-level patterns (PAM-delayed failures, upstream cell surplus, regular periods)
still differ from benign traffic.
"""

from __future__ import annotations

import dataclasses

from janus.datasets.synth.benign import (
    CELL,
    close_conn,
    commit_tcp,
    ssh_kex,
    tls_handshake,
    tor_connection,
)
from janus.datasets.synth.context import SiteContext
from janus.datasets.synth.tcp import (
    ACK,
    PROTO_ICMP,
    PROTO_TCP,
    PROTO_UDP,
    RST,
    SYN,
    Host,
    TcpConn,
    icmp_packet,
    udp_packet,
)

SYN_FLOOD = "DoS SYN Flood"
UDP_FLOOD = "DoS UDP Flood"
HULK = "DoS Hulk"
SLOWLORIS = "DoS slowloris"
SLOWHTTPTEST = "DoS Slowhttptest"
PORTSCAN = "PortScan"
SSH_PATATOR = "SSH-Patator"
FTP_PATATOR = "FTP-Patator"
BOT = "Bot"
EXFIL = "Exfiltration"
DRDOS_DNS = "DrDoS_DNS"
SQLI = "Web Attack \u2013 Sql Injection"
XSS = "Web Attack \u2013 XSS"
WEB_BRUTE = "Web Attack \u2013 Brute Force"


def _episode(ctx: SiteContext, length: float) -> float:
    """Start time of an attack episode of ``length`` seconds inside the capture."""
    span = max(1.0, ctx.duration - length - 5.0)
    return ctx.t0 + 1.0 + ctx.r.random() * span


# --------------------------------------------------------------------------- floods
def syn_flood(ctx: SiteContext, victim: Host, port: int, n: int, rate: float, rt_v: float, *,
              attacker: Host | None, variant: str) -> None:
    """``n`` SYNs at ``rate``/s, each from a new source port. Spoofed (``attacker=None``):
    random sources, the victim retransmits its SYN-ACK at 1 s and 3 s. Direct: the
    attacker's kernel answers each SYN-ACK with a RST."""
    t = _episode(ctx, n / rate)
    sport = ctx.r.randint(1024, 60000)
    for _ in range(n):
        t += ctx.r.expovariate(rate)
        src = attacker or ctx.remote("tool")
        win = ctx.r.choice((512, 1024, 64, 8192)) if attacker is None else 512
        seq, sseq = ctx.r.getrandbits(32), ctx.r.getrandbits(32)
        pk = [(t, 0, SYN, win, 0, seq, 0, None)]
        t1 = t + rt_v
        pk.append((t1, 1, SYN | ACK, victim.win0, 0, sseq, seq + 1, None))
        if attacker is None:
            pk.append((t1 + 1.0 + ctx.r.random() * 0.01, 1, SYN | ACK, victim.win0, 0, sseq, seq + 1, None))
            pk.append((t1 + 3.0 + ctx.r.random() * 0.02, 1, SYN | ACK, victim.win0, 0, sseq, seq + 1, None))
            cport = ctx.r.randint(1024, 65535)
        else:
            pk.append((t1 + ctx.rtt(0.03), 0, RST, 0, 0, seq + 1, 0, None))
            sport = 1024 if sport >= 65535 else sport + 1  # hping3 increments the source port
            cport = sport
        ctx.trace.commit(pk, src, victim, PROTO_TCP, port, SYN_FLOOD, variant, cport=cport,
                         closed=attacker is not None)
    if attacker is not None:
        ctx.mark(ctx.attackers, attacker, SYN_FLOOD)
    ctx.mark(ctx.victims, victim, SYN_FLOOD)


def udp_flood(ctx: SiteContext, attacker: Host, victim: Host, n: int, rate: float, payload: int, *,
              variant: str) -> None:
    """``n`` UDP datagrams at ``rate``/s to random ports, one flow each (new source port)."""
    t = _episode(ctx, n / rate)
    for _ in range(n):
        t += ctx.r.expovariate(rate)
        pk: list = []
        udp_packet(pk, t, 0, payload)
        if ctx.r.random() < 0.2:  # a second datagram on the same socket
            udp_packet(pk, t + ctx.r.expovariate(rate), 0, payload)
        ctx.trace.commit(pk, attacker, victim, PROTO_UDP, ctx.r.randint(1, 65535), UDP_FLOOD, variant)
    ctx.mark(ctx.attackers, attacker, UDP_FLOOD)
    ctx.mark(ctx.victims, victim, UDP_FLOOD)


def http_flood(ctx: SiteContext, attackers: list[Host], server: Host, n: int, rate: float, rt_a: float,
               rt_s: float, *, variant: str) -> None:
    """HULK: connections at ``rate``/s, each one or two GETs with unique random query strings
    and long headers, closed right after the response."""
    t = _episode(ctx, n / rate)
    for _ in range(n):
        t += ctx.r.expovariate(rate)
        a = ctx.r.choice(attackers)
        conn = TcpConn(ctx.r, a, server, t, rt_a, rt_s, max_packets=60)
        conn.handshake()
        for _ in range(1 if ctx.r.random() < 0.8 else 2):
            conn.exchange(ctx.r.randint(330, 520), int(ctx.lognorm(2500, 0.6, 300, 20000)),
                          conn.t + ctx.r.random() * 0.002, server_time=ctx.lognorm(0.05, 1.0, 0.002, 3.0))
        conn.close(0, conn.t + ctx.r.random() * 0.003, "fin" if ctx.r.random() < 0.6 else "rst")
        commit_tcp(ctx, conn, a, server, 80, variant, HULK)
    for a in attackers:
        ctx.mark(ctx.attackers, a, HULK)


def slow_dos(ctx: SiteContext, attacker: Host, server: Host, n: int, rt_a: float, rt_s: float, *,
             kind: str, interval: float, variant: str, port: int = 80) -> None:
    """Slow HTTP DoS: ``slowloris`` (a partial header, then one short header line every
    ``interval`` s until the server's 300 s timeout) or ``slowread`` (a normal GET, then a
    tiny receive window that the server fills a few bytes at a time)."""
    start = _episode(ctx, 300.0)
    for i in range(n):
        t = start + i * ctx.r.uniform(0.002, 0.05) + (i // 150) * interval * 2
        a = attacker
        if kind == "slowread":
            # A tiny receive buffer: the advertised window stays at a few bytes.
            a = dataclasses.replace(attacker, win0=256, rcv_max=256, wscale=0)
        conn = TcpConn(ctx.r, a, server, t, rt_a, rt_s, max_packets=70)
        conn.handshake()
        if kind == "slowloris":
            conn.send(0, ctx.r.randint(180, 260))
            end = conn.t + 300.0
            while conn.t + interval < end and not conn.full:
                conn.send(0, ctx.r.randint(8, 20), conn.t + interval * ctx.r.uniform(0.9, 1.1))
            conn.send(1, ctx.r.randint(300, 500), end)  # 408 Request Timeout
            conn.close(1, conn.t + 0.0005)
            label = SLOWLORIS
        else:
            conn.exchange(ctx.r.randint(120, 200), 0)
            while not conn.full:
                conn.send(1, ctx.r.choice((32, 64, 128, 256)), conn.t + interval * ctx.r.uniform(0.8, 1.2),
                          segment=256)
            conn.close(1, conn.t + 1.0, "rst")
            label = SLOWHTTPTEST
        commit_tcp(ctx, conn, a, server, port, variant, label)
    ctx.mark(ctx.attackers, attacker, SLOWLORIS if kind == "slowloris" else SLOWHTTPTEST)


def dns_reflection(ctx: SiteContext, victim: Host, n_flows: int, rate: float, *, variant: str) -> None:
    """DNS amplification seen at the victim: open resolvers answer spoofed ANY queries with
    2-4 KB responses, fragmented at 1500 bytes; one flow per (resolver, victim port)."""
    n_ref = max(1, n_flows // 4)
    reflectors = [ctx.remote("linux_server") for _ in range(n_ref)]
    t0 = _episode(ctx, 60.0)
    for i in range(n_flows):
        ref = reflectors[i % n_ref]
        t = t0 + ctx.r.random() * 60.0
        pk: list = []
        size = ctx.r.choice((2800, 3300, 3900)) + ctx.r.randint(0, 60)
        for _ in range(ctx.r.randint(2, int(2 + rate))):
            udp_packet(pk, t, 0, size, extra=("frag", 1500))
            t += ctx.r.expovariate(rate)
        ctx.trace.commit(pk, ref, victim, PROTO_UDP, 0, DRDOS_DNS, variant, cport=53, vary_sport=True)
        ctx.mark(ctx.attackers, ref, DRDOS_DNS)
    ctx.mark(ctx.victims, victim, DRDOS_DNS)


# --------------------------------------------------------------------------- scans
def port_scan(ctx: SiteContext, scanner: Host, target: Host, n_ports: int, kind: str, interval: float,
              rt_t: float, rt_s: float, open_ports: tuple[int, ...], *, variant: str,
              filtered: float = 0.0) -> None:
    """``kind``: ``syn`` (half-open, one source port per scan), ``connect`` (full handshake
    then RST) or ``udp`` (empty datagrams; closed ports answer ICMP port unreachable, rate
    limited to one per second, gathered in one ICMP flow). ``interval`` s between probes
    (nmap -T4 ~ 1 ms, -T2 0.4 s, -T1 15 s); ``filtered`` share of probes get no answer."""
    ports = ctx.r.sample(range(1, 10000), n_ports - len(open_ports)) + list(open_ports)
    ctx.r.shuffle(ports)
    t = _episode(ctx, n_ports * interval)
    sport = ctx.r.randint(33000, 65000)
    icmp: list = []
    last_icmp = -1e9
    for p in ports:
        t += interval * ctx.r.uniform(0.7, 1.3)
        if kind == "udp":
            pk: list = []
            plen = {53: 12, 123: 48, 161: 40}.get(p, 0)
            udp_packet(pk, t, 0, plen)
            if p in open_ports:
                udp_packet(pk, t + rt_t, 1, ctx.r.randint(40, 120))
            elif t - last_icmp >= 1.0 and ctx.r.random() >= filtered:
                icmp_packet(icmp, t + rt_t, 0, 3, 3, 0, 28 + plen,
                            extra=(scanner.ip, target.ip, sport, p, plen))
                last_icmp = t
            ctx.trace.commit(pk, scanner, target, PROTO_UDP, p, PORTSCAN, variant, cport=sport)
            continue
        if kind == "syn":
            seq = ctx.r.getrandbits(32)
            pk = [(t, 0, SYN, 1024, 0, seq, 0, None)]
            if p in open_ports:
                t1 = t + rt_t
                pk.append((t1, 1, SYN | ACK, target.win0, 0, ctx.r.getrandbits(32), seq + 1, None))
                pk.append((t1 + rt_s, 0, RST, 0, 0, seq + 1, 0, None))
            elif ctx.r.random() >= filtered:
                pk.append((t + rt_t, 1, RST | ACK, 0, 0, 0, seq + 1, None))
            ctx.trace.commit(pk, scanner, target, PROTO_TCP, p, PORTSCAN, variant, cport=sport,
                             closed=len(pk) > 1)
            continue
        conn = TcpConn(ctx.r, scanner, target, t, rt_s, rt_t, max_packets=8)
        if p in open_ports:
            conn.handshake()
            conn.close(0, conn.t + 0.0002, "rst")
        else:
            conn.handshake("refused" if ctx.r.random() >= filtered else "silent")
        commit_tcp(ctx, conn, scanner, target, p, variant, PORTSCAN)
    if icmp:
        # The ICMP errors form one flow initiated by the target.
        ctx.trace.commit(icmp, target, scanner, PROTO_ICMP, 0, PORTSCAN, variant + "_icmp", cport=0)
    ctx.mark(ctx.attackers, scanner, PORTSCAN)


def syn_probe_sweep(ctx: SiteContext, bot: Host, n: int, rate: float, ports: tuple[int, ...], *,
                    variant: str) -> None:
    """Mirai-style scanning: raw SYNs to random addresses on telnet ports; most go
    unanswered, some get a RST, a few a SYN-ACK (then the scanner's RST)."""
    t = _episode(ctx, n / rate)
    for _ in range(n):
        t += ctx.r.expovariate(rate)
        dst = ctx.remote("linux_server")
        seq = ctx.r.getrandbits(32)
        pk = [(t, 0, SYN, ctx.r.randint(1024, 65535), 0, seq, 0, None)]
        u = ctx.r.random()
        rt = ctx.rtt(0.12, 0.5)
        if u < 0.1:
            pk.append((t + rt, 1, RST | ACK, 0, 0, 0, seq + 1, None))
        elif u < 0.13:
            pk.append((t + rt, 1, SYN | ACK, 14600, 0, ctx.r.getrandbits(32), seq + 1, None))
            pk.append((t + rt + 0.0005, 0, RST, 0, 0, seq + 1, 0, None))
        ctx.trace.commit(pk, bot, dst, PROTO_TCP, ctx.r.choice(ports), PORTSCAN, variant,
                         cport=ctx.r.randint(1024, 65535), closed=len(pk) > 1)
    ctx.mark(ctx.attackers, bot, PORTSCAN)


# --------------------------------------------------------------------------- brute force
def ssh_bruteforce(ctx: SiteContext, attacker: Host, server: Host, n: int, rt_a: float, rt_s: float, *,
                   gap: float, attempts: tuple[int, int], variant: str, parallel: int = 1) -> None:
    """Connections every ``gap`` s (``parallel`` at a time), each with a key exchange and
    ``attempts`` password tries answered after the ~2 s PAM delay, then a disconnect."""
    t = _episode(ctx, n * gap / parallel)
    for i in range(n):
        if i % parallel == 0:
            t += gap * ctx.r.uniform(0.5, 1.5)
        conn = TcpConn(ctx.r, attacker, server, t + ctx.r.random() * 0.05, rt_a, rt_s, loss=0.002, max_packets=80)
        conn.handshake()
        ssh_kex(ctx, conn)
        human = gap > 10
        for _ in range(ctx.r.randint(*attempts)):
            think = ctx.lognorm(3.0, 0.5) if human else ctx.lognorm(0.01, 0.5)
            conn.exchange(ctx.r.choice((84, 100)), 52, conn.t + think, server_time=ctx.lognorm(2.0, 0.08))
        if ctx.r.random() < 0.5:
            conn.send(1, ctx.r.randint(60, 80), conn.t + 0.001)  # "Too many authentication failures"
            conn.close(1, conn.t + 0.0005)
        else:
            conn.close(0, conn.t + (ctx.lognorm(1.0, 0.5) if human else 0.001))
        commit_tcp(ctx, conn, attacker, server, 22, variant, SSH_PATATOR)
    ctx.mark(ctx.attackers, attacker, SSH_PATATOR)


def ftp_bruteforce(ctx: SiteContext, attacker: Host, server: Host, n: int, rt_a: float, rt_s: float, *,
                   gap: float, variant: str) -> None:
    """FTP-Patator: banner, USER -> 331, PASS -> 530 after the server's delay, QUIT."""
    t = _episode(ctx, n * gap)
    for _ in range(n):
        t += gap * ctx.r.uniform(0.3, 1.7)
        conn = TcpConn(ctx.r, attacker, server, t, rt_a, rt_s, max_packets=40)
        conn.handshake()
        conn.send(1, ctx.r.randint(20, 60), conn.t + 0.002)
        for _ in range(ctx.r.randint(1, 3)):
            conn.exchange(ctx.r.randint(10, 18), 34, conn.t + ctx.lognorm(0.002, 0.5))
            conn.exchange(ctx.r.randint(10, 22), 22, conn.t + ctx.lognorm(0.002, 0.5), server_time=ctx.lognorm(1.0, 0.3))
        conn.exchange(6, 14, conn.t + 0.001)
        conn.close(1, conn.t + 0.0005)
        commit_tcp(ctx, conn, attacker, server, 21, variant, FTP_PATATOR)
    ctx.mark(ctx.attackers, attacker, FTP_PATATOR)


def web_attack(ctx: SiteContext, attacker: Host, server: Host, n: int, rt_a: float, rt_s: float, *,
               kind: str, pace: float, variant: str) -> None:
    """Scripted web attacks on port 80: ``sqli`` (long encoded query strings, many 500
    errors), ``xss`` (payload-bearing requests, reflected pages), ``brute`` (login POSTs,
    identical login pages back). ``pace`` s between requests; 1-12 requests per connection."""
    label = {"sqli": SQLI, "xss": XSS, "brute": WEB_BRUTE}[kind]
    t = _episode(ctx, n * pace * 4)
    page = ctx.r.randint(3000, 6000)
    for _ in range(n):
        conn = TcpConn(ctx.r, attacker, server, t, rt_a, rt_s, max_packets=120)
        conn.handshake()
        for _ in range(ctx.r.randint(1, 12)):
            if kind == "sqli":
                req, resp = ctx.r.randint(380, 1100), (ctx.r.randint(600, 1200) if ctx.r.random() < 0.6 else page)
            elif kind == "xss":
                req, resp = ctx.r.randint(450, 1400), page + ctx.r.randint(0, 600)
            else:
                req, resp = ctx.r.randint(560, 640), page
            conn.exchange(req, resp, conn.t + pace * ctx.r.uniform(0.5, 1.5), server_time=ctx.lognorm(0.03, 0.8))
        close_conn(ctx, conn, ctx.lognorm(0.5, 1.0, 0.001, 10), weights=(0.5, 0.4, 0.1, 0.0))
        commit_tcp(ctx, conn, attacker, server, 80, variant, label)
        t = conn.t + pace
    ctx.mark(ctx.attackers, attacker, label)


# --------------------------------------------------------------------------- bots and exfiltration
def beacon(ctx: SiteContext, bot: Host, c2: Host, n: int, interval: float, jitter: float, rt_b: float,
           rt_c2: float, *, variant: str, tls: bool = True, port: int = 443) -> None:
    """C&C beaconing: a new connection every ``interval * (1 +- jitter)`` s posting a
    fixed-size check-in; now and then a task comes back."""
    t = ctx.t0 + ctx.r.random() * interval
    checkin = ctx.r.randint(180, 480)
    for _ in range(n):
        if t >= ctx.t1:
            break
        conn = TcpConn(ctx.r, bot, c2, t, rt_b, rt_c2, loss=0.002, max_packets=60)
        conn.handshake()
        if tls:
            tls_handshake(ctx, conn)
        task = ctx.r.random() < 0.05
        conn.exchange(checkin + ctx.r.randint(0, 16), ctx.r.randint(2000, 30000) if task else ctx.r.randint(90, 260),
                      server_time=ctx.lognorm(0.05, 0.6))
        if task:
            conn.exchange(ctx.r.randint(200, 4000), ctx.r.randint(90, 200), conn.t + ctx.lognorm(2.0, 1.0))
        conn.close(1 if ctx.r.random() < 0.7 else 0, conn.t + ctx.lognorm(0.2, 1.0, 0.001, 15))
        commit_tcp(ctx, conn, bot, c2, port, variant, BOT)
        t += interval * (1.0 + ctx.r.uniform(-jitter, jitter))
    ctx.mark(ctx.attackers, bot, BOT)
    ctx.mark(ctx.attackers, c2, BOT)


def mirai_c2(ctx: SiteContext, bot: Host, c2: Host, rt_b: float, rt_c2: float, *, variant: str) -> None:
    """A Mirai bot's C&C link on port 23: 4-byte hello, 2-byte keep-alives every 60 s both
    ways, dropped by the C&C after a few minutes; the bot reconnects."""
    t = ctx.t0 + ctx.r.random() * 60
    while t < ctx.t1:
        conn = TcpConn(ctx.r, bot, c2, t, rt_b, rt_c2, max_packets=80)
        conn.handshake()
        conn.send(0, 4, conn.t + 0.001)
        conn.send(0, ctx.r.randint(1, 32), conn.t + 0.001)
        for _ in range(ctx.r.randint(2, 15)):
            conn.exchange(2, 2, conn.t + 60.0 * ctx.r.uniform(0.98, 1.02))
        conn.close(1, conn.t + ctx.r.uniform(1, 59), "rst" if ctx.r.random() < 0.5 else "fin")
        commit_tcp(ctx, conn, bot, c2, 23, variant, BOT)
        t = conn.t + ctx.r.uniform(5.0, 60.0)
    ctx.mark(ctx.attackers, bot, BOT)
    ctx.mark(ctx.attackers, c2, BOT)


def exfil_tls(ctx: SiteContext, host: Host, dest: Host, rt_h: float, rt_d: float, *, slow: bool,
              variant: str) -> None:
    """Exfiltration over TLS. Fast: one long upload at full speed. Slow: a long session
    pushing 5-40 KB chunks every 30-90 s, shaped like a sync client."""
    conn = TcpConn(ctx.r, host, dest, _episode(ctx, 600), rt_h, rt_d, loss=0.002, max_packets=300,
                   bandwidth=ctx.lognorm(50e6, 0.5))
    conn.handshake()
    tls_handshake(ctx, conn)
    if slow:
        for _ in range(ctx.r.randint(4, 20)):
            conn.exchange(ctx.r.randint(5000, 40000), ctx.r.randint(60, 140), conn.t + ctx.r.uniform(30, 90))
            if conn.full:
                break
    else:
        conn.send(0, int(ctx.lognorm(30e6, 0.8)), conn.t + 0.01)
    close_conn(ctx, conn, ctx.lognorm(1.0, 1.0), weights=(0.6, 0.3, 0.1, 0.0))
    commit_tcp(ctx, conn, host, dest, 443, variant, EXFIL)
    ctx.mark(ctx.attackers, host, EXFIL)
    ctx.mark(ctx.attackers, dest, EXFIL)


def exfil_dns(ctx: SiteContext, host: Host, resolver: Host, n: int, rate: float, rt_c: float, rt_s: float, *,
              variant: str) -> None:
    """DNS tunnelling: ``n`` queries at ``rate``/s carrying data in long names (150-250 byte
    queries, small answers), each from a fresh source port."""
    t = _episode(ctx, n / rate)
    for _ in range(n):
        t += ctx.r.expovariate(rate)
        pk: list = []
        q = ctx.r.randint(150, 250)
        udp_packet(pk, t, 0, q)
        udp_packet(pk, t + rt_s + ctx.lognorm(0.06, 0.5), 1, q + ctx.r.randint(16, 60))
        ctx.trace.commit(pk, host, resolver, PROTO_UDP, 53, EXFIL, variant)
    ctx.mark(ctx.attackers, host, EXFIL)


def exfil_tunnel(ctx: SiteContext, client: Host, relay: Host, n: int, rt_c: float, rt_s: float, *,
                 up_extra: tuple[int, int], variant: str) -> None:
    """Exfiltration through the anonymity tunnel: relay connections shaped like browsing
    but with ``up_extra`` surplus upstream cells per burst."""
    for t in ctx.times(n):
        tor_connection(ctx, client, relay, t, rt_c, rt_s, label=EXFIL, variant=variant, up_extra=up_extra)
    ctx.mark(ctx.attackers, client, EXFIL)


def tunnel_beacon(ctx: SiteContext, bot: Host, relay: Host, n: int, interval: float, jitter: float,
                  rt_c: float, rt_s: float, *, variant: str) -> None:
    """Beaconing through the tunnel: a short relay connection every ``interval`` s carrying
    a handful of cells each way."""
    t = ctx.t0 + ctx.r.random() * interval
    for _ in range(n):
        if t >= ctx.t1:
            break
        conn = TcpConn(ctx.r, bot, relay, t, rt_c, rt_s, loss=0.003, max_packets=60)
        conn.handshake()
        tls_handshake(ctx, conn)
        conn.exchange(CELL, 3 * CELL)
        conn.exchange(2 * CELL, CELL)
        conn.send(0, ctx.r.randint(1, 3) * CELL, conn.t + 0.05, segment=CELL)
        conn.send(1, ctx.r.randint(1, 6) * CELL, conn.t + conn.rt[1] + ctx.lognorm(0.3, 0.5), segment=2 * CELL)
        conn.close(0, conn.t + ctx.lognorm(1.0, 1.0, 0.01, 30))
        ctx.trace.commit(conn.pk, bot, relay, PROTO_TCP, 443 if relay.ip % 3 else 9001, BOT, variant,
                         closed=conn.closed)
        t += interval * (1.0 + ctx.r.uniform(-jitter, jitter))
    ctx.mark(ctx.attackers, bot, BOT)


