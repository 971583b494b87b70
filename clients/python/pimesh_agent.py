#!/usr/bin/env python3
"""A pimesh agent client for agents written in Python. Standard library only.

Register once with the lead found through its data dir, keep the credentials, and send
signed heartbeats (protocol v1, docs/protocol.md) every interval:

    agent = PimeshAgent.register_or_resume("/var/lib/pimesh", "/var/lib/my-agent/identity.json",
                                           name="camera-1", capabilities=["sense"])
    agent.run(report=lambda: Report(state=READY, queue_depth=len(queue), progress=done))

Or take work as well: `serve` heartbeats (protocol v2) and receives each task, ask or broadcast
as a datagram on the same socket, calls `handler(item)` and posts what it returns (a raised
exception fails the task):

    agent.serve(data_dir, handler=lambda item: do(item["payload"]))

Handlers run on a worker thread while serve keeps heartbeating; one that runs longer than the
lead's hang watchdog (2 s) calls `agent.progress()` as it goes, or the lead reports it HUNG.

Agents that cannot receive datagrams use the long poll; post each result, or answer:

    for item in agent.pull_work(data_dir, wait_ms=25000):
        if item["kind"] == "task":
            agent.post_result(data_dir, item["id"], "succeeded", result=do(item["payload"]))
        else:
            agent.answer(data_dir, item["id"], READY, answer="ok")

Or from the shell: python3 pimesh_agent.py --data-dir /var/lib/pimesh --name camera-1
"""

import argparse
import hashlib
import hmac
import http.client
import json
import os
import queue
import signal
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass

READY, TRANSIT, CONFLICT = 1, 0, -1
VERSION = 1
SIGNED_LENGTH = 48
TAG_LENGTH = 16
# version, state (signed), reserved, agent id, iteration, timestamp_ms, queue_depth, progress
_SIGNED = struct.Struct(">BbH16sQqIQ")
assert _SIGNED.size == SIGNED_LENGTH
# Version 2 adds what the agent acknowledges of the lead's work datagrams: the highest sequence
# and a 64-bit window below it.
VERSION_WITH_ACK = 2
_SIGNED_V2 = struct.Struct(">BbH16sQqIQQQ")
# Work datagram header: version, kind, reserved, agent id, sequence, timestamp_ms, body length
_WORK_HEADER = struct.Struct(">BBH16sQqI")
WORK_ITEM, WORK_FETCH = 1, 2
WORK_MAX_SIZE = 8192


class PimeshError(Exception):
    """A problem a person can act on: no lead, a refused registration, a bad identity file."""


class LeadUnreachable(PimeshError):
    """No answer from the lead's API: it is stopped, or restarting."""


@dataclass
class Report:
    state: int = READY
    queue_depth: int = 0
    progress: int = 0


def discover(data_dir):
    """The running lead's endpoint (lead.json), from its data dir."""
    lead_path = os.path.join(data_dir, "lead.json")
    try:
        with open(lead_path, "rb") as f:
            return json.load(f)
    except FileNotFoundError:
        raise PimeshError(f"no lead is running with data dir {data_dir} (no {lead_path})") from None


def read_token(data_dir, name="node-token"):
    """A token file of the lead's: node-token (the operator's) or join-token (registration only)."""
    token_path = os.path.join(data_dir, name)
    try:
        with open(token_path) as f:
            return f.read().strip()
    except OSError as error:
        raise PimeshError(f"cannot read the {name} at {token_path}: {error}") from None


def _read_secret(number):
    """All a supervised agent's secret pipe holds (64 hex digits), read once; the descriptor is
    closed after, so that no program this agent starts inherits it."""
    try:
        fd = int(number)
    except ValueError:
        fd = -1
    if fd < 3:
        raise PimeshError(f"PIMESH_AGENT_SECRET_FD is not a descriptor number of 3 or above: {number}")
    data = b""
    try:
        while len(data) <= 128:
            chunk = os.read(fd, 128)
            if not chunk:
                break
            data += chunk
    except OSError as error:
        raise PimeshError(f"cannot read the secret from descriptor {fd} (PIMESH_AGENT_SECRET_FD): {error.strerror}") from None
    finally:
        try:
            os.close(fd)
        except OSError:
            pass
    return data.decode("ascii", "replace").strip()


def agent_bearer(agent_id, secret):
    """An agent's own API credential: HMAC-SHA256(secret, "pimesh-agent-api-v1:" + id), bound to
    its id. It opens the agent's own work, results and answers and nothing else (docs/api.md)."""
    mac = hmac.new(secret, f"pimesh-agent-api-v1:{agent_id}".encode(), hashlib.sha256).hexdigest()
    return f"agent.{agent_id}.{mac}"


def api_request(data_dir, method, path, body=None, timeout=5.0, bearer=None, api=None):
    """One call to the lead's API; returns (status, decoded JSON). Unreachable leads raise PimeshError.
    Without `bearer`, the operator token from the data dir is sent."""
    if api is None:
        api = discover(data_dir)["api"]
    if bearer is None:
        bearer = read_token(data_dir)
    headers = {"Authorization": f"Bearer {bearer}"}
    payload = None
    if body is not None:
        payload = json.dumps(body)
        headers["Content-Type"] = "application/json"
    connection = http.client.HTTPConnection(api["host"], int(api["port"]), timeout=timeout)
    try:
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        raw = response.read()
    except OSError as error:
        raise LeadUnreachable(f"cannot reach the lead's API at {api['host']}:{api['port']}: {error}") from None
    finally:
        connection.close()
    try:
        return response.status, json.loads(raw) if raw else None
    except ValueError:
        return response.status, {"error": raw.decode(errors="replace")}


def _refused(what, status, answer):
    message = answer.get("error") if isinstance(answer, dict) else answer
    return PimeshError(f"the lead refused {what} ({status}): {message}")


def submit_task(data_dir, capability, payload="", weight=None, deadline_ms=None, idempotency_key=None):
    """Submits a task; the answer says which agent it went to, or SKIP and why."""
    body = {"capability": capability, "payload": payload}
    if weight is not None:
        body["weight"] = weight
    if deadline_ms is not None:
        body["deadline_ms"] = deadline_ms
    if idempotency_key is not None:
        body["idempotency_key"] = idempotency_key
    status, answer = api_request(data_dir, "POST", "/v1/tasks", body)
    if status not in (200, 201):
        raise _refused("the task", status, answer)
    return answer


def encode_heartbeat(agent_id, secret, iteration, timestamp_ms, state, queue_depth, progress):
    """One 64-byte v1 datagram: the signed part and the first 16 bytes of its HMAC-SHA256."""
    signed = _SIGNED.pack(VERSION, state, 0, agent_id, iteration, timestamp_ms, queue_depth, progress)
    return signed + hmac.new(secret, signed, hashlib.sha256).digest()[:TAG_LENGTH]


def encode_heartbeat_v2(agent_id, secret, iteration, timestamp_ms, state, queue_depth, progress, ack_highest, ack_window,
                        slots=1):
    """One 80-byte v2 datagram: the v1 fields (bytes 2-3: tasks worked on at once, 0 for no
    limit), the acknowledgement, and the tag."""
    signed = _SIGNED_V2.pack(VERSION_WITH_ACK, state, slots, agent_id, iteration, timestamp_ms, queue_depth, progress,
                             ack_highest, ack_window)
    return signed + hmac.new(secret, signed, hashlib.sha256).digest()[:TAG_LENGTH]


def _catch_stop_signals():
    """Records SIGTERM/SIGINT in the returned list instead of dying (main thread only); the
    dict holds the handlers to put back."""
    stopping = []
    previous = {}
    def on_signal(number, frame):
        stopping.append(number)
    if threading.current_thread() is threading.main_thread():
        for number in (signal.SIGTERM, signal.SIGINT):
            previous[number] = signal.signal(number, on_signal)
    return stopping, previous


class WorkWindow:
    """Which work sequences arrived: the highest, and bit i for highest-1-i (64 of them)."""

    def __init__(self):
        self.highest = 0
        self.window = 0

    def covers(self, sequence):
        if sequence == 0 or sequence > self.highest:
            return False
        distance = self.highest - sequence
        return distance == 0 or (distance <= 64 and self.window >> (distance - 1) & 1 == 1)

    def receive(self, sequence):
        """True when the sequence is new; repeats and anything 64 below the highest are not."""
        if sequence == 0:
            return False
        if sequence > self.highest:
            shift = sequence - self.highest
            if self.highest == 0 or shift > 64:
                self.window = 0
            else:
                self.window = ((self.window << shift) | (1 << (shift - 1))) & (2**64 - 1)
            self.highest = sequence
            return True
        if self.covers(sequence) or self.highest - sequence > 64:
            return False
        self.window |= 1 << (self.highest - sequence - 1)
        return True


class PimeshAgent:
    def __init__(self, credentials):
        try:
            self.credentials = credentials
            self.agent_id = bytes.fromhex(credentials["id"].replace("-", ""))
            self.secret = bytes.fromhex(credentials["secret"])
            heartbeat = credentials["heartbeat"]
            self.address = (heartbeat["host"], int(heartbeat["port"]))
            self.interval = int(heartbeat["interval_ms"]) / 1000
        except (KeyError, ValueError, TypeError) as error:
            raise PimeshError(f"credentials are incomplete or damaged: {error!r}") from None
        if len(self.agent_id) != 16:
            raise PimeshError("credentials hold an agent id that is not a UUID")
        # Starting from the clock in microseconds keeps iterations increasing across restarts
        # of this process without storing a counter; from the lead's last accepted iteration
        # when it handed that over and the clock is behind it (stepped back since).
        try:
            floor = int(heartbeat.get("last_iteration") or 0)
        except ValueError:
            raise PimeshError("PIMESH_HEARTBEAT_LAST_ITERATION is not a number") from None
        if not 0 <= floor < 2**64:
            raise PimeshError("PIMESH_HEARTBEAT_LAST_ITERATION is not a number from 0 to 2^64-1")
        self.iteration = max(int(time.time() * 1_000_000), floor)
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        # Bound to the lead's own address, so that work datagrams can reach it from nowhere else.
        self.socket.bind((self.address[0], 0))
        self.bearer = agent_bearer(credentials["id"], self.secret)
        # Set by serve(): heartbeats become v2 and the lead sends work to this socket.
        self.work_window = None
        self.last_report = Report()
        self._send_lock = threading.Lock()
        # Work units done, for serve()'s heartbeats (see progress()).
        self.work_done = 0

    def _request(self, data_dir, method, path, body=None, timeout=5.0):
        """The agent's own calls, with its own credential: to the lead's current address when
        its data dir is readable (a restarted lead may listen elsewhere), else to the one its
        credentials name."""
        api = None
        if data_dir is not None:
            try:
                api = discover(data_dir)["api"]
            except (PimeshError, OSError, ValueError):
                api = None
        if api is None:
            api = self.credentials.get("api")
        if api is None:
            raise PimeshError(f"agent {self.credentials.get('name')}: no API address (PIMESH_API_HOST/PORT) and no lead.json")
        return api_request(data_dir, method, path, body, timeout, bearer=self.bearer, api=api)

    @staticmethod
    def register(data_dir, name, agent_class="CLASS_E_LOCAL", capabilities=(), timeout=5.0, token=None):
        """Registers with the join token (token=, else the data dir's join-token, else node-token).

        Past the lead's registration rate (429) it waits and retries for up to a minute, so that
        a node starting many agents at once registers them all, a little later."""
        api = discover(data_dir)["api"]
        if token is None:
            try:
                token = read_token(data_dir, "join-token")
            except PimeshError:
                token = read_token(data_dir)
        deadline = time.monotonic() + 60
        while True:
            status, answer = api_request(data_dir, "POST", "/v1/agents",
                                         {"name": name, "class": agent_class, "capabilities": list(capabilities)}, timeout,
                                         bearer=token, api=api)
            if status != 429 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        if status != 201:
            raise _refused("the registration", status, answer)
        return answer

    @classmethod
    def from_environment(cls, environ=None):
        """The identity `pimesh run` hands an agent it starts from a manifest (agents.d)."""
        environ = os.environ if environ is None else environ
        secret_key = "PIMESH_AGENT_SECRET_FD" if environ.get("PIMESH_AGENT_SECRET_FD") else "PIMESH_AGENT_SECRET"
        missing = [key for key in ("PIMESH_AGENT_ID", secret_key, "PIMESH_AGENT_NAME",
                                   "PIMESH_HEARTBEAT_HOST", "PIMESH_HEARTBEAT_PORT") if not environ.get(key)]
        if missing:
            raise PimeshError(f"{', '.join(missing)} not set: this agent expects to be started by `pimesh run` from a manifest")
        secret = _read_secret(environ["PIMESH_AGENT_SECRET_FD"]) if secret_key == "PIMESH_AGENT_SECRET_FD" \
            else environ["PIMESH_AGENT_SECRET"]
        if secret_key == "PIMESH_AGENT_SECRET_FD" and environ is os.environ:
            # The number names another descriptor, or none, from now on: not for its children.
            os.environ.pop("PIMESH_AGENT_SECRET_FD", None)
        capabilities = [c for c in environ.get("PIMESH_AGENT_CAPABILITIES", "").split(",") if c]
        credentials = {
            "id": environ["PIMESH_AGENT_ID"], "secret": secret, "name": environ["PIMESH_AGENT_NAME"],
            "class": environ.get("PIMESH_AGENT_CLASS", "CLASS_E_LOCAL"), "capabilities": capabilities,
            "heartbeat": {"host": environ["PIMESH_HEARTBEAT_HOST"], "port": environ["PIMESH_HEARTBEAT_PORT"],
                          "interval_ms": environ.get("PIMESH_HEARTBEAT_INTERVAL_MS", "250"),
                          "last_iteration": environ.get("PIMESH_HEARTBEAT_LAST_ITERATION")},
        }
        if environ.get("PIMESH_API_HOST") and environ.get("PIMESH_API_PORT"):
            credentials["api"] = {"host": environ["PIMESH_API_HOST"], "port": int(environ["PIMESH_API_PORT"])}
        return cls(credentials)

    @classmethod
    def register_or_resume(cls, data_dir, identity_file, name, agent_class="CLASS_E_LOCAL", capabilities=()):
        """Reuse saved credentials, or register and save them (0600) for the next start."""
        if os.path.exists(identity_file):
            try:
                with open(identity_file) as f:
                    return cls(json.load(f))
            except ValueError as error:
                raise PimeshError(f"{identity_file} is not valid JSON: {error}") from None
        credentials = cls.register(data_dir, name, agent_class, capabilities)
        temporary = f"{identity_file}.tmp.{os.getpid()}"
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as f:
            json.dump(credentials, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, identity_file)
        return cls(credentials)

    def heartbeat(self, state=READY, queue_depth=0, progress=0):
        """Sends one heartbeat; returns its iteration. A lost datagram is what UDP allows."""
        # serve() heartbeats from its loop while a handler posts from its worker thread: one
        # iteration each, or the lead drops the second as a replay.
        with self._send_lock:
            # Held at the top, as the Swift client does: the lead drops those as replays.
            self.iteration = min(self.iteration + 1, 2**64 - 1)
            self.last_report = Report(state, queue_depth, progress)
            fields = (self.agent_id, self.secret, self.iteration, int(time.time() * 1000),
                      state, max(0, min(queue_depth, 2**32 - 1)), max(0, progress))
            if self.work_window is None:
                datagram = encode_heartbeat(*fields)
            else:
                datagram = encode_heartbeat_v2(*fields, self.work_window.highest, self.work_window.window)
            self.socket.sendto(datagram, self.address)
            return self.iteration

    def progress(self, units=1):
        """Counts work done: a handler that runs longer than the lead's hang watchdog
        (supervision.hang_after_ms, 2 s) calls this as it goes, or the lead reports the agent
        HUNG. serve() counts one unit for each item it finishes."""
        with self._send_lock:
            self.work_done += max(0, int(units))

    def receive_work(self, timeout):
        """Waits up to `timeout` seconds for a work datagram; returns ("item", item), ("fetch",
        None), or None for nothing new. A new one is acknowledged at once; a datagram that is
        damaged, forged, for another agent or a repeat is dropped."""
        if self.work_window is None:
            self.work_window = WorkWindow()
        self.socket.settimeout(timeout)
        try:
            data = self.socket.recv(WORK_MAX_SIZE + 1)
        except (socket.timeout, BlockingIOError):
            return None
        if len(data) < _WORK_HEADER.size + TAG_LENGTH or len(data) > WORK_MAX_SIZE:
            return None
        version, kind, reserved, agent_id, sequence, _, length = _WORK_HEADER.unpack_from(data)
        signed = _WORK_HEADER.size + length
        if (version, reserved) != (VERSION_WITH_ACK, 0) or agent_id != self.agent_id or signed + TAG_LENGTH != len(data):
            return None
        tag = hmac.new(self.secret, data[:signed], hashlib.sha256).digest()[:TAG_LENGTH]
        if not hmac.compare_digest(tag, data[signed:]):
            return None
        # Under the heartbeat's lock: a heartbeat from serve()'s worker must not send a highest
        # that is new with a window that is not yet, acknowledging what never came.
        with self._send_lock:
            if not self.work_window.receive(sequence):
                return None
        report = self.last_report
        try:
            self.heartbeat(report.state, report.queue_depth, report.progress)
        except OSError:
            pass  # the lead sends it again and the window drops the repeat
        if kind == WORK_FETCH:
            return ("fetch", None)
        if kind == WORK_ITEM:
            try:
                return ("item", json.loads(data[_WORK_HEADER.size:signed]))
            except ValueError:
                return None
        return None

    def serve(self, data_dir, handler, report=None, stop=lambda: False):
        """Heartbeats and takes work as datagrams until `stop()` is true or SIGTERM/SIGINT:
        calls `handler(item)` for each task, ask or broadcast and posts its return value as the
        result or answer (an exception fails the task, or answers TRANSIT). Then says goodbye.

        Handlers run one at a time on a worker thread while this loop keeps heartbeating, so a
        long task does not look like a dead agent. `report()` gives each heartbeat's state,
        queue depth and progress; by default READY, the items waiting, and `work_done` (one
        unit per finished item, plus what the handler counts with progress()). A task still has
        to end within the lead's lease (tasks.lease_ms, 30 s) and its loop watchdog
        (supervision.loop_after_ms, 10 s of progress without a finished task)."""
        self.work_window = self.work_window or WorkWindow()
        waiting = queue.Queue()
        if report is None:
            def report():
                return Report(READY, waiting.qsize(), self.work_done)
        stopping, previous = _catch_stop_signals()

        def work():
            while True:
                item = waiting.get()
                if item is None:
                    return
                try:
                    if item == "fetch":
                        for fetched in self.pull_work(data_dir, wait_ms=0, max_items=8):
                            self._reply(data_dir, fetched, handler)
                    else:
                        self._reply(data_dir, item, handler)
                except (OSError, PimeshError):
                    time.sleep(1)  # the lead may be restarting; its lease gives the work back
                except Exception as error:  # an answer this client did not expect: the next item may do
                    print(f"pimesh_agent: {type(error).__name__}: {error}", file=sys.stderr)

        worker = threading.Thread(target=work, name="pimesh-agent-work", daemon=True)
        worker.start()
        next_beat = 0.0
        last_refresh = time.monotonic()
        try:
            while not stop() and not stopping:
                now = time.monotonic()
                if now - last_refresh > 5:
                    last_refresh = now
                    self._refresh_address(data_dir)
                if now >= next_beat:
                    current = report()
                    try:
                        self.heartbeat(current.state, current.queue_depth, current.progress)
                    except OSError:
                        pass  # the lead may be restarting
                    next_beat = now + self.interval
                # No periodic poll: the lead sends what waits for this agent at each of its
                # heartbeats; only a fetch (an item too large for a datagram) needs a request.
                received = self.receive_work(max(0.01, min(0.25, next_beat - time.monotonic())))
                if received is not None:
                    waiting.put("fetch" if received[0] == "fetch" else received[1])
        finally:
            for number, handler_before in previous.items():
                signal.signal(number, handler_before)
            # What has not started is left to the lead: leave() gives it to other agents.
            while True:
                try:
                    waiting.get_nowait()
                except queue.Empty:
                    break
            waiting.put(None)
            # Heartbeats go on while a handler finishes: silence would look like a failure and
            # the lead would give the task to another agent.
            while worker.is_alive():
                current = report()
                try:
                    self.heartbeat(current.state, current.queue_depth, current.progress)
                except OSError:
                    pass
                worker.join(self.interval)
        try:
            self.leave(data_dir)
        except (OSError, PimeshError):
            pass

    def _reply(self, data_dir, item, handler):
        try:
            value = handler(item)
            failed = None
        except Exception as error:  # the handler's failure is the task's outcome
            value, failed = None, f"{type(error).__name__}: {error}"
        self.progress()
        if item["kind"] == "task":
            if failed is None:
                self.post_result(data_dir, item["id"], "succeeded", result=None if value is None else str(value))
            else:
                self.post_result(data_dir, item["id"], "failed", error=failed)
        else:
            self.answer(data_dir, item["id"], READY if failed is None else TRANSIT,
                        answer=failed if failed is not None else (None if value is None else str(value)))

    # How long work pulls and result posts wait for a lead that is gone or restarting.
    RETRY_FOR_S = 120.0

    def _lead_call(self, data_dir, what, method, path, body=None, timeout=5.0, retry_for=None):
        """One API call that outlives a lead restart: while the lead does not answer (or answers
        502/503 while it starts, or 507 while its disk is full), retries with backoff from 0.2 s to 5 s for up to `retry_for`
        seconds (RETRY_FOR_S), heartbeating meanwhile so that the new lead finds the agent alive."""
        deadline = time.monotonic() + (self.RETRY_FOR_S if retry_for is None else retry_for)
        delay = 0.2
        while True:
            try:
                status, answer = self._request(data_dir, method, path, body, timeout=timeout)
                if status not in (502, 503, 507):
                    return status, answer
                problem = _refused(what, status, answer)
            except LeadUnreachable as error:
                problem = error
            if time.monotonic() + delay > deadline:
                raise problem
            self._refresh_address(data_dir)
            pause_until = time.monotonic() + delay
            while time.monotonic() < pause_until:
                report = self.last_report
                try:
                    self.heartbeat(report.state, report.queue_depth, report.progress)
                except OSError:
                    pass
                time.sleep(max(0.0, min(self.interval, pause_until - time.monotonic())))
            delay = min(delay * 2, 5.0)

    def _refresh_address(self, data_dir):
        """A restarted lead may listen on another heartbeat port: take it from lead.json."""
        if data_dir is None:
            return
        try:
            heartbeat = discover(data_dir)["heartbeat"]
            self.address = (heartbeat["host"], int(heartbeat["port"]))
        except (PimeshError, OSError, ValueError, KeyError, TypeError):
            pass

    def pull_work(self, data_dir, wait_ms=25000, max_items=1, retry_for=None):
        """Waits up to wait_ms for tasks, asks or broadcasts; an empty list means none came.
        A lead that restarts meanwhile is waited for (see _lead_call)."""
        status, answer = self._lead_call(data_dir, "the long poll", "GET", f"/v1/agents/{self.credentials['id']}/work"
                                         f"?wait_ms={int(wait_ms)}&max={int(max_items)}", timeout=wait_ms / 1000 + 5,
                                         retry_for=retry_for)
        if status != 200:
            raise _refused("the long poll", status, answer)
        return answer["items"]

    def post_result(self, data_dir, task_id, outcome, result=None, error=None, conflict=None):
        """outcome: succeeded, failed or conflict (with conflict={"type": ...}). Returns False when
        the task had already finished (another attempt won, or it was cancelled)."""
        body = {"agent_id": self.credentials["id"], "outcome": outcome}
        for key, value in (("result", result), ("error", error), ("conflict", conflict)):
            if value is not None:
                body[key] = value
        status, answer = self._lead_call(data_dir, "the result", "POST", f"/v1/tasks/{task_id}/result", body)
        if status == 409:
            return False
        if status != 200:
            raise _refused("the result", status, answer)
        return True

    def answer(self, data_dir, operation_id, state=READY, answer=None, conflict=None):
        """Answers an ask or broadcast with a trinary state; returns counted, late or duplicate."""
        body = {"agent_id": self.credentials["id"], "state": state}
        if answer is not None:
            body["answer"] = answer
        if conflict is not None:
            body["conflict"] = conflict
        # An answer is worth only its window: no waiting for a lead that is away.
        status, reply = self._request(data_dir, "POST", f"/v1/ops/{operation_id}/answers", body)
        if status != 200:
            raise _refused("the answer", status, reply)
        return reply["answer"]

    def leave(self, data_dir):
        """Says goodbye: the lead marks the agent `left`, not failed, and gives its work to others."""
        status, reply = self._request(data_dir, "POST", f"/v1/agents/{self.credentials['id']}/leave", {})
        if status != 200:
            raise _refused("leaving", status, reply)
        return reply

    def run(self, report=Report, stop=lambda: False, data_dir=None):
        """Heartbeats at the lead's interval until `stop()` is true or SIGTERM/SIGINT arrives;
        then, given `data_dir`, says goodbye so that the lead does not take the silence for a failure."""
        stopping, previous = _catch_stop_signals()
        last_refresh = time.monotonic()
        try:
            while not stop() and not stopping:
                current = report()
                try:
                    self.heartbeat(current.state, current.queue_depth, current.progress)
                except OSError:
                    pass  # the lead may be restarting; the next tick tries again
                if time.monotonic() - last_refresh > 5:
                    last_refresh = time.monotonic()
                    self._refresh_address(data_dir)
                time.sleep(self.interval)
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)
        if data_dir is not None:
            try:
                self.leave(data_dir)
            except (OSError, PimeshError):
                pass  # no lead to tell: it will expire the agent instead


def main(argv=None):
    parser = argparse.ArgumentParser(description="Run a minimal pimesh agent that heartbeats until interrupted.")
    parser.add_argument("--data-dir", default=os.environ.get("PIMESH_DATA_DIR", "./.pimesh"),
                        help="the lead's data dir (default $PIMESH_DATA_DIR, else ./.pimesh)")
    parser.add_argument("--name", required=True, help="agent name: letters, digits, '.', '_', '-'")
    parser.add_argument("--class", dest="agent_class", default="CLASS_E_LOCAL", help="impedance class")
    parser.add_argument("--capability", action="append", default=[], help="a capability (repeatable)")
    parser.add_argument("--identity", help="credentials file (default <data-dir>/agent-<name>.json)")
    args = parser.parse_args(argv)
    identity = args.identity or os.path.join(args.data_dir, f"agent-{args.name}.json")
    try:
        agent = PimeshAgent.register_or_resume(args.data_dir, identity, args.name, args.agent_class, args.capability)
        print(f"agent {args.name} ({agent.credentials['id']}) heartbeating every {agent.interval * 1000:.0f} ms",
              file=sys.stderr)
        agent.run(data_dir=args.data_dir)
    except PimeshError as error:
        print(f"pimesh_agent: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
