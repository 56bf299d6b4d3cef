#!/usr/bin/env bash
# Sets up the machine (scripts/setup.sh), builds the front end and starts the desktop app on
# the default model: with CUDA where setup found the NVIDIA driver. Extra arguments go to cargo.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/prereqs.sh && use_tunelab_tools # the Node.js setup may have installed from PyPI
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tunelab/target}"
source scripts/cuda-toolkit.sh && use_cuda_env
features=()
((TUNELAB_CUDA_BUILD)) && features=(--features cuda)
(cd ui && npm run build)
exec cargo run -p tunelab-app --locked "${features[@]}" "$@"
