"""``python -m janus.synth``."""

from janus.datasets.synth.cli import main

raise SystemExit(main())
