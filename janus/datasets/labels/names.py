"""Label normalisation: every CIC spelling of a class -> ``(label, clean snake_case class)``.

The CIC datasets spell one class many ways: ``BENIGN``/``Benign``/``BenignTraffic``/
``Benign_Final``; CICIDS2017's web attacks carry an en dash that arrives as U+2013, as the
replacement character U+FFFD (cp1252 byte 0x96 decoded as UTF-8 with replacement), as
U+0096 (the same byte decoded as latin-1) or as ``â€“`` (UTF-8 decoded as cp1252);
CICDDoS2019 writes ``UDP-lag`` one day and ``UDPLag`` the next; CICIoT2023 folders and CSVs
differ in case (``DDoS-ICMP_Flood`` / ``DDOS-ICMP_FLOOD``).

The lookup is table-driven on a *squashed key*: the text with every dash-like character
unified, lower-cased, and every non-alphanumeric character removed. Two spellings that
differ only in case, separators or a broken dash therefore share one key and one entry of
:data:`CLASS_TABLE`.

Strings not in the table follow the generic rule, documented here and in the README: a
benign-looking string is never guessed, so any other non-empty text is an attack
(label 1) whose class is the text lower-cased with every run of non-alphanumeric characters
replaced by one ``_`` (``"Some New-Attack!"`` -> ``"some_new_attack"``); CamelCase is not
split because acronyms make that ambiguous (``"DrDoS"``). The literal ``unknown`` maps to
``(-1, "unknown")``, the contract's "never evaluated" label.
"""

from __future__ import annotations

import re
from functools import lru_cache

from janus.contract import BENIGN, UNKNOWN
from janus.errors import JanusError

# Every character (sequence) that stands for a dash in some CIC file, broken or not.
_DASHES = ("\u00e2\u20ac\u201c", "\u00e2\u20ac\u201d", "\ufffd", "\u0096", "\u0097",
           "\u2013", "\u2014", "\u2012", "\u2212")

#: squashed key -> clean class. Benign spellings map to :data:`janus.contract.BENIGN`.
CLASS_TABLE: dict[str, str] = {}


def _add(clean: str, *spellings: str) -> None:
    for spelling in (clean, *spellings):
        key = _squash(spelling)
        if CLASS_TABLE.get(key, clean) != clean:
            raise AssertionError(f"label table: {spelling!r} maps to two classes")
        CLASS_TABLE[key] = clean


def _fix_dashes(text: str) -> str:
    for dash in _DASHES:
        text = text.replace(dash, "-")
    return text


def _squash(text: str) -> str:
    return re.sub(r"[^0-9a-z]+", "", _fix_dashes(text).lower())


def _snake(text: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", _fix_dashes(text).lower()).strip("_")


# ---- benign, in every dataset's spelling (ISCXTor2016 "NonTor" is the benign side).
_add(BENIGN, "BENIGN", "BenignTraffic", "Benign_Traffic", "Benign_Final", "NonTor", "nonTOR",
     "Non-Tor")
# ---- CICIDS2017 (and the CSE-CIC-IDS2018 spellings of the same attacks).
_add("web_attack_brute_force", "Web Attack - Brute Force", "Brute Force -Web")
_add("web_attack_xss", "Web Attack - XSS", "Brute Force -XSS")
_add("web_attack_sql_injection", "Web Attack - Sql Injection")
_add("dos_hulk", "DoS Hulk", "DoS attacks-Hulk")
_add("dos_slowloris", "DoS slowloris", "DoS attacks-Slowloris")
_add("dos_slowhttptest", "DoS Slowhttptest", "DoS attacks-SlowHTTPTest")
_add("dos_goldeneye", "DoS GoldenEye", "DoS attacks-GoldenEye")
_add("heartbleed", "Heartbleed")
_add("infiltration", "Infiltration", "Infilteration")
_add("bot", "Bot")
_add("portscan", "PortScan")
_add("ftp_patator", "FTP-Patator", "FTP-BruteForce")
_add("ssh_patator", "SSH-Patator", "SSH-Bruteforce")
_add("ddos", "DDoS")
_add("ddos_hoic", "DDOS attack-HOIC")
_add("ddos_loic_http", "DDoS attacks-LOIC-HTTP")
_add("ddos_loic_udp", "DDOS attack-LOIC-UDP")
# ---- CICDDoS2019: day 01-12 (DrDoS_*) and day 03-11 names are kept apart, as CIC does;
# only the two spellings of UDP-lag are unified.
for _proto in ("DNS", "LDAP", "MSSQL", "NetBIOS", "NTP", "SNMP", "SSDP", "UDP"):
    _add(f"drdos_{_proto.lower()}", f"DrDoS_{_proto}")
_add("udp_lag", "UDP-lag", "UDPLag")
for _name in ("Syn", "TFTP", "WebDDoS", "LDAP", "MSSQL", "NetBIOS", "Portmap", "UDP"):
    _add(_name.lower(), _name)
# ---- CICIoT2023: folder names of the pcap release and CSV labels (any case).
_add("backdoor_malware", "Backdoor_Malware")
_add("browser_hijacking", "BrowserHijacking")
_add("command_injection", "CommandInjection")
_add("ddos_ack_fragmentation", "DDoS-ACK_Fragmentation")
_add("ddos_http_flood", "DDoS-HTTP_Flood")
_add("ddos_icmp_flood", "DDoS-ICMP_Flood")
_add("ddos_icmp_fragmentation", "DDoS-ICMP_Fragmentation")
_add("ddos_pshack_flood", "DDoS-PSHACK_Flood")
_add("ddos_rstfin_flood", "DDoS-RSTFINFlood")
_add("ddos_syn_flood", "DDoS-SYN_Flood")
_add("ddos_slowloris", "DDoS-SlowLoris")
_add("ddos_synonymous_ip_flood", "DDoS-SynonymousIP_Flood")
_add("ddos_tcp_flood", "DDoS-TCP_Flood")
_add("ddos_udp_flood", "DDoS-UDP_Flood")
_add("ddos_udp_fragmentation", "DDoS-UDP_Fragmentation")
_add("dns_spoofing", "DNS_Spoofing")
_add("dictionary_brute_force", "DictionaryBruteForce")
_add("dos_http_flood", "DoS-HTTP_Flood")
_add("dos_syn_flood", "DoS-SYN_Flood")
_add("dos_tcp_flood", "DoS-TCP_Flood")
_add("dos_udp_flood", "DoS-UDP_Flood")
_add("mitm_arp_spoofing", "MITM-ArpSpoofing")
_add("mirai_greeth_flood", "Mirai-greeth_flood")
_add("mirai_greip_flood", "Mirai-greip_flood")
_add("mirai_udpplain", "Mirai-udpplain")
_add("recon_host_discovery", "Recon-HostDiscovery")
_add("recon_os_scan", "Recon-OSScan")
_add("recon_ping_sweep", "Recon-PingSweep")
_add("recon_port_scan", "Recon-PortScan")
_add("sql_injection", "SqlInjection")
_add("uploading_attack", "Uploading_Attack")
_add("vulnerability_scan", "VulnerabilityScan")
_add("xss", "XSS")
# ---- ISCXTor2016 scenario A.
_add("tor", "Tor", "TOR")


@lru_cache(maxsize=65536)
def normalise_label(raw: str) -> tuple[int, str]:
    """Map a raw class string to ``(label, clean class)``.

    ``label`` is 0 for benign and 1 for an attack (``-1`` only for the literal
    ``unknown``); the class is a snake_case name from :data:`CLASS_TABLE`, or the generic
    snake_case of the text for strings the table does not know (see the module docstring).

    Raises :class:`JanusError` for an empty string: an empty label is missing data, not a
    class.
    """
    key = _squash(str(raw))
    if not key:
        raise JanusError(f"empty label {raw!r}: expected a class name such as 'BENIGN'")
    if key == UNKNOWN:
        return -1, UNKNOWN
    clean = CLASS_TABLE.get(key) or _snake(str(raw))
    return (0 if clean == BENIGN else 1), clean
