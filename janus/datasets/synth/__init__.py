"""The embedded default dataset: a synthetic traffic generator writing real pcap files and
CIC-format label CSVs for four sites (office, datacenter, iot, tunnel).

``python -m janus.synth --out DIR`` (or ``janus synth``) writes, per site,
``DIR/<site>/capture.pcap``, ``DIR/<site>/GeneratedLabelledFlows.csv`` and
``DIR/<site>/site.json``. See :mod:`janus.datasets.synth.sites` for what each site contains.
"""

from janus.datasets.synth.cli import build_parser, main, run
from janus.datasets.synth.generator import CSV_NAME, META_NAME, PCAP_NAME, generate_site
from janus.datasets.synth.sites import SITES

__all__ = ["CSV_NAME", "META_NAME", "PCAP_NAME", "SITES", "build_parser", "generate_site", "main", "run"]
