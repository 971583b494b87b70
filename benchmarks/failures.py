#!/usr/bin/env python3
"""Failure detection and recovery under load (issue 6; budgets in DESIGN.md §10).

    benchmarks/failures.py [--agents 100] [--kills 50] [--stop-trials 10] [--attached-kills 20] [--stress-seconds 300]

Starts the release binary as a lead on 127.0.0.1 (ephemeral ports, scratch data dir) with
AGENTS supervised `pimesh agent` processes from manifests, heartbeating every 250 ms, then:
  1. kill -9 one supervised agent KILLS times: detection (exit seen) and time until it heartbeats again;
  2. kill -9 three at once, 5 times: time until all three heartbeat again;
  3. SIGSTOP one, STOP_TRIALS times: time until the lead reports it HANG;
  4. kill -9 an attached agent (a one-agent `pimesh swarm`, no process the lead can see)
     ATTACHED_KILLS times: phi-accrual detection time;
  5. STRESS_SECONDS beside `stress-ng --cpu 2` with nothing killed: false suspicions.
Times come from the lead's own event log (`/v1/events`, stamped when the event happened).
Needs stress-ng for step 5 (apt-get install stress-ng); --stress-seconds 0 skips it.
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "clients", "python"))
import pimesh_agent  # noqa: E402


def now_ms():
    return time.time() * 1000


class Bench:
    def __init__(self, binary, agents):
        self.data = tempfile.mkdtemp(prefix="pimesh-failures-")
        # Agents run from a copy, so that they do not share (and split the PSS of) the lead's file.
        self.agent_binary = os.path.join(self.data, "pimesh-agent")
        shutil.copy(binary, self.agent_binary)
        os.makedirs(os.path.join(self.data, "agents.d"))
        self.names = [f"sup-{index:03d}" for index in range(agents)]
        for name in self.names:
            with open(os.path.join(self.data, "agents.d", name + ".json"), "w") as f:
                json.dump({"name": name, "command": self.agent_binary, "args": ["sim-agent"], "capabilities": ["work"],
                           "restart": {"stable_after_s": 1}}, f)
        self.log = open(os.path.join(self.data, "lead.log"), "wb")
        self.lead = subprocess.Popen([binary, "run", "--data-dir", self.data, "--api-port", "0", "--heartbeat-port", "0",
                                      "--log-level", "warning"], stdout=self.log, stderr=self.log)
        self.since = 0
        self.seen = []
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if self.conditions().get("alive", 0) == agents:
                    return
            except (pimesh_agent.PimeshError, OSError, ValueError, KeyError):
                pass
            time.sleep(0.1)
        raise SystemExit(f"not all {agents} agents alive after 60 s; see {self.data}/lead.log")

    def get(self, path):
        status, answer = pimesh_agent.api_request(self.data, "GET", path)
        if status != 200:
            raise pimesh_agent.PimeshError(f"{path}: {status} {answer}")
        return answer

    def conditions(self):
        return self.get("/v1/status")["health"]["conditions"]

    def pid(self, name):
        return self.get(f"/v1/agents/{name}")["supervision"]["pid"]

    def poll_events(self):
        answer = self.get(f"/v1/events?since={self.since}")
        self.seen.extend(answer["events"])
        self.since = answer["next"]

    def wait_event(self, name, kinds, after_ms, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            self.poll_events()
            for event in self.seen:
                if event.get("agent") == name and event["kind"] in kinds and event["at_ms"] >= after_ms - 5:
                    return event
            time.sleep(0.01)
        recent = [e for e in self.seen if e.get("agent") == name][-5:]
        raise SystemExit(f"no {kinds} event for {name} within {timeout} s after {after_ms:.0f}; its last events: {recent}")

    def stop(self):
        self.lead.send_signal(signal.SIGTERM)
        self.lead.wait(timeout=30)
        self.log.close()
        shutil.rmtree(self.data, ignore_errors=True)


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(p / 100 * len(ordered) + 0.5)) - 1))]


def summary(values):
    return {"n": len(values), "p50_ms": round(statistics.median(values), 1), "p99_ms": round(percentile(values, 99), 1),
            "max_ms": round(max(values), 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--triples", type=int, default=5)
    parser.add_argument("--stop-trials", type=int, default=10)
    parser.add_argument("--attached-kills", type=int, default=20)
    parser.add_argument("--stress-seconds", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    binary = os.environ.get("PIMESH_BIN") or os.path.join(ROOT, ".build", "pimesh")
    if not os.access(binary, os.X_OK):
        raise SystemExit(f"{binary} missing; run 'make release' first")
    if args.stress_seconds and not shutil.which("stress-ng"):
        raise SystemExit("stress-ng is missing: apt-get install stress-ng (or --stress-seconds 0)")

    bench = Bench(binary, args.agents)
    results = {"agents": args.agents, "heartbeat_interval_ms": 250}
    try:
        detection, back = [], []
        for trial in range(args.kills):
            name = bench.names[(trial * 7) % len(bench.names)]
            pid = bench.pid(name)
            t0 = now_ms()
            os.kill(pid, signal.SIGKILL)
            exited = bench.wait_event(name, {"exited"}, t0)
            alive = bench.wait_event(name, {"alive"}, t0)
            detection.append(exited["at_ms"] - t0)
            back.append(alive["at_ms"] - t0)
            time.sleep(1.2)  # past the manifest's stable_after_s, so each kill meets a fresh backoff
        results["kill_one"] = {"detection": summary(detection), "heartbeating_again": summary(back)}

        triples = []
        for trial in range(args.triples):
            names = [bench.names[(trial * 3 + k * 11) % len(bench.names)] for k in range(3)]
            pids = [bench.pid(name) for name in names]
            t0 = now_ms()
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            triples.append(max(bench.wait_event(name, {"alive"}, t0 + 1)["at_ms"] - t0 for name in names))
            time.sleep(1.2)
        results["kill_three"] = {"all_heartbeating_again": summary(triples)}

        hangs = []
        for trial in range(args.stop_trials):
            name = bench.names[(trial * 13 + 5) % len(bench.names)]
            pid = bench.pid(name)
            t0 = now_ms()
            os.kill(pid, signal.SIGSTOP)
            hung = bench.wait_event(name, {"hung"}, t0)
            hangs.append(hung["at_ms"] - t0)
            os.kill(pid, signal.SIGCONT)
            bench.wait_event(name, {"alive"}, hung["at_ms"])
            time.sleep(1.2)
        results["sigstop_one"] = {"hang_detection": summary(hangs)}

        attached = []
        state_file = os.path.join(bench.data, "swarm-att.json")
        for trial in range(args.attached_kills):
            swarm = subprocess.Popen([binary, "swarm", "--data-dir", bench.data, "--agents", "1", "--name-prefix", "att",
                                      "--state-file", state_file, "--no-work"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            bench.wait_event("att-001", {"alive"}, now_ms() - 100)
            time.sleep(1.5)  # a few intervals for phi to learn
            t0 = now_ms()
            swarm.send_signal(signal.SIGKILL)
            swarm.wait()
            attached.append(bench.wait_event("att-001", {"suspected"}, t0)["at_ms"] - t0)
        results["kill_attached"] = {"phi_detection": summary(attached)}

        if args.stress_seconds:
            bench.poll_events()
            start = bench.since
            stress = subprocess.Popen(["stress-ng", "--cpu", "2", "--timeout", f"{args.stress_seconds}s", "--quiet"])
            stress.wait()
            bench.poll_events()
            suspicious = [e for e in bench.seen if e["sequence"] > start
                          and e["kind"] in ("suspected", "hung", "looping", "exited")]
            results["stress_ng_cpu_2"] = {"seconds": args.stress_seconds, "false_suspicions": len(suspicious),
                                          "events": suspicious[:10]}
        lead_pss = 0
        with open(f"/proc/{bench.lead.pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    lead_pss = int(line.split()[1])
        results["lead_pss_mib"] = round(lead_pss / 1024, 1)
    finally:
        bench.stop()

    if args.json:
        print(json.dumps(results, indent=2))
        return
    k1, k3, st, at = results["kill_one"], results["kill_three"], results["sigstop_one"], results["kill_attached"]
    print(f"agents                {args.agents} supervised, heartbeats every 250 ms; lead PSS {results['lead_pss_mib']} MiB")
    print(f"kill -9 one  (n={k1['detection']['n']})   detection p50 {k1['detection']['p50_ms']} ms  p99 {k1['detection']['p99_ms']} ms   "
          f"heartbeating again p50 {k1['heartbeating_again']['p50_ms']} ms  p99 {k1['heartbeating_again']['p99_ms']} ms  (budgets 1000 / 2000)")
    print(f"kill -9 three (n={k3['all_heartbeating_again']['n']})  all heartbeating again p50 {k3['all_heartbeating_again']['p50_ms']} ms  "
          f"max {k3['all_heartbeating_again']['max_ms']} ms  (budget 5000)")
    print(f"SIGSTOP one  (n={st['hang_detection']['n']})   HANG detected p50 {st['hang_detection']['p50_ms']} ms  "
          f"p99 {st['hang_detection']['p99_ms']} ms  (budget 1000)")
    print(f"kill -9 attached (n={at['phi_detection']['n']})  phi suspicion p50 {at['phi_detection']['p50_ms']} ms  "
          f"p99 {at['phi_detection']['p99_ms']} ms  (budget 1000)")
    if "stress_ng_cpu_2" in results:
        s = results["stress_ng_cpu_2"]
        print(f"stress-ng --cpu 2 for {s['seconds']} s: {s['false_suspicions']} false suspicions (budget 0)")


if __name__ == "__main__":
    main()
