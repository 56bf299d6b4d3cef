#!/usr/bin/env bash
# Builds the tunelab CLI of the current commit with gemm's AVX-512 kernels left out, so that its
# matrix products take their AVX2 + FMA path even on a CPU with AVX-512. With
# TUNELAB_ASSUME_CPU_LACKS=avx512f, which holds Tunelab's own kernels to AVX2, the binary runs
# what a CPU without AVX-512 runs: how bench-vs-reference.sh --avx2 measures that path.
#
#   scripts/build-without-avx512-gemm.sh OUTPUT
#
# gemm chooses between its kernels at run time but compiles the AVX-512 ones only with its
# `x86-v4` feature, and the standard library's feature detection it asks cannot be told to hide
# AVX-512; so this build drops the feature from a copy of the workspace (the commit's tracked
# files, in a temporary folder). It shares the build cache: dependencies that do not depend on
# gemm are not built again. Only for measuring; the project's builds keep the feature.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
if [ $# -ne 1 ]; then
  echo "usage: scripts/build-without-avx512-gemm.sh OUTPUT" >&2
  exit 2
fi
output=$(realpath -m "$1")
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tunelab/target}"

copy=$(mktemp -d "${TMPDIR:-/tmp}/tunelab-avx2.XXXXXX")
trap 'rm -rf "$copy"' EXIT
git -C "$root" archive HEAD | tar -x -C "$copy"

# The one line that turns the kernels on; fail loudly if it ever changes shape.
pattern='^gemm = { version = "\([^"]*\)", default-features = false, features = \["x86-v4"\] }$'
if ! grep -q "$pattern" "$copy/Cargo.toml"; then
  echo "build-without-avx512-gemm: the gemm dependency in Cargo.toml no longer reads as expected" >&2
  exit 1
fi
sed -i "s/$pattern/gemm = { version = \"\\1\", default-features = false }/" "$copy/Cargo.toml"
# The feature also turns on bytemuck's `avx512_simd`, and bytemuck lies under half and arrow:
# keep it on through a dependency of the engine's, so that only gemm and what is built on it
# (candle, the project's crates) are built again, not the whole dependency tree.
sed -i 's/^\[dependencies\]$/[dependencies]\nbytemuck = { version = "1", features = ["avx512_simd"] }/' \
  "$copy/crates/engine/Cargo.toml"

# The copy's CLI is uplifted to the shared target's debug/tunelab like the project's own, so keep
# that file as it was and take the copy's binary from the build's own output instead.
kept=""
if [ -f "$CARGO_TARGET_DIR/debug/tunelab" ]; then
  kept="$copy.kept"
  cp -p "$CARGO_TARGET_DIR/debug/tunelab" "$kept"
fi
restore() {
  if [ -n "$kept" ]; then mv -f "$kept" "$CARGO_TARGET_DIR/debug/tunelab"; fi
  rm -rf "$copy"
}
trap restore EXIT

# Not --locked: the lock file gains the engine's edge to bytemuck (the version stays). The
# variable tells `tunelab doctor` that the matrix products run AVX2 whatever the CPU has.
built=$(cd "$copy" && TUNELAB_GEMM_WITHOUT_AVX512=1 cargo build ${CARGO_OFFLINE:+--offline} -p tunelab-cli --bin tunelab \
  --message-format=json-render-diagnostics |
  python3 -c '
import json, sys
for line in sys.stdin:
    msg = json.loads(line)
    if msg.get("reason") == "compiler-artifact" and msg.get("executable") and msg["target"]["name"] == "tunelab":
        print(msg["executable"])')
if [ -z "$built" ]; then
  echo "build-without-avx512-gemm: cargo reported no tunelab binary" >&2
  exit 1
fi
mkdir -p "$(dirname "$output")"
cp "$built" "$output"
echo "$output"
