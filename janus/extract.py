"""``python -m janus.extract``: the extract step (:mod:`janus.capture.extract`)."""

from janus.capture.extract import main

if __name__ == "__main__":
    raise SystemExit(main())
