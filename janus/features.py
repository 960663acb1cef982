"""``python -m janus.features``: the features step (:mod:`janus.capture.features`)."""

from janus.capture.features import main

if __name__ == "__main__":
    raise SystemExit(main())
