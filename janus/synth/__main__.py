"""``python -m janus.synth``."""

from .cli import main

raise SystemExit(main())
