"""`pimesh update` end to end (issue 16): a good release is committed after its soak, a bad one
is rolled back by the updater, a crash-looping one is rolled back by the unit's OnFailure= with
no updater alive, and unsigned, tampered or foreign releases are refused with nothing changed.

No systemd runs here, so the test plays its part with a stand-in, named as such: `StandInSystemd`
runs the unit's ExecStart (the packaged binary, `pimesh run`), restarts it when it exits
(Restart=on-failure, RestartSec), and after 5 failed starts runs what pimesh-rollback.service
runs (OnFailure=) and starts the unit again; stand-in `systemctl` and `systemd-run` scripts on
PATH talk to it. The two builds of the binary: the packaged one is the debug build
(PIMESH_BIN), the good release is the stripped release build (PIMESH_SHIP_BIN), and the bad
release is a small C program that passes the smoke test (`update info --json`) and exits 3 when
asked to lead."""

import functools
import hashlib
import http.server
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PACKAGED_BIN = os.environ.get("PIMESH_BIN", os.path.join(ROOT, ".build", "debug", "pimesh"))
GOOD_BIN = os.environ.get("PIMESH_SHIP_BIN", os.path.join(ROOT, ".build", "pimesh"))

BAD_RELEASE_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc >= 3 && strcmp(argv[1], "update") == 0 && strcmp(argv[2], "info") == 0) {
        if (CLOSE_AND_PAUSE) { close(1); close(2); if (fork() == 0) pause(); pause(); }
        printf("{\"machine\":%d,\"store_schema\":%d,\"version\":\"0.1.1-bad\"}\n", MACHINE, SCHEMA);
        return 0;
    }
    /* Migrates as a newer release would, as far as an older one can tell: a newer
       PRAGMA user_version, written through SQLite (sqlite3, which the tests install). */
    for (int i = 1; MIGRATE && i + 1 < argc; i++) {
        if (strcmp(argv[i], "--data-dir") != 0) continue;
        char command[8192];
        snprintf(command, sizeof command, "sqlite3 '%s/pimesh.db' 'PRAGMA user_version = %d'", argv[i + 1], SCHEMA);
        if (system(command) == 0) fprintf(stderr, "bad release: migrated %s/pimesh.db to schema %d\n", argv[i + 1], SCHEMA);
    }
    fprintf(stderr, "bad release: refusing to lead\n");
    if (HANG) pause();
    return 3;
}
"""

STAND_IN_SYSTEMCTL = """#!/bin/sh
# Stand-in for systemctl (no systemd runs in this test): tells StandInSystemd what to do.
for arg in "$@"; do case "$arg" in -*) ;; *) set -- "$@" "$arg" ;; esac; shift; done
verb=$1
echo "$verb" >> "$STAND_IN_CONTROL"
if [ "$verb" = restart ]; then kill -TERM "$(cat "$STAND_IN_MAINPID")"; fi
exit 0
"""

STAND_IN_SYSTEMD_RUN = """#!/bin/sh
# Stand-in for systemd-run: runs the command detached from the caller, as a transient unit would.
while [ $# -gt 0 ]; do case "$1" in --*) shift ;; *) break ;; esac; done
setsid "$@" </dev/null >/dev/null 2>&1 &
exit 0
"""


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class StandInSystemd:
    """Plays pimesh.service (Restart=on-failure, StartLimitBurst=5) and its OnFailure= unit."""

    def __init__(self, work, command, rollback_command, environment):
        self.command = command
        self.rollback_command = rollback_command
        self.environment = environment
        self.control = os.path.join(work, "stand-in-control")
        self.mainpid = os.path.join(work, "stand-in-mainpid")
        self.log = open(os.path.join(work, "lead.log"), "ab")
        self.failures = []
        self.rollbacks = []
        self.stopping = False
        self.process = None
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def start(self):
        self.thread.start()

    def requested(self):
        try:
            with open(self.control) as f:
                verbs = f.read().split()
            os.unlink(self.control)
            return verbs
        except FileNotFoundError:
            return []

    def loop(self):
        while not self.stopping:
            self.process = subprocess.Popen(self.command, stdout=self.log, stderr=self.log, env=self.environment)
            with open(self.mainpid + ".tmp", "w") as f:
                f.write(str(self.process.pid))
            os.rename(self.mainpid + ".tmp", self.mainpid)
            status = self.process.wait()
            if self.stopping:
                return
            if "restart" in self.requested():
                continue
            if status == 0:
                return
            now = time.monotonic()
            self.failures = [t for t in self.failures if now - t < 120] + [now]
            if len(self.failures) >= 5:
                # OnFailure=pimesh-rollback.service, whose ExecStartPost starts the unit again.
                result = subprocess.run(self.rollback_command, capture_output=True, text=True, env=self.environment)
                self.rollbacks.append(result)
                self.failures = []
                if result.returncode != 0:
                    return  # ExecStartPost= (reset-failed, start) runs only after a rollback
            time.sleep(1.0)  # RestartSec=1s

    def stop(self):
        self.stopping = True
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.thread.join(timeout=45)
        self.log.close()


@unittest.skipUnless(os.path.exists(PACKAGED_BIN) and os.path.exists(GOOD_BIN), "needs the debug and the release build (make test-packaging)")
class UpdateTests(unittest.TestCase):
    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="pimesh-update-")
        self.data = os.path.join(self.work, "data")
        os.mkdir(self.data, 0o700)
        # The packaged binary, as /usr/bin/pimesh would be (named pimesh: clients know a lead
        # from lead.json by its program's name).
        os.makedirs(os.path.join(self.work, "usr", "bin"))
        self.packaged = os.path.join(self.work, "usr", "bin", "pimesh")
        shutil.copy(PACKAGED_BIN, self.packaged)
        self.key = os.path.join(self.work, "release.key")
        keygen = self.pimesh("update", "keygen", "--out", self.key, "--json")
        self.public_key = json.loads(keygen.stdout)["public_key"]
        self.config = os.path.join(self.work, "pimesh.json")
        self.write_config(trusted=[self.public_key])
        self.good = self.release_copy(GOOD_BIN, "good")
        # Starts and never becomes READY (the updater's own rollback) / exits 3 at once (a crash loop).
        self.hanging = self.compile_stub("hanging", machine=62, schema=99, hang=True, migrate=True)
        self.crashing = self.compile_stub("crashing", machine=62, schema=1)
        bin_dir = os.path.join(self.work, "stand-in-bin")
        os.mkdir(bin_dir)
        for name, text in (("systemctl", STAND_IN_SYSTEMCTL), ("systemd-run", STAND_IN_SYSTEMD_RUN)):
            with open(os.path.join(bin_dir, name), "w") as f:
                f.write(text)
            os.chmod(os.path.join(bin_dir, name), 0o755)
        self.environment = dict(os.environ, PATH=bin_dir + ":" + os.environ["PATH"])
        self.systemd = StandInSystemd(
            self.work,
            [self.packaged, "run", "--config", self.config, "--data-dir", self.data, "--api-port", "0", "--heartbeat-port", "0"],
            [self.packaged, "update", "rollback", "--if-pending", "--no-restart", "--config", self.config, "--data-dir", self.data,
             "--reason", "pimesh.service failed to start 5 times in 2 minutes"],
            self.environment)
        self.environment["STAND_IN_CONTROL"] = self.systemd.control
        self.environment["STAND_IN_MAINPID"] = self.systemd.mainpid
        self.systemd.start()
        self.first_lead = self.wait_ready(release=None)

    def tearDown(self):
        self.systemd.stop()
        shutil.rmtree(self.work, ignore_errors=True)

    def write_config(self, trusted, **update):
        with open(self.config, "w") as f:
            json.dump({"update": {"trusted_keys": trusted, "soak_s": 3, "ready_timeout_s": 20, **update}, "snapshots": {"interval_s": 0}}, f)

    def pimesh(self, *args, check=True, binary=None):
        result = subprocess.run([binary or self.packaged, *args], capture_output=True, text=True, env=getattr(self, "environment", None), timeout=300)
        if check and result.returncode != 0:
            raise AssertionError(f"pimesh {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result

    def release_copy(self, source, name):
        path = os.path.join(self.work, name)
        shutil.copy(source, path)
        self.pimesh("update", "sign", path, "--key", self.key)
        return path

    def compile_stub(self, name, machine, schema, hang=False, compiler="gcc", close_and_pause=False, migrate=False):
        source = os.path.join(self.work, name + ".c")
        with open(source, "w") as f:
            f.write(BAD_RELEASE_C)
        path = os.path.join(self.work, name)
        subprocess.run([compiler, "-static", "-O1", f"-DMACHINE={machine}", f"-DSCHEMA={schema}", f"-DHANG={int(hang)}",
                        f"-DCLOSE_AND_PAUSE={int(close_and_pause)}", f"-DMIGRATE={int(migrate)}", "-o", path, source], check=True)
        self.pimesh("update", "sign", path, "--key", self.key)
        return path

    def lead(self):
        try:
            with open(os.path.join(self.data, "lead.json")) as f:
                lead = json.load(f)
            os.kill(lead["pid"], 0)
        except (OSError, ValueError):
            return None
        return lead

    def ready(self, lead):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{lead['api']['port']}/readyz", timeout=2) as answer:
                return answer.status == 200
        except OSError:
            return False

    def wait_ready(self, release, other_than=None):
        def check():
            lead = self.lead()
            if lead and lead.get("release") == release and lead["pid"] != other_than and self.ready(lead):
                return lead
            return None
        return wait_for(check, 60, f"a READY lead running {release or 'the packaged binary'}")

    def link(self, name):
        path = os.path.join(self.data, name)
        return os.readlink(path).split("/")[-1] if os.path.islink(path) else None

    def status(self):
        return json.loads(self.pimesh("update", "status", "--json", "--config", self.config, "--data-dir", self.data).stdout)

    def apply(self, release, *extra, check=True):
        return self.pimesh("update", "apply", release, "--json", "--config", self.config, "--data-dir", self.data, *extra, check=check)

    def readiness_windows(self, action):
        """Runs `action` while polling the lead every 50 ms; returns (its result, the lengths in
        seconds of the stretches with no READY lead)."""
        samples, done = [], threading.Event()

        def poll():
            while not done.is_set():
                lead = self.lead()
                samples.append((time.monotonic(), bool(lead and self.ready(lead))))
                time.sleep(0.05)
        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        try:
            result = action()
        finally:
            done.set()
            poller.join()
        windows, down_since = [], None
        for at, up in samples:
            if not up and down_since is None:
                down_since = at
            elif up and down_since is not None:
                windows.append(at - down_since)
                down_since = None
        if down_since is not None:
            windows.append(samples[-1][0] - down_since)
        return result, windows

    def test_a_good_release_is_committed_and_a_bad_one_rolled_back(self):
        good = sha256(self.good)
        applied, windows = self.readiness_windows(lambda: self.apply(self.good))
        # READY throughout except for the one restart.
        self.assertEqual(len(windows), 1, windows)
        self.assertLess(windows[0], 15, windows)
        print(f"\nthe lead was not READY for {windows[0]:.2f} s during the update")
        report = json.loads(applied.stdout)
        self.assertEqual(report["outcome"], "committed", applied.stdout)
        self.assertEqual(report["release"], good)
        self.assertIsNone(report.get("previous"))
        self.assertEqual(report["soaked_s"], 3)
        lead = self.wait_ready(release=good)
        self.assertNotEqual(lead["pid"], self.first_lead["pid"])
        self.assertEqual((self.link("current"), self.link("previous"), self.link("broken")), (good, None, None))
        self.assertFalse(os.path.exists(os.path.join(self.data, "update-pending.json")))
        # The release is the lead's own file, executable by it and writable by no one else.
        info = os.stat(os.path.join(self.data, "releases", good, "pimesh"))
        self.assertEqual(info.st_mode & 0o7777, 0o755)
        self.assertEqual(self.status()["running"], good)
        # Applying it again changes nothing.
        self.assertEqual(json.loads(self.apply(self.good).stdout)["outcome"], "already_current")

        # The hanging release passes the smoke test, announces a schema migration (a snapshot is
        # taken first), migrates, then never becomes READY: after update.ready_timeout_s the
        # updater flips back, and the good release, which cannot read schema 99, restores the
        # snapshot before it opens the database.
        bad = sha256(self.hanging)
        failed, windows = self.readiness_windows(lambda: self.apply(self.hanging, check=False))
        self.assertEqual(failed.returncode, 1, failed.stdout + failed.stderr)
        # Down from the restart into the bad release until the good one is READY again.
        self.assertLessEqual(len(windows), 2, windows)
        self.assertEqual(self.ready(self.lead()), True)
        self.assertIn(f"release {bad} rolled back", failed.stderr)
        self.assertEqual((self.link("current"), self.link("previous"), self.link("broken")), (good, None, bad))
        with open(os.path.join(self.data, "releases", bad, "broken")) as f:
            reason = f.read()
        self.assertIn("update.ready_timeout_s", reason)
        self.assertIn("the next lead restores snapshot-", reason)
        back = self.wait_ready(release=good)
        self.assertNotEqual(back["pid"], lead["pid"])
        spool = [name for name in os.listdir(os.path.join(self.data, "spool")) if name.endswith(".json")]
        self.assertEqual(len(spool), 1, "one snapshot before the schema change")
        with open(os.path.join(self.work, "lead.log"), "rb") as f:
            self.assertIn(b"migrated " + self.data.encode() + b"/pimesh.db to schema 99", f.read())
        aside = os.listdir(os.path.join(self.data, "rolled-back"))
        self.assertEqual(len([name for name in aside if name.endswith(".db")]), 1, aside)
        self.assertFalse(os.path.exists(os.path.join(self.data, "restore-after-rollback.json")))
        events = [json.loads(line) for line in self.pimesh("events", "--json", "--data-dir", self.data).stdout.splitlines()]
        self.assertTrue(any(e["kind"] == "database_restored" and "schema 99" in e["detail"] for e in events), events)
        # A broken release is refused from then on, before anything changes.
        # Refused again and again: a refusal keeps the release and its `broken` mark.
        for _ in range(2):
            again = self.apply(self.hanging, check=False)
            self.assertEqual(again.returncode, 1)
            self.assertIn("was rolled back before", again.stderr)
            self.assertTrue(os.path.exists(os.path.join(self.data, "releases", bad, "broken")))
        self.assertEqual(self.wait_ready(release=good)["pid"], back["pid"])

        # The lead's user (or an agent run as it) replaces the committed release's binary: the
        # packaged binary no longer runs it, since it is not what was staged under that digest.
        with open(os.path.join(self.data, "releases", good, "pimesh.new"), "wb") as f, open(self.crashing, "rb") as source:
            f.write(source.read())
        os.chmod(os.path.join(self.data, "releases", good, "pimesh.new"), 0o755)
        os.rename(os.path.join(self.data, "releases", good, "pimesh.new"), os.path.join(self.data, "releases", good, "pimesh"))
        with open(self.systemd.control, "a") as f:
            f.write("restart\n")  # as `systemctl restart` would ask
        os.kill(back["pid"], signal.SIGTERM)
        self.wait_ready(release=None, other_than=back["pid"])
        with open(os.path.join(self.work, "lead.log"), "rb") as f:
            self.assertIn(b"is no longer the one staged under that SHA-256", f.read())
        # The operator sees it without the journal: `update status` and the lead's events.
        self.assertIn("is no longer the one staged under that SHA-256", self.status().get("refused", ""))
        events = [json.loads(line) for line in self.pimesh("events", "--json", "--data-dir", self.data).stdout.splitlines()]
        self.assertTrue(any(e["kind"] == "release_refused" and "no longer the one staged" in e["detail"] for e in events), events)

    def test_a_crash_loop_is_rolled_back_by_on_failure(self):
        bad = sha256(self.crashing)
        # With the updater waiting: the unit's OnFailure= rollback is quicker, and it says so.
        failed = self.apply(self.crashing, check=False)
        self.assertEqual(failed.returncode, 1, failed.stdout + failed.stderr)
        self.assertIn("rolled back by pimesh-rollback.service", failed.stderr)
        self.assertEqual((self.link("current"), self.link("broken")), (None, bad))
        self.assertEqual(len(self.systemd.rollbacks), 1)
        first = self.wait_ready(release=None)
        # With no updater alive: it is killed as soon as it has switched and asked for the
        # restart. Killed between the two (a window a loaded machine widens), it leaves the old
        # lead running and the switch pending until the next start: no crash loop to watch.
        updater = subprocess.Popen(
            [self.packaged, "update", "apply", self.crashing, "--force", "--config", self.config, "--data-dir", self.data],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=self.environment)

        def restarted():
            with open(self.systemd.mainpid) as f:
                return f.read().strip() != str(first["pid"])
        wait_for(lambda: self.link("current") == bad and restarted(), 60, "the switch to the crashing release and the restart into it")
        updater.kill()
        updater.wait()
        lead = wait_for(lambda: len(self.systemd.rollbacks) == 2 and self.wait_ready(release=None, other_than=first["pid"]), 90, "the second rollback")
        self.assertEqual(self.systemd.rollbacks[1].returncode, 0, self.systemd.rollbacks[1].stderr)
        self.assertEqual((self.link("current"), self.link("previous"), self.link("broken")), (None, None, bad))
        with open(os.path.join(self.data, "releases", bad, "broken")) as f:
            self.assertIn("failed to start 5 times", f.read())
        self.assertEqual(self.lead()["pid"], lead["pid"])
        # Nothing is pending now, so the OnFailure= path leaves the committed state alone.
        nothing = self.pimesh(*self.systemd.rollback_command[1:], check=False)
        self.assertEqual(nothing.returncode, 3, nothing.stderr)
        self.assertIn("nothing rolled back", nothing.stdout)

    def test_as_root_the_updater_writes_as_the_data_dirs_owner(self):
        # A data dir that belongs to the lead's user (nobody here): what root's updater makes in
        # it is that user's, and a symlink planted there cannot make root write elsewhere.
        owned = os.path.join(self.work, "owned")
        os.mkdir(owned, 0o700)
        nobody = 65534
        os.chown(owned, nobody, nobody)
        os.chmod(self.work, 0o755)
        outside = os.path.join(self.work, "outside")
        os.mkdir(outside, 0o755)
        os.symlink(os.path.join(outside, "victim"), os.path.join(owned, "update.lock"))
        applied = self.pimesh("update", "apply", self.good, "--no-restart", "--json", "--config", self.config, "--data-dir", owned, check=False)
        good = sha256(self.good)
        # update.lock is a symlink the lead's user planted: refused (O_NOFOLLOW), nothing made outside.
        self.assertNotEqual(applied.returncode, 0, applied.stdout)
        self.assertFalse(os.path.exists(os.path.join(outside, "victim")))
        os.unlink(os.path.join(owned, "update.lock"))
        applied = self.pimesh("update", "apply", self.good, "--no-restart", "--json", "--config", self.config, "--data-dir", owned)
        self.assertEqual(json.loads(applied.stdout)["outcome"], "staged")
        for path in ("releases", f"releases/{good}", f"releases/{good}/pimesh", "current", "update-pending.json"):
            self.assertEqual(os.lstat(os.path.join(owned, path)).st_uid, nobody, path)
        self.assertEqual(os.listdir(outside), [])

    def test_refused_releases_change_nothing(self):
        def unchanged():
            self.assertEqual((self.link("current"), self.link("previous"), self.link("broken")), (None, None, None))
            self.assertEqual(os.listdir(os.path.join(self.data, "releases")) if os.path.isdir(os.path.join(self.data, "releases")) else [], [])
            self.assertEqual(self.lead()["pid"], self.first_lead["pid"])

        # No signature file.
        unsigned = os.path.join(self.work, "unsigned")
        shutil.copy(GOOD_BIN, unsigned)
        result = self.apply(unsigned, check=False)
        self.assertEqual(result.returncode, 1)
        self.assertIn("no signature", result.stderr)
        unchanged()
        # Signed by a key the node does not trust.
        other_key = os.path.join(self.work, "other.key")
        self.pimesh("update", "keygen", "--out", other_key)
        self.pimesh("update", "sign", unsigned, "--key", other_key)
        result = self.apply(unsigned, check=False)
        self.assertIn("not made by any key in update.trusted_keys", result.stderr)
        unchanged()
        # A tampered binary: its signature is for other bytes.
        tampered = os.path.join(self.work, "tampered")
        shutil.copy(self.good, tampered)
        shutil.copy(self.good + ".sig", tampered + ".sig")
        with open(tampered, "ab") as f:
            f.write(b"\0")
        result = self.apply(tampered, check=False)
        self.assertIn("not made by any key", result.stderr)
        unchanged()
        # The wrong --sha256.
        result = self.apply(self.good, "--sha256", "0" * 64, check=False)
        self.assertIn("not the " + "0" * 64, result.stderr)
        unchanged()
        # A release for another architecture.
        foreign = self.compile_stub("foreign", machine=183, schema=1, compiler="aarch64-linux-gnu-gcc")
        result = self.apply(foreign, check=False)
        self.assertIn("built for ELF machine 183 (aarch64)", result.stderr)
        unchanged()
        # A smoke test that closes its output and waits (its child too): failed at the deadline,
        # both killed, instead of an updater that waits for ever.
        quiet = self.compile_stub("quiet", machine=62, schema=1, close_and_pause=True)
        started = time.monotonic()
        result = self.apply(quiet, check=False)
        self.assertLess(time.monotonic() - started, 30)
        self.assertIn("did not finish in time", result.stderr)
        self.assertEqual(subprocess.run(["pgrep", "-f", "releases/.*/pimesh update info"], capture_output=True).stdout, b"")
        unchanged()
        # A FIFO in place of the release: refused at once, not a read that blocks.
        fifo = os.path.join(self.work, "fifo")
        os.mkfifo(fifo)
        shutil.copy(self.good + ".sig", fifo + ".sig")
        result = self.apply(fifo, check=False)
        self.assertIn("a FIFO, not a regular file", result.stderr)
        unchanged()
        # A data dir others may write: they could plant releases/<digest>/ (a published
        # release's digest is known) and have the smoke test run their binary.
        os.chmod(self.data, 0o777)
        result = self.apply(self.good, check=False)
        self.assertIn("refusing to update", result.stderr)
        self.assertIn("writable by group or others", result.stderr)
        os.chmod(self.data, 0o700)
        unchanged()
        # releases/<digest>/ planted by another user before the first apply: refused, left alone.
        planted = os.path.join(self.data, "releases", sha256(self.good))
        os.makedirs(planted, 0o755)
        os.chmod(os.path.join(self.data, "releases"), 0o700)
        os.chown(planted, 65534, 65534)
        result = self.apply(self.good, check=False)
        self.assertIn(f"refusing to stage release {sha256(self.good)}", result.stderr)
        self.assertIn("belongs to uid 65534", result.stderr)
        self.assertEqual(os.listdir(planted), [])
        shutil.rmtree(os.path.join(self.data, "releases"))
        unchanged()
        # Past the size limits: the release's (update.max_release_mb), and a signature's (4 KiB)
        # served over HTTP; each refusal names its limit.
        with open(self.config) as f:
            trusted = json.load(f)["update"]["trusted_keys"]
        self.write_config(trusted=trusted, max_release_mb=1)
        result = self.apply(self.good, check=False)
        self.assertIn(f"the release {self.good} is {os.path.getsize(self.good)} bytes, more than update.max_release_mb (1 MiB)", result.stderr)
        unchanged()
        self.write_config(trusted=trusted)
        served = os.path.join(self.work, "served")
        os.makedirs(served)
        with open(os.path.join(served, "big.sig"), "w") as f:
            f.write("0" * 5000)
        class QuietHandler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):
                pass

        handler = functools.partial(QuietHandler, directory=served)
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            url = f"http://127.0.0.1:{server.server_address[1]}/big.sig"
            result = self.apply(self.good, "--signature", url, check=False)
        finally:
            server.shutdown()
            server.server_close()
        self.assertIn(f"{url}: larger than 4096 bytes, the most the signature may be", result.stderr)
        unchanged()
        # No trusted keys at all.
        self.write_config(trusted=[])
        result = self.apply(self.good, check=False)
        self.assertIn("no update.trusted_keys", result.stderr)
        unchanged()


if __name__ == "__main__":
    unittest.main()
