/// Phi accrual failure detection (Hayashibara et al.; seed 000 "AgentHeartbeat") over one
/// agent's heartbeat inter-arrival times. Instead of a window of samples it keeps an
/// exponentially weighted mean and variance: three numbers per agent, however many agents.
///
/// phi is the -log10 of the chance that a heartbeat still arrives after the silence seen so
/// far, under a normal model of the intervals (the logistic approximation Akka and Cassandra
/// use). The seed's "3 missed intervals" is kept as a floor: no agent is suspected sooner, so
/// a very regular agent is not suspected after one late datagram.
public struct PhiAccrualDetector: Sendable, Equatable {
    public struct Settings: Sendable, Equatable {
        /// Suspect at phi ≥ threshold: 8 means a 1e-8 chance that the agent is merely late.
        public var threshold: Double
        /// The heartbeat interval the agent was asked for: the first estimate of the mean.
        public var expectedIntervalMs: Double
        /// A floor for the standard deviation, so that perfectly regular heartbeats do not make
        /// the detector hair-triggered.
        public var minimumStdDevMs: Double
        /// Extra silence tolerated on top of the mean (a GC pause, a busy scheduler).
        public var acceptablePauseMs: Double
        /// No suspicion before this many intervals have passed silently (seed 000: 3 missed).
        public var minimumMissedIntervals: Double
        /// Weight of each new interval in the mean and variance.
        public var smoothing: Double

        public init(
            threshold: Double = 8, expectedIntervalMs: Double = 250, minimumStdDevMs: Double = 40,
            acceptablePauseMs: Double = 200, minimumMissedIntervals: Double = 3, smoothing: Double = 0.1
        ) {
            self.threshold = threshold
            self.expectedIntervalMs = expectedIntervalMs
            self.minimumStdDevMs = minimumStdDevMs
            self.acceptablePauseMs = acceptablePauseMs
            self.minimumMissedIntervals = minimumMissedIntervals
            self.smoothing = smoothing
        }
    }

    private let sharedSettings: Shared<Settings>
    public var settings: Settings { sharedSettings.value }
    public private(set) var lastHeartbeat: Instant?
    public private(set) var meanMs: Double
    public private(set) var varianceMs2: Double
    public private(set) var intervals = 0

    public init(settings: Settings = Settings()) {
        self.sharedSettings = Shared(settings)
        meanMs = settings.expectedIntervalMs
        // Start wide (σ = interval/4) until real intervals arrive.
        varianceMs2 = (settings.expectedIntervalMs / 4) * (settings.expectedIntervalMs / 4)
    }

    public mutating func heartbeat(at now: Instant) {
        if let last = lastHeartbeat {
            let interval = (now - last).milliseconds
            if interval > 0 {
                let alpha = settings.smoothing
                let delta = interval - meanMs
                meanMs += alpha * delta
                varianceMs2 = (1 - alpha) * (varianceMs2 + alpha * delta * delta)
                intervals += 1
            }
        }
        lastHeartbeat = now
    }

    /// Forgets the last arrival, keeping the learned intervals: after a freeze the silence was
    /// ordered by an operator and says nothing about the agent.
    public mutating func pause() {
        lastHeartbeat = nil
    }

    public var standardDeviationMs: Double {
        max(settings.minimumStdDevMs, varianceMs2.squareRoot())
    }

    /// phi now; 0 before the first heartbeat.
    public func phi(at now: Instant) -> Double {
        guard let lastHeartbeat else { return 0 }
        let elapsed = (now - lastHeartbeat).milliseconds
        return Self.phi(elapsedMs: elapsed, meanMs: meanMs + settings.acceptablePauseMs, standardDeviationMs: standardDeviationMs)
    }

    public func isSuspected(at now: Instant) -> Bool {
        guard let lastHeartbeat else { return false }
        let elapsed = (now - lastHeartbeat).milliseconds
        if elapsed < settings.minimumMissedIntervals * settings.expectedIntervalMs { return false }
        return phi(at: now) >= settings.threshold
    }

    public static func phi(elapsedMs: Double, meanMs: Double, standardDeviationMs: Double) -> Double {
        let y = (elapsedMs - meanMs) / standardDeviationMs
        let e = PhiMath.exp(-y * (1.5976 + 0.070566 * y * y))
        if elapsedMs > meanMs {
            return -PhiMath.log10(e / (1 + e))
        }
        return -PhiMath.log10(1 - 1 / (1 + e))
    }
}
