#!/usr/bin/env bash
# Builds the installable Debian package: the desktop app and the `tunelab` command, in the tuned
# dev profile (a release build of this dependency tree takes over an hour on two cores), bundled
# by Tauri's bundler. Writes dist/tunelab_<version>_<arch>.deb; install it with
#   sudo apt install ./dist/tunelab_<version>_<arch>.deb
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/prereqs.sh && use_tunelab_tools # the Node.js setup may have installed from PyPI
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tunelab/target}"

# Built as the tests build it (one feature resolution for the whole workspace), so a machine
# that ran scripts/test.sh compiles nothing again here.
echo "== the tunelab command"
cargo test --workspace --locked --no-run >/dev/null
cli="$CARGO_TARGET_DIR/debug/tunelab"

# The package is the app's bundle with the CLI added beside it in /usr/bin. Settings that only
# packaging needs are merged over tauri.conf.json here, so everyday builds skip the bundler.
config="$(mktemp --suffix=.json)"
trap 'rm -f "$config"' EXIT
cat >"$config" <<EOF
{
  "bundle": {
    "active": true,
    "targets": ["deb"],
    "category": "Development",
    "shortDescription": "Make a language model your own on your own hardware",
    "longDescription": "Tunelab puts prompt engineering, retrieval over your documents, soft prompts, LoRA/QLoRA, full fine-tuning and pretraining side by side, measured on your own hardware and data. Includes the tunelab command.",
    "linux": { "deb": { "files": { "/usr/bin/tunelab": "$cli" } } }
  }
}
EOF

echo "== the desktop app, bundled"
ui/node_modules/.bin/tauri build --debug --ci --bundles deb --config "$config"

version="$(python3 -c 'import json; print(json.load(open("tauri.conf.json"))["version"])')"
built="$(ls -t "$CARGO_TARGET_DIR"/debug/bundle/deb/*_"$version"_*.deb | head -n 1)"
arch="$(dpkg-deb -f "$built" Architecture)"

# The dev profile keeps symbol tables (a third of each binary); the package drops them. The
# bundle is unpacked, its binaries stripped, its checksums and size brought up to date, and
# packed again.
tree="$(mktemp -d)"
trap 'rm -f "$config"; rm -rf "$tree"' EXIT
dpkg-deb -R "$built" "$tree"
chmod 0755 "$tree" # mktemp made it private; it becomes the package's root folder
strip --strip-unneeded "$tree"/usr/bin/*
(cd "$tree" && find usr -type f -print0 | sort -z | xargs -0 md5sum) >"$tree/DEBIAN/md5sums"
size="$(du -sk --exclude=DEBIAN "$tree" | cut -f1)"
sed -i "s/^Installed-Size: .*/Installed-Size: $size/" "$tree/DEBIAN/control"
mkdir -p dist
out="dist/tunelab_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$tree" "$out" >/dev/null
echo "packaged $out ($(du -h "$out" | cut -f1)): sudo apt install ./$out"
