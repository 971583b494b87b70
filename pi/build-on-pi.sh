#!/usr/bin/env bash
# Builds the arm64 release binary and its .deb on a Raspberry Pi 4B (or any arm64 Debian 12
# machine with a Swift toolchain): pi/build-on-pi.sh [--check]
#   --check   only the checks: architecture, toolchain, memory and swap, disk
# Then: .build/deb/pimesh_<version>_arm64.deb, for `dpkg -i` on the Pi or pi/flash/ for a fleet.
set -euo pipefail
cd "$(dirname "$0")/.."
fail() { echo "build-on-pi: $*" >&2; exit 1; }

machine=$(uname -m)
[ "$machine" = aarch64 ] || fail "this is $machine; build on a 64-bit Pi OS (aarch64) or an arm64 builder"
command -v swift >/dev/null || fail "no swift on PATH: install the swift.org toolchain for Debian 12 aarch64 (6.1 or newer) and add its usr/bin to PATH"
version=$(swift --version 2>&1 | sed -n 's/.*Swift version \([0-9]*\)\.\([0-9]*\).*/\1 \2/p' | head -1)
read -r major minor <<< "${version:-0 0}"
if [ "$major" -lt 6 ] || { [ "$major" -eq 6 ] && [ "$minor" -lt 1 ]; }; then
  fail "swift $major.$minor is too old; pimesh needs 6.1 or newer"
fi
# The release build's compiler takes about 1.5 GiB; a 2 GB Pi needs swap beside its RAM.
memory_kib=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
swap_kib=$(awk '/^SwapTotal:/ {print $2}' /proc/meminfo)
if [ $((memory_kib + swap_kib)) -lt $((3 * 1024 * 1024)) ]; then
  fail "$((memory_kib / 1024)) MiB of RAM and $((swap_kib / 1024)) MiB of swap: add swap to reach 3 GiB (on Pi OS: CONF_SWAPSIZE=2048 in /etc/dphys-swapfile, then sudo systemctl restart dphys-swapfile)"
fi
free_kib=$(df -Pk . | awk 'NR == 2 {print $4}')
[ "$free_kib" -ge $((3 * 1024 * 1024)) ] || fail "$((free_kib / 1024)) MiB free here; the build needs about 3 GiB"
echo "build-on-pi: $machine, swift $major.$minor, $((memory_kib / 1024)) MiB RAM + $((swap_kib / 1024)) MiB swap, $((free_kib / 1024)) MiB free"
[ "${1:-}" = --check ] && exit 0

make release
# No full Foundation or ICU, full RELRO, no unwind tables, within the size budget (as on x86-64).
scripts/check-binary.sh .build/release/pimesh .build/pimesh
make deb ARCH=arm64 BIN=.build/pimesh
# The binary's libraries and the package's Depends must agree (docs/pi.md).
echo "libraries the binary loads:"; ldd .build/pimesh
dpkg-deb -f .build/deb/pimesh_*_arm64.deb Depends
