# shellcheck shell=bash
# A CUDA compiler and the CUDA libraries Tunelab's GPU build links against, without a system
# CUDA toolkit. Source this file, then:
#   cuda_driver_version        prints the CUDA version the NVIDIA driver supports ("13.0"), from
#                              nvidia-smi; nothing (and status 1) when there is no driver
#   cuda_toolkit VERSION       makes sure a toolkit for CUDA VERSION ("13.0", "12.4") is ready and
#                              prints its root. A system toolkit whose nvcc has that version is
#                              used as it is; otherwise NVIDIA's PyPI wheels (nvcc, runtime,
#                              headers, cuBLAS, cuRAND, NVRTC) are unpacked into
#                              $TUNELAB_CUDA_CACHE/VERSION (by default ~/.cache/tunelab/cuda).
#   use_cuda_toolkit ROOT CAP  exports what the build reads: CUDA_ROOT, PATH (nvcc),
#                              CUDA_COMPUTE_CAP (e.g. 89 for an RTX 4090, 90 for an H100) and
#                              LD_LIBRARY_PATH (the libraries a GPU binary loads when it starts)
#   cuda_compute_cap           prints the first GPU's compute capability as the build wants it
#                              ("89"), from nvidia-smi
#
# The wheels ship versioned libraries (libcublas.so.13) with no unversioned link and no libcuda,
# which comes with the driver. cuda_toolkit adds the links and generates lib/stubs/libcuda.so: a
# library with every driver entry point of cuda.h, each returning CUDA_ERROR_STUB_LIBRARY, so a
# machine with no GPU can link the GPU build. The binary asks for libcuda.so.1, the driver's own,
# when it starts.
#
# The toolkit's minor version must not be newer than the driver's: the driver compiles the
# kernels' PTX when they load and refuses PTX from a newer compiler.

TUNELAB_CUDA_CACHE=${TUNELAB_CUDA_CACHE:-${TUNELAB_CACHE:-$HOME/.cache/tunelab}/cuda}

cuda_driver_version() {
  command -v nvidia-smi >/dev/null 2>&1 || return 1
  local v
  v=$(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9][0-9]*\.[0-9][0-9]*\).*/\1/p' | head -1)
  [ -n "$v" ] || return 1
  echo "$v"
}

cuda_compute_cap() {
  command -v nvidia-smi >/dev/null 2>&1 || return 1
  local cap
  cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')
  [[ $cap =~ ^[0-9]+$ ]] || return 1
  echo "$cap"
}

# _cuda_supported VERSION: the newest version at or below VERSION that cudarc (candle's CUDA
# bindings) knows, or nothing when VERSION is older than all of them.
_cuda_supported() {
  local want=$1 best="" v
  for v in 11.4 11.5 11.6 11.7 11.8 12.0 12.1 12.2 12.3 12.4 12.5 12.6 12.8 12.9 13.0 13.1 13.2 13.3 13.4; do
    if [ "$(printf '%s\n%s\n' "$v" "$want" | sort -V | head -1)" = "$v" ]; then best=$v; fi
  done
  [ -n "$best" ] && echo "$best"
}

cuda_toolkit() {
  local want
  want=$(_cuda_supported "$1") || {
    echo "error: CUDA $1 is older than the oldest toolkit Tunelab's GPU build knows (11.4); update the NVIDIA driver" >&2
    return 1
  }
  # A system toolkit of that version.
  local nvcc root
  for nvcc in "${CUDA_ROOT:+$CUDA_ROOT/bin/nvcc}" "$(command -v nvcc 2>/dev/null)" /usr/local/cuda/bin/nvcc; do
    [ -n "$nvcc" ] && [ -x "$nvcc" ] || continue
    if [[ $("$nvcc" --version 2>/dev/null) == *"release $want,"* ]]; then
      root=$(cd "$(dirname "$nvcc")/.." && pwd)
      case $root in "$TUNELAB_CUDA_CACHE"/*) ;; *)
        echo "$root"
        return 0
        ;;
      esac
    fi
  done
  root=$TUNELAB_CUDA_CACHE/$want
  if [ ! -f "$root/.complete" ]; then
    _cuda_from_pypi "$want" "$root" >&2 || return 1
  fi
  echo "$root"
}

# _cuda_wheels VERSION: the wheels of one toolkit, as pip requirements.
_cuda_wheels() {
  local v=$1 major=${1%%.*}
  if [ "$major" -ge 13 ]; then
    # CUDA 13 wheels have no suffix and all unpack into nvidia/cu13/.
    echo "nvidia-cuda-nvcc==$v.* nvidia-cuda-runtime==$v.* nvidia-cuda-crt==$v.* nvidia-cuda-cccl==$v.*"
    echo "nvidia-nvvm==$v.* nvidia-cuda-nvrtc==$v.* nvidia-cublas==$v.* nvidia-curand"
  else
    # CUDA 11 and 12 wheels carry the major version as a suffix, one folder each under nvidia/.
    echo "nvidia-cuda-nvcc-cu$major==$v.* nvidia-cuda-runtime-cu$major==$v.* nvidia-cuda-cccl-cu$major==$v.*"
    echo "nvidia-cuda-nvrtc-cu$major==$v.* nvidia-cublas-cu$major nvidia-curand-cu$major"
  fi
}

_cuda_from_pypi() {
  local v=$1 root=$2 wheels="$TUNELAB_CUDA_CACHE/wheels/$1"
  command -v python3 >/dev/null && python3 -m pip --version >/dev/null 2>&1 || {
    echo "error: getting the CUDA compiler from PyPI needs python3 with pip (apt-get install python3-pip), or install NVIDIA's CUDA toolkit $v"
    return 1
  }
  echo "[cuda] downloading CUDA $v's compiler and libraries from PyPI into $wheels"
  mkdir -p "$wheels"
  # shellcheck disable=SC2046 # one requirement per word
  python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux_2_12_x86_64 --platform manylinux2010_x86_64 \
    -d "$wheels" $(_cuda_wheels "$v") || {
    echo "error: could not download CUDA $v's wheels from PyPI (offline?); install NVIDIA's CUDA toolkit $v instead"
    return 1
  }
  local tmp="$root.partial" w d
  rm -rf "$tmp"
  mkdir -p "$tmp/unpacked" "$tmp/root"
  for w in "$wheels"/*.whl; do
    python3 -m zipfile -e "$w" "$tmp/unpacked" || return 1
  done
  # Merge every nvidia/<part>/ folder into one toolkit root: bin/, include/, lib/, nvvm/.
  for d in "$tmp"/unpacked/nvidia/*/; do
    cp -a "$d". "$tmp/root/"
  done
  chmod +x "$tmp"/root/bin/* "$tmp"/root/nvvm/bin/* 2>/dev/null
  # Unversioned links for the linker: libcublas.so -> libcublas.so.13.
  local lib base
  for lib in "$tmp"/root/lib/lib*.so.*; do
    base=${lib##*/}
    base=${base%%.so.*}.so
    [ -e "$tmp/root/lib/$base" ] || ln -s "${lib##*/}" "$tmp/root/lib/$base"
  done
  _cuda_stub_driver "$tmp/root" || return 1
  rm -rf "$tmp/unpacked" "$root"
  mv "$tmp/root" "$root"
  rmdir "$tmp"
  touch "$root/.complete"
  echo "[cuda] CUDA $v is in $root"
}

# _cuda_stub_driver ROOT: ROOT/lib/stubs/libcuda.so, named libcuda.so.1 like the driver's.
_cuda_stub_driver() {
  local root=$1 header=$1/include/cuda.h src
  [ -f "$header" ] || {
    echo "error: $header is missing: the CUDA runtime wheel did not unpack"
    return 1
  }
  mkdir -p "$root/lib/stubs"
  src=$(mktemp "${TMPDIR:-/tmp}/tunelab-cuda-stub.XXXXXX.c")
  {
    echo "/* Generated by scripts/cuda-toolkit.sh from cuda.h: every entry point fails with CUDA_ERROR_STUB_LIBRARY. */"
    # The declared names and the versioned names cuda.h maps them to (cuMemAlloc -> cuMemAlloc_v2).
    { grep -oE 'CUresult CUDAAPI cu[A-Za-z0-9_]+' "$header" | awk '{print $3}'
      grep -oE '^#define +cu[A-Za-z0-9_]+ +cu[A-Za-z0-9_]+' "$header" | awk '{print $3}'
    } | sort -u | sed 's/.*/int &(void) { return 34; }/'
  } >"$src"
  "${CC:-cc}" -shared -fPIC -o "$root/lib/stubs/libcuda.so" -Wl,-soname,libcuda.so.1 -x c "$src" || {
    rm -f "$src"
    echo "error: could not compile the CUDA driver stub (is a C compiler installed?)"
    return 1
  }
  rm -f "$src"
}

use_cuda_toolkit() {
  local root=$1 cap=$2
  export CUDA_ROOT=$root
  export PATH="$root/bin:$PATH"
  export CUDA_COMPUTE_CAP=$cap
  # Not the stubs: those are for linking only.
  export LD_LIBRARY_PATH="$root/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
}

# The GPU build's settings for this machine, written by setup_cuda and read by use_cuda_env.
cuda_env_file() {
  echo "${TUNELAB_CACHE:-$HOME/.cache/tunelab}/cuda.env"
}

# setup_cuda: on a machine with the NVIDIA driver, gets the toolkit its driver supports and
# writes cuda_env_file; elsewhere removes it (the build stays CPU-only). TUNELAB_CUDA=0 turns
# the GPU build off on a machine with a driver.
setup_cuda() {
  local env version cap root
  env=$(cuda_env_file)
  if [ "${TUNELAB_CUDA:-1}" = 0 ] || ! version=$(cuda_driver_version); then
    rm -f "$env"
    return 0
  fi
  cap=$(cuda_compute_cap) || {
    echo "error: nvidia-smi reports CUDA $version but no GPU compute capability" >&2
    return 1
  }
  root=$(cuda_toolkit "$version") || return 1
  mkdir -p "$(dirname "$env")"
  {
    echo "# Written by scripts/setup.sh: the NVIDIA driver here supports CUDA $version; the GPU"
    echo "# build uses the toolkit below, for compute capability $cap."
    echo "TUNELAB_CUDA_ROOT='$root'"
    echo "TUNELAB_CUDA_COMPUTE_CAP='$cap'"
  } >"$env.tmp" && mv "$env.tmp" "$env"
  echo "$root (CUDA $version, compute capability $cap)"
}

# use_cuda_env: when setup wrote cuda_env_file, exports the toolkit's settings and sets
# TUNELAB_CUDA_BUILD=1; otherwise TUNELAB_CUDA_BUILD=0.
use_cuda_env() {
  local env
  env=$(cuda_env_file)
  TUNELAB_CUDA_BUILD=0
  [ -f "$env" ] || return 0
  local TUNELAB_CUDA_ROOT TUNELAB_CUDA_COMPUTE_CAP
  # shellcheck disable=SC1090
  source "$env"
  [ -x "$TUNELAB_CUDA_ROOT/bin/nvcc" ] || return 0
  use_cuda_toolkit "$TUNELAB_CUDA_ROOT" "$TUNELAB_CUDA_COMPUTE_CAP"
  TUNELAB_CUDA_BUILD=1
}
