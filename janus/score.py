"""``python -m janus.score``: the score step (:mod:`janus.model.score`)."""

from janus.model.score import main

if __name__ == "__main__":
    raise SystemExit(main())
