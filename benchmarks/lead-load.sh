#!/usr/bin/env bash
# Measures the lead under a swarm: PSS and private anonymous memory (smaps_rollup), CPU share
# of one core, and bytes written to storage, over a steady-state window.
#
#   benchmarks/lead-load.sh [AGENTS] [SECONDS]      (defaults: 100 agents, 60 s)
#
# Uses the stripped release binary (make release). Everything runs on 127.0.0.1 with
# ephemeral ports in a scratch data dir that is removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
agents=${1:-100}
window=${2:-60}
bin=${PIMESH_BIN:-.build/pimesh}
[ -x "$bin" ] || { echo "lead-load: $bin missing; run 'make release' first" >&2; exit 1; }
data=$(mktemp -d /tmp/pimesh-bench.XXXXXX)
lead=""; swarm=""
cleanup() {
  [ -n "$swarm" ] && kill -TERM "$swarm" 2>/dev/null && wait "$swarm" 2>/dev/null || true
  [ -n "$lead" ] && kill -TERM "$lead" 2>/dev/null && wait "$lead" 2>/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT

# The swarm and the status calls run from a copy of the binary: sharing the lead's own file
# would split its code pages' PSS between the processes and flatter the lead.
client="$data/pimesh-client"
cp "$bin" "$client"
"$bin" run ${LEAD_ARGS:-} --data-dir "$data" --api-port 0 --heartbeat-port 0 --log-level warning &
lead=$!
"$client" swarm --data-dir "$data" --agents "$agents" ${SWARM_ARGS:-} 2>/dev/null &
swarm=$!
"$client" status --data-dir "$data" --until-ready "$agents" --timeout 60 >/dev/null
sleep 5  # past registration: steady state only

field() { awk -v k="$1" '$1 == k":" { print $2 }' "/proc/$lead/smaps_rollup"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$lead/stat"; }
writes() { awk '$1 == "write_bytes:" { print $2 }' "/proc/$lead/io"; }
hz=$(getconf CLK_TCK)

ticks0=$(cpu_ticks); writes0=$(writes); t0=$(date +%s.%N)
max_pss=0; max_anon=0
for _ in $(seq 1 "$window"); do
  sleep 1
  pss=$(field Pss); anon=$(field Anonymous)
  [ "$pss" -gt "$max_pss" ] && max_pss=$pss
  [ "$anon" -gt "$max_anon" ] && max_anon=$anon
done
ticks1=$(cpu_ticks); writes1=$(writes); t1=$(date +%s.%N)
rss=$(field Rss); pss=$(field Pss); anon=$(field Anonymous)
breakdown=$(awk '/^[0-9a-f]+-[0-9a-f]+ / { name = ($6 == "" ? "[anonymous]" : $6) }
                 /^Pss:/ { pss[name] += $2 }
                 END { for (n in pss) if (pss[n] >= 100) printf "%8.1f MiB  %s\n", pss[n] / 1024, n }' "/proc/$lead/smaps" | sort -rn)

ready=$("$client" status --data-dir "$data" --json | tr ',' '\n' | grep -m1 '"ready"' | tr -dc '0-9')
accepted=$("$client" status --data-dir "$data" --json | tr ',' '\n' | grep -m1 '"accepted"' | tr -dc '0-9')

awk -v a="$agents" -v w="$window" -v rss="$rss" -v pss="$pss" -v anon="$anon" -v mp="$max_pss" -v ma="$max_anon" \
    -v dt="$(echo "$t1 $t0" | awk '{ print $1 - $2 }')" -v dticks="$((ticks1 - ticks0))" -v hz="$hz" \
    -v dw="$((writes1 - writes0))" -v ready="$ready" -v acc="$accepted" 'BEGIN {
  printf "agents             %d (%s READY), heartbeats every 250 ms, %d s window\n", a, ready, w
  printf "lead RSS           %.1f MiB\n", rss / 1024
  printf "lead PSS           %.1f MiB (max %.1f MiB)\n", pss / 1024, mp / 1024
  printf "private anonymous  %.1f MiB (max %.1f MiB)\n", anon / 1024, ma / 1024
  printf "lead CPU           %.2f %% of one core\n", 100 * dticks / hz / dt
  printf "storage writes     %.0f bytes in the window = %.2f MB/h\n", dw, dw / dt * 3600 / 1e6
  printf "heartbeats         %d accepted since start\n", acc
}'
echo "PSS by mapping (>= 0.1 MiB):"
echo "$breakdown"
