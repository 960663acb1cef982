"""``python -m janus.baselines``: the ``janus baseline`` step."""

from . import main

raise SystemExit(main())
