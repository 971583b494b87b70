#!/usr/bin/env bash
# What one snapshot upload leaves in the lead: its PSS, private memory and mapped libraries 40 s
# after the upload (two code trims later), beside a lead of the same data that uploads nothing;
# and, from the lead's debug log, how long each transfer helper ran and its peak RSS.
#
#   benchmarks/upload-memory.sh [RUNS]        (default 2)
#
# Uses the stripped release binary (make release) and pimesh-coordinator (make coordinator, or
# the debug build). The lead runs from a copy of the binary that nothing else maps, so that its
# PSS is its own. Everything runs on 127.0.0.1 with ephemeral ports in scratch dirs that are
# removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-2}
bin=${PIMESH_BIN:-.build/pimesh}
coordinator=${PIMESH_COORDINATOR_BIN:-.build/pimesh-coordinator}
[ -x "$coordinator" ] || coordinator=.build/debug/pimesh-coordinator
[ -x "$bin" ] || { echo "upload-memory: $bin missing; run 'make release' first" >&2; exit 1; }
[ -x "$coordinator" ] || { echo "upload-memory: no pimesh-coordinator; run 'make coordinator' first" >&2; exit 1; }
root=$(mktemp -d /var/tmp/pimesh-upload-memory.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; done
  rm -rf "$root"
}
trap cleanup EXIT
cp "$bin" "$root/pimesh-lead"
sync

wait_for() {  # CONDITION (a shell command), up to 10 s
  for _ in $(seq 200); do eval "$1" && return 0; sleep 0.05; done
  echo "upload-memory: timed out waiting for: $1" >&2; exit 1
}

measure() {  # LABEL UPLOAD(yes|no)
  local run=$root/$1 data=$root/$1/data coord=$root/$1/coordinator
  mkdir -p "$data" "$coord"; chmod 700 "$data"
  # A node with a key and one snapshot in its spool.
  "$bin" run --data-dir "$data" --api-port 0 --heartbeat-port 0 --log-level warning >/dev/null 2>&1 & local first=$!
  wait_for "'$bin' status --data-dir '$data' --json >/dev/null 2>&1"
  kill -TERM "$first"; wait "$first" || true
  "$bin" snapshot create --data-dir "$data" >/dev/null
  if [ "$2" = yes ]; then
    "$coordinator" serve --dir "$coord" --port 0 --log-level warning >/dev/null 2>&1 & pids+=($!)
    wait_for "[ -s '$coord/coordinator.json' ]"
    local port key
    port=$(python3 -c "import json; print(json.load(open('$coord/coordinator.json'))['port'])")
    key=$("$bin" snapshot list --data-dir "$data" --json | python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["public_key"])')
    "$coordinator" enroll --dir "$coord" "$key" >/dev/null
    echo "{\"snapshots\": {\"interval_s\": 0}, \"upload\": {\"target\": \"coordinator\", \"url\": \"http://127.0.0.1:$port\"}}" > "$run/pimesh.json"
  else
    echo '{"snapshots": {"interval_s": 0}}' > "$run/pimesh.json"
  fi
  "$root/pimesh-lead" run --data-dir "$data" --config "$run/pimesh.json" --api-port 0 --heartbeat-port 0 --log-level debug \
    > "$run/lead.log" 2>&1 & local lead=$!
  pids+=("$lead")
  if [ "$2" = yes ]; then wait_for "ls -a '$data/spool' | grep -q uploaded"; fi
  sleep 40
  awk -v label="$1" '/^Pss:/ { pss = $2 } /^Private_Dirty:/ { private = $2 } END { printf "%-22s PSS %6d kB  private %5d kB", label, pss, private }' "/proc/$lead/smaps_rollup"
  awk '$6 ~ /\.so/ { print $6 }' "/proc/$lead/maps" | sort -u | awk '{ n++ } /libcurl/ { curl = 1 } END { printf "  libraries %2d  libcurl %s", n, curl ? "mapped" : "not mapped" }'
  grep -o 'ms=[0-9]* peak_rss_kib=[0-9]*.*transfer helper done' "$run/lead.log" | awk '{ printf "  helper %s %s", $1, $2 }' || true
  echo
  # One lead at a time: two would share the copy's pages and halve each one's PSS.
  kill -TERM "$lead"; wait "$lead" 2>/dev/null || true
  if [ "$2" = yes ]; then kill -TERM "${pids[-2]}"; wait "${pids[-2]}" 2>/dev/null || true; fi
}

for run in $(seq "$runs"); do
  measure "run $run, no upload" no
  measure "run $run, one upload" yes
done
