#!/usr/bin/env bash
# One supervised agent writing `yes` to stdout as fast as it can: the lead's CPU share of one
# core while its log pump copies (and past supervision.log_rate_kb_s, drops) that output, and
# how much reached the log.
#
#   benchmarks/log-flood.sh [SECONDS]      (default 20 s)
#
# PIMESH_BIN picks the binary (default .build/pimesh, from make release). 127.0.0.1 only,
# ephemeral ports, a scratch data dir removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
window=${1:-20}
bin=${PIMESH_BIN:-.build/pimesh}
[ -x "$bin" ] || { echo "log-flood: $bin missing; run 'make release' first" >&2; exit 1; }
data=$(mktemp -d /tmp/pimesh-flood.XXXXXX)
lead=""
cleanup() {
  [ -n "$lead" ] && kill -TERM "$lead" 2>/dev/null && wait "$lead" 2>/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT
mkdir -p "$data/agents.d"
echo '{"name": "flood", "command": "/bin/sh", "args": ["-c", "exec yes pimesh-flood-line"]}' > "$data/agents.d/flood.json"
"$bin" run --data-dir "$data" --api-port 0 --heartbeat-port 0 --log-level warning &
lead=$!
"$bin" status --data-dir "$data" --until-ready 0 --timeout 60 >/dev/null
sleep 3  # the agent runs and its pipe is full
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$lead/stat"; }
hz=$(getconf CLK_TCK)
c0=$(cpu_ticks); t0=$(date +%s.%N)
sleep "$window"
c1=$(cpu_ticks); t1=$(date +%s.%N)
logged=$(cat "$data/run/logs/flood.log" "$data/run/logs/flood.log.1" 2>/dev/null | wc -c || true)
dropped=$( (cat "$data/run/logs/flood.log" "$data/run/logs/flood.log.1" 2>/dev/null || true) | grep -c "bytes dropped" || true)
awk -v dc="$((c1 - c0))" -v hz="$hz" -v logged="$logged" -v notes="$dropped" \
    -v dt="$(echo "$t1 $t0" | awk '{ print $1 - $2 }')" 'BEGIN {
  printf "window              %.0f s, one agent running yes\n", dt
  printf "lead CPU of a core  %.2f %%\n", 100 * dc / hz / dt
  printf "log files now       %.1f KiB (log + .1, capped by supervision.log_max_kb)\n", logged / 1024
  printf "drop notes          %d\n", notes
}'
