"""``python -m janus.synth``: the synth step (:mod:`janus.datasets.synth.cli`)."""

from janus.datasets.synth.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
