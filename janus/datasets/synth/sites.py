"""The four synthetic sites: address plans, link properties, benign mixes and attacks.

Each ``build_*`` function fills one :class:`SiteContext`. Flow counts are written for
``--scale 1.0`` and pass through :meth:`SiteContext.n`; the capture lasts
``7200 * scale`` seconds (at least 720), so arrival *rates* do not depend on the scale.

| site | capture point | RTT to clients / servers | MTU | benign mix |
|---|---|---|---|---|
| office (UTC-3) | client LAN uplink | 0.6 ms / ~25 ms | 1500 | web, QUIC, DNS, SSH, mail, telemetry, sync |
| datacenter (UTC+0) | server rack | ~45 ms / 0.2 ms | 1500, 9000 storage | keep-alive APIs, health checks, DB, bulk |
| iot (UTC+9) | device gateway | 2 ms / ~60 ms | 1500, devices MSS 536-1460 | MQTT, CoAP, NTP, DNS, RTP |
| tunnel (UTC+1) | PPPoE subscriber line | 1 ms / ~80 ms | 1492 | relay TLS with 586-byte cells, WireGuard |
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from janus.datasets.synth import attacks as A
from janus.datasets.synth import benign as B
from janus.datasets.synth.context import SiteContext


@dataclass(frozen=True)
class SiteSpec:
    name: str
    utc_offset_hours: float  # local time = UTC + offset (the label CSV is in local time)
    mtu: int
    description: str
    build: Callable[[SiteContext], None]


def _spread(ctx: SiteContext, n: int, fn, *args) -> None:
    """Call ``fn(t, *args)`` at ``n`` arrival times across the capture."""
    for t in ctx.times(ctx.n(n)):
        fn(t, *args)


# --------------------------------------------------------------------------- office
def build_office(ctx: SiteContext) -> None:
    r = ctx.r
    lan = 0.0006
    clients = ctx.subnet_hosts("10.10.0.0/22", 160, ("windows", "macos", "linux"), (0.6, 0.25, 0.15))
    clients6 = ctx.subnet_hosts("2001:db8:a10::/64", 50, ("windows", "macos"), (0.7, 0.3), first=0x100)
    resolver = ctx.host("10.10.0.2", "linux_server", local=True)
    resolver6 = ctx.host("2001:db8:a10::2", "linux_server", local=True)
    web = [ctx.remote() for _ in range(300)]
    web6 = [ctx.remote(v6=True) for _ in range(80)]
    intranet = ctx.host("10.10.5.20", "linux_server", local=True)
    ssh_srv = ctx.host("10.10.5.22", "linux_server", local=True)
    ftp_srv = ctx.host("10.10.5.21", "linux_server", local=True)
    mail = ctx.remote()
    telem = [ctx.remote() for _ in range(6)]
    ntp = [ctx.remote() for _ in range(4)]
    wan = lambda: ctx.rtt(0.025, 0.6)

    def visit(t):
        if r.random() < 0.3:
            B.https_visit(ctx, r.choice(clients6), web6, resolver6, t, lan, wan())
        elif r.random() < 0.1:
            B.https_visit(ctx, r.choice(clients), [intranet], resolver, t, lan, ctx.rtt(0.0008), port=80,
                          variant="intranet")
        else:
            B.https_visit(ctx, r.choice(clients), web, resolver, t, lan, wan(),
                          port=443 if r.random() < 0.9 else 80)

    _spread(ctx, 700, visit)
    _spread(ctx, 2100, lambda t: B.dns_lookup(ctx, r.choice(clients), resolver, t, lan, ctx.rtt(0.004)))
    _spread(ctx, 200, lambda t: B.quic_session(ctx, r.choice(clients), r.choice(web[:40]), t, lan, wan()))
    _spread(ctx, 500, lambda t: B.telemetry_post(ctx, r.choice(clients), r.choice(telem), t, lan, wan()))
    _spread(ctx, 100, lambda t: B.ssh_session(ctx, r.choice(clients), r.choice((ssh_srv, r.choice(web))), t,
                                              lan, ctx.rtt(0.0008) if r.random() < 0.6 else wan()))
    _spread(ctx, 200, lambda t: B.imap_session(ctx, r.choice(clients), mail, t, lan, wan()))
    _spread(ctx, 80, lambda t: B.smtp_submission(ctx, r.choice(clients), mail, t, lan, wan()))
    _spread(ctx, 40, lambda t: B.ftp_session(ctx, r.choice(clients), ftp_srv, t, lan, ctx.rtt(0.0008)))
    _spread(ctx, 400, lambda t: B.ntp_poll(ctx, r.choice(clients), r.choice(ntp), t, wan()))
    _spread(ctx, 60, lambda t: B.ping(ctx, r.choice(clients), r.choice(web), t, wan()))
    _spread(ctx, 40, lambda t: B.upload_sync(ctx, r.choice(clients), r.choice(telem), t, lan, wan()))

    # Attacks: an external attacker (scans, brute force, web attacks, slow DoS) and
    # beaconing bots inside.
    ext = ctx.host("205.174.165.73", "linux", local=False)
    ext2 = ctx.host("198.51.100.23", "linux", local=False)
    att_rt = lambda: ctx.rtt(0.04, 0.3)
    inside = clients[7]
    for scan, n, interval, variant, target in (
        ("syn", 500, 0.002, "syn_T4", intranet), ("connect", 120, 0.4, "connect_T2", ssh_srv),
        ("udp", 200, 0.002, "udp_T4", resolver), ("syn", 100, 15.0, "syn_T1", ftp_srv),
    ):
        A.port_scan(ctx, ext if variant != "connect_T2" else inside, target, ctx.n(n), scan, interval,
                    ctx.rtt(0.0008), att_rt() if variant != "connect_T2" else lan,
                    (22, 80, 443, 53) if target is not ftp_srv else (21, 22), variant=variant, filtered=0.05)
    A.ssh_bruteforce(ctx, ext, ssh_srv, ctx.n(350), att_rt(), 0.0008, gap=0.3, attempts=(3, 6),
                     variant="fast", parallel=4)
    A.ssh_bruteforce(ctx, ext2, ssh_srv, ctx.n(60), att_rt(), 0.0008, gap=90.0, attempts=(1, 2), variant="slow")
    A.ftp_bruteforce(ctx, ext, ftp_srv, ctx.n(250), att_rt(), 0.0008, gap=0.5, variant="fast")
    A.web_attack(ctx, ext, intranet, ctx.n(150), att_rt(), 0.0008, kind="sqli", pace=0.05, variant="fast")
    A.web_attack(ctx, ext2, intranet, ctx.n(40), att_rt(), 0.0008, kind="sqli", pace=4.0, variant="slow")
    A.web_attack(ctx, ext, intranet, ctx.n(100), att_rt(), 0.0008, kind="xss", pace=0.2, variant="fast")
    A.web_attack(ctx, ext, intranet, ctx.n(120), att_rt(), 0.0008, kind="brute", pace=0.1, variant="fast")
    c2 = ctx.remote()
    for bot in clients[20:24]:
        A.beacon(ctx, bot, c2, ctx.n(150), 30.0, 0.0, lan, wan(), variant="periodic_30s")
    for bot in clients[30:32]:
        A.beacon(ctx, bot, c2, ctx.n(60), 120.0, 0.4, lan, wan(), variant="jitter_120s")
    A.slow_dos(ctx, ext, intranet, ctx.n(150), att_rt(), 0.0008, kind="slowloris", interval=15.0, variant="slowloris")
    A.slow_dos(ctx, ext2, intranet, ctx.n(80), att_rt(), 0.0008, kind="slowread", interval=5.0,
               variant="slowread")


# --------------------------------------------------------------------------- datacenter
def build_datacenter(ctx: SiteContext) -> None:
    r = ctx.r
    rack = 0.0002
    fronts = ctx.subnet_hosts("10.20.1.0/24", 10, ("linux_server",), (1,))
    fronts6 = ctx.subnet_hosts("2001:db8:a20:1::/64", 4, ("linux_server",), (1,))
    backends = ctx.subnet_hosts("10.20.2.0/24", 16, ("linux_server",), (1,))
    dbs = ctx.subnet_hosts("10.20.3.0/24", 3, ("linux_server",), (1,))
    storage = ctx.subnet_hosts("10.20.4.0/24", 6, ("linux_server",), (1,), mss=8948)  # jumbo frames
    lb = ctx.host("10.20.0.2", "linux", local=True)
    resolver = ctx.host("10.20.0.53", "linux_server", local=True)
    clients = [ctx.remote(r.choice(("linux", "windows", "macos"))) for _ in range(700)]
    clients6 = [ctx.remote(r.choice(("linux", "windows", "macos")), v6=True) for _ in range(250)]
    ext_api = [ctx.remote() for _ in range(30)]
    ntp = [ctx.remote() for _ in range(3)]
    wan = lambda: ctx.rtt(0.045, 0.7)

    def api(t):
        if r.random() < 0.35:
            B.api_session(ctx, r.choice(clients6), r.choice(fronts6), t, wan(), rack)
        else:
            B.api_session(ctx, r.choice(clients), r.choice(fronts), t, wan(), rack,
                          port=443 if r.random() < 0.85 else 80)

    _spread(ctx, 1200, api)
    _spread(ctx, 2000, lambda t: B.health_check(ctx, lb, r.choice(backends), t, rack))
    _spread(ctx, 550, lambda t: B.db_session(ctx, r.choice(backends), dbs[0], t, rack))
    _spread(ctx, 150, lambda t: B.db_session(ctx, r.choice(backends), dbs[1], t, rack, port=3306))
    _spread(ctx, 100, lambda t: B.bulk_transfer(ctx, r.choice(storage), r.choice(storage), t, rack,
                                                873 if r.random() < 0.5 else 9000, r.random() < 0.5, "bulk"))
    _spread(ctx, 1000, lambda t: B.dns_lookup(ctx, r.choice(backends + fronts), resolver, t, rack, rack))
    _spread(ctx, 100, lambda t: B.ntp_poll(ctx, r.choice(backends), r.choice(ntp), t, wan()))
    _spread(ctx, 250, lambda t: B.api_session(ctx, r.choice(backends), r.choice(ext_api), t, rack, wan(),
                                              variant="egress_api"))
    _spread(ctx, 30, lambda t: B.ssh_session(ctx, r.choice(clients), r.choice(backends), t, wan(), rack))

    att = [ctx.remote("linux") for _ in range(3)]
    web = fronts[0]
    A.syn_flood(ctx, web, 80, ctx.n(600), 400.0, rack, attacker=None, variant="spoofed_400pps")
    A.syn_flood(ctx, web, 443, ctx.n(200), 20.0, rack, attacker=None, variant="spoofed_20pps")
    A.syn_flood(ctx, fronts[1], 80, ctx.n(200), 100.0, rack, attacker=att[0], variant="direct_100pps")
    A.udp_flood(ctx, att[1], fronts[2], ctx.n(300), 200.0, 1400, variant="1400B_200pps")
    A.http_flood(ctx, att, fronts[3], ctx.n(400), 40.0, wan(), rack, variant="hulk_40cps")
    A.dns_reflection(ctx, fronts[4], ctx.n(300), 20.0, variant="any_20pps")
    A.slow_dos(ctx, att[2], fronts[5], ctx.n(120), wan(), rack, kind="slowloris", interval=12.0, variant="slowloris")
    A.web_attack(ctx, att[2], fronts[6], ctx.n(120), wan(), rack, kind="sqli", pace=0.1, variant="fast")
    A.port_scan(ctx, att[0], fronts[7], ctx.n(300), "syn", 0.001, rack, wan(), (80, 443), variant="syn_T4")
    c2 = ctx.remote()
    for i in range(ctx.n(5)):
        A.exfil_tls(ctx, storage[i % len(storage)], c2, rack, wan(), slow=False, variant="bulk")
    for i in range(ctx.n(15)):
        A.exfil_tls(ctx, backends[i % len(backends)], c2, rack, wan(), slow=True, variant="slow_sync_shaped")
    A.exfil_dns(ctx, backends[3], resolver, ctx.n(250), 2.0, rack, rack, variant="dns_tunnel")


# --------------------------------------------------------------------------- iot
def build_iot(ctx: SiteContext) -> None:
    r = ctx.r
    edge = 0.002
    devs = ctx.subnet_hosts("10.30.0.0/23", 220, ("iot", "iot_small", "linux"), (0.5, 0.3, 0.2))
    for d in devs:  # constrained devices advertise small MSS values
        d.mss = r.choice((536, 536, 1024, 1360, 1460)) if d.wscale == 0 else 1460
    devs6 = ctx.subnet_hosts("fd00:30::/64", 40, ("iot_small",), (1,), first=0x20, mss=1220)
    resolver = ctx.host("10.30.0.1", "linux_server", local=True)
    broker = ctx.remote()
    local_broker = ctx.host("10.30.0.2", "linux_server", local=True)
    coap6 = ctx.remote(v6=True)
    coap = ctx.remote()
    recorder = ctx.host("10.30.0.3", "linux_server", local=True)
    ntp = [ctx.remote() for _ in range(3)]
    fw = [ctx.remote() for _ in range(3)]
    wan = lambda: ctx.rtt(0.06, 0.5)
    period = {id(d): r.choice((5.0, 10.0, 15.0, 30.0, 45.0)) for d in devs}

    def mqtt(t):
        d = r.choice(devs)
        if r.random() < 0.5:
            B.mqtt_session(ctx, d, broker, t, edge, wan(), period[id(d)], qos1=d.ttl == 64)
        else:
            B.mqtt_session(ctx, d, local_broker, t, edge, 0.0005, period[id(d)], qos1=True)

    def coap_ex(t):
        if r.random() < 0.4:
            B.coap_exchange(ctx, r.choice(devs6), coap6, t, wan())
        else:
            B.coap_exchange(ctx, r.choice(devs), coap, t, wan())

    _spread(ctx, 900, mqtt)
    _spread(ctx, 2500, coap_ex)
    _spread(ctx, 1200, lambda t: B.dns_lookup(ctx, r.choice(devs), resolver, t, edge, 0.003))
    _spread(ctx, 500, lambda t: B.ntp_poll(ctx, r.choice(devs), r.choice(ntp), t, wan()))
    cams = devs[200:212]
    _spread(ctx, 150, lambda t: B.video_stream(ctx, r.choice(cams), recorder, t, 0.0005))
    _spread(ctx, 200, lambda t: B.telemetry_post(ctx, r.choice(devs), r.choice(fw), t, edge, wan(),
                                                 variant="firmware_check"))
    _spread(ctx, 40, lambda t: B.upload_sync(ctx, r.choice(cams), r.choice(fw), t, edge, wan(),
                                             variant="camera_cloud_upload"))

    bots = devs[40:46]
    c2 = ctx.remote()
    victim = ctx.remote()
    for i, bot in enumerate(bots):
        fast = i < 3
        A.syn_probe_sweep(ctx, bot, ctx.n(300 if fast else 100), 50.0 if fast else 0.2, (23, 23, 23, 2323),
                          variant="telnet_fast" if fast else "telnet_slow")
        A.mirai_c2(ctx, bot, c2, edge, wan(), variant="mirai_c2")
    for bot in bots[:3]:
        A.beacon(ctx, bot, c2, ctx.n(70), 90.0, 0.2, edge, wan(), variant="http_beacon", tls=False, port=80)
    A.syn_flood(ctx, victim, 80, ctx.n(300), 150.0, wan(), attacker=bots[0], variant="mirai_syn")
    A.udp_flood(ctx, bots[1], victim, ctx.n(400), 300.0, 512, variant="udpplain_512B")


# --------------------------------------------------------------------------- tunnel
def build_tunnel(ctx: SiteContext) -> None:
    r = ctx.r
    line = 0.001
    clients = ctx.subnet_hosts("10.40.0.0/24", 60, ("linux", "windows"), (0.6, 0.4))
    relays = [ctx.remote() for _ in range(40)]
    wg = [ctx.remote() for _ in range(3)]
    resolver = ctx.remote()
    ntp = [ctx.remote() for _ in range(2)]
    web = [ctx.remote() for _ in range(60)]
    wan = lambda: ctx.rtt(0.08, 0.5)
    guard = {id(c): r.sample(relays, 3) for c in clients}  # each client sticks to its guards

    def browse(t: float) -> None:
        c = r.choice(clients)
        B.tor_connection(ctx, c, r.choice(guard[id(c)]), t, line, wan())

    _spread(ctx, 1000, browse)
    _spread(ctx, 500, lambda t: B.tor_connection(ctx, r.choice(clients), r.choice(relays), t, line, wan(),
                                                 variant="tor_directory", directory=True))
    _spread(ctx, 350, lambda t: B.wireguard_session(ctx, r.choice(clients), r.choice(wg), t, wan()))
    _spread(ctx, 2600, lambda t: B.dns_lookup(ctx, r.choice(clients), resolver, t, line, wan()))
    _spread(ctx, 400, lambda t: B.ntp_poll(ctx, r.choice(clients), r.choice(ntp), t, wan()))
    _spread(ctx, 200, lambda t: B.https_visit(ctx, r.choice(clients), web, resolver, t, line, wan()))

    for i, bot in enumerate(clients[10:22]):
        loud = i < 4
        A.tunnel_beacon(ctx, bot, r.choice(guard[id(bot)]), ctx.n(330 if loud else 90), 22.0 if loud else 80.0,
                        0.05 if loud else 0.5, line, wan(), variant="periodic_20s" if loud else "jitter_80s")
    A.exfil_tunnel(ctx, clients[30], guard[id(clients[30])][0], ctx.n(120), line, wan(), up_extra=(20, 60),
                   variant="bulk_upstream")
    A.exfil_tunnel(ctx, clients[31], guard[id(clients[31])][0], ctx.n(200), line, wan(), up_extra=(1, 4),
                   variant="slow_upstream")


SITES: dict[str, SiteSpec] = {
    "office": SiteSpec("office", -3.0, 1500, "campus/office LAN: browsing, DNS, SSH, mail", build_office),
    "datacenter": SiteSpec("datacenter", 0.0, 1500, "API frontends, DB, storage (jumbo)", build_datacenter),
    "iot": SiteSpec("iot", 9.0, 1500, "sensor network: MQTT, CoAP, NTP, cameras", build_iot),
    "tunnel": SiteSpec("tunnel", 1.0, 1492, "anonymity tunnel users: fixed-size cells, WireGuard", build_tunnel),
}
