"""`pi/flash/pimesh-image` (issue 16): injection into a synthetic image with the Pi OS layout
(a FAT boot partition at sector 8192, an ext4 root after it), built here without root, mount
or loop device; read back, e2fsck-clean, a no-op the second time, bad inputs refused with the
image untouched; then the first boot, run in a Debian 12 root (the stand-in for Pi OS, which
is not at hand) from the files read back out of the image, enrolling with a coordinator
started here on 127.0.0.1.

Needs root (chroot) and: fdisk mtools dosfstools e2fsprogs mmdebstrap (make test-deps)."""

import hashlib
import json
import os
import shutil
import stat
import subprocess
import time
import unittest

from test_packaging import ROOT, SHIP_BIN, build_deb, prepare_debian_root, run, scratch_as_root

IMAGE_TOOL = os.path.join(ROOT, "pi", "flash", "pimesh-image")
PIMESH_BIN = os.environ.get("PIMESH_BIN", SHIP_BIN)
# The fleet's receiver is a program of its own, built beside pimesh.
COORDINATOR_BIN = os.environ.get("PIMESH_COORDINATOR_BIN", os.path.join(os.path.dirname(PIMESH_BIN), "pimesh-coordinator"))
if not os.path.exists(COORDINATOR_BIN):
    COORDINATOR_BIN = os.path.join(ROOT, ".build", "debug", "pimesh-coordinator")
SECTOR = 512
BOOT_START, BOOT_SECTORS = 8192, 65536  # 32 MiB FAT16: mtools refuses FAT32 this small
ROOT_START = BOOT_START + BOOT_SECTORS
IMAGE_MB = 192


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def make_image(path, work):
    """A Pi OS-shaped image: dos label, FAT boot at 8192, ext4 root after it with the
    directories Pi OS has, all on a plain file."""
    tree = os.path.join(work, "rootfs")
    for directory in ("etc/systemd/system/multi-user.target.wants", "var/lib", "usr/local/sbin", "boot/firmware", "root"):
        os.makedirs(os.path.join(tree, directory), exist_ok=True)
    with open(os.path.join(tree, "etc", "hostname"), "w") as f:
        f.write("raspberrypi\n")
    with open(path, "wb") as f:
        f.truncate(IMAGE_MB << 20)
    table = f"label: dos\nstart={BOOT_START}, size={BOOT_SECTORS}, type=c\nstart={ROOT_START}, type=83\n"
    subprocess.run(["sfdisk", "-q", path], input=table, text=True, check=True, capture_output=True)
    run("mkfs.fat", "-F", "16", "-n", "BOOTFS", "--offset", str(BOOT_START), path, str(BOOT_SECTORS * SECTOR // 1024))
    root_kib = ((IMAGE_MB << 20) - ROOT_START * SECTOR) // 1024
    run("mke2fs", "-q", "-F", "-t", "ext4", "-E", f"offset={ROOT_START * SECTOR}", "-d", tree, path, f"{root_kib}k")


class ImageTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = scratch_as_root("pimesh-image-")
        cls.deb = build_deb("amd64", SHIP_BIN, os.path.join(cls.work, "deb"))
        cls.coordinator_dir = os.path.join(cls.work, "coordinator")
        cls.coordinator = subprocess.Popen(
            [COORDINATOR_BIN, "serve", "--dir", cls.coordinator_dir, "--port", "0", "--log-level", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        endpoint = os.path.join(cls.coordinator_dir, "coordinator.json")
        deadline = time.monotonic() + 30
        while not os.path.exists(endpoint) and time.monotonic() < deadline:
            time.sleep(0.1)
        with open(endpoint) as f:
            cls.coordinator_url = f"http://127.0.0.1:{json.load(f)['port']}"

    @classmethod
    def tearDownClass(cls):
        cls.coordinator.terminate()
        cls.coordinator.wait(timeout=30)
        shutil.rmtree(cls.work, ignore_errors=True)

    def setUp(self):
        self.image = os.path.join(self.work, "raspios.img")
        make_image(self.image, os.path.join(self.work, "tree-" + self._testMethodName))
        self.inputs = os.path.join(self.work, "inputs")
        os.makedirs(os.path.join(self.inputs, "agents"), exist_ok=True)
        self.config = os.path.join(self.inputs, "node.json")
        with open(self.config, "w") as f:
            json.dump({"log_level": "debug", "upload": {"target": "coordinator", "url": self.coordinator_url}}, f)
        with open(os.path.join(self.inputs, "agents", "echo.json"), "w") as f:
            json.dump({"name": "echo", "command": "/bin/sleep", "args": ["3600"]}, f)
        self.ssh_key = os.path.join(self.inputs, "operator.pub")
        with open(self.ssh_key, "w") as f:
            f.write("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE9m1Zp0Jm1bE3z0p1d2c9hV1w8sQ0u6f1sZq5m3k7rY operator@laptop\n")

    def inject(self, *extra, check=True):
        args = [IMAGE_TOOL, "inject", self.image, "--deb", self.deb, "--config", self.config,
                "--agents", os.path.join(self.inputs, "agents"), "--hostname", "pi-007", "--ssh-key", self.ssh_key,
                "--coordinator", self.coordinator_url, "--enroll-token-file", os.path.join(self.coordinator_dir, "enroll-token"),
                "--json", *extra]
        result = subprocess.run(args, capture_output=True, text=True)
        if check and result.returncode != 0:
            raise AssertionError(f"pimesh-image exited {result.returncode}: {result.stderr}")
        return result

    def debugfs(self, command):
        return run("debugfs", "-R", command, f"{self.image}?offset={ROOT_START * SECTOR}").stdout

    def boot_file(self, path):
        out = os.path.join(self.work, "boot-read")
        run("mcopy", "-n", "-i", f"{self.image}@@{BOOT_START * SECTOR}", "::/" + path, out)
        with open(out, "rb") as f:
            data = f.read()
        os.unlink(out)
        return data

    def test_inject_reads_back_and_a_second_run_changes_nothing(self):
        first = json.loads(self.inject().stdout)
        self.assertTrue(first["changed"])
        self.assertEqual((first["boot_offset"], first["root_offset"]), (BOOT_START * SECTOR, ROOT_START * SECTOR))
        # Read back with the tools themselves, not through pimesh-image.
        with open(self.deb, "rb") as f:
            self.assertEqual(first["deb_sha256"], hashlib.sha256(f.read()).hexdigest())
        with open(os.path.join(ROOT, "pi", "flash", "pimesh-firstboot.service")) as f:
            self.assertEqual(self.debugfs("cat /etc/systemd/system/pimesh-firstboot.service"), f.read())
        self.assertIn('Fast link dest: "/etc/systemd/system/pimesh-firstboot.service"',
                      self.debugfs("stat /etc/systemd/system/multi-user.target.wants/pimesh-firstboot.service"))
        self.assertIn("Mode:  0755", self.debugfs("stat /usr/local/sbin/pimesh-firstboot"))
        self.assertIn("Mode:  0600", self.debugfs("stat /var/lib/pimesh-firstboot/pimesh.deb"))
        with open(self.config, "rb") as f:
            self.assertEqual(self.boot_file("pimesh/node.json"), f.read())
        self.assertIn(b"HOSTNAME=pi-007\n", self.boot_file("pimesh/firstboot.env"))
        self.assertIn(b"ssh-ed25519 ", self.boot_file("pimesh/authorized_key.pub"))
        self.assertEqual(run("e2fsck", "-fn", f"{self.image}?offset={ROOT_START * SECTOR}", check=False).returncode, 0)

        before = sha256(self.image)
        second = json.loads(self.inject().stdout)
        self.assertFalse(second["changed"], second)
        self.assertEqual(sha256(self.image), before)

        shown = json.loads(run(IMAGE_TOOL, "show", self.image, "--json").stdout)
        self.assertTrue(shown["first_boot_enabled"])
        self.assertEqual(shown["boot_files"], ["pimesh/agents/echo.json", "pimesh/authorized_key.pub", "pimesh/firstboot.env", "pimesh/node.json"])

        # A new config replaces the old one, and an agent taken out of --agents leaves the image.
        os.unlink(os.path.join(self.inputs, "agents", "echo.json"))
        third = json.loads(self.inject().stdout)
        self.assertTrue(third["changed"])
        self.assertIn("pimesh/agents/echo.json (removed)", third["boot_written"])
        self.assertEqual(run("e2fsck", "-fn", f"{self.image}?offset={ROOT_START * SECTOR}", check=False).returncode, 0)

    def test_bad_inputs_are_refused_and_the_image_is_untouched(self):
        before = sha256(self.image)
        cases = []
        with open(os.path.join(self.inputs, "broken.json"), "w") as f:
            f.write('{"log_level": ')
        cases.append((["--config", os.path.join(self.inputs, "broken.json")], "not JSON"))
        cases.append((["--hostname", "Pi_007"], "--hostname 'Pi_007'"))
        not_a_deb = os.path.join(self.inputs, "not.deb")
        with open(not_a_deb, "w") as f:
            f.write("hello")
        cases.append((["--deb", not_a_deb], "not a Debian package"))
        with open(os.path.join(self.inputs, "bad.pub"), "w") as f:
            f.write("not a key\n")
        cases.append((["--ssh-key", os.path.join(self.inputs, "bad.pub")], "not one OpenSSH public key line"))
        for extra, message in cases:
            result = self.inject(*extra, check=False)
            self.assertEqual(result.returncode, 1, extra)
            self.assertIn(message, result.stderr, extra)
        self.assertEqual(sha256(self.image), before)
        # An image without a Linux root partition is named as such.
        flat = os.path.join(self.work, "flat.img")
        with open(flat, "wb") as f:
            f.truncate(64 << 20)
        subprocess.run(["sfdisk", "-q", flat], input="label: dos\nstart=8192, type=c\n", text=True, check=True, capture_output=True)
        result = run(IMAGE_TOOL, "inject", flat, "--deb", self.deb, check=False)
        self.assertIn("no Linux root partition", result.stderr)

    def test_first_boot_installs_configures_enrolls_and_disables_itself(self):
        self.inject()
        root = prepare_debian_root(os.path.join(self.work, "debian-root"))
        try:
            # The injected files, read out of the image into the Debian 12 root.
            for inside in ("/var/lib/pimesh-firstboot/pimesh.deb", "/usr/local/sbin/pimesh-firstboot",
                           "/etc/systemd/system/pimesh-firstboot.service"):
                os.makedirs(os.path.dirname(root + inside), exist_ok=True)
                run("debugfs", "-R", f'dump -p "{inside}" "{root + inside}"', f"{self.image}?offset={ROOT_START * SECTOR}")
            wants = "/etc/systemd/system/multi-user.target.wants/pimesh-firstboot.service"
            os.makedirs(os.path.dirname(root + wants), exist_ok=True)
            os.symlink("/etc/systemd/system/pimesh-firstboot.service", root + wants)
            os.makedirs(root + "/boot/firmware", exist_ok=True)
            run("mcopy", "-s", "-n", "-i", f"{self.image}@@{BOOT_START * SECTOR}", "::/pimesh", root + "/boot/firmware/")

            started = time.monotonic()
            boot = run("chroot", root, "/usr/local/sbin/pimesh-firstboot")
            elapsed = time.monotonic() - started
            print(f"\nfirst boot in the Debian 12 root: {elapsed:.1f} s ({boot.stdout.strip().splitlines()[-1]})")

            status = run("chroot", root, "dpkg-query", "-W", "-f=${Status}", "pimesh").stdout
            self.assertEqual(status, "install ok installed")
            with open(self.config) as f, open(root + "/etc/pimesh/pimesh.json") as g:
                self.assertEqual(g.read(), f.read())
            info = os.stat(root + "/etc/pimesh/pimesh.json")
            self.assertEqual(stat.S_IMODE(info.st_mode), 0o640)
            self.assertTrue(os.path.exists(root + "/etc/pimesh/agents.d/echo.json"))
            run("chroot", root, "pimesh", "config", "check", "/etc/pimesh/pimesh.json")
            with open(root + "/etc/hostname") as f:
                self.assertEqual(f.read(), "pi-007\n")
            with open(root + "/etc/hosts") as f:
                self.assertIn("127.0.1.1\tpi-007\n", f.read())
            keys = root + "/root/.ssh/authorized_keys"
            self.assertEqual(stat.S_IMODE(os.stat(keys).st_mode), 0o600)
            with open(keys) as f:
                self.assertIn("operator@laptop", f.read())
            # Enrolled: the coordinator lists the node whose key the first boot made.
            fleet = json.loads(run(COORDINATOR_BIN, "nodes", "--dir", self.coordinator_dir, "--json").stdout)
            with open(root + "/var/lib/pimesh/node-key") as f:
                self.assertTrue(f.read().strip())
            self.assertEqual(len(fleet["nodes"]), 1, fleet)
            self.assertEqual(stat.S_IMODE(os.stat(root + "/var/lib/pimesh/node-key").st_mode), 0o600)
            # The secrets left the boot partition; the first boot will not run again.
            self.assertFalse(os.path.exists(root + "/boot/firmware/pimesh"))
            self.assertFalse(os.path.exists(root + "/var/lib/pimesh-firstboot"))
            self.assertFalse(os.path.lexists(root + wants))
        finally:
            run("umount", "--lazy", root + "/proc", check=False)
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
