import Foundation
import PimeshAgent
import PimeshCore
import PimeshSystem
import Testing

/// A Pi has no RTC: it boots at the time fake-hwclock saved, NTP then steps the clock forward
/// (by days after the Pi was off that long), and at times back. Here the lead and its swarm run
/// with a preloaded library that shifts CLOCK_REALTIME (and only it) by an offset read from a
/// file the test rewrites: the step happens under them, as it would on the Pi, while the
/// monotonic clock and every timer run on untouched. (libfaketime also moves timerfd deadlines,
/// which stalls the lead's sleeps: a fault of the tool, not of a Pi.)
@Suite(.serialized) struct ClockStepEndToEndTests {
    static let shimSource = #"""
        #define _GNU_SOURCE
        #include <dlfcn.h>
        #include <fcntl.h>
        #include <stdlib.h>
        #include <sys/mman.h>
        #include <sys/time.h>
        #include <time.h>
        #include <unistd.h>

        /* The offset in milliseconds: 24 bytes, "%+023lld\n", mapped shared so a rewrite shows at once. */
        static volatile const char *offsetText;

        static long long offsetMs(void) {
            if (!offsetText) {
                const char *path = getenv("PIMESH_TEST_WALL_OFFSET_FILE");
                if (!path) return 0;
                int fd = open(path, O_RDONLY | O_CLOEXEC);
                if (fd < 0) return 0;
                void *mapped = mmap(0, 24, PROT_READ, MAP_SHARED, fd, 0);
                close(fd);
                if (mapped == MAP_FAILED) return 0;
                offsetText = mapped;
            }
            char text[25];
            for (int i = 0; i < 24; i++) text[i] = offsetText[i];
            text[24] = 0;
            return strtoll(text, 0, 10);
        }

        int clock_gettime(clockid_t clock, struct timespec *ts) {
            static int (*real)(clockid_t, struct timespec *);
            if (!real) real = dlsym(RTLD_NEXT, "clock_gettime");
            int result = real(clock, ts);
            if (result != 0 || (clock != CLOCK_REALTIME && clock != CLOCK_REALTIME_COARSE)) return result;
            long long offset = offsetMs();
            long long ns = (long long)ts->tv_nsec + (offset % 1000) * 1000000LL;
            ts->tv_sec += offset / 1000;
            while (ns < 0) { ns += 1000000000LL; ts->tv_sec--; }
            while (ns >= 1000000000LL) { ns -= 1000000000LL; ts->tv_sec++; }
            ts->tv_nsec = ns;
            return result;
        }

        int gettimeofday(struct timeval *tv, void *tz) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            if (tv) { tv->tv_sec = ts.tv_sec; tv->tv_usec = ts.tv_nsec / 1000; }
            return 0;
        }

        time_t time(time_t *out) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            if (out) *out = ts.tv_sec;
            return ts.tv_sec;
        }
        """#

    let directory = LeadProcess.scratchDirectory()

    /// Builds the shim with the toolchain's clang (on PATH beside swift).
    func buildShim() throws -> String {
        let source = directory + "/wallshift.c"
        let library = directory + "/wallshift.so"
        try Self.shimSource.write(toFile: source, atomically: true, encoding: .utf8)
        let built = try runProcess("/usr/bin/env", ["clang", "-shared", "-fPIC", "-O1", "-o", library, source, "-ldl"])
        guard built.status == 0 else { throw Failure("clang could not build the clock shim: \(built.output)") }
        return library
    }

    func step(to offsetMs: Int64) throws {
        let text = String(format: "%+023lld\n", offsetMs)
        let handle = try #require(FileHandle(forWritingAtPath: directory + "/offset"))
        try handle.write(contentsOf: Array(text.utf8))
        try handle.close()
    }

    func events(_ lead: LeadProcess) throws -> [HealthEvent] {
        try APICoding.decode(HealthEventList.self, from: lead.client().get("/v1/events?limit=1000")).events
    }

    func post(_ client: LeadClient, _ path: String, _ body: String) throws -> LoopbackHTTPClient.Response {
        try client.http.request("POST", path, headers: client.authorization + [("Content-Type", "application/json")], body: Array(body.utf8))
    }

    func allAlive(_ lead: LeadProcess, _ count: Int) throws -> Bool {
        let agents = try lead.agents().filter { $0.name.hasPrefix("swarm-") }
        return agents.count == count && agents.allSatisfy { $0.health?.condition == "alive" }
    }

    @Test func theLeadAndItsAgentsRideOutTheWallClockSteppingEitherWay() throws {
        let shim = try buildShim()
        FileManager.default.createFile(atPath: directory + "/offset", contents: nil)
        try step(to: 0)
        let shifted = ["LD_PRELOAD": shim, "PIMESH_TEST_WALL_OFFSET_FILE": directory + "/offset"]
        let dataDir = directory + "/data"
        try FileManager.default.createDirectory(atPath: dataDir, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        var lead = try LeadProcess(dataDir: dataDir, environment: shifted)
        defer { _ = lead.terminate() }
        _ = try lead.waitReady()
        let swarm = try SwarmProcess(dataDir: dataDir, agents: 5, environment: shifted)
        #expect(eventually(timeout: 20) { try allAlive(lead, 5) })
        var client = try lead.client()

        // Waiting for an agent that registered and has not heartbeat yet: queued, an hour to live.
        _ = try client.register(.init(name: "late", capabilities: ["later"]))
        let queued = try post(client, "/v1/tasks", #"{"capability": "later", "payload": "wait", "ttl_ms": 3600000}"#)
        #expect(queued.status == 201, "\(queued.text)")
        let waiting = try APICoding.decode(TaskView.self, from: queued.body)
        #expect(waiting.state == "queued")

        // NTP's first sync after boot: three hours forward, under the running lead and agents.
        try step(to: 3 * 3_600_000)
        #expect(
            eventually(timeout: 10) { try events(lead).contains { $0.kind == "clock_stepped" && $0.detail.contains("forward by 3 h ") } },
            "\((try? events(lead))?.filter { $0.kind == "clock_stepped" } ?? [])")
        Thread.sleep(forTimeInterval: 1)  // a few health and dispatch ticks past the step
        #expect(try client.task(id: waiting.id).state == "queued", "a task with an hour to live is not three hours old")
        #expect(try allAlive(lead, 5))
        #expect(try lead.status().health?.level == "FULL")
        let done = try client.submit(.init(capability: "infer", payload: "after the step"))
        #expect(eventually(timeout: 10) { try client.task(id: done.id).state == "succeeded" })

        // Back five hours (a clock that ran ahead, corrected), then the lead restarts: its
        // agents' windows hold sequences from before, which its work datagrams must stay above.
        // (A second step within a minute of the first is told with the next report, a minute on.)
        try step(to: -2 * 3_600_000)
        #expect(lead.terminate() == 0)
        lead = try LeadProcess(dataDir: dataDir, environment: shifted)
        _ = try lead.waitReady()
        client = try lead.client()
        #expect(eventually(timeout: 20) { try allAlive(lead, 5) })
        let tasks = try (0..<5).map { try client.submit(.init(capability: "infer", payload: "after the restart \($0)")) }
        #expect(eventually(timeout: 20) { try tasks.allSatisfy { try client.task(id: $0.id).state == "succeeded" } })
        #expect(try tasks.allSatisfy { try client.task(id: $0.id).attempts == 1 })
        let status = try lead.status()
        #expect(status.tasks.workDatagrams?.retransmitted == 0, "\(String(describing: status.tasks.workDatagrams))")
        #expect(status.heartbeats.dropped["replayed", default: 0] == 0)
        #expect(try client.task(id: waiting.id).state == "queued")

        // Eight days forward while the lead is down (after a restart it cannot tell a step from
        // time passing): a finished task is not deleted by age at once, and its idempotency key
        // still names it, so a resubmission does not run it twice.
        let keyed = try client.submit(.init(capability: "nobody", payload: "once", idempotencyKey: "before-the-step"))
        #expect(keyed.state == "skipped")
        #expect(lead.terminate() == 0)
        try step(to: -2 * 3_600_000 + 8 * 86_400_000)
        lead = try LeadProcess(dataDir: dataDir, environment: shifted)
        _ = try lead.waitReady()
        client = try lead.client()
        #expect(!eventually(timeout: 5) { (try? client.task(id: keyed.id)) == nil }, "retention deleted it at start")
        #expect(try client.submit(.init(capability: "nobody", payload: "once", idempotencyKey: "before-the-step")).id == keyed.id)
        // On the same boot the monotonic clock went on, so the new lead knows of the step and
        // ages what it restores without it: the queued task is still minutes old, not 8 days.
        #expect(try events(lead).contains { $0.kind == "clock_stepped" && $0.detail.contains("forward by 8 d") && $0.detail.contains("while no lead ran") })
        #expect(try client.task(id: waiting.id).state == "queued")
        withExtendedLifetime(swarm) {}
        #expect(lead.terminate() == 0)
        let verified = try runPimesh(["audit", "verify", "--data-dir", dataDir])
        #expect(verified.status == 0, "\(verified.output)")
    }
}
