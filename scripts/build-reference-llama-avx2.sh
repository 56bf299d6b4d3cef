#!/usr/bin/env bash
# Builds llama.cpp's libraries as the reference environment's llama-cpp-python vendors them, for
# AVX2 + FMA only, so that bench-vs-reference.sh --avx2 compares decoding with llama.cpp on the
# same vector code as Tunelab's AVX2 path (the reference's own build is for the machine's CPU,
# AVX-512 where it has it).
#
#   scripts/build-reference-llama-avx2.sh OUTPUT_DIR
#
# Then: TUNELAB_REFERENCE_LLAMA_LIB=OUTPUT_DIR scripts/bench-vs-reference.sh --avx2 ...
# Needs the reference environment (see bench-vs-reference.sh) and a package index for the sdist
# and its build tools; takes several minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
if [ $# -ne 1 ]; then
  echo "usage: scripts/build-reference-llama-avx2.sh OUTPUT_DIR" >&2
  exit 2
fi
output=$(realpath -m "$1")

reference="${TUNELAB_REFERENCE:-$root/../shared/reference}"
# shellcheck source=/dev/null
. "$reference/refpaths.sh"
version=$("$REFENV/bin/python" -c 'import llama_cpp; print(llama_cpp.__version__)')

work=$(mktemp -d "${TMPDIR:-/tmp}/llama-avx2.XXXXXX")
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q scikit-build-core cmake ninja
"$work/venv/bin/pip" download -q --no-deps --no-binary :all: --no-build-isolation \
  -d "$work/src" "llama-cpp-python==$version"
# x86-64-v3 exactly: what Tunelab's builds target, and nothing wider.
CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
-DGGML_BMI2=ON -DGGML_AVX512=OFF -DGGML_AVX_VNNI=OFF" \
  "$work/venv/bin/pip" wheel -q --no-deps --no-build-isolation -w "$work/wheel" \
  "$work/src/llama_cpp_python-$version.tar.gz"
mkdir -p "$output"
python3 -m zipfile -e "$work"/wheel/llama_cpp_python-*.whl "$work/unpacked"
cp -a "$work/unpacked/llama_cpp/lib/." "$output/"
echo "$output"
