"""``python -m janus.baselines``: the ``janus baseline`` step."""

from janus.detectors import main

raise SystemExit(main())
