"""``python -m janus.labels``."""

from janus.datasets.labels import main

raise SystemExit(main())
