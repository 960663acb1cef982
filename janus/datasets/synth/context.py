"""Per-site generation context: randomness, address plans, host stacks, time helpers."""

from __future__ import annotations

import ipaddress
import math
import random

import numpy as np

from janus.datasets.synth.tcp import Host, Trace

#: Stack behaviour per operating-system family (what shows in TTL, window and ports).
HOST_PROFILES: dict[str, dict] = {
    # Windows 10/11: TTL 128, SYN window 64240, scale 8, sequential ports from 49152.
    "windows": {"ttl": 128, "win0": 64240, "wscale": 8, "rcv_max": 4_194_304, "eph_lo": 49152, "eph_hi": 65535, "sequential": True},
    # Linux: TTL 64, SYN window 64240 (SYN-ACK 65160), scale 7, random ports 32768-60999.
    "linux": {"ttl": 64, "win0": 64240, "wscale": 7, "rcv_max": 6_291_456, "eph_lo": 32768, "eph_hi": 60999},
    "linux_server": {"ttl": 64, "win0": 65160, "wscale": 7, "rcv_max": 6_291_456, "eph_lo": 32768, "eph_hi": 60999},
    # macOS: TTL 64, window 65535, scale 6, random ports from 49152.
    "macos": {"ttl": 64, "win0": 65535, "wscale": 6, "rcv_max": 4_194_304, "eph_lo": 49152, "eph_hi": 65535},
    # Embedded stacks (lwIP and friends): no window scaling, small fixed buffers.
    "iot": {"ttl": 64, "win0": 5840, "wscale": 0, "rcv_max": 5840, "eph_lo": 49152, "eph_hi": 65535},
    "iot_small": {"ttl": 255, "win0": 2144, "wscale": 0, "rcv_max": 2144, "eph_lo": 49152, "eph_hi": 65535},
    # Raw-socket attack tools: no real stack behind them.
    "tool": {"ttl": 64, "win0": 1024, "wscale": 0, "rcv_max": 1024, "eph_lo": 1024, "eph_hi": 65535},
}

# Public-looking networks for remote hosts (CDN, cloud and ISP ranges).
_REMOTE_V4 = ("23.{}.{}.{}", "52.{}.{}.{}", "104.{}.{}.{}", "142.250.{}.{}", "151.101.{}.{}",
              "185.{}.{}.{}", "34.{}.{}.{}", "13.{}.{}.{}", "91.{}.{}.{}", "203.{}.{}.{}")
_REMOTE_V6 = ("2606:4700:{:x}::{:x}:{:x}", "2a00:1450:{:x}::{:x}:{:x}", "2600:1f18:{:x}::{:x}:{:x}",
              "2a03:2880:{:x}::{:x}:{:x}")


class SiteContext:
    """Everything one site's models share. All randomness comes from one seed."""

    def __init__(self, name: str, seed: np.random.SeedSequence, t0: float, duration: float, scale: float,
                 mtu: int = 1500):
        self.name = name
        self.rng = np.random.default_rng(seed)
        # Python's generator for per-packet scalars (10x cheaper per draw than NumPy's),
        # seeded from the NumPy stream so the whole site stays a function of the seed.
        self.r = random.Random(int(self.rng.integers(2**63)))
        self.t0 = t0
        self.duration = duration
        self.t1 = t0 + duration
        self.scale = scale
        self.mtu = mtu
        self.trace = Trace(self.r, t0, self.t1)
        self.gw_mac = self.mac()
        self.attackers: dict[str, set[str]] = {}  # attacker / victim address -> labels
        self.victims: dict[str, set[str]] = {}

    # ------------------------------------------------------------------ sizes and times
    def n(self, count: float) -> int:
        """A flow count at this scale (at least 1)."""
        return max(1, round(count * self.scale))

    def times(self, n: int, start: float | None = None, end: float | None = None) -> list[float]:
        """``n`` sorted arrival times in ``[start, end)`` with a gentle intra-day swell
        (rate ``1 - 0.5 cos 2 pi u``): not a flat Poisson process."""
        a = self.t0 if start is None else start
        b = self.t1 if end is None else end
        u = np.sort(self.rng.random(n))
        u = u + 0.5 * np.sin(2 * np.pi * u) / (2 * np.pi)  # inverse-ish warp, monotone
        return (a + (b - a) * np.clip(u, 0.0, 1.0 - 1e-9)).tolist()

    def lognorm(self, median: float, sigma: float, lo: float = 0.0, hi: float = math.inf) -> float:
        return min(hi, max(lo, median * math.exp(self.r.gauss(0.0, sigma))))

    def pareto(self, xmin: float, alpha: float, hi: float) -> float:
        """Heavy-tailed size (Pareto type I), capped at ``hi``."""
        return min(hi, xmin * self.r.paretovariate(alpha))

    def geometric(self, mean: float) -> int:
        """1, 2, 3, ... with the given mean."""
        p = 1.0 / max(mean, 1.0)
        return 1 + int(math.log(1.0 - self.r.random()) / math.log(1.0 - p)) if p < 1 else 1

    def rtt(self, median: float, sigma: float = 0.35) -> float:
        return self.lognorm(median, sigma, lo=median / 5, hi=median * 8)

    # ------------------------------------------------------------------ hosts
    def mac(self) -> bytes:
        """A random locally administered unicast MAC."""
        b = bytearray(self.r.getrandbits(48).to_bytes(6, "big"))
        b[0] = (b[0] & 0xFC) | 0x02
        return bytes(b)

    def host(self, ip: str | int, profile: str, *, local: bool, v6: bool | None = None,
             mss: int | None = None, hops: int | None = None, **overrides) -> Host:
        """A host with ``profile``'s stack. Local hosts get their own MAC and the site MTU;
        remote ones sit behind the gateway (its MAC) a random number of hops away."""
        if isinstance(ip, str):
            addr = ipaddress.ip_address(ip)
            ip, v6 = int(addr), addr.version == 6
        kw = dict(HOST_PROFILES[profile])
        kw.update(overrides)
        if mss is None:
            mss = self.mtu - 40 if local else self.r.choice((1460, 1460, 1460, 1440, 1452, 1400))
        if hops is None:
            hops = self.r.randint(0, 1) if local else self.r.randint(6, 22)
        return Host(ip=ip, v6=bool(v6), mac=self.mac() if local else self.gw_mac, mss=mss, hops=hops, **kw)

    def public_v4(self) -> str:
        pat = self.r.choice(_REMOTE_V4)
        return pat.format(*(self.r.randint(1, 254) for _ in range(pat.count("{}"))))

    def public_v6(self) -> str:
        return self.r.choice(_REMOTE_V6).format(*(self.r.getrandbits(16) for _ in range(3)))

    def remote(self, profile: str = "linux_server", v6: bool = False, **kw) -> Host:
        return self.host(self.public_v6() if v6 else self.public_v4(), profile, local=False, **kw)

    def subnet_hosts(self, cidr: str, n: int, profiles: tuple[str, ...], weights: tuple[float, ...],
                     first: int = 10, **kw) -> list[Host]:
        """``n`` local hosts numbered from ``first`` in ``cidr``, OS drawn with ``weights``."""
        net = ipaddress.ip_network(cidr)
        chosen = self.r.choices(profiles, weights=weights, k=n)
        return [self.host(str(net[first + i]), p, local=True, **kw) for i, p in enumerate(chosen)]

    def mark(self, table: dict, host: Host, label: str) -> None:
        table.setdefault(ip_text(host), set()).add(label)


def ip_text(h: Host) -> str:
    return str(ipaddress.IPv6Address(h.ip) if h.v6 else ipaddress.IPv4Address(h.ip))
