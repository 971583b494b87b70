#!/usr/bin/env bash
# Fills a lead database (one a lead made, so it has the schema) with about MB megabytes of
# finished tasks: JSON payloads with a random part, so that they compress as real ones do.
# benchmarks/snapshot.sh and benchmarks/rollback-restore.sh use it.
#
#   benchmarks/fill-tasks.sh DATABASE MB
set -euo pipefail
database=$1
rows=$(($2 * 3350))
sqlite3 "$database" "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $rows)
  INSERT INTO tasks (id, idempotency_key, capability, payload, weight, state, attempts, submitted_at_ms, result, priority)
  SELECT 'task-' || i, 'key-' || i, 'infer',
         json_object('frame', i, 'camera', 'cam' || (i % 8), 'pixels', hex(randomblob(64))),
         1, 'succeeded', 1, 1700000000000 + i, 'done ' || i, 2 FROM n;"
