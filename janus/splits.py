"""``python -m janus.splits``: the splits step (:mod:`janus.datasets.splits`)."""

from janus.datasets.splits import main

if __name__ == "__main__":
    raise SystemExit(main())
