"""``python -m janus.detect``: the detect step (:mod:`janus.deploy.detect`)."""

from janus.deploy.detect import main

if __name__ == "__main__":
    raise SystemExit(main())
