"""The Python client against a real lead: started here on 127.0.0.1 with ephemeral ports."""

import json
import fcntl
import os
import socket
import sys
import shutil
import signal
import subprocess
import tempfile
import time
import threading
import unittest
import urllib.request

import pimesh_agent
from pimesh_agent import CONFLICT, READY, PimeshAgent, PimeshError

BINARY = os.environ.get("PIMESH_BIN") or os.path.join(os.path.dirname(__file__), "..", "..", ".build", "debug", "pimesh")



def fcntl_above_stdio(fd):
    """A descriptor of 3 or above, as the lead passes (a test runner may have closed stdin)."""
    if fd >= 3:
        return fd
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD, 3)
    os.close(fd)
    return moved

class LeadFixture:
    def __init__(self, manifests=None, config=None):
        self.data_dir = tempfile.mkdtemp(prefix="pimesh-py-")
        arguments = []
        if config is not None:
            with open(os.path.join(self.data_dir, "pimesh.json"), "w") as f:
                json.dump(config, f)
            arguments = ["--config", os.path.join(self.data_dir, "pimesh.json")]
        for name, manifest in (manifests or {}).items():
            os.makedirs(os.path.join(self.data_dir, "agents.d"), exist_ok=True)
            with open(os.path.join(self.data_dir, "agents.d", name + ".json"), "w") as f:
                json.dump(manifest, f)
        self.log = open(os.path.join(self.data_dir, "lead.log"), "wb")
        self.arguments = arguments
        self.start()

    def start(self):
        self.process = subprocess.Popen(
            [BINARY, "run", "--data-dir", self.data_dir, "--api-port", "0", "--heartbeat-port", "0", "--log-level", "warning"]
            + self.arguments,
            stdout=self.log, stderr=self.log)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                endpoint = pimesh_agent.discover(self.data_dir)
                if endpoint["pid"] == self.process.pid:
                    return
            except (PimeshError, ValueError):
                pass
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("lead did not start")

    def kill_and_restart(self):
        """kill -9, then a new lead on the same data dir (on other ports: they are ephemeral)."""
        self.process.kill()
        self.process.wait(timeout=10)
        self.start()

    def get(self, path):
        endpoint, token = pimesh_agent.discover(self.data_dir), pimesh_agent.read_token(self.data_dir)
        request = urllib.request.Request(f"http://127.0.0.1:{endpoint['api']['port']}{path}",
                                         headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.load(response)

    def wait_for(self, condition, timeout=5):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if condition():
                return True
            time.sleep(0.02)
        return False

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=10)
        self.log.close()
        shutil.rmtree(self.data_dir, ignore_errors=True)


class PythonClientTests(unittest.TestCase):
    def setUp(self):
        self.lead = LeadFixture()

    def tearDown(self):
        self.lead.stop()

    def agent_view(self, name):
        return next(a for a in self.lead.get("/v1/agents")["agents"] if a["name"] == name)

    def test_register_and_heartbeat(self):
        identity = os.path.join(self.lead.data_dir, "py.json")
        agent = PimeshAgent.register_or_resume(self.lead.data_dir, identity, "py-1", "CLASS_B_SERVERLESS", ["sense"])
        self.assertEqual(os.stat(identity).st_mode & 0o777, 0o600)
        agent.heartbeat(READY, queue_depth=3, progress=17)
        self.assertTrue(self.lead.wait_for(lambda: self.agent_view("py-1")["state"] == "READY"))
        view = self.agent_view("py-1")
        self.assertEqual(view["class"], "CLASS_B_SERVERLESS")
        self.assertEqual(view["progress"], 17)
        self.assertEqual(view["impedance"]["queue_depth"], 3)
        agent.heartbeat(CONFLICT)
        self.assertTrue(self.lead.wait_for(lambda: self.lead.get("/v1/status")["agents"]["conflict"] == 1))

    def test_saved_identity_is_reused(self):
        identity = os.path.join(self.lead.data_dir, "py.json")
        first = PimeshAgent.register_or_resume(self.lead.data_dir, identity, "py-2")
        second = PimeshAgent.register_or_resume(self.lead.data_dir, identity, "py-2")
        self.assertEqual(first.credentials["id"], second.credentials["id"])
        second.heartbeat()
        self.assertTrue(self.lead.wait_for(lambda: self.agent_view("py-2")["state"] == "READY"))
        self.assertEqual(len(self.lead.get("/v1/agents")["agents"]), 1)

    def test_forged_heartbeat_is_counted_not_accepted(self):
        agent = PimeshAgent(PimeshAgent.register(self.lead.data_dir, "py-3"))
        agent.secret = b"not the secret"
        agent.heartbeat()
        self.assertTrue(self.lead.wait_for(lambda: self.lead.get("/v1/status")["heartbeats"]["dropped"]["bad_tag"] == 1))
        self.assertEqual(self.agent_view("py-3")["state"], "TRANSIT")

    def test_refusals_are_clear(self):
        PimeshAgent.register(self.lead.data_dir, "py-4")
        with self.assertRaisesRegex(PimeshError, "already registered"):
            PimeshAgent.register(self.lead.data_dir, "py-4")
        with self.assertRaisesRegex(PimeshError, r"\(400\).*class"):
            PimeshAgent.register(self.lead.data_dir, "py-5", agent_class="CLASS_Q")
        with self.assertRaisesRegex(PimeshError, "no lead is running"):
            PimeshAgent.register("/nonexistent/pimesh", "py-6")

    def ready_agent(self, name, capabilities):
        agent = PimeshAgent(PimeshAgent.register(self.lead.data_dir, name, capabilities=capabilities))
        agent.heartbeat()
        self.assertTrue(self.lead.wait_for(lambda: self.agent_view(name)["state"] == "READY"))
        return agent

    def test_tasks_are_pulled_and_finished_once(self):
        agent = self.ready_agent("py-7", ["resize"])
        task = pimesh_agent.submit_task(self.lead.data_dir, "resize", payload='{"w": 64}', weight=1, idempotency_key="r-1")
        self.assertEqual(task["decision"], "SEND_NOW")
        self.assertEqual(task["agent_name"], "py-7")
        again = pimesh_agent.submit_task(self.lead.data_dir, "resize", payload='{"w": 64}', idempotency_key="r-1")
        self.assertEqual(again["id"], task["id"])
        items = agent.pull_work(self.lead.data_dir, wait_ms=2000)
        self.assertEqual([(i["kind"], i["id"], i["payload"], i["attempt"]) for i in items],
                         [("task", task["id"], '{"w": 64}', 1)])
        self.assertTrue(agent.post_result(self.lead.data_dir, task["id"], "succeeded", result="64x64"))
        self.assertFalse(agent.post_result(self.lead.data_dir, task["id"], "succeeded", result="again"))
        finished = self.lead.get(f"/v1/tasks/{task['id']}")
        self.assertEqual((finished["state"], finished["result"]), ("succeeded", "64x64"))
        self.assertEqual(agent.pull_work(self.lead.data_dir, wait_ms=0), [])
        with self.assertRaisesRegex(PimeshError, r"\(400\).*outcome"):
            agent.post_result(self.lead.data_dir, task["id"], "maybe")
        skipped = pimesh_agent.submit_task(self.lead.data_dir, "nobody-can")
        self.assertEqual((skipped["decision"], skipped["skip_code"]), ("SKIP", "no_capable_agent"))

    def test_work_arrives_as_datagrams_without_a_long_poll(self):
        agent = PimeshAgent(PimeshAgent.register(self.lead.data_dir, "py-dg", capabilities=["upper"]))
        stop = threading.Event()
        seen = []

        def handler(item):
            seen.append(item["id"])
            if item["payload"] == "boom":
                raise ValueError("cannot")
            return item["payload"].upper()

        server = threading.Thread(target=agent.serve, args=(self.lead.data_dir, handler), kwargs={"stop": stop.is_set})
        server.start()
        try:
            self.assertTrue(self.lead.wait_for(lambda: self.agent_view("py-dg")["state"] == "READY"))
            tasks = [pimesh_agent.submit_task(self.lead.data_dir, "upper", payload=p) for p in ("abc", "boom", "xyz")]
            self.assertTrue(self.lead.wait_for(
                lambda: all(self.lead.get(f"/v1/tasks/{t['id']}")["state"] in ("succeeded", "failed") for t in tasks)))
            finished = [self.lead.get(f"/v1/tasks/{t['id']}") for t in tasks]
            self.assertEqual([(f["state"], f.get("result"), f["attempts"]) for f in finished],
                             [("succeeded", "ABC", 1), ("failed", None, 1), ("succeeded", "XYZ", 1)])
            self.assertIn("ValueError: cannot", finished[1]["error"])
            self.assertEqual(sorted(seen), sorted(t["id"] for t in tasks))
            status = self.lead.get("/v1/status")["tasks"]
            self.assertEqual(status["work_datagrams"]["agents"], 1)
            self.assertGreaterEqual(status["work_datagrams"]["sent"], 3)
            self.assertEqual(status["long_polls"], 0)
        finally:
            stop.set()
            server.join(timeout=10)
        self.assertEqual(self.agent_view("py-dg")["health"]["condition"], "left")

    def test_work_datagrams_reach_an_agent_whose_window_is_ahead_of_the_clock(self):
        # The earlier lead sent while the wall clock was an hour ahead; it has been stepped back
        # since (fake-hwclock after a power cut, an NTP correction) and this lead is new.
        agent = PimeshAgent(PimeshAgent.register(self.lead.data_dir, "py-ahead", capabilities=["ahead"]))
        agent.work_window = pimesh_agent.WorkWindow()
        agent.work_window.highest = int(time.time() * 1_000_000) + 3_600_000_000
        stop = threading.Event()
        server = threading.Thread(target=agent.serve, args=(self.lead.data_dir, lambda item: item["payload"]),
                                  kwargs={"stop": stop.is_set})
        server.start()
        try:
            self.assertTrue(self.lead.wait_for(lambda: self.agent_view("py-ahead")["state"] == "READY"))
            task = pimesh_agent.submit_task(self.lead.data_dir, "ahead", payload="late")
            self.assertTrue(self.lead.wait_for(lambda: self.lead.get(f"/v1/tasks/{task['id']}")["state"] == "succeeded"))
            self.assertEqual(self.lead.get(f"/v1/tasks/{task['id']}")["attempts"], 1)
            self.assertEqual(self.lead.get("/v1/status")["tasks"]["work_datagrams"]["retransmitted"], 0)
        finally:
            stop.set()
            server.join(timeout=10)

    def test_an_agent_written_like_the_docstring_outlives_a_lead_restart(self):
        agent = PimeshAgent(PimeshAgent.register(self.lead.data_dir, "py-phoenix", capabilities=["echo"]))
        stop = threading.Event()
        done, failures = [], []

        def work():
            try:
                while not stop.is_set():
                    for item in agent.pull_work(self.lead.data_dir, wait_ms=500):
                        agent.post_result(self.lead.data_dir, item["id"], "succeeded", result=item["payload"])
                        done.append(item["id"])
            except Exception as error:  # the test fails on any: the agent must not die with the lead
                failures.append(error)

        beats = threading.Thread(target=agent.run, kwargs={"stop": stop.is_set, "data_dir": self.lead.data_dir})
        worker = threading.Thread(target=work)
        beats.start()
        worker.start()
        try:
            self.assertTrue(self.lead.wait_for(lambda: self.agent_view("py-phoenix")["state"] == "READY"))
            first = pimesh_agent.submit_task(self.lead.data_dir, "echo", payload="before")
            self.assertTrue(self.lead.wait_for(lambda: first["id"] in done))
            self.lead.kill_and_restart()
            self.assertTrue(self.lead.wait_for(lambda: self.agent_view("py-phoenix")["health"]["condition"] == "alive", timeout=30))
            second = pimesh_agent.submit_task(self.lead.data_dir, "echo", payload="after")
            self.assertEqual(second["agent_name"], "py-phoenix")
            self.assertTrue(self.lead.wait_for(lambda: self.lead.get(f"/v1/tasks/{second['id']}")["state"] == "succeeded", timeout=30))
            self.assertEqual(self.lead.get(f"/v1/tasks/{second['id']}")["result"], "after")
            self.assertEqual(failures, [])
        finally:
            stop.set()
            worker.join(timeout=150)
            beats.join(timeout=10)

    def test_the_work_window_takes_each_sequence_once(self):
        window = pimesh_agent.WorkWindow()
        self.assertEqual([window.receive(s) for s in (100, 100, 103, 101, 102, 101)], [True, False, True, True, True, False])
        self.assertEqual((window.highest, window.window), (103, 0b111))
        self.assertTrue(window.receive(103 + 64))
        self.assertFalse(window.receive(102))

    def test_asks_are_answered(self):
        agent = self.ready_agent("py-8", ["vote"])
        results = {}

        def ask():
            results["report"] = pimesh_agent.api_request(self.lead.data_dir, "POST", "/v1/ask",
                                                         {"capability": "vote", "payload": "agree?"}, timeout=15)

        import threading
        asker = threading.Thread(target=ask)
        asker.start()
        items = agent.pull_work(self.lead.data_dir, wait_ms=5000)
        self.assertEqual([(i["kind"], i["payload"]) for i in items], [("ask", "agree?")])
        self.assertEqual(agent.answer(self.lead.data_dir, items[0]["id"], READY, answer="yes"), "counted")
        asker.join()
        status, report = results["report"]
        self.assertEqual(status, 200)
        self.assertEqual((report["decision"], report["ready"], report["sent"]), ("PROCEED", 1, 1))
        self.assertEqual(report["answers"][0]["answer"], "yes")

    def test_a_supervised_python_agent_gets_its_identity_from_the_environment(self):
        with self.assertRaises(PimeshError) as refused:
            PimeshAgent.from_environment({})
        self.assertIn("PIMESH_AGENT_ID", str(refused.exception))
        client_dir = os.path.dirname(os.path.abspath(__file__))
        script = f"import sys; sys.path.insert(0, {client_dir!r}); import pimesh_agent; pimesh_agent.PimeshAgent.from_environment().run()"
        supervised = LeadFixture({"py": {"name": "py-agent", "command": sys.executable, "args": ["-c", script],
                                         "capabilities": ["py"]}})
        try:
            def alive():
                agent = next((a for a in supervised.get("/v1/agents")["agents"] if a["name"] == "py-agent"), None)
                return agent is not None and agent["health"]["condition"] == "alive" and agent["supervision"]["pid"]
            self.assertTrue(supervised.wait_for(alive, timeout=10))
            agent = next(a for a in supervised.get("/v1/agents")["agents"] if a["name"] == "py-agent")
            self.assertEqual(agent["capabilities"], ["py"])
            self.assertEqual(agent["supervision"]["mode"], "supervised")
        finally:
            supervised.stop()

    def test_the_secret_comes_from_a_pipe_read_once_and_closed(self):
        environ = {"PIMESH_AGENT_ID": "6f1c2b4e-9a7d-4e11-8c3a-5b0d2f7e9a10", "PIMESH_AGENT_NAME": "piped",
                   "PIMESH_HEARTBEAT_HOST": "127.0.0.1", "PIMESH_HEARTBEAT_PORT": "9",
                   "PIMESH_AGENT_SECRET": "cd" * 32}
        def filled_pipe(text):
            reader, writer = os.pipe()
            reader = fcntl_above_stdio(reader)
            os.write(writer, text.encode())
            os.close(writer)
            return reader

        reader = filled_pipe("ef" * 32 + "\n")
        self.assertEqual(pimesh_agent._read_secret(str(reader)), "ef" * 32)
        with self.assertRaises(OSError):
            os.fstat(reader)
        agent = PimeshAgent.from_environment(dict(environ, PIMESH_AGENT_SECRET_FD=str(filled_pipe("ab" * 32))))
        self.assertEqual(agent.credentials["secret"], "ab" * 32, "the descriptor wins over the variable")
        # Far above any descriptor the test opens: never one in use.
        for bad, said in (("2", "3 or above"), ("three", "3 or above"), (str(2**31 - 1), "Bad file descriptor")):
            with self.assertRaises(PimeshError) as refused:
                PimeshAgent.from_environment(dict(environ, PIMESH_AGENT_SECRET_FD=bad))
            self.assertIn(said, str(refused.exception))
            self.assertIn("PIMESH_AGENT_SECRET_FD", str(refused.exception))

    def test_a_restarted_agent_starts_above_the_iteration_the_lead_hands_it(self):
        environ = {"PIMESH_AGENT_ID": "6f1c2b4e-9a7d-4e11-8c3a-5b0d2f7e9a10", "PIMESH_AGENT_SECRET": "ab" * 32,
                   "PIMESH_AGENT_NAME": "stepped", "PIMESH_HEARTBEAT_HOST": "127.0.0.1", "PIMESH_HEARTBEAT_PORT": "9"}
        wall = int(time.time() * 1_000_000)
        self.assertGreaterEqual(PimeshAgent.from_environment(environ).iteration, wall)
        # The clock stepped back an hour since the lead last heard the agent.
        ahead = wall + 3_600_000_000
        agent = PimeshAgent.from_environment(dict(environ, PIMESH_HEARTBEAT_LAST_ITERATION=str(ahead)))
        self.assertEqual(agent.heartbeat(), ahead + 1)
        for bad in ("soon", "-1", str(2**64)):
            with self.assertRaises(PimeshError) as refused:
                PimeshAgent.from_environment(dict(environ, PIMESH_HEARTBEAT_LAST_ITERATION=bad))
            self.assertIn("PIMESH_HEARTBEAT_LAST_ITERATION", str(refused.exception))

    def test_an_agents_credential_opens_only_its_own_work(self):
        """Issue 12: an agent's own credential pulls its own work; another agent's is refused."""
        alice = PimeshAgent.register_or_resume(self.lead.data_dir, os.path.join(self.lead.data_dir, "alice.json"), "alice")
        bob = PimeshAgent.register_or_resume(self.lead.data_dir, os.path.join(self.lead.data_dir, "bob.json"), "bob")
        self.assertEqual(alice.pull_work(self.lead.data_dir, wait_ms=0), [])
        status, answer = pimesh_agent.api_request(self.lead.data_dir, "GET", f"/v1/agents/{alice.credentials['id']}/work",
                                                  bearer=bob.bearer)
        self.assertEqual(status, 403, answer)
        status, answer = pimesh_agent.api_request(self.lead.data_dir, "GET", "/v1/status", bearer=bob.bearer)
        self.assertEqual(status, 403, answer)

    def submit(self, capability, count, prefix="t"):
        return [pimesh_agent.submit_task(self.lead.data_dir, capability, payload=f"{prefix}{i}")["id"] for i in range(count)]

    def states(self, ids):
        return [self.lead.get(f"/v1/tasks/{i}") for i in ids]

    def test_a_long_handler_keeps_the_agent_alive_and_its_work_ends_once(self):
        """A handler of 2.5 s that counts its progress: serve() heartbeats meanwhile, so the
        lead neither suspects the agent nor takes the work back, and each task ends once."""
        agent = PimeshAgent(PimeshAgent.register(self.lead.data_dir, "py-slow", capabilities=["slow"]))
        stop = threading.Event()
        calls = []

        def handler(item):
            calls.append(item["id"])
            for _ in range(5):
                time.sleep(0.5)
                agent.progress()
            return "done"

        server = threading.Thread(target=agent.serve, args=(self.lead.data_dir, handler), kwargs={"stop": stop.is_set})
        server.start()
        try:
            self.assertTrue(self.lead.wait_for(lambda: self.agent_view("py-slow")["state"] == "READY"))
            ids = self.submit("slow", 3)
            self.assertTrue(self.lead.wait_for(
                lambda: all(t["state"] == "succeeded" for t in self.states(ids)), timeout=30))
            self.assertEqual([t["attempts"] for t in self.states(ids)], [1, 1, 1])
            self.assertEqual(sorted(calls), sorted(ids))
            health = self.agent_view("py-slow")["health"]
            self.assertEqual(health["condition"], "alive", health)
            self.assertEqual(health["breaker"], "CLOSED", health)
        finally:
            stop.set()
            server.join(timeout=15)

    class RawWorker:
        """An agent that speaks v2 by hand, so that a test decides when it acknowledges,
        answers or falls silent. It works one task at a time (slots 1)."""

        def __init__(self, lead, name, capability, acknowledge=True):
            self.lead = lead
            self.agent = PimeshAgent(PimeshAgent.register(lead.data_dir, name, capabilities=[capability]))
            self.window = pimesh_agent.WorkWindow()
            self.acknowledge = acknowledge
            self.silent = False
            self.stopped = False
            self.received = []  # (sequence, item) of every datagram, repeats included
            self.thread = threading.Thread(target=self.loop, daemon=True)
            self.thread.start()

        def beat(self):
            acked = self.window if self.acknowledge else pimesh_agent.WorkWindow()
            agent = self.agent
            agent.iteration += 1
            datagram = pimesh_agent.encode_heartbeat_v2(
                agent.agent_id, agent.secret, agent.iteration, int(time.time() * 1000), READY, 0,
                int(time.monotonic() * 10), acked.highest, acked.window)
            agent.socket.sendto(datagram, agent.address)

        def loop(self):
            next_beat = 0.0
            header = pimesh_agent._WORK_HEADER
            while not self.stopped:
                if not self.silent and time.monotonic() >= next_beat:
                    self.beat()
                    next_beat = time.monotonic() + 0.1
                self.agent.socket.settimeout(0.02)
                try:
                    data = self.agent.socket.recv(pimesh_agent.WORK_MAX_SIZE + 1)
                except (socket.timeout, BlockingIOError):
                    continue
                sequence, length = header.unpack_from(data)[4], header.unpack_from(data)[6]
                self.received.append((sequence, json.loads(data[header.size:header.size + length])))
                if self.window.receive(sequence) and not self.silent:
                    self.beat()

        def post(self, task_id):
            return self.agent.post_result(self.lead.data_dir, task_id, "succeeded", result="ok")

        def tasks(self):
            return [item for _, item in self.received if item["kind"] == "task"]

        def stop(self):
            self.stopped = True
            self.thread.join(timeout=5)

    def test_an_agent_back_from_a_silence_gets_its_work_again(self):
        """Issue 14's probe: the task an agent held when it fell silent kept its one slot after
        the task was taken back, and the agent got no work again."""
        worker = self.RawWorker(self.lead, "py-silent", "hold")
        try:
            self.assertTrue(self.lead.wait_for(lambda: self.agent_view("py-silent")["state"] == "READY"))
            ids = self.submit("hold", 2)
            self.assertTrue(self.lead.wait_for(lambda: len(worker.tasks()) == 1, timeout=10))
            worker.silent = True
            self.assertTrue(self.lead.wait_for(
                lambda: all(t["state"] == "queued" for t in self.states(ids)), timeout=10), self.states(ids))
            worker.silent = False
            # Back: the held task comes again (its second attempt), and each result frees the slot.
            self.assertTrue(self.lead.wait_for(lambda: any(t["attempt"] == 2 for t in worker.tasks()), timeout=5),
                            worker.tasks())
            done = set()

            def answer_all():
                for item in worker.tasks():
                    if item["id"] not in done:
                        done.add(item["id"])
                        worker.post(item["id"])
                return all(t["state"] == "succeeded" for t in self.states(ids))
            self.assertTrue(self.lead.wait_for(answer_all, timeout=10), self.states(ids))
        finally:
            worker.stop()

    def test_a_finished_tasks_datagram_is_not_sent_again(self):
        """Issue 14's probe: a task whose result came back while its datagram was not yet
        acknowledged (the acknowledging heartbeat lost) was sent seven more times."""
        worker = self.RawWorker(self.lead, "py-noack", "quick", acknowledge=False)
        try:
            self.assertTrue(self.lead.wait_for(lambda: self.agent_view("py-noack")["state"] == "READY"))
            [task_id] = self.submit("quick", 1)
            self.assertTrue(self.lead.wait_for(lambda: len(worker.received) == 1, timeout=10))
            self.assertTrue(worker.post(task_id))
            time.sleep(2.5)  # three retransmissions were due by now (300 ms, 900 ms, 2.1 s)
            self.assertEqual(len(worker.received), 1, worker.received)
            self.assertEqual(self.lead.get("/v1/status")["tasks"]["work_datagrams"]["retransmitted"], 0)
        finally:
            worker.stop()


class InboxLeaseTests(unittest.TestCase):
    """Issue 14's probe: tasks that waited in a busy agent's inbox past their lease were counted
    as lost by the agent, which opened its breaker over work it never saw."""

    def setUp(self):
        self.lead = LeadFixture(config={"tasks": {"lease_ms": 1500}})

    def tearDown(self):
        self.lead.stop()

    def test_work_waiting_behind_a_full_slot_is_not_held_against_the_agent(self):
        agent = PimeshAgent(PimeshAgent.register(self.lead.data_dir, "py-busy", capabilities=["busy"]))
        stop = threading.Event()

        def handler(item):
            time.sleep(0.5)
            return "ok"

        server = threading.Thread(target=agent.serve, args=(self.lead.data_dir, handler), kwargs={"stop": stop.is_set})
        server.start()
        try:
            self.assertTrue(self.lead.wait_for(
                lambda: any(a["name"] == "py-busy" and a["state"] == "READY" for a in self.lead.get("/v1/agents")["agents"])))
            ids = [pimesh_agent.submit_task(self.lead.data_dir, "busy", payload=str(i))["id"] for i in range(8)]
            self.assertTrue(self.lead.wait_for(
                lambda: all(self.lead.get(f"/v1/tasks/{i}")["state"] == "succeeded" for i in ids), timeout=30))
            self.assertEqual([self.lead.get(f"/v1/tasks/{i}")["attempts"] for i in ids], [1] * 8)
            view = next(a for a in self.lead.get("/v1/agents")["agents"] if a["name"] == "py-busy")
            self.assertEqual(view["health"]["breaker"], "CLOSED", view["health"])
        finally:
            stop.set()
            server.join(timeout=15)


class DatagramLayoutTests(unittest.TestCase):
    def test_datagram_layout_matches_the_protocol(self):
        datagram = pimesh_agent.encode_heartbeat(bytes(range(16)), b"k", 7, 1000, CONFLICT, 2, 3)
        self.assertEqual(len(datagram), 64)
        self.assertEqual(datagram[0], 1)
        self.assertEqual(datagram[1], 0xFF)
        self.assertEqual(datagram[4:20], bytes(range(16)))
        self.assertEqual(int.from_bytes(datagram[20:28], "big"), 7)


if __name__ == "__main__":
    unittest.main()
