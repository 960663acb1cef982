"""The ground-truth label CSV, in the CICIDS2017 ``GeneratedLabelledFlows`` layout.

Only the columns a label join needs are written, with CIC's quirks kept on purpose so the
join code is exercised on them: the header separates names with ``", "`` (so split names
carry a leading space), ``Timestamp`` is the flow's first packet in the site's *local*
time formatted ``dd/mm/yyyy h:mm:ss`` (seconds truncated, hour without a leading zero),
and attack names use CIC spellings (``Web Attack – Sql Injection`` with an en dash).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os

from janus.datasets.synth.tcp import Flow
from janus.io import atomic_path

CSV_COLUMNS: tuple[str, ...] = (
    "Flow ID", "Source IP", "Source Port", "Destination IP", "Destination Port", "Protocol", "Timestamp", "Label",
)
#: strftime-like description of the Timestamp column (for documentation and parsers).
TIMESTAMP_FORMAT = "dd/mm/yyyy h:mm:ss"


def cic_timestamp(unix_s: float, utc_offset_hours: float) -> str:
    """Unix seconds -> local ``dd/mm/yyyy h:mm:ss`` (seconds truncated like CICFlowMeter)."""
    t = dt.datetime.fromtimestamp(int(unix_s // 1), dt.timezone.utc) + dt.timedelta(hours=utc_offset_hours)
    return f"{t.day:02d}/{t.month:02d}/{t.year} {t.hour}:{t.minute:02d}:{t.second:02d}"


def _ip(value: int, v6: bool) -> str:
    return str(ipaddress.IPv6Address(value) if v6 else ipaddress.IPv4Address(value))


def label_rows(flows: list[Flow], utc_offset_hours: float) -> list[list[str]]:
    """One row per flow, ordered by start time (ties in generation order)."""
    rows = []
    for f in sorted(flows, key=lambda f: f.start):
        src, dst = _ip(f.client.ip, f.client.v6), _ip(f.server.ip, f.server.v6)
        rows.append([
            f"{src}-{dst}-{f.cport}-{f.sport}-{f.proto}", src, str(f.cport), dst, str(f.sport), str(f.proto),
            cic_timestamp(f.start, utc_offset_hours), f.label,
        ])
    return rows


def write_label_csv(path: str | os.PathLike, flows: list[Flow], utc_offset_hours: float) -> None:
    """Write the label CSV atomically (UTF-8, ``\\n`` line ends; no field needs quoting)."""
    lines = [", ".join(CSV_COLUMNS)]
    lines.extend(",".join(r) for r in label_rows(flows, utc_offset_hours))
    with atomic_path(path) as tmp:
        tmp.write_bytes(("\n".join(lines) + "\n").encode("utf-8"))
