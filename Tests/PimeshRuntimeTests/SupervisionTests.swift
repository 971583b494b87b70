import Foundation
import Glibc
import PimeshAgent
import PimeshCore
import PimeshSystem
import Synchronization
import Testing
import PimeshTestSupport

@testable import PimeshRuntime

func scratch(_ name: String) -> String {
    Scratch.directory("pimesh-test-\(name)", mode: 0o755)
}

func writeFile(_ path: String, _ text: String) {
    try! FileIO.writeAtomically(path: path, bytes: Array(text.utf8))
}

@Suite struct AgentManifestTests {
    func refusal(_ text: String) -> ConfigError? {
        do {
            _ = try AgentManifest.parse(text: text, file: "agents.d/x.json")
            return nil
        } catch {
            return error
        }
    }

    @Test func aNameInTheFormOfAnAgentIDIsRefused() throws {
        let error = try #require(refusal(#"{"name": "50A2A8F8-094E-43AB-8FFB-365810D41965", "command": "/bin/sh"}"#))
        #expect(error.key == "name" && error.reason.contains("may not have the form of an agent id"), "\(error)")
        // One short of the form is a name like any other.
        #expect(refusal(#"{"name": "50A2A8F8-094E-43AB-8FFB-365810D4196", "command": "/bin/sh"}"#) == nil)
    }

    @Test func aFullManifest() throws {
        let manifest = try AgentManifest.parse(
            text: """
                {"name": "ocr-1", "command": "/bin/sh", "args": ["-c", "exec sleep 1"], "env": {"MODEL": "small"},
                 "class": "CLASS_A_EDGE", "capabilities": ["ocr", "ocr"], "memory_limit_mb": 64,
                 "restart": {"policy": "on-failure", "initial_backoff_ms": 50, "max_backoff_ms": 5000, "stable_after_s": 3}}
                """, file: "agents.d/ocr.json")
        #expect(manifest.name == "ocr-1")
        #expect(manifest.mode == .supervised)
        #expect(manifest.args == ["-c", "exec sleep 1"])
        #expect(manifest.environment.map { "\($0.0)=\($0.1)" } == ["MODEL=small"])
        #expect(manifest.agentClass == .edge)
        #expect(manifest.capabilities == ["ocr"])
        #expect(manifest.memoryLimitBytes == 64 << 20)
        #expect(manifest.restartPolicy == .onFailure)
        #expect(manifest.backoff == .init(initial: .milliseconds(50), maximum: .seconds(5), stableAfter: .seconds(3)))
        #expect(manifest.healCommand == ["podman", "restart", "{name}"])
        let attached = try AgentManifest.parse(
            text: #"{"name": "web", "mode": "attached", "heal_command": ["docker", "restart", "{name}"], "heal_timeout_s": 10}"#,
            file: "agents.d/web.json")
        #expect(attached.mode == .attached)
        #expect(attached.command == nil)
        #expect(attached.healTimeout == .seconds(10))
    }

    @Test func aLivenessProbeOnLoopbackAndAFlowGate() throws {
        let manifest = try AgentManifest.parse(
            text: #"{"name": "llm", "command": "/bin/sh", "max_concurrency": 4, "liveness_probe": {"url": "http://localhost:8081/v1/readiness"}}"#,
            file: "agents.d/llm.json")
        #expect(manifest.maxConcurrency == 4)
        #expect(manifest.livenessProbe?.address == .loopback(host: "127.0.0.1", port: 8081))
        #expect(manifest.livenessProbe?.path == "/v1/readiness")
        // The seed's 5,000 ms; one not-live answer is enough, every 10 s.
        #expect(manifest.livenessProbe?.settings == LivenessProbe.Settings(every: .seconds(10), timeout: .milliseconds(5000), failures: 1))
        let tuned = try AgentManifest.parse(
            text: #"{"name": "llm", "command": "/bin/sh", "liveness_probe": {"url": "http://127.0.0.1:9", "every_s": 2, "timeout_ms": 800, "failures": 3}}"#,
            file: "agents.d/llm.json")
        #expect(tuned.livenessProbe?.path == "/")
        #expect(tuned.livenessProbe?.settings == LivenessProbe.Settings(every: .seconds(2), timeout: .milliseconds(800), failures: 3))
        #expect(try AgentManifest.parse(text: #"{"name": "a", "command": "/bin/sh"}"#, file: "x").livenessProbe == nil)
    }

    @Test func badManifestsNameTheFileTheKeyAndWhy() {
        let unknown = refusal("{\n  \"name\": \"a\",\n  \"command\": \"/bin/sh\",\n  \"colour\": \"red\"\n}")
        #expect(unknown?.file == "agents.d/x.json")
        #expect(unknown?.key == "colour")
        #expect(unknown?.line == 4)
        #expect(unknown?.description.contains("unknown key") == true)
        let missing = refusal(#"{"name": "a"}"#)
        #expect(missing?.key == "command")
        #expect(missing?.reason.contains("is required") == true)
        #expect(refusal(#"{"name": "a", "command": "/no/such/program"}"#)?.reason.contains("does not exist") == true)
        #expect(refusal(#"{"name": "a", "command": "bin/sh"}"#)?.key == "command")
        #expect(refusal(#"{"name": "a", "command": "/bin/sh", "memory_limit_mb": 0}"#)?.key == "memory_limit_mb")
        #expect(refusal(#"{"name": "a", "command": "/bin/sh", "memory_limit_mb": 1.5}"#)?.key == "memory_limit_mb")
        #expect(refusal(#"{"name": "a", "command": "/bin/sh", "restart": {"policy": "sometimes"}}"#)?.key == "restart.policy")
        #expect(
            refusal(#"{"name": "a", "command": "/bin/sh", "restart": {"initial_backoff_ms": 500, "max_backoff_ms": 100}}"#)?.key
                == "restart.max_backoff_ms")
        #expect(refusal(#"{"name": "a", "command": "/bin/sh", "env": {"PIMESH_AGENT_ID": "x"}}"#)?.key == "env.PIMESH_AGENT_ID")
        #expect(refusal(#"{"name": "a b", "command": "/bin/sh"}"#)?.key == "name")
        #expect(refusal(#"{"name": "a", "command": "/bin/sh", "class": "CLASS_Z"}"#)?.key == "class")
        #expect(refusal(#"{"name": "a", "command": "/bin/sh", "capabilities": ["Upper"]}"#)?.key == "capabilities")
        #expect(refusal(#"{"name": "a", "mode": "attached", "command": "/bin/sh"}"#)?.key == "command")
        #expect(refusal(#"{"name": "a", "mode": "sometimes"}"#)?.key == "mode")
        #expect(refusal("[1]")?.reason.contains("must be an object") == true)
        // The lead probes only this node's loopback, over plain HTTP, with a port.
        for url in ["https://127.0.0.1:8080/", "http://10.0.0.5:8080/", "http://127.0.0.1/", "http://127.0.0.1:0/", "http://127.0.0.1:8080/a b"] {
            #expect(refusal(#"{"name": "a", "command": "/bin/sh", "liveness_probe": {"url": "\#(url)"}}"#)?.key == "liveness_probe.url", "\(url)")
        }
        #expect(refusal(#"{"name": "a", "command": "/bin/sh", "liveness_probe": {}}"#)?.key == "liveness_probe.url")
        #expect(refusal(#"{"name": "a", "command": "/bin/sh", "liveness_probe": {"url": "http://127.0.0.1:1", "timeout_ms": 99}}"#)?.key == "liveness_probe.timeout_ms")
        #expect(refusal(#"{"name": "a", "command": "/bin/sh", "liveness_probe": {"url": "http://127.0.0.1:1", "path": "/"}}"#)?.key == "liveness_probe.path")
        #expect(refusal(#"{"name": "a", "command": "/bin/sh", "max_concurrency": 0}"#)?.key == "max_concurrency")
        #expect(refusal("{")?.key == "")
        // Users and groups are resolved when the manifest loads; the key at fault is named.
        #expect(refusal(#"{"name": "a", "command": "/bin/sh", "user": "no-such-user-here"}"#)?.key == "user")
        #expect(refusal(#"{"name": "a", "command": "/bin/sh", "user": "nobody", "group": "no-such-group-here"}"#)?.key == "group")
        #expect(refusal(#"{"name": "a", "command": "/bin/sh", "user": "nobody", "groups": ["nogroup", "no-such-group-here"]}"#)?.key == "groups")
        #expect(refusal(#"{"name": "a", "command": "/bin/sh", "group": "nogroup"}"#)?.key == "group")
    }

    @Test func aBadFileDoesNotStopTheOthers() {
        let dir = scratch("manifests")
        writeFile(dir + "/a.json", #"{"name": "a", "command": "/bin/sh"}"#)
        writeFile(dir + "/b.json", #"{"name": "b", "command": "/bin/sh", "restart": {"policy": "sometimes"}}"#)
        writeFile(dir + "/c.json", #"{"name": "a", "command": "/bin/sh"}"#)
        writeFile(dir + "/notes.txt", "not a manifest")
        let (manifests, refused) = AgentManifest.loadDirectory(dir)
        #expect(manifests.map(\.name) == ["a"])
        #expect(refused.count == 2)
        #expect(refused[0].file == dir + "/b.json")
        #expect(refused[1].description.contains("already used by \(dir)/a.json"))
        #expect(AgentManifest.loadDirectory(dir + "/missing").manifests.isEmpty)
    }

    /// A FIFO (or a link to one) in agents.d is refused without a byte read: opening it for
    /// reading blocked until someone wrote to it, and hung the lead.
    @Test func aFIFOOrDeviceInAgentsDIsRefusedWithoutBlocking() throws {
        let dir = scratch("manifest-fifo")
        writeFile(dir + "/a.json", #"{"name": "a", "command": "/bin/sh"}"#)
        #expect(mkfifo(dir + "/fifo.json", 0o600) == 0)
        #expect(symlink(dir + "/fifo.json", dir + "/link.json") == 0)
        #expect(symlink("/dev/zero", dir + "/zero.json") == 0)
        let loaded = Mutex<(manifests: [AgentManifest], refused: [ConfigError])?>(nil)
        let thread = Thread { loaded.withLock { $0 = AgentManifest.loadDirectory(dir) } }
        thread.start()
        let deadline = Clock.monotonicNow() + .seconds(20)
        while loaded.withLock({ $0 }) == nil, Clock.monotonicNow() < deadline { usleep(10_000) }
        let result = try #require(loaded.withLock { $0 }, "loading agents.d with a FIFO in it did not return within 20 s")
        #expect(result.manifests.map(\.name) == ["a"])
        let reasons = Dictionary(uniqueKeysWithValues: result.refused.map { ($0.file, $0.reason) })
        #expect(reasons[dir + "/fifo.json"]?.contains("a FIFO, not a regular file") == true, "\(reasons)")
        #expect(reasons[dir + "/link.json"]?.contains("a FIFO, not a regular file") == true, "\(reasons)")
        #expect(reasons[dir + "/zero.json"]?.contains("a character device, not a regular file") == true, "\(reasons)")
    }

    /// As OpenSSH judges its configuration: a manifest names a program and the user it runs as,
    /// so one that others could write, or that belongs to another user, is refused, and so is
    /// every file of a directory that others could write into.
    @Test func manifestsOthersCouldWriteAreRefused() throws {
        try #require(geteuid() == 0, "chown needs root; make test runs as root")
        let dir = scratch("manifest-modes")
        writeFile(dir + "/good.json", #"{"name": "good", "command": "/bin/sh"}"#)
        writeFile(dir + "/loose.json", #"{"name": "loose", "command": "/bin/sh", "user": "root"}"#)
        writeFile(dir + "/foreign.json", #"{"name": "foreign", "command": "/bin/sh"}"#)
        chmod(dir + "/loose.json", 0o666)
        chown(dir + "/foreign.json", 65534, 65534)
        let (manifests, refused) = AgentManifest.loadDirectory(dir)
        #expect(manifests.map(\.name) == ["good"])
        let reasons = Dictionary(uniqueKeysWithValues: refused.map { ($0.file, $0.reason) })
        #expect(reasons[dir + "/loose.json"]?.contains("is writable by group or others (mode 666)") == true, "\(reasons)")
        #expect(reasons[dir + "/foreign.json"]?.contains("belongs to uid 65534") == true, "\(reasons)")
        chmod(dir, 0o777)
        defer { chmod(dir, 0o755) }
        let open = AgentManifest.loadDirectory(dir)
        #expect(open.manifests.isEmpty)
        #expect(open.refused.map(\.file) == [dir] && open.refused.first?.reason.contains("writable by group or others") == true)
        #expect(TrustedFile.directoryProblem(dir)?.missing == false)
        #expect(TrustedFile.directoryProblem(dir + "/missing")?.missing == true)
    }

    /// (uid_t)-1 means "unchanged" to setresuid: the agent ran as the lead's root.
    @Test func theUidAndGidThatMeanUnchangedAreRefused() {
        #expect(refusal(#"{"name": "a", "command": "/bin/sh", "user": "4294967295"}"#)?.key == "user")
        #expect(refusal(#"{"name": "a", "command": "/bin/sh", "user": "4294967295", "group": "0"}"#)?.key == "user")
        #expect(refusal(#"{"name": "a", "command": "/bin/sh", "user": "65534", "group": "4294967295"}"#)?.key == "group")
        #expect(refusal(#"{"name": "a", "command": "/bin/sh", "user": "65534", "groups": ["4294967295"]}"#)?.key == "groups")
    }

    @Test func textThatIsNotUTF8OrHoldsANULIsRefusedWhereItIs() {
        let dir = scratch("manifest-bytes")
        let bytes = Array("{\n  \"name\": \"a\",\n  \"command\": \"/bin/sh\",\n  \"args\": [\"".utf8) + [0xFF, 0xFE] + Array("\"]\n}".utf8)
        try! FileIO.writeAtomically(path: dir + "/a.json", bytes: bytes)
        let (manifests, refused) = AgentManifest.loadDirectory(dir)
        #expect(manifests.isEmpty)
        #expect(refused.first?.line == 4 && refused.first?.column == 13, "\(refused)")
        #expect(refused.first?.reason.contains("not UTF-8: byte 0xFF") == true, "\(refused)")
        #expect(refusal(#"{"name": "a", "command": "/bin/sh\u0000junk"}"#)?.key == "command")
        #expect(refusal(#"{"name": "a", "command": "/bin/sh", "args": ["ok", "a\u0000b"]}"#)?.reason.contains("entry 1 must not contain a NUL") == true)
        #expect(refusal(#"{"name": "a", "command": "/bin/sh", "env": {"X": "a\u0000b"}}"#)?.key == "env.X")
    }

    @Test func anErrorIsPlacedAtItsKeyNotAtTheSameTextAsAValue() {
        let text = "{\n  \"name\": \"user\",\n  \"command\": \"/bin/sh\",\n  \"env\": {\"priority\": \"x\"},\n  \"user\": \"no-such-user-here\",\n  \"priority\": 1e20\n}"
        #expect(refusal(text)?.line == 5)
        let priority = refusal(text.replacingOccurrences(of: "no-such-user-here", with: "root"))
        #expect(priority?.line == 6, "\(String(describing: priority))")
        #expect(priority?.reason.contains("out of range 0…9") == true, "\(String(describing: priority))")
    }

    /// Two files that claim one name: the one the agent runs from keeps it. A new file that
    /// sorted first took the running agent over.
    @Test func aSecondFileWithARunningAgentsNameIsTheOneRefused() {
        let dir = scratch("manifest-duplicate")
        writeFile(dir + "/w2.json", #"{"name": "w2", "command": "/bin/sh"}"#)
        writeFile(dir + "/0dup.json", #"{"name": "w2", "command": "/bin/true"}"#)
        let fresh = AgentManifest.loadDirectory(dir)
        #expect(fresh.manifests.map(\.file) == [dir + "/0dup.json"])
        let (manifests, refused) = AgentManifest.loadDirectory(dir, running: ["w2": dir + "/w2.json"])
        #expect(manifests.map(\.file) == [dir + "/w2.json"])
        #expect(refused.map(\.file) == [dir + "/0dup.json"])
        #expect(refused.first?.reason.contains("already used by \(dir)/w2.json") == true)
    }

    /// The 2-second look for attached manifests parses agents.d only when a file changed; what
    /// it returns is what a full load returns, before and after each kind of change.
    @Test func theManifestCacheSeesEveryChangeToTheDirectory() {
        let dir = scratch("manifest-cache")
        let cache = ManifestDirectoryCache(directory: dir)
        func names() -> [String] { cache.load().manifests.map { "\($0.name):\($0.mode.rawValue)" } }
        #expect(names().isEmpty)
        writeFile(dir + "/a.json", #"{"name": "a", "command": "/bin/sh"}"#)
        #expect(names() == ["a:supervised"])
        let unchanged = ManifestDirectoryCache.signature(of: dir)
        #expect(ManifestDirectoryCache.signature(of: dir) == unchanged)
        #expect(names() == ["a:supervised"])
        // Replaced with the same size, as editors and config tools write (a new inode).
        writeFile(dir + "/a.json", #"{"name": "a", "mode": "attached"}"# + String(repeating: " ", count: 3))
        #expect(ManifestDirectoryCache.signature(of: dir) != unchanged)
        #expect(names() == ["a:attached"])
        writeFile(dir + "/b.json", #"{"name": "b", "mode": "attached"}"#)
        writeFile(dir + "/notes.txt", "not a manifest")
        #expect(names() == ["a:attached", "b:attached"])
        unlink(dir + "/a.json")
        #expect(names() == ["b:attached"])
        writeFile(dir + "/b.json", #"{"name": "b", "restart": {"policy": "sometimes"}}"#)
        #expect(names().isEmpty)
        #expect(cache.load().refused.count == AgentManifest.loadDirectory(dir).refused.count)
    }
}

@Suite struct ChildProcessTests {
    func wait(_ pid: pid_t) -> Int32 {
        var status: Int32 = 0
        _ = waitpid(pid, &status, 0)
        return status
    }

    @Test func capturesOutputAndTheExitStatus() throws {
        let child = try ChildProcess.spawn(
            program: "sh", arguments: ["-c", "echo out; echo err >&2; echo $GREETING; exit 3"],
            environment: ["PATH=/usr/bin:/bin", "GREETING=hello"], captureOutput: true)
        var output: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 256)
        while true {
            let count = read(child.output!, &buffer, buffer.count)
            if count <= 0 { break }
            output += buffer[0..<count]
        }
        close(child.output!)
        #expect(String(decoding: output, as: UTF8.self) == "out\nerr\nhello\n")
        let described = ChildProcess.describe(waitStatus: wait(child.pid))
        #expect(described.text == "exited with status 3")
        #expect(!described.clean)
    }

    @Test func signalsAndCleanExits() throws {
        let killed = try ChildProcess.spawn(program: "/bin/sh", arguments: ["-c", "kill -9 $$"], environment: [], captureOutput: false)
        #expect(ChildProcess.describe(waitStatus: wait(killed.pid)).text == "killed by signal 9 (KILL)")
        let clean = try ChildProcess.spawn(program: "/bin/true", arguments: [], environment: [], captureOutput: false)
        #expect(ChildProcess.describe(waitStatus: wait(clean.pid)) == ("exited with status 0", true))
        #expect(throws: ChildProcess.SpawnError.self) {
            try ChildProcess.spawn(program: "no-such-program-here", arguments: [], environment: ["PATH=/bin"], captureOutput: false)
        }
    }

    /// A supervised agent's pid is recorded while its process waits: the program runs only
    /// after that, and a recorder that fails (or a lead that dies meanwhile: the same closed
    /// gate) ends the process before it runs anything.
    @Test func aHeldChildRunsOnlyOnceItsPidIsRecorded() throws {
        let dir = scratch("held")
        let ran = dir + "/ran"
        var recorded: pid_t = 0
        let child = try ChildProcess.spawn(
            program: "/bin/sh", arguments: ["-c", "touch \(ran)"], environment: [], captureOutput: false
        ) { pid in
            recorded = pid
            var target = [CChar](repeating: 0, count: 4096)
            let length = readlink("/proc/\(pid)/exe", &target, target.count - 1)
            let image = length > 0 ? String(decoding: target[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self) : ""
            var real = [CChar](repeating: 0, count: 4096)
            let shell = realpath("/bin/sh", &real).map { String(cString: $0) } ?? "/bin/sh"
            #expect(!image.isEmpty && image != shell, "the child is still the spawner's copy, not the shell: \(image)")
            #expect(!FileIO.exists(ran))
        }
        #expect(recorded == child.pid)
        #expect(ChildProcess.describe(waitStatus: wait(child.pid)) == ("exited with status 0", true))
        #expect(FileIO.exists(ran))

        struct RecordFailed: Error {}
        let neverRan = dir + "/never"
        var refusedPID: pid_t = 0
        #expect(throws: RecordFailed.self) {
            try ChildProcess.spawn(program: "/bin/sh", arguments: ["-c", "touch \(neverRan)"], environment: [], captureOutput: false) { pid in
                refusedPID = pid
                throw RecordFailed()
            }
        }
        #expect(refusedPID > 0)
        // Already collected: no zombie is left, and the program never ran.
        var status: Int32 = 0
        #expect(waitpid(refusedPID, &status, WNOHANG) == -1 && errno == ECHILD)
        #expect(!FileIO.exists(neverRan))
        FileIO.removeTree(dir)
    }

    @Test func childrenGetDefaultSignalsAndTheirOwnProcessGroup() throws {
        // The lead ignores SIGPIPE (and blocks others) for itself; a child must not inherit that.
        // grep reads its own status as exec left it (a shell shows its own masking while it waits
        // for a command: under load that once read SIGCHLD blocked).
        signal(SIGPIPE, SIG_IGN)
        let child = try ChildProcess.spawn(
            program: "/bin/grep", arguments: ["-E", "^(SigIgn|SigBlk|Pid|NSpgid):", "/proc/self/status"],
            environment: ["PATH=/usr/bin:/bin"], captureOutput: true)
        var output: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 512)
        while true {
            let count = read(child.output!, &buffer, buffer.count)
            if count <= 0 { break }
            output += buffer[0..<count]
        }
        close(child.output!)
        _ = wait(child.pid)
        let lines = String(decoding: output, as: UTF8.self).split(separator: "\n")
        func field(_ name: String) -> String? {
            lines.first { $0.hasPrefix(name + ":") }.map { $0.dropFirst(name.count + 1).trimmingSpaces }
        }
        #expect(field("SigBlk") == "0000000000000000", "\(lines)")
        // SIGPIPE (bit 13) is not ignored.
        let ignored = field("SigIgn").flatMap { UInt64($0, radix: 16) } ?? 1 << 12
        #expect(ignored & (1 << 12) == 0, "\(lines)")
        #expect(field("Pid") != nil && field("Pid") == field("NSpgid"), "the child leads its own process group: \(lines)")
    }
}

extension Substring {
    var trimmingSpaces: String {
        String(self.drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed())
    }
}

@Suite struct AgentCgroupsTests {
    func fakeTree(writable: Bool = true) -> (root: String, procSelf: String, base: String) {
        let dir = scratch("cgroup")
        let base = dir + "/sys/fs/cgroup/system.slice/pimesh.service"
        try! FileIO.makeDirectories(base)
        writeFile(base + "/cgroup.procs", "")
        writeFile(base + "/cgroup.subtree_control", "")
        writeFile(dir + "/self-cgroup", "0::/system.slice/pimesh.service\n")
        if !writable { chmod(base + "/cgroup.procs", 0o444) }
        return (dir + "/sys/fs/cgroup", dir + "/self-cgroup", base)
    }

    @Test func delegatedTreeGetsALeadLeafAndAgentGroups() throws {
        let tree = fakeTree()
        let cgroups = try #require(AgentCgroups.detect(cgroupRoot: tree.root, procSelfCgroup: tree.procSelf))
        #expect(cgroups.base == tree.base)
        // The kernel creates the interface files of a new cgroup; the fake tree has to.
        try FileIO.makeDirectories(tree.base + "/lead")
        writeFile(tree.base + "/lead/cgroup.procs", "")
        try cgroups.prepare(leadPID: 4242)
        #expect(try FileIO.readText(path: tree.base + "/lead/cgroup.procs") == "4242")
        #expect(try FileIO.readText(path: tree.base + "/cgroup.subtree_control") == "+memory")
        try FileIO.makeDirectories(tree.base + "/agents/w1")
        writeFile(tree.base + "/agents/w1/memory.max", "max")
        writeFile(tree.base + "/agents/w1/cgroup.procs", "")
        writeFile(tree.base + "/agents/w1/cgroup.freeze", "0")
        writeFile(tree.base + "/agents/w1/memory.current", "1048576\n")
        try cgroups.place(pid: 777, name: "w1", memoryLimitBytes: 64 << 20)
        #expect(try FileIO.readText(path: tree.base + "/agents/w1/memory.max") == "67108864")
        #expect(try FileIO.readText(path: tree.base + "/agents/w1/cgroup.procs") == "777")
        try cgroups.freeze(name: "w1", true)
        #expect(try FileIO.readText(path: tree.base + "/agents/w1/cgroup.freeze") == "1")
        try cgroups.freeze(name: "w1", false)
        #expect(try FileIO.readText(path: tree.base + "/agents/w1/cgroup.freeze") == "0")
        #expect(cgroups.memoryCurrent(name: "w1") == 1_048_576)
    }

    @Test func notDelegatedMeansNil() {
        if getuid() != 0 {
            let readOnly = fakeTree(writable: false)
            #expect(AgentCgroups.detect(cgroupRoot: readOnly.root, procSelfCgroup: readOnly.procSelf) == nil)
        }
        let tree = fakeTree()
        writeFile(tree.procSelf, "12:memory:/legacy\n")
        #expect(AgentCgroups.detect(cgroupRoot: tree.root, procSelfCgroup: tree.procSelf) == nil, "cgroup v1 only")
        #expect(AgentCgroups.detect(cgroupRoot: tree.root, procSelfCgroup: tree.root + "/missing") == nil)
    }

    @Test func privateResidentMemoryOfAProcess() {
        let bytes = ProcessRSS.bytes(pid: getpid(), procRoot: "/proc")
        #expect((bytes ?? 0) > 0)
        #expect(ProcessRSS.bytes(pid: 999_999_999, procRoot: "/proc") == nil)
    }
}

@Suite struct AgentLogPumpTests {
    @Test func copiesRotatesAndTails() throws {
        let dir = scratch("logs")
        let pump = try AgentLogPump(directory: dir, maxBytes: 4096)
        var ends: [Int32] = [0, 0]
        #expect(pipe(&ends) == 0)
        pump.attach(fd: ends[0], name: "w1", header: "pid 1 started")
        let line = Array(String(repeating: "x", count: 99).utf8) + [10]
        for _ in 0..<60 {
            _ = line.withUnsafeBytes { write(ends[1], $0.baseAddress, $0.count) }
        }
        _ = Array("last line\n".utf8).withUnsafeBytes { write(ends[1], $0.baseAddress, $0.count) }
        close(ends[1])
        var tail: [UInt8] = []
        for _ in 0..<200 {
            tail = pump.tail(of: "w1", bytes: 10)
            if tail == Array("last line\n".utf8) { break }
            usleep(10_000)
        }
        #expect(String(decoding: tail, as: UTF8.self) == "last line\n")
        #expect(FileIO.exists(dir + "/w1.log.1"), "rotated past 4 KiB")
        let current = try FileIO.read(path: dir + "/w1.log")
        let older = try FileIO.read(path: dir + "/w1.log.1")
        // One byte over, at most: the newline that ends a line rotation cut.
        #expect(current.count <= 4097 && older.count <= 4097)
        // Each line carries the time it was read and its stream, also the rest of a line that
        // rotation cut in two: a file never starts with bytes the agent chose.
        let olderLines = String(decoding: older, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).dropLast()
        let first = try #require(AgentLogLine.parse(olderLines[olderLines.startIndex]))
        #expect(first.stream == .lead && first.text == "--- pid 1 started ---")
        #expect(abs(first.timeMs - Clock.wallMilliseconds()) < 60_000)
        #expect(older.last == 10 && current.last == 10)
        let currentLines = String(decoding: current, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).dropLast()
        let lines = currentLines.compactMap(AgentLogLine.parse)
        #expect(lines.count == currentLines.count, "every line of the newer file is stamped: \(currentLines.prefix(2))")
        #expect(!lines.isEmpty && lines.allSatisfy { $0.stream == .out && String(repeating: "x", count: 99).hasSuffix($0.text) || $0.text == "last line" })
        #expect(olderLines.dropFirst().compactMap(AgentLogLine.parse).allSatisfy { $0.stream == .out && String(repeating: "x", count: 99).hasPrefix($0.text) })
        #expect(lines.last?.text == "last line")
    }

    /// A header (a heal command's, with its arguments from a manifest) never takes a log past
    /// its cap: it is cut past 1 KiB, and goes whole into a new file when it would not fit.
    @Test func aLongHeaderIsCutAndNeverPassesTheCap() throws {
        let dir = scratch("logs")
        let pump = try AgentLogPump(directory: dir, maxBytes: 4096)
        for round in 0..<6 {
            var ends: [Int32] = [0, 0]
            #expect(pipe(&ends) == 0)
            pump.attach(fd: ends[0], name: "w1.heal", header: "/bin/heal " + String(repeating: "a", count: 3000) + " (round \(round))")
            close(ends[1])
        }
        #expect(FileIO.exists(dir + "/w1.heal.log.1"), "the header is written before attach returns")
        for file in ["/w1.heal.log", "/w1.heal.log.1"] {
            let bytes = try FileIO.read(path: dir + file)
            #expect(bytes.count <= 4096, "\(file): \(bytes.count) bytes")
            let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n").compactMap(AgentLogLine.parse)
            #expect(!lines.isEmpty && lines.allSatisfy { $0.stream == .lead && $0.text.hasPrefix("--- /bin/heal aaa") && $0.text.hasSuffix("… ---") })
            #expect(lines.allSatisfy { $0.text.utf8.count <= AgentLogPump.maxHeaderBytes + 12 })
        }
    }
}

@Suite struct HealthEventLogTests {
    @Test func repeatsAreCountedButAnAgentsHistoryStaysInOrder() {
        let log = HealthEventLog(capacity: 100)
        log.append(kind: "alive", agent: "w1", detail: "unknown → alive: heartbeating")
        log.append(kind: "exited", agent: "w1", detail: "alive → exited: killed")
        log.append(kind: "unknown", agent: "w1", detail: "exited → unknown: started")
        log.append(kind: "alive", agent: "w1", detail: "unknown → alive: heartbeating")
        #expect(log.list(since: 0, limit: 100).events.map(\.kind) == ["alive", "exited", "unknown", "alive"])

        // The same event again, with only other agents' events between: one row, counted.
        log.append(kind: "restart_scheduled", agent: "crasher", detail: "in 100 ms")
        log.append(kind: "alive", agent: "w2", detail: "unknown → alive: heartbeating")
        log.append(kind: "restart_scheduled", agent: "crasher", detail: "in 100 ms")
        let events = log.list(since: 0, limit: 100).events
        #expect(events.map(\.kind) == ["alive", "exited", "unknown", "alive", "restart_scheduled", "alive"])
        #expect(events[4].count == 2)
    }
}

/// Heartbeat reads pause 10 ms between batches, shorter under heavy traffic so that a batch
/// stays near 128 datagrams (a Pi's default receive buffer holds some 400–550).
@Suite struct HeartbeatReadPaceTests {
    @Test func thePauseShortensInProportionAboveTheAimedBatch() {
        #expect(HeartbeatSocket.pause(after: 0) == .nanoseconds(10_000_000))
        #expect(HeartbeatSocket.pause(after: 128) == .nanoseconds(10_000_000))
        #expect(HeartbeatSocket.pause(after: 256) == .nanoseconds(5_000_000))
        #expect(HeartbeatSocket.pause(after: 512) == .nanoseconds(2_500_000))
        #expect(HeartbeatSocket.pause(after: 100_000) == .nanoseconds(1_000_000))
    }
}

/// The lead's own recvmmsg socket: what it hands on, what it cuts, where it answers.
@Suite struct HeartbeatSocketTests {
    /// A client socket bound on loopback, to send from and receive on.
    private func client() throws -> (fd: Int32, peer: DatagramPeer) {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        try #require(fd >= 0)
        var timeout = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        _ = try LocalAddress.loopback(host: "127.0.0.1", port: 0).withSockaddr { bind(fd, $0, $1) }
        var bound = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &bound) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        return (fd, DatagramPeer(bound))
    }

    @Test func datagramsArriveWithTheirSourceLongOnesCutAndAnswersReachTheSender() async throws {
        let lead = try HeartbeatSocket.bind(host: "127.0.0.1", port: 0)
        #expect(lead.port > 0)
        let (fd, peer) = try client()
        defer { close(fd) }
        let received = Mutex<[(length: Int, first: UInt8, peer: DatagramPeer)]>([])
        let running = Task { try await lead.run { bytes, from in received.withLock { $0.append((bytes.count, bytes.first ?? 0, from)) } } }
        let leadPeer = try DatagramPeer(host: "127.0.0.1", port: lead.port)
        for (size, marker) in [(64, UInt8(1)), (80, 2), (1000, 3)] {
            let bytes = [UInt8](repeating: marker, count: size)
            _ = bytes.withUnsafeBytes { raw in leadPeer.withSockaddr { sendto(fd, raw.baseAddress, raw.count, 0, $0, $1) } }
        }
        let deadline = Clock.monotonicNow() + .seconds(30)
        while received.withLock({ $0.count }) < 3 && Clock.monotonicNow() < deadline { try await Task.sleep(for: .milliseconds(5)) }
        let got = received.withLock { $0 }
        #expect(got.map(\.first) == [1, 2, 3])
        // 1,000 bytes arrive as the slot's 256: still too long for any heartbeat, never short.
        #expect(got.map(\.length) == [64, 80, HeartbeatSocket.slotBytes])
        #expect(got.allSatisfy { $0.peer == peer })

        lead.send([7, 7, 7], to: peer)
        var answer = [UInt8](repeating: 0, count: 16)
        let count = answer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        #expect(Array(answer.prefix(max(0, count))) == [7, 7, 7])

        lead.stop()
        try await running.value
    }

    @Test func aTakenPortIsRefusedWithItsAddress() throws {
        let first = try HeartbeatSocket.bind(host: "127.0.0.1", port: 0)
        #expect {
            _ = try HeartbeatSocket.bind(host: "127.0.0.1", port: first.port)
        } throws: { error in
            "\(error)".contains("127.0.0.1:\(first.port)") && "\(error)".contains("in use")
        }
    }
}
