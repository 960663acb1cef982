#!/usr/bin/env bash
# Install the janus package of this workflow's own source tree into the freshly created
# environment, so the rules run the code the workflow came with. Snakemake runs a copy of
# this script from the environment's folder, so it cannot find that tree by its own path:
# the workflow (workflow/rules/common.smk) puts it into $JANUS_SRC while it parses --
# the checkout's folder for a local workflow, git+https://github.com/OWNER/REPO@TAG for a
# module pulled with github(..., tag=...). Set JANUS_SRC yourself to install another
# source (any pip requirement: a folder, a wheel, a git+https URL).
set -euo pipefail
if [ -z "${JANUS_SRC:-}" ]; then
  echo "janus.post-deploy.sh: JANUS_SRC is not set (the JANUS workflow sets it while it" \
    "parses; run this environment's creation through Snakemake, or set it)" >&2
  exit 1
fi
python -m pip install --no-deps "$JANUS_SRC"
