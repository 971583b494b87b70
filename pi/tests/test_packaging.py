"""The .deb (issue 16): built from the release binary, lintian-clean, Depends derived from the
binary, and installed, upgraded, removed and purged in a Debian 12 root made with mmdebstrap
(a chroot: no systemd runs there, so the checks are files, users, modes and enablement links).
The arm64 package is checked for the same structure with a static aarch64 stub binary, run
under qemu-aarch64-static, while no Swift toolchain for arm64 is at hand.

Needs root (chroot, mmdebstrap) and: lintian mmdebstrap qemu-user-static gcc-aarch64-linux-gnu
(make test-deps installs them). PIMESH_SHIP_BIN names the stripped release binary."""

import gzip
import os
import re
import shutil
import stat
import subprocess
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BUILD_DEB = os.path.join(ROOT, "scripts", "build-deb.sh")
SHIP_BIN = os.environ.get("PIMESH_SHIP_BIN", os.path.join(ROOT, ".build", "pimesh"))
# The Debian 12 root is cached beside the build: mmdebstrap takes about 45 s.
ROOT_TARBALL = os.path.join(ROOT, ".build", "debian12-root.tar")
ROOT_PACKAGES = "systemd,init-system-helpers,libcurl4,libgpiod2,liblz4-1,libsqlite3-0"
LIBRARY_DIRS = ("/lib/", "/usr/lib/")


def run(*args, check=True, **kwargs):
    result = subprocess.run(args, capture_output=True, text=True, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def scratch_as_root(prefix):
    if os.geteuid() != 0:
        raise unittest.SkipTest("needs root for chroot, mount and mmdebstrap; make test runs as root")
    return tempfile.mkdtemp(prefix=prefix)


def prepare_debian_root(root):
    """A fresh Debian 12 root at `root` with /proc mounted (Swift reads its arguments there);
    the caller unmounts it. The tarball is made once with mmdebstrap and cached in .build."""
    if not os.path.exists(ROOT_TARBALL):
        os.makedirs(os.path.dirname(ROOT_TARBALL), exist_ok=True)
        partial = ROOT_TARBALL + ".partial"
        # The host's own apt sources, so the root comes from the same mirror as its packages.
        # --format: mmdebstrap guesses it from the name, and ".partial" would make a directory.
        sources = [path for path in ("/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list") if os.path.exists(path)]
        run("mmdebstrap", "--quiet", "--format=tar", "--variant=minbase", "--include=" + ROOT_PACKAGES, "bookworm", partial, *sources[:1])
        os.rename(partial, ROOT_TARBALL)
    os.makedirs(root)
    run("tar", "-C", root, "-xf", ROOT_TARBALL)
    run("mount", "-t", "proc", "proc", os.path.join(root, "proc"))
    return root


def build_deb(arch, binary, out):
    return run(BUILD_DEB, arch, binary, out).stdout.strip().splitlines()[-1]


def deb_field(deb, field):
    return run("dpkg-deb", "-f", deb, field).stdout.strip()


def deb_contents(deb):
    """{path: (mode string, owner)} of every entry, as dpkg-deb -c lists them."""
    entries = {}
    for line in run("dpkg-deb", "-c", deb).stdout.splitlines():
        parts = line.split(None, 5)
        path = parts[5].split(" -> ")[0]
        entries[path.lstrip(".")] = (parts[0], parts[1])
    return entries


def needed_packages(binary):
    """The Debian packages holding the libraries the binary loads (readelf NEEDED + dpkg -S)."""
    sonames = re.findall(r"\(NEEDED\)\s+Shared library: \[(\S+)\]", run("readelf", "-d", binary).stdout)
    assert sonames, f"readelf found no NEEDED library in {binary}"
    packages = set()
    for soname in sonames:
        owners = set()
        for line in run("dpkg", "-S", "*/" + soname, check=False).stdout.splitlines():
            names, path = line.split(": ", 1)
            if path.endswith("/" + soname) and path.startswith(LIBRARY_DIRS):
                owners.update(name.split(":")[0] for name in names.split(", "))
        if not owners:
            raise AssertionError(f"no installed package holds {soname}")
        packages.update(owners)
    return packages


def library_depends(deb):
    """Depends: less what every package needs, names only."""
    names = {re.match(r"[a-z0-9.+-]+", item.strip()).group(0) for item in deb_field(deb, "Depends").split(",")}
    return names - {"systemd", "init-system-helpers"}


class DebTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = scratch_as_root("pimesh-deb-")
        cls.deb = build_deb("amd64", SHIP_BIN, cls.work)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.work, ignore_errors=True)

    def test_lintian_passes(self):
        result = run("lintian", "--fail-on", "error,warning", self.deb, check=False)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    def test_depends_are_the_libraries_the_binary_needs(self):
        # libcurl4 too, which the binary loads only for uploads and downloads (dlopen).
        self.assertNotIn("libcurl", run("readelf", "-d", SHIP_BIN).stdout)
        self.assertEqual(library_depends(self.deb), needed_packages(SHIP_BIN) | {"libcurl4"})
        # With versions from the libraries' symbols, as dpkg-shlibdeps gives them.
        self.assertRegex(deb_field(self.deb, "Depends"), r"libsqlite3-0 \(>= [0-9]")
        # Packed relative relocations need glibc 2.36, which no symbol version names.
        self.assertIn("libc6 (>= 2.36)", deb_field(self.deb, "Depends"))

    def test_layout_modes_and_conffiles(self):
        entries = deb_contents(self.deb)
        expected = {
            "/usr/bin/pimesh": "-rwxr-xr-x",
            "/usr/lib/systemd/system/pimesh.service": "-rw-r--r--",
            "/usr/lib/systemd/system/pimesh-rollback.service": "-rw-r--r--",
            "/usr/lib/sysusers.d/pimesh.conf": "-rw-r--r--",
            "/usr/lib/tmpfiles.d/pimesh.conf": "-rw-r--r--",
            "/usr/lib/udev/rules.d/60-pimesh.rules": "-rw-r--r--",
            "/etc/pimesh/pimesh.json": "-rw-r--r--",
            "/etc/pimesh/agents.d/README": "-rw-r--r--",
            "/etc/pimesh/agents.d/example.json.sample": "-rw-r--r--",
            "/usr/share/doc/pimesh/copyright": "-rw-r--r--",
            "/usr/share/doc/pimesh/changelog.gz": "-rw-r--r--",
            "/usr/share/man/man1/pimesh.1.gz": "-rw-r--r--",
            "/usr/share/bash-completion/completions/pimesh": "-rw-r--r--",
            "/usr/share/zsh/vendor-completions/_pimesh": "-rw-r--r--",
            "/usr/share/fish/vendor_completions.d/pimesh.fish": "-rw-r--r--",
        }
        for path, mode in expected.items():
            self.assertIn(path, entries)
            self.assertEqual(entries[path], (mode, "root/root"), path)
        control = os.path.join(self.work, "control")
        run("dpkg-deb", "-e", self.deb, control)
        with open(os.path.join(control, "conffiles")) as f:
            self.assertEqual(
                f.read().split(),
                ["/etc/pimesh/agents.d/README", "/etc/pimesh/agents.d/example.json.sample", "/etc/pimesh/pimesh.json"],
            )
        self.assertEqual(deb_field(self.deb, "Architecture"), "amd64")

    def test_a_binary_for_another_architecture_is_refused(self):
        result = run(BUILD_DEB, "arm64", SHIP_BIN, self.work, check=False)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("not for arm64", result.stderr)


class ArmPackageTests(unittest.TestCase):
    """The arm64 .deb's structure, with a static aarch64 stub in place of the Swift binary."""

    @classmethod
    def setUpClass(cls):
        cls.work = scratch_as_root("pimesh-arm64-")
        source = os.path.join(cls.work, "stub.c")
        with open(source, "w") as f:
            f.write('#include <stdio.h>\nint main(void) { puts("0.1.0"); return 0; }\n')
        cls.stub = os.path.join(cls.work, "pimesh")
        run("aarch64-linux-gnu-gcc", "-static", "-O2", "-s", "-o", cls.stub, source)
        cls.amd64 = build_deb("amd64", SHIP_BIN, os.path.join(cls.work, "amd64"))
        cls.arm64 = build_deb("arm64", cls.stub, os.path.join(cls.work, "arm64"))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.work, ignore_errors=True)

    def test_same_files_and_modes_as_amd64(self):
        self.assertEqual(deb_field(self.arm64, "Architecture"), "arm64")
        self.assertTrue(self.arm64.endswith("pimesh_0.1.0_arm64.deb"), self.arm64)
        amd64, arm64 = deb_contents(self.amd64), deb_contents(self.arm64)
        self.assertEqual(set(amd64), set(arm64))
        for path in amd64:
            self.assertEqual(amd64[path], arm64[path], path)

    def test_the_packaged_binary_runs_under_qemu(self):
        unpacked = os.path.join(self.work, "unpacked")
        run("dpkg-deb", "-x", self.arm64, unpacked)
        binary = os.path.join(unpacked, "usr", "bin", "pimesh")
        self.assertIn("AArch64", run("readelf", "-h", binary).stdout)
        self.assertEqual(run("qemu-aarch64-static", binary, "--version").stdout.strip(), "0.1.0")

    def test_depends_follow_the_binary(self):
        # The static stub links no library; a real arm64 build gets its own list the same way.
        # libcurl4 is loaded on demand by every real build, so every package names it.
        self.assertEqual(library_depends(self.arm64), {"libcurl4"})

    def test_lintian_passes(self):
        # The stub alone is static (the real arm64 binary is not: its Depends come from its
        # NEEDED libraries, as for amd64); every other tag counts.
        result = run("lintian", "--fail-on", "error,warning", "--suppress-tags", "statically-linked-binary", self.arm64, check=False)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)


class ChrootInstallTests(unittest.TestCase):
    """Install, upgrade, remove and purge in a Debian 12 root, in that order."""

    @classmethod
    def setUpClass(cls):
        cls.work = scratch_as_root("pimesh-chroot-")
        cls.deb = build_deb("amd64", SHIP_BIN, os.path.join(cls.work, "deb"))
        cls.root = prepare_debian_root(os.path.join(cls.work, "root"))
        # The upgrade: the same package with a newer version, its conffiles unchanged.
        cls.newer = cls.repack(cls.deb, "0.1.1")

    @classmethod
    def tearDownClass(cls):
        run("umount", "--lazy", os.path.join(cls.root, "proc"), check=False)
        shutil.rmtree(cls.work, ignore_errors=True)

    @classmethod
    def repack(cls, deb, version):
        tree = os.path.join(cls.work, "repack")
        run("dpkg-deb", "-R", deb, tree)
        control = os.path.join(tree, "DEBIAN", "control")
        with open(control) as f:
            text = re.sub(r"^Version: .*$", "Version: " + version, f.read(), flags=re.M)
        with open(control, "w") as f:
            f.write(text)
        out = os.path.join(cls.work, f"pimesh_{version}_amd64.deb")
        run("dpkg-deb", "--root-owner-group", "-Zxz", "--build", tree, out)
        shutil.rmtree(tree)
        return out

    def chroot(self, *args, check=True):
        return run("chroot", self.root, *args, check=check)

    def dpkg(self, *args):
        return self.chroot("dpkg", *args)

    def path(self, inside):
        return os.path.join(self.root, inside.lstrip("/"))

    def owner_and_mode(self, inside):
        info = os.lstat(self.path(inside))
        user = self.chroot("getent", "passwd", str(info.st_uid)).stdout.split(":")[0]
        group = self.chroot("getent", "group", str(info.st_gid)).stdout.split(":")[0]
        return user, group, stat.S_IMODE(info.st_mode)

    def install(self, deb):
        shutil.copy(deb, self.path("/tmp/"))
        return self.dpkg("-i", "/tmp/" + os.path.basename(deb))

    def test_install_upgrade_remove_purge(self):
        self.install(self.deb)
        # Users: the lead's, in gpio for the LEDs; the agents' own, in no operator group.
        self.assertTrue(self.chroot("getent", "passwd", "pimesh").stdout)
        self.assertTrue(self.chroot("getent", "passwd", "pimesh-agent").stdout)
        self.assertIn("gpio", self.chroot("id", "-nG", "pimesh").stdout.split())
        self.assertNotIn("pimesh", self.chroot("id", "-nG", "pimesh-agent").stdout.split())
        # The data dir and tokens: the lead's alone.
        self.assertEqual(self.owner_and_mode("/var/lib/pimesh"), ("pimesh", "pimesh", 0o700))
        tokens = {}
        for name in ("node-token", "join-token"):
            inside = "/var/lib/pimesh/" + name
            self.assertEqual(self.owner_and_mode(inside), ("pimesh", "pimesh", 0o600), name)
            with open(self.path(inside)) as f:
                tokens[name] = f.read()
            self.assertGreaterEqual(len(tokens[name].strip()), 64)
        self.assertNotEqual(tokens["node-token"], tokens["join-token"])
        # Enabled the way systemd would on boot, with no systemd running.
        wants = "/etc/systemd/system/multi-user.target.wants/pimesh.service"
        self.assertTrue(os.readlink(self.path(wants)).endswith("/systemd/system/pimesh.service"), os.readlink(self.path(wants)))
        self.assertEqual(self.owner_and_mode("/usr/bin/pimesh"), ("root", "root", 0o755))
        # The config may hold the upload secret: the lead's group (operators) only.
        self.assertEqual(self.owner_and_mode("/etc/pimesh/pimesh.json"), ("root", "pimesh", 0o640))
        self.assertEqual(self.chroot("pimesh", "--version").stdout.strip(), "0.1.0")
        # The installed config is one the lead accepts.
        self.chroot("pimesh", "config", "check", "/etc/pimesh/pimesh.json")
        # systemd reads the unit without a complaint, and its exposure score is recorded.
        # --man=no: the root has no man-db; the page itself is checked by lintian.
        for unit in ("pimesh.service", "pimesh-rollback.service"):
            verify = self.chroot("systemd-analyze", "verify", "--man=no", "/usr/lib/systemd/system/" + unit, check=False)
            self.assertEqual((verify.returncode, verify.stderr.strip()), (0, ""), unit + verify.stdout)
        security = self.chroot("systemd-analyze", "security", "--offline=true", "/usr/lib/systemd/system/pimesh.service")
        score = re.search(r"Overall exposure level for pimesh.service: ([0-9.]+)", security.stdout)
        self.assertIsNotNone(score, security.stdout)
        print(f"\nsystemd-analyze security: {score.group(0)}")
        self.assertLess(float(score.group(1)), 6.0, security.stdout)

        # Upgrade: an operator's config edit and the tokens survive.
        config = self.path("/etc/pimesh/pimesh.json")
        with open(config) as f:
            edited = f.read().replace('"log_level": "info"', '"log_level": "debug"')
        self.assertIn('"debug"', edited)
        with open(config, "w") as f:
            f.write(edited)
        # A release that `pimesh update` made current is set aside by the upgrade.
        release = "ab" * 32
        os.makedirs(self.path("/var/lib/pimesh/releases/" + release))
        os.symlink("releases/" + release, self.path("/var/lib/pimesh/current"))
        self.install(self.newer)
        self.assertFalse(os.path.lexists(self.path("/var/lib/pimesh/current")))
        self.assertTrue(os.path.isdir(self.path("/var/lib/pimesh/releases/" + release)))
        self.assertEqual(self.chroot("dpkg-query", "-W", "-f=${Status} ${Version}", "pimesh").stdout, "install ok installed 0.1.1")
        with open(config) as f:
            self.assertEqual(f.read(), edited)
        for name, text in tokens.items():
            with open(self.path("/var/lib/pimesh/" + name)) as f:
                self.assertEqual(f.read(), text, name)
        self.assertTrue(os.path.islink(self.path(wants)))

        # Remove: the program goes, the data and the config stay.
        self.dpkg("-r", "pimesh")
        self.assertFalse(os.path.exists(self.path("/usr/bin/pimesh")))
        self.assertTrue(os.path.exists(self.path("/var/lib/pimesh/node-token")))
        self.assertTrue(os.path.exists(config))

        # Purge: the data, the config and the enablement go; the users stay (Debian policy).
        self.dpkg("-P", "pimesh")
        for gone in ("/var/lib/pimesh", "/etc/pimesh", wants):
            self.assertFalse(os.path.lexists(self.path(gone)), gone)
        self.assertTrue(self.chroot("getent", "passwd", "pimesh").stdout)
        self.assertEqual(self.chroot("dpkg-statoverride", "--list", check=False).stdout, "")

    def test_reinstalling_keeps_the_tokens(self):
        # Reinstalling must not replace tokens that agents and scripts already hold.
        self.install(self.deb)
        with open(self.path("/var/lib/pimesh/node-token")) as f:
            before = f.read()
        self.dpkg("--force-confold", "-i", "/tmp/" + os.path.basename(self.deb))
        with open(self.path("/var/lib/pimesh/node-token")) as f:
            self.assertEqual(f.read(), before)
        self.dpkg("-P", "pimesh")


if __name__ == "__main__":
    unittest.main()
