#!/usr/bin/env bash
# Installs every Debian 12 package Parley's build, tests and local stack
# need. Does nothing (no apt at all) when they are all installed already.
# Usage: scripts/deps.sh [--check]   (--check: list what is missing, exit 1 if any)
set -euo pipefail

PACKAGES=(
  # build
  build-essential autoconf automake libtool pkg-config
  libevent-dev libhiredis-dev libmariadb-dev libmsgpack-dev libjansson-dev
  libjwt-dev libssl-dev libcunit1-dev
  # servers the tests and scripts/stack.sh start themselves
  redis-server redis-tools mariadb-server mariadb-client
  # integration tests (Debian's python3, not a pyenv one)
  python3 python3-pytest python3-websockets
  # sanitizers, fuzzing, lint
  clang libclang-rt-14-dev cppcheck clang-tidy clang-format
  # browser test of the demo page (tests/e2e: playwright-core drives this chromium)
  chromium fonts-liberation
  # misc tools the scripts use
  procps curl git ca-certificates
)
# Node.js runs the browser test; machines that ship their own node keep it.
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || PACKAGES+=(nodejs npm)

missing=()
for p in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$p")
done

if [ "${1:-}" = "--check" ]; then
  [ ${#missing[@]} -eq 0 ] && { echo "deps: all ${#PACKAGES[@]} packages installed"; exit 0; }
  echo "deps: missing: ${missing[*]}"
  exit 1
fi

if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#PACKAGES[@]} packages already installed"
  exit 0
fi

SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
echo "deps: installing ${missing[*]}"
# Package lists may be absent or stale on a fresh machine: update first.
$SUDO apt-get update -q
# Services must not start at install time (tests run their own servers);
# where no policy-rc.d exists, add one for the duration of the install.
cleanup=
if [ ! -e /usr/sbin/policy-rc.d ] && [ -z "$SUDO" ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  cleanup=/usr/sbin/policy-rc.d
fi
trap '[ -z "$cleanup" ] || rm -f "$cleanup"' EXIT
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "deps: done"
