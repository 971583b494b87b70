import Benchmark
import PimeshAgent
import PimeshCore

// The lead's hot paths, each as the lead runs it per heartbeat or per task (1,000 per iteration).
// Allocations are checked exactly against Thresholds/, instructions within 5-10 % where the
// kernel lets perf count them, and wall clock only for a five-fold slowdown (a busy machine varies).
let benchmarks: @Sendable () -> Void = {
    let configuration = Benchmark.Configuration(
        metrics: [.instructions, .mallocCountTotal, .wallClock], warmupIterations: 10, scalingFactor: .kilo,
        maxDuration: .seconds(2), maxIterations: 1_000,
        thresholds: [
            // A hot path that starts to allocate is a regression however small.
            .mallocCountTotal: .init(absolute: [.p50: 0, .p90: 0]),
            .instructions: .init(relative: [.p50: 5, .p90: 10]),
            // Time is noisy on a shared machine (a few ns per call swing by 80 %): only a
            // five-fold slowdown, such as a loop gone quadratic, fails.
            .wallClock: .init(relative: [.p90: 400]),
        ])
    var generator = SplitMix64(seed: 14)

    // One signed v1 heartbeat as it arrives: decode, then the HMAC over its signed part.
    let secret = (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }
    let tag = HeartbeatTag(secret: secret)
    let datagram = tag.seal(
        HeartbeatDatagram(
            state: .ready, agentID: AgentID.random(using: &generator), iteration: 42, timestampMs: 1_800_000_000_000, queueDepth: 3,
            progress: 7))
    Benchmark("heartbeat-decode-hmac", configuration: configuration) { benchmark in
        for _ in benchmark.scaledIterations {
            datagram.withUnsafeBytes { bytes in
                guard case .heartbeat(let decoded) = HeartbeatDatagram.decode(bytes) else { fatalError("a sealed heartbeat decodes") }
                blackHole(tag.verifies(decoded, bytes: bytes))
            }
        }
    }

    let admission = HeartbeatAdmission()
    Benchmark("heartbeat-admission", configuration: configuration) { benchmark in
        for index in benchmark.scaledIterations {
            blackHole(
                admission.check(
                    iteration: UInt64(index + 2), lastIteration: UInt64(index + 1), timestampMs: 1_800_000_000_000 + Int64(index),
                    nowWallMs: 1_800_000_000_100))
        }
    }

    Benchmark("impedance-update", configuration: configuration) { benchmark in
        var tracker = ImpedanceTracker(agentClass: .local)
        var now = Instant(nanoseconds: 1_000_000_000)
        for index in benchmark.scaledIterations {
            now = now + .milliseconds(250)
            tracker.recordHeartbeat(at: now, oneWayLatencyMs: 2 + Double(index % 7), queueDepth: index % 4)
        }
        blackHole(tracker)
    }

    // Routing one task among 1,000 READY candidates of mixed classes and load.
    let candidates = (0..<1_000).map { index in
        RouteCandidate(
            agentClass: AgentClass.allCases[index % AgentClass.allCases.count], latencyMs: Double(index % 50) + 1,
            drift: Double(index % 9) / 10, queueDepth: index % 5, reliability: index % 17 == 0 ? 0.5 : 1)
    }
    let router = TaskRouter()
    Benchmark("routing-among-1000", configuration: configuration) { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(router.route(candidates, payloadWeight: 1, deadlineMs: nil, now: Instant(nanoseconds: 5_000_000_000)))
        }
    }

    Benchmark("phi-accrual", configuration: configuration) { benchmark in
        var detector = PhiAccrualDetector()
        var now = Instant(nanoseconds: 1_000_000_000)
        for index in benchmark.scaledIterations {
            now = now + .milliseconds(245 + Int64(index % 11))
            detector.heartbeat(at: now)
            blackHole(detector.phi(at: now + .milliseconds(100)))
        }
    }
}
