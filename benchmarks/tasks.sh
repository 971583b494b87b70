#!/usr/bin/env bash
# Tasks through a real lead and a swarm: throughput, accept latency (the durable commit
# included) and submit-to-result p50/p99, with `pimesh bench tasks`.
#
#   benchmarks/tasks.sh [AGENTS] [TASKS] [CONCURRENCY]     (defaults: 100, 1000, 16)
#
# Uses the stripped release binary (make release), 127.0.0.1 with ephemeral ports and a
# scratch data dir that is removed afterwards. A second, one-client run shows the accept
# latency without queueing behind other submitters.
set -euo pipefail
cd "$(dirname "$0")/.."
agents=${1:-100}
tasks=${2:-1000}
concurrency=${3:-16}
bin=${PIMESH_BIN:-.build/pimesh}
[ -x "$bin" ] || { echo "tasks: $bin missing; run 'make release' first" >&2; exit 1; }
data=$(mktemp -d /tmp/pimesh-bench.XXXXXX)
lead=""; swarm=""
cleanup() {
  [ -n "$swarm" ] && kill -TERM "$swarm" 2>/dev/null && wait "$swarm" 2>/dev/null || true
  [ -n "$lead" ] && kill -TERM "$lead" 2>/dev/null && wait "$lead" 2>/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT

"$bin" run --data-dir "$data" --api-port 0 --heartbeat-port 0 --log-level warning &
lead=$!
"$bin" swarm --data-dir "$data" --agents "$agents" 2>/dev/null &
swarm=$!
"$bin" status --data-dir "$data" --until-ready "$agents" --timeout 60 >/dev/null
sleep 3  # a few heartbeats each, so that latencies are measured

echo "== $tasks tasks, $concurrency clients, $agents agents"
"$bin" bench tasks --data-dir "$data" --tasks "$tasks" --concurrency "$concurrency"
echo "== 200 tasks, 1 client (accept latency without queueing)"
"$bin" bench tasks --data-dir "$data" --tasks 200 --concurrency 1
echo "== the lead's KPIs after both runs"
"$bin" status --data-dir "$data" | grep -E '^(tasks|kpi)'
