"""Labels: label normalisation, the CIC CSV join with its time-offset diagnostic, rule labels.

``janus labels --data DIR ...`` writes ``DIR/labels.parquet`` (columns
:data:`janus.contract.LABEL_COLUMNS`, row-aligned with flows.parquet) and
``DIR/labels_report.json``. Modules: :mod:`.names` (class spellings), :mod:`.cic_csv`
(reading CIC CSVs), :mod:`.join` (5-tuple/time join), :mod:`.rules` (attacker, folder and
file rules), :mod:`.step` (the step and its CLI).
"""

from __future__ import annotations

from janus.datasets.labels.names import CLASS_TABLE, normalise_label
from janus.datasets.labels.step import (
                   DEFAULT_PRECEDENCE,
                   DEFAULT_TOLERANCE_S,
                   LABELS_REPORT_FILE,
                   build_parser,
                   label_dataset,
                   main,
                   run,
)

__all__ = ["CLASS_TABLE", "DEFAULT_PRECEDENCE", "DEFAULT_TOLERANCE_S", "LABELS_REPORT_FILE",
           "build_parser", "label_dataset", "main", "normalise_label", "run"]
