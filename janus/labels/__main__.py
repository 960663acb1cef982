"""``python -m janus.labels``."""

from . import main

raise SystemExit(main())
