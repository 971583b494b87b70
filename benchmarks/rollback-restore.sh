#!/usr/bin/env bash
# How much longer a lead's start takes when it restores the snapshot taken before a release
# that migrated the database was rolled back (docs/pi.md, "Update and rollback"): a database of
# about MB megabytes (default 50), snapshotted by the running lead, then "migrated" (a newer
# PRAGMA user_version, as the rolled-back release would leave it) and marked as a rollback
# leaves it. Prints the time to READY of a plain start and of the restoring start, and the
# lead's peak RSS (VmHWM) in each.
#
#   benchmarks/rollback-restore.sh [MB]
#
# Uses the stripped release binary (make release) and sqlite3. Runs on 127.0.0.1 with
# ephemeral ports in a scratch dir that is removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
mb=${1:-50}
bin=${PIMESH_BIN:-.build/pimesh}
[ -x "$bin" ] || { echo "rollback-restore: $bin missing; run 'make release' first" >&2; exit 1; }
data=$(mktemp -d /tmp/pimesh-rollback.XXXXXX)
chmod 700 "$data"
lead=""
cleanup() { [ -n "$lead" ] && kill -TERM "$lead" 2>/dev/null && wait "$lead" 2>/dev/null; rm -rf "$data"; }
trap cleanup EXIT
echo '{"snapshots": {"interval_s": 0}}' > "$data/pimesh.json"
# Starts a lead; ready_ms is the milliseconds until it answered /readyz.
start_lead() {
  local t0 t1
  t0=$(date +%s%N)
  "$bin" run --config "$data/pimesh.json" --data-dir "$data" --api-port 0 --heartbeat-port 0 --log-level warning &
  lead=$!
  for _ in $(seq 1 6000); do
    if port=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["api"]["port"])' "$data/lead.json" 2>/dev/null) \
      && curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then
      t1=$(date +%s%N)
      ready_ms=$(( (t1 - t0) / 1000000 ))
      return
    fi
    sleep 0.01
  done
  echo "lead did not become ready" >&2; exit 1
}
stop_lead() { kill -TERM "$lead"; wait "$lead" || true; lead=""; rm -f "$data/lead.json"; }

# A lead database filled with finished tasks.
start_lead; stop_lead
benchmarks/fill-tasks.sh "$data/pimesh.db" "$mb"
db_bytes=$(stat -c %s "$data/pimesh.db")

start_lead; plain_ms=$ready_ms
plain_hwm=$(awk '/^VmHWM/ { print $2 }' "/proc/$lead/status")
file=$("$bin" snapshot create --data-dir "$data" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["file"])')
stop_lead
schema=$(sqlite3 "$data/pimesh.db" "PRAGMA user_version")
sqlite3 "$data/pimesh.db" "PRAGMA user_version = $((schema + 1))"
printf 'marked_at_ms=%s release=%s snapshot=%s\n' "$(date +%s%3N)" "$(printf 'ab%.0s' $(seq 32))" "$file" > "$data/restore-after-rollback"
start_lead; restore_ms=$ready_ms
restore_hwm=$(awk '/^VmHWM/ { print $2 }' "/proc/$lead/status")
restored_schema=$(sqlite3 "$data/pimesh.db" "PRAGMA user_version")
[ "$restored_schema" = "$schema" ] || { echo "the database was not restored (schema $restored_schema)" >&2; exit 1; }
[ ! -e "$data/restore-after-rollback" ] || { echo "the mark is still there" >&2; exit 1; }
printf 'database %.1f MB; start to READY: plain %d ms, restoring %d ms; peak RSS (VmHWM): plain %.1f MiB, restoring %.1f MiB\n' \
  "$(echo "$db_bytes / 1000000" | bc -l)" "$plain_ms" "$restore_ms" "$(echo "$plain_hwm / 1024" | bc -l)" "$(echo "$restore_hwm / 1024" | bc -l)"
