#!/usr/bin/env bash
# Installs the Debian packages pimesh builds and tests with, only those that are missing.
#   scripts/install-deps.sh [EXTRA_PACKAGE...]    (make test adds prometheus, for promtool)
set -euo pipefail
packages=(libsqlite3-dev liblz4-dev libgpiod-dev libcurl4-openssl-dev pkg-config sqlite3 lz4 python3 binutils "$@")
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "install-deps: missing ${missing[*]}; run as root or install sudo" >&2; exit 1; }
    sudo="sudo"
  fi
  echo "install-deps: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v swift >/dev/null; then
  echo "install-deps: no swift on PATH. pimesh needs Swift 6.1 or newer (swift.org toolchain for Debian 12; see pi/README.md)." >&2
  exit 1
fi
