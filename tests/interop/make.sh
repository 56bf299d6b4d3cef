#!/usr/bin/env bash
# Makes the interop fixtures in tests/interop/fixtures: adapters trained by Hugging Face PEFT
# on the default model, adapters trained here, the logits PEFT gives with each, and the greedy
# tokens and logits llama.cpp gives for a GGUF written here. The Rust tests read these files, so
# they need no Python; run this again when training or the GGUF writer changes what they produce.
#
# Installs what it needs into a virtual environment of its own (PEFT, transformers, torch,
# llama.cpp's Python binding, built from source: a few minutes on 2 cores):
#   INTEROP_VENV   the environment (default ~/.cache/tunelab/interop-venv)
#   CARGO_TARGET_DIR  where the tunelab binary is built (default ~/.cache/tunelab/target)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${INTEROP_VENV:-$HOME/.cache/tunelab/interop-venv}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tunelab/target}"

if ! "$venv/bin/python" -c 'import torch, transformers, peft, gguf, llama_cpp' 2>/dev/null; then
  echo "== the Python environment: $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q torch transformers peft gguf safetensors sentencepiece
  CMAKE_ARGS="-DGGML_NATIVE=OFF" "$venv/bin/pip" install -q llama-cpp-python
fi

echo "== the default model"
python3 "$root/scripts/fetch-models.py"

echo "== the tunelab binary"
(cd "$root" && cargo build --locked --bin tunelab)
tunelab="$CARGO_TARGET_DIR/debug/tunelab"

"$venv/bin/python" "$here/make_fixtures.py" --tunelab "$tunelab" --out "$here/fixtures"
