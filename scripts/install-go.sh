#!/usr/bin/env bash
# Installs the Go toolchain and the Go sources our Go programs build against,
# from Debian packages only, so every Go build here works offline (GOPATH mode
# over /usr/share/gocode; see scripts/go-env.sh). Idempotent: a package that is
# already installed is skipped, and nothing is fetched when all are present.
set -euo pipefail

PKGS=(golang-go golang-github-golang-groupcache-dev golang-goprotobuf-dev)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-go: all present (${PKGS[*]})"
else
  echo "install-go: installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  # A fresh machine may have empty package lists; update once, then install.
  if ! $SUDO apt-get install -y --no-install-recommends "${missing[@]}"; then
    $SUDO apt-get update
    $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
  fi
fi

# Sanity check: the sources we rely on are where go-env.sh says they are.
for d in /usr/share/gocode/src/github.com/golang/groupcache \
         /usr/share/gocode/src/github.com/golang/protobuf/proto; do
  [ -d "$d" ] || { echo "install-go: missing $d" >&2; exit 1; }
done
command -v go >/dev/null || { echo "install-go: go not on PATH" >&2; exit 1; }
go version
