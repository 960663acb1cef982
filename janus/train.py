"""``python -m janus.train``: the train step (:mod:`janus.model.train`)."""

from janus.model.train import main

if __name__ == "__main__":
    raise SystemExit(main())
