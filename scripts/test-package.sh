#!/usr/bin/env bash
# The package smoke test: builds the .deb (scripts/package.sh), unpacks it into a scratch root
# (what dpkg installs, without touching the system), and checks that the installed files work
# without the source tree: the package's metadata and contents, the packaged `tunelab doctor`
# run from outside the checkout, and the packaged app's first start on an empty workspace
# (Home downloads the default models, then the quick chat answers), driven in its webview.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tunelab/target}"

scripts/package.sh
source scripts/prereqs.sh && use_tunelab_tools # the Node.js setup may have installed from PyPI
version="$(python3 -c 'import json; print(json.load(open("tauri.conf.json"))["version"])')"
deb="$(ls dist/tunelab_"$version"_*.deb)"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
root="$scratch/root"
home="$scratch/home"
mkdir -p "$root" "$home"

fail() {
  echo "package: $*" >&2
  exit 1
}

echo "== package metadata and contents"
depends="$(dpkg-deb -f "$deb" Depends)"
[[ "$depends" == *libwebkit2gtk-4.1* ]] || fail "Depends does not name WebKitGTK 4.1: $depends"
dpkg-deb -x "$deb" "$root"
[ -x "$root/usr/bin/tunelab" ] || fail "no /usr/bin/tunelab in $deb"
desktop="$(compgen -G "$root/usr/share/applications/*.desktop" | head -n 1 || true)"
[ -n "$desktop" ] || fail "no desktop entry in $deb"
app_name="$(sed -n 's/^Exec=\([^ ]*\).*/\1/p' "$desktop")"
app="$root/usr/bin/$(basename "$app_name")"
[ -x "$app" ] || fail "the desktop entry starts $app_name, which $deb does not hold"
echo "ok: $deb holds $(basename "$app") and tunelab; depends on $depends"

echo "== the packaged tunelab command, outside the source tree"
(cd "$scratch" && TUNELAB_HOME="$home" "$root/usr/bin/tunelab" doctor --json) >"$scratch/doctor.json"
python3 - "$scratch/doctor.json" "$version" <<'EOF'
import json, sys
report = json.load(open(sys.argv[1]))
assert report["app"]["version"] == sys.argv[2], report["app"]
assert report["models"] == [], "a fresh workspace has no models"
assert report["cpu_threads"] >= 1 and report["hardware"]["cpu"], report
print(f"ok: doctor reports version {report['app']['version']}, {report['cpu_threads']} CPU threads")
EOF

echo "== the packaged app's first start, in its webview"
TUNELAB_E2E_APP="$app" xvfb-run -a -s "-screen 0 1280x860x24" \
  cargo test -p tunelab-app --features e2e --test e2e --locked -- --exact \
  a_first_start_without_models_downloads_the_defaults_from_home_and_chats
echo "package smoke test passed"
