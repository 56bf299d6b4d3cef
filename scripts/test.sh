#!/usr/bin/env bash
# Sets up the machine (scripts/setup.sh) and runs every test: setup's prerequisite checks,
# front-end type checks and unit tests, the Rust workspace's unit and integration tests (parity
# with shared/fixtures, real model runs, CLI flows, the GPU's training path held to the CPU's),
# the CUDA build (compiled and linted, no GPU needed), the desktop app driven in its real webview,
# the .deb package's smoke test, and the check that the generated TypeScript bindings are
# committed.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/prereqs.sh && use_tunelab_tools # the Node.js setup may have installed from PyPI
echo "== setup prerequisite checks"; scripts/test-prereqs.sh
echo "== the CUDA toolkit setup"; scripts/test-cuda-toolkit.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tunelab/target}"

echo "== front end: type check, unit tests, build"
(cd ui && npm run check && npm test && npm run build)

echo "== Rust workspace tests"
cargo test --workspace --locked

echo "== the GPU build: CUDA from PyPI, compiled and linted without a GPU"
scripts/build-cuda.sh --ci

echo "== the desktop app end to end in its webview (tauri-driver, Xvfb)"
xvfb-run -a -s "-screen 0 1280x860x24" cargo test -p tunelab-app --features e2e --test e2e --locked -- --test-threads=1

echo "== the .deb package, unpacked and run without the source tree"
scripts/test-package.sh

echo "== generated files (TypeScript bindings, the window's capability) match their sources"
generated=(ui/src/bindings src-tauri/capabilities)
if [ -n "$(git status --porcelain -- "${generated[@]}")" ]; then
  git status --short -- "${generated[@]}"
  git --no-pager diff -- "${generated[@]}"
  echo "error: ${generated[*]} differ from what the Rust types and src-tauri/command_list.rs generate; commit the regenerated files" >&2
  exit 1
fi
echo "all tests passed"
