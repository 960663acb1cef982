"""``python -m janus.evaluate``: the evaluate step (:mod:`janus.evaluation.evaluate`)."""

from janus.evaluation.evaluate import main

if __name__ == "__main__":
    raise SystemExit(main())
