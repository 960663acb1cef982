#!/usr/bin/env bash
# Install the janus package of this checkout into the freshly created environment.
# Snakemake runs this from the working directory, which is the repository root unless
# --directory says otherwise; JANUS_SRC overrides it.
set -euo pipefail
python -m pip install --no-deps "${JANUS_SRC:-$PWD}"
