#!/usr/bin/env bash
# Starts a lead and a swarm of 100 simulated agents in a scratch data dir, shows the live
# status until all are READY with scores, routes a few tasks and one ask through them, prints
# the table and the status with its KPIs, stops both and exits 0.
set -euo pipefail
bin=${1:-.build/pimesh}
agents=${DEMO_AGENTS:-100}
data=$(mktemp -d /tmp/pimesh-demo.XXXXXX)
lead=""
swarm=""
cleanup() {
  [ -n "$swarm" ] && kill -TERM "$swarm" 2>/dev/null && wait "$swarm" 2>/dev/null || true
  [ -n "$lead" ] && kill -TERM "$lead" 2>/dev/null && wait "$lead" 2>/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT

echo "demo: lead and $agents agents in $data"
"$bin" run --data-dir "$data" --api-port 0 --heartbeat-port 0 --log-level warning &
lead=$!
"$bin" swarm --data-dir "$data" --agents "$agents" 2>"$data/swarm.log" &
swarm=$!

"$bin" status --data-dir "$data" --until-ready "$agents" --timeout 30
echo
"$bin" agents --data-dir "$data" --sort score
echo
echo "demo: one task, sent to the agent with the lowest predicted arrival"
"$bin" delegate infer --weight 1 --payload '{"frame": 1}' --data-dir "$data"
echo
echo "demo: 200 more tasks"
"$bin" bench tasks --tasks 200 --concurrency 8 --data-dir "$data"
echo
echo "demo: ask every agent with the capability 'sense' (arrival-time scatter-gather, trinary quorum)"
"$bin" ask --capability sense --payload "door closed?" --data-dir "$data"
echo
echo "demo: the LEDs (simulated here; sysfs or GPIO on a Pi) for 3 s"
"$bin" leds watch --duration 3 --data-dir "$data"
echo
"$bin" status --data-dir "$data"

kill -TERM "$swarm"; wait "$swarm"; swarm=""
kill -TERM "$lead"; wait "$lead"; lead=""
echo
echo "demo: $agents agents READY; lead and swarm stopped cleanly"
