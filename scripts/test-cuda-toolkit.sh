#!/usr/bin/env bash
# Tests scripts/cuda-toolkit.sh without a GPU and without the network: version matching, the
# wheels asked for, the generated driver stub, and how setup records (or drops) the GPU build
# for a machine with (a stand-in for) the NVIDIA driver and without one.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
source scripts/cuda-toolkit.sh
tmp=$(mktemp -d "${TMPDIR:-/tmp}/tunelab-test-cuda.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0
check() { # check NAME COMMAND...: passes when COMMAND succeeds
  local name=$1
  shift
  if "$@"; then
    passed=$((passed + 1))
    printf '  ok    %s\n' "$name"
  else
    failed=$((failed + 1))
    printf '  FAIL  %s\n' "$name"
  fi
}

# The newest toolkit at or below the driver's CUDA version that candle's bindings know.
check "CUDA 13.0 takes 13.0" test "$(_cuda_supported 13.0)" = 13.0
check "CUDA 12.7 (unknown to the bindings) takes 12.6" test "$(_cuda_supported 12.7)" = 12.6
check "CUDA 13.9 takes the newest known, 13.4" test "$(_cuda_supported 13.9)" = 13.4
check "CUDA 11.2 is too old" bash -c 'source scripts/cuda-toolkit.sh; ! _cuda_supported 11.2'
check "CUDA 13 wheels have no suffix" grep -q 'nvidia-cuda-nvcc==13.0.\* .*nvidia-cublas==13.0.\*' <<<"$(_cuda_wheels 13.0 | tr "\n" " ")"
check "CUDA 12 wheels carry -cu12" grep -q 'nvidia-cuda-nvcc-cu12==12.4.\* .*nvidia-cublas-cu12' <<<"$(_cuda_wheels 12.4 | tr "\n" " ")"

# The driver stub: every entry point of cuda.h, versioned names included, failing with
# CUDA_ERROR_STUB_LIBRARY (34), under the driver's soname.
root=$tmp/toolkit
mkdir -p "$root/include"
cat >"$root/include/cuda.h" <<'EOF'
#define cuMemAlloc cuMemAlloc_v2
CUresult CUDAAPI cuInit(unsigned int Flags);
CUresult CUDAAPI cuMemAlloc(CUdeviceptr *dptr, size_t bytesize);
EOF
_cuda_stub_driver "$root" >/dev/null
stub=$root/lib/stubs/libcuda.so
check "the stub is named like the driver" grep -q 'SONAME.*libcuda.so.1' <<<"$(objdump -p "$stub" 2>/dev/null)"
check "the stub exports declared and versioned names" \
  bash -c "nm -D '$stub' | grep -q ' T cuInit\$' && nm -D '$stub' | grep -q ' T cuMemAlloc_v2\$'"
cat >"$tmp/call.c" <<'EOF'
int cuInit(unsigned int);
int main(void) { return cuInit(0) == 34 ? 0 : 1; }
EOF
mkdir -p "$tmp/link" && cp "$stub" "$tmp/link/libcuda.so.1" && ln -sf libcuda.so.1 "$tmp/link/libcuda.so"
check "a program linked against the stub starts and gets CUDA_ERROR_STUB_LIBRARY" \
  bash -c "${CC:-cc} -o '$tmp/call' '$tmp/call.c' -L'$tmp/link' -lcuda && LD_LIBRARY_PATH='$tmp/link' '$tmp/call'"

# setup_cuda without a driver: no GPU build, and an old record of one is dropped.
export TUNELAB_CACHE=$tmp/cache TUNELAB_CUDA_CACHE=$tmp/cache/cuda
mkdir -p "$TUNELAB_CACHE" && echo "TUNELAB_CUDA_ROOT=/old" >"$(cuda_env_file)"
PATH=/usr/bin:/bin setup_cuda >/dev/null
check "without a driver setup drops the GPU build" test ! -e "$(cuda_env_file)"
(use_cuda_env && [ "$TUNELAB_CUDA_BUILD" = 0 ])
check "without a record the build is CPU-only" test $? = 0

# setup_cuda with a driver (a stand-in nvidia-smi) and a toolkit already unpacked for it.
mkdir -p "$tmp/bin" "$TUNELAB_CUDA_CACHE/13.0/bin"
cat >"$tmp/bin/nvidia-smi" <<'EOF'
#!/bin/sh
case "$*" in
*compute_cap*) echo "8.9" ;;
*) echo "| NVIDIA-SMI 580.95   Driver Version: 580.95   CUDA Version: 13.0 |" ;;
esac
EOF
printf '#!/bin/sh\necho "Cuda compilation tools, release 13.0, V13.0.88"\n' >"$TUNELAB_CUDA_CACHE/13.0/bin/nvcc"
chmod +x "$tmp/bin/nvidia-smi" "$TUNELAB_CUDA_CACHE/13.0/bin/nvcc"
touch "$TUNELAB_CUDA_CACHE/13.0/.complete"
out=$(PATH="$tmp/bin:/usr/bin:/bin" CUDA_ROOT="" setup_cuda)
check "with a driver setup picks its CUDA version's toolkit" grep -q "13.0 (CUDA 13.0, compute capability 89)" <<<"$out"
(PATH="$tmp/bin:/usr/bin:/bin" use_cuda_env && [ "$TUNELAB_CUDA_BUILD" = 1 ] && [ "$CUDA_COMPUTE_CAP" = 89 ] &&
  [ "$CUDA_ROOT" = "$TUNELAB_CUDA_CACHE/13.0" ] && [ "$(command -v nvcc)" = "$TUNELAB_CUDA_CACHE/13.0/bin/nvcc" ])
check "the GPU build then uses that toolkit for compute capability 89" test $? = 0
(TUNELAB_CUDA=0 PATH="$tmp/bin:/usr/bin:/bin" setup_cuda >/dev/null && [ ! -e "$(cuda_env_file)" ])
check "TUNELAB_CUDA=0 keeps the build CPU-only on a machine with a driver" test $? = 0

echo "cuda toolkit: $passed passed, $failed failed"
((failed == 0))
