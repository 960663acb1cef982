"""``python -m janus.explain``: the explain step (:mod:`janus.deploy.explain`)."""

from janus.deploy.explain import main

if __name__ == "__main__":
    raise SystemExit(main())
