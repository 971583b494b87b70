#!/usr/bin/env bash
# Re-derives scripts/lead-data.order, the link order that puts the .bss a lead writes side by
# side (scripts/lead-data-order.py says why), from the lead of one `pimesh bench run` step of
# 1,000 agents: its .bss is read every 2 s from start to exit, tasks and kills included. Needs
# root on an otherwise quiet machine; commit the order file it writes. `make release` relinks
# when the order file is newer than the binary (Makefile LINK_INPUTS). Made on x86-64; on arm64
# the symbols a build lacks are skipped quietly (--no-warn-symbol-ordering).
# Usage: scripts/lead-data-order.sh, or make lead-data-order
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d /tmp/pimesh-data-order.XXXXXX)
bench=
cleanup() {
  if [ -n "$bench" ]; then kill -INT "$bench" 2>/dev/null || true; wait "$bench" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
# The map names the input section of each .bss variable; the flags changed, so this relinks.
make --no-print-directory release LINK_MAP="$work/pimesh.map" > "$work/make.log" 2>&1 || { cat "$work/make.log"; exit 1; }
.build/release/pimesh bench run --agents 1000 --duration 20s --out "$work/bench" > "$work/bench.log" 2>&1 &
bench=$!
lead=
for _ in $(seq 1 600); do
  lead=$(pgrep -P "$bench" -f 'pimesh-lead run' | head -1 || true)
  [ -n "$lead" ] && break
  kill -0 "$bench" 2>/dev/null || { cat "$work/bench.log"; exit 1; }
  sleep 0.1
done
[ -n "$lead" ] || { echo "no lead started in 60 s" >&2; exit 1; }
scripts/lead-data-order.py "$work/pimesh.map" "$lead" "$work/lead-data.order"
wait "$bench" || { cat "$work/bench.log"; exit 1; }
bench=
# Only a bench that went through replaces the order.
mv "$work/lead-data.order" scripts/lead-data.order
make --no-print-directory release > "$work/make.log" 2>&1 || { cat "$work/make.log"; exit 1; }
