#!/usr/bin/env bash
# Heap allocations per heartbeat datagram, by kind, counted by valgrind: the difference between
# a run that feeds N datagrams and one that only prepares them, divided by N. Also the time
# per datagram of the release binary without valgrind.
#
#   benchmarks/ingest-allocations.sh [N]        (default N = 2000)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-2000}
bin=${PIMESH_BIN:-.build/pimesh}
[ -x "$bin" ] || { echo "ingest-allocations: $bin missing; run 'make release' first" >&2; exit 1; }
command -v valgrind >/dev/null || { echo "ingest-allocations: needs valgrind (apt-get install valgrind)" >&2; exit 1; }

allocs() {
  valgrind --tool=memcheck --leak-check=no "$bin" bench ingest "$@" 2>&1 >/dev/null \
    | awk '/total heap usage/ { gsub(",", "", $5); print $5 }'
}

printf '%-16s %14s %12s\n' kind allocs/datagram ns/datagram
for kind in short long unknown_version malformed unknown_agent bad_tag replayed stale accepted; do
  full=$(allocs --kind "$kind" --count "$n")
  setup=$(allocs --kind "$kind" --count "$n" --setup-only)
  ns=$("$bin" bench ingest --kind "$kind" --count 200000 --json | tr ',' '\n' | awk -F: '/nanoseconds_per_datagram/ { printf "%.0f", $2 }')
  awk -v k="$kind" -v f="$full" -v s="$setup" -v n="$n" -v t="$ns" 'BEGIN { printf "%-16s %14.2f %12s\n", k, (f - s) / n, t }'
done
