#!/usr/bin/env bash
# Sets up the machine (scripts/setup.sh), builds the front end and starts the desktop app on
# the default model. Extra arguments go to cargo, e.g. `--features cuda`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/prereqs.sh && use_tunelab_tools # the Node.js setup may have installed from PyPI
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tunelab/target}"
(cd ui && npm run build)
exec cargo run -p tunelab-app --locked "$@"
