import Glibc
import Logging
import PimeshSystem
import ServiceLifecycle
import Synchronization

/// Writes lead.json, the file by which the CLI and agents find the lead (its pid and ports).
/// The first write happens as the lead becomes ready. When it fails (a full disk), the old file
/// goes, as it names another lead's pid and perhaps its ports, and the write is tried again every
/// `retryInterval` until it succeeds, with an open incident meanwhile: a lead nobody can find
/// must not pass for a healthy one until a restart.
final class LeadFilePublisher: Service, Sendable {
    static let retryInterval: Duration = .seconds(2)

    let path: String
    private let incidents: IncidentService
    private let logger: Logger
    private let unwritten = Mutex<[UInt8]?>(nil)
    private let failed = Doorbell()

    init(path: String, incidents: IncidentService, logger: Logger) {
        self.path = path
        self.incidents = incidents
        self.logger = logger
    }

    func publish(_ bytes: [UInt8]) {
        do {
            try FileIO.writeAtomically(path: path, bytes: bytes)
        } catch {
            FileIO.remove(path)
            unwritten.withLock { $0 = bytes }
            logger.error(
                "cannot write \(path); clients will not find this lead until it is written",
                metadata: ["error": "\(error)", "retry_every_s": "\(Self.retryInterval.components.seconds)"])
            incidents.setIntegrity("lead.json", failing: "cannot write \(path) (\(error)): the CLI and agents cannot find this lead")
            failed.ring()
        }
    }

    func run() async throws {
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await self.failed.wait(timeout: nil)
                while let bytes = self.unwritten.withLock({ $0 }) {
                    try await Task.sleep(for: Self.retryInterval)
                    guard (try? FileIO.writeAtomically(path: self.path, bytes: bytes)) != nil else { continue }
                    self.unwritten.withLock { $0 = nil }
                    self.incidents.setIntegrity("lead.json", failing: nil)
                    self.logger.notice("wrote \(self.path): clients find this lead again")
                }
            }
        }
    }
}
