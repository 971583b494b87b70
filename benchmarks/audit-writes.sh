#!/usr/bin/env bash
# SD-card writes of the lead with the audit log on: N supervised `pimesh sim-agent`s (they
# heartbeat, as real agents do), idle or under a kill
# drill (one agent killed with SIGKILL every K seconds, which the lead detects, records and
# restarts), bytes written (/proc/<lead>/io write_bytes) and audit rows added over the window.
#
#   benchmarks/audit-writes.sh [AGENTS] [SECONDS] [KILL_EVERY_S]   (defaults: 100, 330, 0 = idle)
#
# Uses the stripped release binary (make release). Runs on 127.0.0.1 with ephemeral ports in a
# scratch data dir that is removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
agents=${1:-100}
window=${2:-330}
kill_every=${3:-0}
bin=${PIMESH_BIN:-.build/pimesh}
[ -x "$bin" ] || { echo "audit-writes: $bin missing; run 'make release' first" >&2; exit 1; }
data=$(mktemp -d /tmp/pimesh-bench.XXXXXX)
chmod 700 "$data"
lead=""
cleanup() {
  [ -n "$lead" ] && kill -TERM "$lead" 2>/dev/null && wait "$lead" 2>/dev/null || true
  pkill -f "$data/pimesh-agent" 2>/dev/null || true
  rm -rf "$data" "${run:-}"
}
trap cleanup EXIT

mkdir -m 700 "$data/agents.d"
# The agents run a copy of the binary: their own path to find them by, and the lead's code
# pages not shared with 100 processes.
cp "$bin" "$data/pimesh-agent"
for i in $(seq 1 "$agents"); do
  printf '{"name": "a%d", "command": "%s", "args": ["sim-agent"], "restart": {"initial_backoff_ms": 100, "stable_after_s": 1}}\n' \
    "$i" "$data/pimesh-agent" > "$data/agents.d/a$i.json"
done
# As on a Pi, where the unit's RuntimeDirectory is /run/pimesh: the run dir (agents' logs, pid
# records) on tmpfs, so that only what reaches the SD card is counted.
run=$(mktemp -d /dev/shm/pimesh-bench-run.XXXXXX)
printf '{"run_dir": "%s"}\n' "$run" > "$data/pimesh.json"
"$bin" run --config "$data/pimesh.json" --data-dir "$data" --api-port 0 --heartbeat-port 0 --log-level warning &
lead=$!
"$bin" status --data-dir "$data" --until-ready "$agents" --timeout 120 >/dev/null
sleep 10  # past the starts: steady state only

writes() { awk '$1 == "write_bytes:" { print $2 }' "/proc/$lead/io"; }
rows() { "$bin" audit tail --data-dir "$data" --lines 1 --json | tr ',' '\n' | awk -F: '/"seq"/ { print $2 }'; }
rows0=$(rows); writes0=$(writes); t0=$(date +%s.%N)
kills=0
for s in $(seq 1 "$window"); do
  sleep 1
  if [ "$kill_every" -gt 0 ] && [ $((s % kill_every)) -eq 0 ]; then
    victim=$(pgrep -f "$data/pimesh-agent sim-agent" | shuf -n 1)
    [ -n "$victim" ] && kill -KILL "$victim" && kills=$((kills + 1))
  fi
done
writes1=$(writes); t1=$(date +%s.%N); rows1=$(rows)

awk -v a="$agents" -v w="$window" -v k="$kill_every" -v kills="$kills" -v dr="$((rows1 - rows0))" \
    -v dt="$(echo "$t1 $t0" | awk '{ print $1 - $2 }')" -v dw="$((writes1 - writes0))" 'BEGIN {
  printf "agents             %d supervised, %d s window, %s\n", a, w, (k > 0 ? sprintf("one killed every %d s (%d kills)", k, kills) : "idle")
  printf "audit rows         %d added = %.0f an hour\n", dr, dr / dt * 3600
  printf "storage writes     %.0f bytes in the window = %.2f MB/h\n", dw, dw / dt * 3600 / 1e6
}'
