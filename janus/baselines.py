"""``python -m janus.baselines``: the baselines step (:mod:`janus.detectors`)."""

from janus.detectors import main

if __name__ == "__main__":
    raise SystemExit(main())
