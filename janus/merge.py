"""``python -m janus.merge``: the merge step (:mod:`janus.datasets.merge`)."""

from janus.datasets.merge import main

if __name__ == "__main__":
    raise SystemExit(main())
