#!/usr/bin/env bash
# The install test: `make install` into a temporary PREFIX, then build
# examples/loader.c the way a user of the installed library would
# (cc ... $(pkg-config --cflags --libs groupcache)), run it against the
# installed copy, check the soname, the symlinks and that the library has
# no debug info, and `make uninstall`.
# Prints `install: N passed, N failed`; exits non-zero if any check failed.
#
#   bash tests/install/run.sh          (make test runs it)
#
# Installs pkg-config with apt-get when it is missing, and Go through
# examples/cgo/run.sh. Builds the library through `make install` (its
# `lib` prerequisite) if needed.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"

# Under pipefail, `cmd | grep -q` fails at random when grep exits on its
# first match and cmd is killed by SIGPIPE: pipes into grep here read all
# (grep >/dev/null).
passed=0 failed=0
check() { # check NAME COMMAND...: runs the command, counts and reports it
  local name="$1"; shift
  if "$@"; then passed=$((passed + 1)); echo "  ok   $name"
  else failed=$((failed + 1)); echo "  FAIL $name"; fi
}
finish() {
  echo "install: $passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}

if ! command -v pkg-config >/dev/null; then
  echo "install test: installing pkg-config"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y -qq --no-install-recommends pkg-config >/dev/null \
    || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends pkg-config >/dev/null; }
fi
for tool in pkg-config readelf "${CC:-cc}" "${CXX:-c++}"; do
  command -v "$tool" >/dev/null || { echo "install test: $tool is missing" >&2; exit 1; }
done

tmp="$(mktemp -d /tmp/groupcache-install.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
prefix="$tmp/prefix"
version="$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml | head -n1)"
# The soname's version: major.minor for 0.x (whose minor releases may
# change the ABI), the major alone from 1.0 on.
major="${version%%.*}"
minor="${version#*.}"; minor="${minor%%.*}"
if [ "$major" = 0 ]; then so="$major.$minor"; else so="$major"; fi

# Until the Makefile includes mk/install.mk, read it alongside.
mkf=()
grep -Eq '^[[:space:]]*-?include[[:space:]].*mk/install\.mk' Makefile || mkf=(-f Makefile -f mk/install.mk)
make="${MAKE:-make}"

echo "== make install PREFIX=$prefix"
"$make" --no-print-directory "${mkf[@]}" install PREFIX="$prefix" LDCONFIG=: >"$tmp/install.log" 2>&1 \
  || { cat "$tmp/install.log"; echo "install test: make install failed" >&2; exit 1; }

lib="$prefix/lib"
real="$lib/libgroupcache.so.$version"
check "installed $real (a file)" test -f "$real" -a ! -L "$real"
check "libgroupcache.so.$so -> libgroupcache.so.$version" \
  test "$(readlink "$lib/libgroupcache.so.$so")" = "libgroupcache.so.$version"
check "libgroupcache.so -> libgroupcache.so.$so" \
  test "$(readlink "$lib/libgroupcache.so")" = "libgroupcache.so.$so"
check "readelf -d: soname libgroupcache.so.$so" \
  bash -c 'readelf -d "$1" | grep -q "Library soname: \[libgroupcache.so.$2\]"' _ "$real" "$so"
check "installed header = include/groupcache.h" cmp -s include/groupcache.h "$prefix/include/groupcache.h"
check "installed library: no debug info, symbols kept" \
  bash -c '! readelf -S --wide "$1" | grep -q " \.debug_" && readelf --dyn-syms --wide "$1" | grep -q " cache_get$"' _ "$real"
# Without debug info (checked above) the library is ~7.5 MB since it holds
# the TLS (rustls, ring) and DNS (hickory) stacks; the bound catches debug
# info or a stray dependency coming back. The wheel's own bound (5 MB,
# compressed) is in tests/python/wheel.sh.
check "installed library: at most 10 MB ($(($(stat -c %s "$real") / 1024)) KiB)" \
  test "$(stat -c %s "$real")" -le $((10 * 1000 * 1000))

export PKG_CONFIG_PATH="$lib/pkgconfig"
check "pkg-config finds groupcache" pkg-config --exists groupcache
check "pkg-config --modversion = $version (Cargo.toml)" \
  test "$(pkg-config --modversion groupcache)" = "$version"
check "pkg-config prefix = PREFIX" test "$(pkg-config --variable=prefix groupcache)" = "$prefix"
check "pkg-config --cflags = -I\$PREFIX/include" \
  test "$(pkg-config --cflags groupcache | xargs)" = "-I$prefix/include"
check "pkg-config --libs = -L\$PREFIX/lib -lgroupcache" \
  test "$(pkg-config --libs groupcache | xargs)" = "-L$lib -lgroupcache"
libdir="$(pkg-config --variable=libdir groupcache)"
check "pkg-config libdir = \$PREFIX/lib" test "$libdir" = "$lib"

# The installed header on its own, strictly, as C and (if there is one) C++.
printf '#include <groupcache.h>\nint main(void) { return cache_version() == 0; }\n' >"$tmp/hdr.c"
# shellcheck disable=SC2046
check "header compiles alone: -std=c99 -Wall -Wextra -Wpedantic -Werror" \
  "${CC:-cc}" -std=c99 -Wall -Wextra -Wpedantic -Werror -fsyntax-only $(pkg-config --cflags groupcache) "$tmp/hdr.c"
# shellcheck disable=SC2046
check "header compiles as C++: -Wall -Wextra -Werror" \
  "${CXX:-c++}" -x c++ -Wall -Wextra -Werror -fsyntax-only $(pkg-config --cflags groupcache) "$tmp/hdr.c"

# The installed header's version macros, the installed library's version
# functions and Cargo.toml's version are one version.
cat >"$tmp/version.c" <<'EOF'
#include <groupcache.h>
#include <stdio.h>
#include <string.h>
int main(void) {
  char header[40];
  snprintf(header, sizeof header, "%d.%d.%d", GROUPCACHE_VERSION_MAJOR, GROUPCACHE_VERSION_MINOR,
           GROUPCACHE_VERSION_PATCH);
  printf("%s\n", header);
  if (strcmp(header, cache_version()) != 0) return 1;
  if (cache_version_number() != GROUPCACHE_VERSION_NUMBER) return 2;
  return 0;
}
EOF
version_agrees() {
  # shellcheck disable=SC2046
  "${CC:-cc}" "$tmp/version.c" $(pkg-config --cflags --libs groupcache) -Wl,-rpath,"$libdir" -o "$tmp/version" \
    && test "$(env -u LD_LIBRARY_PATH "$tmp/version")" = "$version"
}
check "header macros = cache_version() = cache_version_number() = $version" version_agrees

echo "== cc examples/loader.c \$(pkg-config --cflags --libs groupcache)"
# shellcheck disable=SC2046
check "loader builds against the installed library" \
  "${CC:-cc}" examples/loader.c $(pkg-config --cflags --libs groupcache) -o "$tmp/loader"
# shellcheck disable=SC2046
check "loader builds with rpath = pkg-config libdir" \
  "${CC:-cc}" examples/loader.c $(pkg-config --cflags --libs groupcache) -Wl,-rpath,"$libdir" -o "$tmp/loader-rpath"
check "loader NEEDs libgroupcache.so.$so" \
  bash -c 'readelf -d "$1" | grep -q "Shared library: \[libgroupcache.so.$2\]"' _ "$tmp/loader" "$so"

# Which copy the loader resolves: the installed one, not target/release.
resolved() { "$@" ldd "$tmp/$LOADER" | awk '/libgroupcache/ {print $3}'; }
check "LD_LIBRARY_PATH: resolves to the installed copy" \
  test "$(LOADER=loader resolved env LD_LIBRARY_PATH="$libdir")" = "$lib/libgroupcache.so.$so"
check "rpath: resolves to the installed copy" \
  test "$(LOADER=loader-rpath resolved env -u LD_LIBRARY_PATH)" = "$lib/libgroupcache.so.$so"

run_loader() { # run_loader OUT ENV... : runs a loader build, keeps its output
  local out="$1"; shift
  "$@" >"$out" 2>&1 || { cat "$out"; return 1; }
  grep -q 'get 1   -> Ada Lovelace' "$out" && grep -q 'get 42  -> status 1' "$out" \
    && grep -q 'database reads so far: 3' "$out" || { cat "$out"; return 1; }
}
check "loader runs with LD_LIBRARY_PATH=libdir" \
  run_loader "$tmp/out1" env LD_LIBRARY_PATH="$libdir" "$tmp/loader"
check "loader runs with rpath" run_loader "$tmp/out2" env -u LD_LIBRARY_PATH "$tmp/loader-rpath"

# Another language through the installed header and pkg-config: the cgo
# example with -tags pkgconfig (examples/cgo/run.sh installs Debian's Go
# when it is missing).
echo "== examples/cgo/run.sh --pkgconfig"
cgo_installed() {
  LD_LIBRARY_PATH="$libdir" bash examples/cgo/run.sh --pkgconfig >"$tmp/cgo.log" 2>&1 \
    && LD_LIBRARY_PATH="$libdir" ldd target/go/cgo-example-pkgconfig | grep "=> $libdir/libgroupcache.so.$so" >/dev/null \
    || { cat "$tmp/cgo.log"; return 1; }
  tail -n1 "$tmp/cgo.log" | sed 's/^/       /'
}
check "cgo example builds and runs against the installed library" cgo_installed

# The built library has no debug info either (release profile), so the
# strip is checked on a copy given a .debug_ section of its own.
echo "== make install of a library with debug info"
printf 'debug info\0' >"$tmp/debug.bin"
cp "$root/target/release/libgroupcache.so" "$tmp/with-debug.so"
objcopy --add-section .debug_str="$tmp/debug.bin" "$tmp/with-debug.so"
strip_check() {
  readelf -S --wide "$tmp/with-debug.so" | grep " \.debug_str" >/dev/null || { echo "objcopy added no .debug_str"; return 1; }
  "$make" --no-print-directory "${mkf[@]}" install PREFIX="$tmp/prefix2" LDCONFIG=: \
    GC_BUILT_LIB="$tmp/with-debug.so" >"$tmp/install2.log" 2>&1 || { cat "$tmp/install2.log"; return 1; }
  ! readelf -S --wide "$tmp/prefix2/lib/libgroupcache.so.$version" | grep " \.debug_" >/dev/null
}
check "make install strips debug info from the library" strip_check

echo "== make uninstall PREFIX=$prefix"
"$make" --no-print-directory "${mkf[@]}" uninstall PREFIX="$prefix" >"$tmp/uninstall.log" 2>&1 \
  || { cat "$tmp/uninstall.log"; failed=$((failed + 1)); }
check "uninstall leaves no files" test -z "$(find "$prefix" ! -type d)"

finish
