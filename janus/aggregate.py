"""``python -m janus.aggregate``: the aggregate step (:mod:`janus.evaluation.aggregate`)."""

from janus.evaluation.aggregate import main

if __name__ == "__main__":
    raise SystemExit(main())
