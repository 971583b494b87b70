#!/usr/bin/env bash
# Re-derives scripts/lead-hot.order, the link order that packs the functions a lead runs
# together (scripts/lead-hot-order.py says why), from `perf record` of `pimesh bench run`:
# cpu-clock samples with call graphs, and every page fault. Each round profiles the binary the
# previous round linked, whose faults show what the order still misses. Needs root and perf
# (apt-get install linux-perf) on an otherwise quiet machine; commit the order file it writes.
# `make release` relinks when the order file is newer than the binary (Makefile LINK_INPUTS).
# The order is made on x86-64; on arm64 the functions it names that a build lacks are skipped
# quietly (--no-warn-symbol-ordering), and the rest still pack together.
# Usage: scripts/lead-hot-order.sh [ROUNDS]   (default 2), or make lead-order [ROUNDS=N]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-2}
work=$(mktemp -d /tmp/pimesh-order.XXXXXX)
trap 'rm -rf "$work"' EXIT
for round in $(seq 1 "$rounds"); do
  make --no-print-directory release > "$work/make.log" 2>&1 || { cat "$work/make.log"; exit 1; }
  perf record -q -a -g -e cpu-clock/freq=9999/ -e page-faults/period=1/ -o "$work/perf.data" -- \
    .build/release/pimesh bench run --agents 10,100,1000 --duration 40s --kills 2 --attached-kills 1 \
    --out "$work/bench" > "$work/bench.log" 2>&1
  grep 'agents: lead' "$work/bench.log" | sed "s/^/round $round: /"
  perf script -i "$work/perf.data" --show-mmap-events -F comm,pid,event,ip,dso 2>"$work/perf-script.err" \
    | scripts/lead-hot-order.py .build/release/pimesh scripts/lead-hot.order
  if [ -s "$work/perf-script.err" ]; then sort "$work/perf-script.err" | uniq -c | head -5 | sed 's/^/perf script: /' >&2; fi
done
make --no-print-directory release > "$work/make.log" 2>&1 || { cat "$work/make.log"; exit 1; }
