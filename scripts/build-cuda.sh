#!/usr/bin/env bash
# Builds Tunelab with CUDA, on a machine with or without a GPU.
#   scripts/build-cuda.sh [--ci] [CUDA_VERSION [COMPUTE_CAP]]
# The toolkit comes from scripts/cuda-toolkit.sh (the system's, or NVIDIA's PyPI wheels);
# CUDA_VERSION defaults to what this machine's driver supports (else 13.0), COMPUTE_CAP to its
# GPU's (else 90). Without --ci it builds the `tunelab` CLI with CUDA (the binary then needs the
# driver and CUDA's libraries to start: LD_LIBRARY_PATH is printed). With --ci it compiles and
# lints the code the GPU runs (the engine, the trainer and tunelab-gpu-check, with CUDA) and
# builds nothing else: what every CI run does so that the GPU build cannot rot unseen.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/cuda-toolkit.sh

ci=0
if [ "${1:-}" = --ci ]; then
  ci=1
  shift
fi
version=${1:-$(cuda_driver_version || echo 13.0)}
cap=${2:-$(cuda_compute_cap || echo 90)}
root=$(cuda_toolkit "$version")
use_cuda_toolkit "$root" "$cap"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tunelab/target}
echo "[cuda] CUDA $version from $root, compute capability $cap"

if ((ci)); then
  cargo clippy --locked -p tunelab-engine -p tunelab-train -p tunelab-gpu-check \
    --features tunelab-gpu-check/cuda --all-targets -- -D warnings
  cargo build --locked -p tunelab-gpu-check --features cuda
  # The binary links against CUDA's libraries and names the driver's. ldd's listing is read
  # whole before it is searched: `ldd | grep -q` under pipefail fails whenever grep's early exit
  # cuts ldd off mid-listing (the likely cause of one CI failure on a busy machine).
  linked=$(ldd "$CARGO_TARGET_DIR/debug/tunelab-gpu-check")
  grep -q 'libcuda\.so\.1' <<<"$linked" || {
    printf '%s\n' "$linked" >&2
    echo "error: tunelab-gpu-check was built without CUDA" >&2
    exit 1
  }
  echo "[cuda] the GPU build compiles and lints"
else
  cargo build --locked -p tunelab-cli --features cuda
  echo "[cuda] built $CARGO_TARGET_DIR/debug/tunelab; it loads CUDA's libraries from LD_LIBRARY_PATH=$root/lib"
fi
