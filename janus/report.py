"""``python -m janus.report``: the report step (:mod:`janus.evaluation.report`)."""

from janus.evaluation.report import main

if __name__ == "__main__":
    raise SystemExit(main())
