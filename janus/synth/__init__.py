"""The embedded default dataset: a synthetic traffic generator writing real pcap files and
CIC-format label CSVs for four sites (office, datacenter, iot, tunnel).

``python -m janus.synth --out DIR`` (or ``janus synth``) writes, per site,
``DIR/<site>/capture.pcap``, ``DIR/<site>/GeneratedLabelledFlows.csv`` and
``DIR/<site>/site.json``. See :mod:`janus.synth.sites` for what each site contains.
"""

from .cli import build_parser, main, run
from .generator import CSV_NAME, META_NAME, PCAP_NAME, generate_site
from .sites import SITES

__all__ = ["CSV_NAME", "META_NAME", "PCAP_NAME", "SITES", "build_parser", "generate_site", "main", "run"]
