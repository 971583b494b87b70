#!/usr/bin/env bash
# Wake-ups of an idle lead: context switches per second summed over the lead's threads
# (/proc/PID/task/*/status), datagrams received per second, and CPU share of one core. With
# AGENTS > 0 the agents only heartbeat (no work), so every wake-up above the heartbeat rate is
# the lead's own timers.
#
#   benchmarks/idle-wakeups.sh [AGENTS] [SECONDS]      (defaults: 100 agents, 30 s)
#
# PIMESH_BIN picks the binary (default .build/pimesh, from make release). 127.0.0.1 only,
# ephemeral ports, a scratch data dir removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
agents=${1:-100}
window=${2:-30}
bin=${PIMESH_BIN:-.build/pimesh}
[ -x "$bin" ] || { echo "idle-wakeups: $bin missing; run 'make release' first" >&2; exit 1; }
data=$(mktemp -d /tmp/pimesh-wake.XXXXXX)
lead=""; swarm=""
cleanup() {
  [ -n "$swarm" ] && kill -TERM "$swarm" 2>/dev/null && wait "$swarm" 2>/dev/null || true
  [ -n "$lead" ] && kill -TERM "$lead" 2>/dev/null && wait "$lead" 2>/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT
client="$data/pimesh-client"
cp "$bin" "$client"
"$bin" run --data-dir "$data" --api-port 0 --heartbeat-port 0 --log-level warning &
lead=$!
if [ "$agents" -gt 0 ]; then
  "$client" swarm --data-dir "$data" --agents "$agents" --no-work 2>/dev/null &
  swarm=$!
  "$client" status --data-dir "$data" --until-ready "$agents" --timeout 60 >/dev/null
else
  "$client" status --data-dir "$data" --until-ready 0 --timeout 60 >/dev/null
fi
sleep 5  # past start-up and registration

switches() { cat /proc/"$lead"/task/*/status 2>/dev/null | awk '/ctxt_switches/ { s += $2 } END { print s }'; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$lead/stat"; }
received() { "$client" status --data-dir "$data" --json | tr ',' '\n' | grep -m1 '"accepted"' | tr -dc '0-9'; }
hz=$(getconf CLK_TCK)
s0=$(switches); c0=$(cpu_ticks); r0=$(received); t0=$(date +%s.%N)
sleep "$window"
s1=$(switches); c1=$(cpu_ticks); r1=$(received); t1=$(date +%s.%N)
threads=$(ls /proc/"$lead"/task | wc -l)
awk -v a="$agents" -v ds="$((s1 - s0))" -v dc="$((c1 - c0))" -v dr="$((${r1:-0} - ${r0:-0}))" -v hz="$hz" -v th="$threads" \
    -v dt="$(echo "$t1 $t0" | awk '{ print $1 - $2 }')" 'BEGIN {
  printf "agents              %d (heartbeats only), %.0f s window, %d threads\n", a, dt, th
  printf "context switches/s  %.1f\n", ds / dt
  printf "heartbeats/s        %.1f (accepted)\n", dr / dt
  printf "switches/heartbeat  %s\n", (dr > 0 ? sprintf("%.2f", ds / dr) : "-")
  printf "CPU of one core     %.2f %%\n", 100 * dc / hz / dt
}'
