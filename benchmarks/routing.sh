#!/usr/bin/env bash
# Routing by impedance (docs/impedance.md "Routing by impedance"): one fast but flaky agent
# (CLASS_B_SERVERLESS, 50 ms, 80 % of its tasks fail) beside three slower reliable ones
# (CLASS_E_LOCAL, 150 ms), all supervised `pimesh sim-agent` processes. A router that ranks by
# predicted arrival alone sends the flaky agent every task its breaker lets through; one that
# ranks by expected time to a successful answer learns to route around it.
#
#   benchmarks/routing.sh [TASKS] [ROUNDS]        (defaults: 200 tasks, 3 rounds)
#
# Each round is `pimesh bench tasks` with 4 clients; the lead learns reliability from the
# rounds before, so the later rounds show the steady state. Then who got the work.
# PIMESH_BIN picks the binary (default the stripped release, make release), so the same script
# measures an older build for comparison. 127.0.0.1, ephemeral ports, scratch data dir.
set -euo pipefail
cd "$(dirname "$0")/.."
tasks=${1:-200}
rounds=${2:-3}
bin=${PIMESH_BIN:-.build/pimesh}
[ -x "$bin" ] || { echo "routing: $bin missing; run 'make release' first" >&2; exit 1; }
bin=$(readlink -f "$bin")
data=$(mktemp -d /tmp/pimesh-routing.XXXXXX)
lead=""
cleanup() {
  [ -n "$lead" ] && kill -TERM "$lead" 2>/dev/null && wait "$lead" 2>/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT
mkdir -p "$data/agents.d"
chmod 700 "$data" "$data/agents.d"
manifest() {  # name class fail-rate
  printf '{"name": "%s", "command": "%s", "args": ["sim-agent", "--fail-rate", "%s"], "class": "%s", "capabilities": ["work"]}\n' \
    "$1" "$bin" "$3" "$2" > "$data/agents.d/$1.json"
  chmod 600 "$data/agents.d/$1.json"
}
manifest flaky CLASS_B_SERVERLESS 0.8
for n in 1 2 3; do manifest "steady-$n" CLASS_E_LOCAL 0; done

"$bin" run --data-dir "$data" --api-port 0 --heartbeat-port 0 --log-level warning &
lead=$!
"$bin" status --data-dir "$data" --until-ready 4 --timeout 60 >/dev/null
sleep 3
echo "== $("$bin" --version 2>/dev/null || echo pimesh): 1 flaky CLASS_B (80 % fail) + 3 reliable CLASS_E, $rounds × $tasks tasks, 4 clients"
for round in $(seq 1 "$rounds"); do
  echo "-- round $round"
  "$bin" bench tasks --data-dir "$data" --tasks "$tasks" --concurrency 4 | grep -E 'submit|succeeded'
done
echo "-- tasks per agent (all rounds)"
"$bin" tasks list --data-dir "$data" --json --limit 5000 2>/dev/null \
  | python3 -c 'import json,sys,collections
d=json.load(sys.stdin); c=collections.Counter((t.get("agentName") or t.get("agent_name") or "-", t["state"]) for t in d.get("tasks",[]))
for (a,s),n in sorted(c.items()): print(f"   {a:10} {s:10} {n}")' || true
