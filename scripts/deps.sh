#!/bin/sh
# Installs the Debian packages named on the command line that are missing.
# Runs apt-get update first, and only when something is missing.
# The lists are the Makefile's DEB_* variables: `make deps` (hence `make
# test` and CI) installs DEB_BUILD, DEB_TEST and DEB_APPS (python3-dev and
# the real apps' frameworks: Flask, Django, Starlette, websockets, venv);
# `make deps-bench` installs DEB_BENCH and DEB_BENCH_APPS (uWSGI with its
# python3 plugin, gunicorn, uvicorn with uvloop and httptools).
set -eu
missing=""
for p in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0
echo "deps: installing$missing"
if [ "$(id -u)" -ne 0 ]; then
    echo "deps: run as root, or install:$missing" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing
