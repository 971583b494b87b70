#!/usr/bin/env bash
# Snapshots of a lead database of about MB megabytes (default 50): compression throughput beside
# `lz4 -1` on the same file, the lead's peak RSS while it takes a snapshot, and how long
# `pimesh snapshot verify` takes to pass a good snapshot and to refuse one with a flipped bit.
#
#   benchmarks/snapshot.sh [MB]
#
# Uses the stripped release binary (make release), lz4 and sqlite3. Runs on 127.0.0.1 with
# ephemeral ports in a scratch dir that is removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
mb=${1:-50}
bin=${PIMESH_BIN:-.build/pimesh}
[ -x "$bin" ] || { echo "snapshot: $bin missing; run 'make release' first" >&2; exit 1; }
data=$(mktemp -d /tmp/pimesh-snapbench.XXXXXX)
lead=""
cleanup() { [ -n "$lead" ] && kill -TERM "$lead" 2>/dev/null && wait "$lead" 2>/dev/null; rm -rf "$data"; }
trap cleanup EXIT
echo '{"snapshots": {"interval_s": 0}}' > "$data/pimesh.json"
start_lead() {
  "$bin" run --config "$data/pimesh.json" --data-dir "$data" --api-port 0 --heartbeat-port 0 --log-level warning &
  lead=$!
  for _ in $(seq 1 200); do
    "$bin" status --data-dir "$data" --json >/dev/null 2>&1 && return
    sleep 0.05
  done
  echo "lead did not start" >&2; exit 1
}

# A lead database (its schema), filled with finished tasks: JSON payloads with a random part.
start_lead; kill -TERM "$lead"; wait "$lead" || true; lead=""
benchmarks/fill-tasks.sh "$data/pimesh.db" "$mb"
db_bytes=$(stat -c %s "$data/pimesh.db")

# Compression: the same file through pimesh's frame writer (with both SHA-256s) and `lz4 -1`.
sqlite3 "$data/pimesh.db" "VACUUM INTO '$data/raw.db'"
raw_bytes=$(stat -c %s "$data/raw.db")
cat "$data/raw.db" > /dev/null   # both read from the page cache
pimesh_json=$("$bin" bench compress "$data/raw.db" --out "$data/p.lz4" --runs 5 --json)
best_lz4=""
for _ in 1 2 3 4 5; do
  t0=$(date +%s%N); lz4 -1 -q -f "$data/raw.db" "$data/l.lz4"; t1=$(date +%s%N)
  ms=$(( (t1 - t0) / 1000 ))
  if [ -z "$best_lz4" ] || [ "$ms" -lt "$best_lz4" ]; then best_lz4=$ms; fi
done
lz4_bytes=$(stat -c %s "$data/l.lz4")

# The lead takes a snapshot on demand; VmHWM is its peak RSS since it started.
start_lead
rss_before=$(awk '/^VmRSS/ { print $2 }' "/proc/$lead/status")
hwm_before=$(awk '/^VmHWM/ { print $2 }' "/proc/$lead/status")
t0=$(date +%s%N)
"$bin" snapshot create --data-dir "$data" --json > "$data/made.json"
t1=$(date +%s%N)
hwm_after=$(awk '/^VmHWM/ { print $2 }' "/proc/$lead/status")
manifest=$(ls "$data"/spool/snapshot-*.json | head -1)
snap_file="${manifest%.json}.db.lz4"
snap_bytes=$(stat -c %s "$snap_file")

verify_ok=$("$bin" snapshot verify "$manifest" --data-dir "$data" --json | tr ',' '\n' | awk -F: '/"milliseconds"/ { print $2 }')
# Flip one bit in the middle of the compressed file and time the refusal.
offset=$((snap_bytes / 2))
byte=$(dd if="$snap_file" bs=1 skip=$offset count=1 2>/dev/null | od -An -tu1 | tr -d ' ')
printf "$(printf '\\%03o' $((byte ^ 16)))" | dd of="$snap_file" bs=1 seek=$offset conv=notrunc 2>/dev/null
t2=$(date +%s%N)
if "$bin" snapshot verify "$manifest" --data-dir "$data" > "$data/verify.out" 2>&1; then echo "a flipped bit was not detected" >&2; exit 1; fi
t3=$(date +%s%N)

awk -v db="$db_bytes" -v raw="$raw_bytes" -v pj="$pimesh_json" -v lz4ms="$best_lz4" -v lz4b="$lz4_bytes" \
    -v rss="$rss_before" -v hwm0="$hwm_before" -v hwm1="$hwm_after" -v snapms="$(( (t1 - t0) / 1000000 ))" \
    -v snapb="$snap_bytes" -v vok="$verify_ok" -v vbad="$(( (t3 - t2) / 1000000 ))" -v why="$(tail -1 "$data/verify.out")" 'BEGIN {
  match(pj, /"best_ms": [0-9.]+/); pms = substr(pj, RSTART + 11, RLENGTH - 11) + 0
  match(pj, /"compressed_bytes": [0-9]+/); pb = substr(pj, RSTART + 20, RLENGTH - 20) + 0
  pimesh = raw / 1048576 / (pms / 1000); lz4 = raw / 1048576 / (lz4ms / 1000000)
  printf "database            %.1f MiB (VACUUM copy %.1f MiB)\n", db / 1048576, raw / 1048576
  printf "compress pimesh     %.1f ms best of 5: %.0f MiB/s -> %.1f MiB (frame + SHA-256 of both forms)\n", pms, pimesh, pb / 1048576
  printf "compress lz4 -1     %.1f ms best of 5: %.0f MiB/s -> %.1f MiB\n", lz4ms / 1000, lz4, lz4b / 1048576
  printf "pimesh / lz4 -1     %.0f %% (budget >= 90 %%)\n", 100 * pimesh / lz4
  printf "lead snapshot       %d ms end to end (VACUUM INTO + compress + fsync + manifest), %.1f MiB file\n", snapms, snapb / 1048576
  printf "lead RSS            %.1f MiB before, peak %.1f MiB before the snapshot, peak %.1f MiB after it\n", rss / 1024, hwm0 / 1024, hwm1 / 1024
  printf "verify good         %.1f ms\n", vok
  printf "verify flipped bit  %d ms (process start included), refused: %s\n", vbad, why
}'
