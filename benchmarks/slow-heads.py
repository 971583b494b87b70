#!/usr/bin/env python3
"""What connections that never finish their request heads cost a lead.

    benchmarks/slow-heads.py [CONNECTIONS] [HEAD_BYTES]      (defaults: 2,000 and 14,000)

Starts the stripped release binary (make release, or PIMESH_BIN) on 127.0.0.1 with ephemeral
ports in a scratch data dir, opens CONNECTIONS connections to its TCP API, sends each a request
line and header lines up to HEAD_BYTES but never the blank line that ends a head, and prints the
lead's RSS, PSS and private dirty memory (smaps_rollup) before and 3 s after, as JSON. The
connections are closed before `api.idle_timeout_s` (15 s) would close them. Needs a descriptor
limit above CONNECTIONS (the lead raises its own).
"""
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time

connections = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
head_bytes = int(sys.argv[2]) if len(sys.argv) > 2 else 14000
binary = os.environ.get("PIMESH_BIN", ".build/pimesh")
if not os.access(binary, os.X_OK):
    sys.exit(f"slow-heads: {binary} missing; run 'make release' first")
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
if hard < connections + 64:
    sys.exit(f"slow-heads: the descriptor limit ({hard}) is below {connections} connections")

data = tempfile.mkdtemp(prefix="pimesh-heads.")
lead = subprocess.Popen(
    [binary, "run", "--data-dir", data, "--api-port", "0", "--heartbeat-port", "0", "--log-level", "warning"])


def memory():
    found = {}
    with open(f"/proc/{lead.pid}/smaps_rollup") as rollup:
        for line in rollup:
            key, _, value = line.partition(":")
            if key in ("Rss", "Pss", "Private_Dirty"):
                found[key.lower() + "_kib"] = int(value.split()[0])
    return found


sockets = []
try:
    deadline = time.monotonic() + 30
    while not os.path.exists(data + "/lead.json"):
        if time.monotonic() > deadline or lead.poll() is not None:
            sys.exit("slow-heads: the lead did not become ready")
        time.sleep(0.1)
    port = json.load(open(data + "/lead.json"))["api"]["port"]
    time.sleep(2)
    before = memory()
    start = b"GET /healthz HTTP/1.1\r\nHost: pimesh\r\n"
    line = b"X-Pad: " + b"a" * 990 + b"\r\n"
    for _ in range(connections):
        client = socket.create_connection(("127.0.0.1", port))
        client.sendall(start)
        sockets.append(client)
    sent = len(start)
    while sent + len(line) < head_bytes:
        for client in sockets:
            client.sendall(line)
        sent += len(line)
    time.sleep(3)
    after = memory()
    print(json.dumps({
        "connections": connections, "head_bytes": sent, "before": before, "after": after,
        "rss_added_mib": round((after["rss_kib"] - before["rss_kib"]) / 1024, 1),
        "kib_per_connection": round((after["rss_kib"] - before["rss_kib"]) / connections, 1),
    }))
finally:
    for client in sockets:
        client.close()
    lead.terminate()
    lead.wait()
    shutil.rmtree(data, ignore_errors=True)
