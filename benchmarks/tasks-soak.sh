#!/usr/bin/env bash
# One lead through many tasks: tasks/s of successive rounds, and whether the lead is still up.
# A lead that slows with every task, or dies after enough of them, shows here and not in
# benchmarks/tasks.sh's fresh lead (docs/benchmarks.md, "Tasks").
#
#   benchmarks/tasks-soak.sh [SECONDS] [TASKS_PER_ROUND] [AGENTS]   (defaults: 190, 5000, 100)
#
# Uses the stripped release binary (make release), 127.0.0.1 with ephemeral ports and a
# scratch data dir that is removed afterwards. Exits 1, with the end of the lead's log, if the
# lead exited or a round got no answer.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-190}
per_round=${2:-5000}
agents=${3:-100}
bin=${PIMESH_BIN:-.build/pimesh}
[ -x "$bin" ] || { echo "tasks-soak: $bin missing; run 'make release' first" >&2; exit 1; }
data=$(mktemp -d /tmp/pimesh-soak.XXXXXX)
lead=""; swarm=""
cleanup() {
  status=$?
  [ "$status" -eq 0 ] || { echo "tasks-soak: the end of the lead's log:" >&2; tail -n 30 "$data/lead.log" >&2 || true; }
  [ -n "$swarm" ] && kill -TERM "$swarm" 2>/dev/null && wait "$swarm" 2>/dev/null || true
  [ -n "$lead" ] && kill -TERM "$lead" 2>/dev/null && wait "$lead" 2>/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT
"$bin" run --data-dir "$data" --api-port 0 --heartbeat-port 0 --log-level warning > "$data/lead.log" 2>&1 &
lead=$!
"$bin" swarm --data-dir "$data" --agents "$agents" > /dev/null 2>&1 &
swarm=$!
"$bin" status --data-dir "$data" --until-ready "$agents" --timeout 60 > /dev/null
total=0
start=$(date +%s)
while kill -0 "$lead" 2>/dev/null && [ $(( $(date +%s) - start )) -lt "$seconds" ]; do
  rate=$("$bin" bench tasks --data-dir "$data" --tasks "$per_round" --concurrency 32 2>&1 | grep -o '[0-9.]* tasks/s' | head -1 || true)
  [ -n "$rate" ] || { echo "tasks-soak: a round of $per_round tasks got no answer after $total" >&2; exit 1; }
  total=$((total + per_round))
  echo "after $total tasks: $rate"
done
if kill -0 "$lead" 2>/dev/null; then
  echo "the lead is up after $total tasks in $(( $(date +%s) - start )) s"
else
  status=0; wait "$lead" || status=$?
  lead=""
  echo "the lead exited ($status) after about $total tasks" >&2
  exit 1
fi
