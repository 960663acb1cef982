"""``python -m janus.models``: the models step (:mod:`janus.deploy.build`)."""

from janus.deploy.build import main

if __name__ == "__main__":
    raise SystemExit(main())
