#!/usr/bin/env bash
# Tunelab against the tools users would otherwise run, on this machine and in the same hour:
# PyTorch + PEFT for training, llama.cpp for prefill and decode, PyTorch for sentence embedding.
# Each round runs every benchmark on both sides, one after the other, with the side that goes
# first alternating between rounds; the summary is the ratio Tunelab / reference per benchmark,
# its median and its spread over the rounds.
#
#   scripts/bench-vs-reference.sh [--rounds N] [--only LIST] [--threads N] [--steps N] [--avx2]
#                                 [--out DIR]
#
# LIST is a comma-separated choice of lora, lora-nockpt, soft-prompt, soft-prompt-nockpt, full,
# full-nockpt, decode and embed (default: all). The PyTorch reference keeps every activation, so
# `lora-nockpt` (Tunelab with activation checkpointing off) is the equal-settings comparison and
# `lora` (checkpointing on, Tunelab's default) the memory-saving one.
#
# --avx2 measures what a CPU without AVX-512 runs, on one that has it: Tunelab built without
# gemm's AVX-512 kernels (scripts/build-without-avx512-gemm.sh, unless TUNELAB_BIN names such a
# build) and with its own kernels held to AVX2, against PyTorch held to AVX2 (ATen, oneDNN and
# MKL). llama.cpp runs as it was built, which is for the machine's own CPU, unless
# TUNELAB_REFERENCE_LLAMA_LIB names its libraries built for AVX2
# (scripts/build-reference-llama-avx2.sh).
#
# Needs the reference environment: the scripts in shared/reference (TUNELAB_REFERENCE, else
# ../shared/reference beside the project) and the Python venv their setup-refenv.sh makes.
# Uses the tunelab binary at TUNELAB_BIN, else builds it in the project's dev profile.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

rounds=3
only="lora,lora-nockpt,soft-prompt,soft-prompt-nockpt,full,full-nockpt,decode,embed"
threads=2
steps=6
avx2=""
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds="$2"; shift 2 ;;
    --only) only="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --steps) steps="$2"; shift 2 ;;
    --avx2) avx2=1; shift ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench-vs-reference: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

reference="${TUNELAB_REFERENCE:-$root/../shared/reference}"
if [ ! -f "$reference/refpaths.sh" ]; then
  echo "bench-vs-reference: no reference scripts at $reference (set TUNELAB_REFERENCE)" >&2
  exit 1
fi
# shellcheck source=/dev/null
. "$reference/refpaths.sh"
if [ ! -x "$REFENV/bin/python" ]; then
  echo "bench-vs-reference: no reference environment at $REFENV; run $reference/setup-refenv.sh first" >&2
  exit 1
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tunelab/target}"
out="${out:-$root/target/bench-vs-reference/$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$out"
bin="${TUNELAB_BIN:-}"
if [ -z "$bin" ] && [ -n "$avx2" ]; then
  bin=$("$root/scripts/build-without-avx512-gemm.sh" "$out/tunelab-avx2")
elif [ -z "$bin" ]; then
  cargo build -q -p tunelab-cli --locked
  bin="$CARGO_TARGET_DIR/debug/tunelab"
fi
machine_paths="each side's widest vector code"
if [ -n "$avx2" ]; then
  export TUNELAB_ASSUME_CPU_LACKS=avx512f
  export ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2
fi
kernels=$("$bin" doctor --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["cpu_kernels"])')
if [ -n "$avx2" ]; then
  case "$kernels" in
    *"matrix products AVX2"*"dot products AVX2"*) ;;
    *) echo "bench-vs-reference: --avx2, but $bin runs \"$kernels\"; build it with scripts/build-without-avx512-gemm.sh" >&2
       exit 1 ;;
  esac
  machine_paths="AVX2 paths for Tunelab and PyTorch, llama.cpp as built"
  if [ -n "${TUNELAB_REFERENCE_LLAMA_LIB:-}" ]; then
    export LLAMA_CPP_LIB_PATH="$TUNELAB_REFERENCE_LLAMA_LIB"
    machine_paths="AVX2 paths for Tunelab, PyTorch and llama.cpp"
  fi
fi
results="$out/results.jsonl"
: > "$results"

# Both sides get the same number of threads.
export RAYON_NUM_THREADS="$threads" OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads"
py="$REFENV/bin/python"

# One benchmark on one side, its JSON line appended to the results with where it came from.
record() {
  local name="$1" side="$2" round="$3"; shift 3
  local line
  # Tunelab prints one JSON document over several lines, the references one JSON line last.
  if ! line=$("$@" 2> "$out/$name.$side.$round.err" | python3 -c '
import json, sys
text = sys.stdin.read()
try:
    doc = json.loads(text)
except ValueError:
    doc = json.loads(text.strip().splitlines()[-1])
print(json.dumps(doc))'); then
    echo "bench-vs-reference: $name ($side, round $round) failed; see $out/$name.$side.$round.err" >&2
    exit 1
  fi
  printf '{"bench":"%s","side":"%s","round":%s,"result":%s}\n' "$name" "$side" "$round" "$line" >> "$results"
  echo "  $name $side: $line"
}

# The reference's and Tunelab's command for one benchmark.
reference_cmd() {
  case "$1" in
    lora|lora-nockpt) echo "$py $reference/ref_train_bench.py lora --threads $threads --steps $steps" ;;
    soft-prompt|soft-prompt-nockpt) echo "$py $reference/ref_train_bench.py prompt --threads $threads --steps $steps" ;;
    full|full-nockpt) echo "$py $reference/ref_train_bench.py full --threads $threads --steps $steps" ;;
    decode) echo "$py $reference/ref_decode_bench.py" ;;
    embed) echo "$py $reference/ref_embed_bench.py" ;;
    *) echo "bench-vs-reference: unknown benchmark '$1'" >&2; exit 2 ;;
  esac
}
tunelab_cmd() {
  local method="${1%-nockpt}" flags=""
  [ "$method" != "$1" ] && flags="--no-checkpointing"
  case "$1" in
    lora*|soft-prompt*|full*)
      echo "$bin bench train --method $method --batch-size 4 --seq-len 256 --steps $steps $flags --device cpu --json" ;;
    # The reference times one pass after loading; so does this (llama.cpp's prompt is 264 tokens).
    decode) echo "$bin bench decode --prompt-tokens 264 --gen-tokens 128 --runs 1 --device cpu --json" ;;
    # The reference embeds 512 sentences of 47 tokens in batches of 32, once warm.
    embed) echo "$bin bench embed --sentences 512 --tokens 47 --runs 2 --device cpu --json" ;;
  esac
}

echo "results: $results"
"$bin" --version | sed 's/^/tunelab: /'
echo "tunelab kernels: $kernels"
"$py" -c 'import torch, peft; print("reference: torch", torch.__version__, "peft", peft.__version__, "vector code", torch.backends.cpu.get_cpu_capability())'
for round in $(seq 1 "$rounds"); do
  echo "round $round of $rounds"
  for name in ${only//,/ }; do
    ref=$(reference_cmd "$name")
    ours=$(tunelab_cmd "$name")
    if [ $((round % 2)) -eq 1 ]; then
      record "$name" reference "$round" $ref
      record "$name" tunelab "$round" $ours
    else
      record "$name" tunelab "$round" $ours
      record "$name" reference "$round" $ref
    fi
  done
done

machine=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
python3 "$root/scripts/bench_ratios.py" "$results" --machine "$machine, $(nproc) cores, $threads threads, $machine_paths" | tee "$out/summary.md"
