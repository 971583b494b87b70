import Foundation
import Logging
import PimeshCore
import PimeshStore
import Testing

@testable import PimeshRuntime

/// docs/openapi.yaml describes exactly the routes the lead's router has: a route added without
/// its description, or a description left behind by a removed route, fails here.
@Suite struct OpenAPITests {
    /// `METHOD /path/{param}` for every operation under `paths:`, as Hummingbird describes its routes.
    static func documentedRoutes() throws -> Set<String> {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let text = try String(contentsOf: root.appendingPathComponent("docs/openapi.yaml"), encoding: .utf8)
        var routes: Set<String> = []
        var path: String?
        var inPaths = false
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if !line.hasPrefix(" ") { inPaths = line == "paths:" }
            guard inPaths else { continue }
            if line.hasPrefix("  /"), line.hasSuffix(":"), !line.hasPrefix("   ") {
                path = String(line.dropFirst(2).dropLast())
            } else if let path, line.hasPrefix("    "), !line.hasPrefix("     "),
                let method = ["get", "post", "put", "delete", "patch"].first(where: { line == "    \($0):" })
            {
                routes.insert("\(method.uppercased()) \(path)")
            }
        }
        return routes
    }

    static func routerRoutes() throws -> Set<String> {
        let directory = NSTemporaryDirectory() + "pimesh-openapi-" + UUID().uuidString.prefix(8)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let database = try Database(path: directory + "/pimesh.db")
        let logger = Logger(label: "openapi-test")
        let registry = AgentRegistry()
        let writer = StoreWriter(database: database, commitInterval: .milliseconds(50), logger: logger)
        let metrics = LeadMetrics()
        let kpis = KPIRecorder()
        let conflicts = ConflictService(registry: registry, writer: writer, store: ConflictStore(database: database), metrics: metrics, logger: logger)
        let tasks = TaskService(
            settings: .init(), registry: registry, writer: writer, store: TaskStore(database: database), kpis: kpis, metrics: metrics,
            conflicts: conflicts, logger: logger)
        let gather = GatherService(
            settings: .init(), registry: registry, tasks: tasks, conflicts: conflicts, writer: writer, kpis: kpis, metrics: metrics,
            logger: logger)
        let state = LeadState(
            config: LeadConfig(), registry: registry, writer: writer, node: NodeState(readings: NodeReadings(cpuCount: 4)), ready: ReadyFlag(),
            checkpoints: CheckpointCounter(), tasks: tasks, gather: gather, conflicts: conflicts, kpis: kpis, metrics: metrics)
        let router = APIRouter.build(state: state, tokens: try LeadTokens(dataDir: directory))
        return Set(router.routes.map { "\($0.method.rawValue) \($0.path.description.hasPrefix("/") ? "" : "/")\($0.path)" })
    }

    @Test func theDocumentDescribesEveryRouteOfTheRouterAndNoOther() throws {
        let documented = try Self.documentedRoutes()
        let served = try Self.routerRoutes()
        #expect(served.count > 25)
        #expect(served.subtracting(documented).sorted() == [], "routes without a description in docs/openapi.yaml")
        #expect(documented.subtracting(served).sorted() == [], "descriptions of routes the router does not have")
    }
}
