#!/usr/bin/env bash
# Prepares Tunelab's GPU check on a machine with or without a GPU, for a machine with one:
#   - a CUDA toolkit (scripts/cuda-toolkit.sh: the system's, or NVIDIA's PyPI wheels)
#   - one stripped binary, tunelab-gpu-check: the engine and the trainer built with CUDA, no
#     LanceDB, no Tauri (crates/gpu-check)
#     (xz-compressed: 8 MB instead of 63, most of it the CUDA kernels)
#   - run.sh beside it, which needs no other file: it unpacks the binary, finds the CUDA
#     libraries there (the system's, or those of PyTorch's wheels), prints the GPU and runs the
#     check, writing gpu-check.json into $OUT (or beside itself)
# into build/gpu-check/ (ignored by git). Copy that folder to the GPU machine and run run.sh.
#
#   scripts/gpu-check.sh [CUDA_VERSION [COMPUTE_CAP]]
# CUDA_VERSION is the newest the target's driver supports (nvidia-smi's "CUDA Version"; by
# default this machine's, else 13.0); COMPUTE_CAP its GPU's (default this machine's, else 90:
# Hopper, the H100 and H200).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/cuda-toolkit.sh

version=${1:-$(cuda_driver_version || echo 13.0)}
cap=${2:-$(cuda_compute_cap || echo 90)}
major=${version%%.*}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tunelab/target}
scripts/build-cuda.sh --ci "$version" "$cap"

out=build/gpu-check
rm -rf "$out"
mkdir -p "$out"
strip -o "$out/tunelab-gpu-check" "$CARGO_TARGET_DIR/debug/tunelab-gpu-check"
xz -T0 -6 "$out/tunelab-gpu-check"
cat >"$out/run.sh" <<EOF
#!/usr/bin/env bash
# Tunelab's GPU check (made by scripts/gpu-check.sh for CUDA $version, compute capability $cap).
# Arguments go to tunelab-gpu-check: --quick, --only checks|bench, --device cuda:N.
set -uo pipefail
here=\$(cd "\$(dirname "\$0")" && pwd)
bin=\$(mktemp -d)/tunelab-gpu-check
python3 -c 'import lzma, sys; open(sys.argv[2], "wb").write(lzma.open(sys.argv[1]).read())' \
  "\$here/tunelab-gpu-check.xz" "\$bin" 2>/dev/null || xz -dc "\$here/tunelab-gpu-check.xz" >"\$bin" || exit 2
chmod +x "\$bin"
# The CUDA $major libraries the binary loads: the system's, or those of PyTorch's wheels.
if ! ldconfig -p 2>/dev/null | grep -q 'libcublas.so.$major'; then
  lib=\$(find /usr/local /opt /usr/lib -name 'libcublas.so.$major' 2>/dev/null | head -1)
  [ -n "\$lib" ] && export LD_LIBRARY_PATH="\$(dirname "\$lib")\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
fi
if ldd "\$bin" | grep 'not found'; then
  echo "error: the libraries above are missing: install CUDA $major's runtime, cuBLAS, cuRAND and NVRTC" >&2
  exit 2
fi
nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total --format=csv
"\$bin" --device cuda --json "\${OUT:-\$here}/gpu-check.json" "\$@"
EOF
chmod +x "$out/run.sh"
du -sh "$out"
echo "[gpu-check] ready: $out/run.sh (copy $out to the GPU machine and run it there)"
