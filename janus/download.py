"""``python -m janus.download``: the download step (:mod:`janus.datasets.download`)."""

from janus.datasets.download import main

if __name__ == "__main__":
    raise SystemExit(main())
