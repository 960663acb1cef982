"""``python -m janus.labels``: the labels step (:mod:`janus.datasets.labels.step`)."""

from janus.datasets.labels.step import main

if __name__ == "__main__":
    raise SystemExit(main())
