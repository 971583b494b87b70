import Hummingbird
import PimeshAgent
import PimeshCore
import PimeshServer
import PimeshStore

/// `GET /v1/audit` (docs/audit.md): the audit log, oldest first, a page at a time.
public struct AuditPage: Codable, Sendable {
    public var records: [AuditRecord]
    /// Pass as `after` for the next page; equal to `after` when there is nothing newer.
    public var next: Int64
    public var more: Bool

    public init(records: [AuditRecord], next: Int64, more: Bool) {
        self.records = records
        self.next = next
        self.more = more
    }
}

extension APIRouter {
    static func addAuditRoutes(to v1: RouterGroup<LeadRequestContext>, state: LeadState) {
        v1.get("audit") { request, _ in
            await APIError.answering {
                let query = request.uri.queryParameters
                let after = try queryInteger(query.get("after"), name: "after", in: 0...Int.max) ?? 0
                let limit = try queryInteger(query.get("limit"), name: "limit", in: 1...5000) ?? 500
                // `tail=N`: the newest N rows that match, for `pimesh audit tail`.
                let tail = try queryInteger(query.get("tail"), name: "tail", in: 1...5000)
                let sinceMs = try queryInteger(query.get("since_ms"), name: "since_ms", in: 0...Int.max)
                var filter = AuditStore.Filter(afterSeq: Int64(after), sinceWallMs: sinceMs.map(Int64.init))
                for (name, value) in [("actor", query.get("actor")), ("kind", query.get("kind"))] {
                    guard let value else { continue }
                    guard value.utf8.count <= 256 else { throw APIError.badRequest("\(name) is longer than 256 bytes", field: name) }
                    if name == "actor" { filter.actor = value } else { filter.kind = value }
                }
                let store = AuditStore(database: state.writer.database)
                let records = try await Blocking.run { [filter] in try store.records(filter, limit: (tail ?? limit) + 1, newest: tail != nil) }
                let wanted = tail.map { Array(records.suffix($0)) } ?? Array(records.prefix(limit))
                // A tail that does not fit the page keeps its newest rows.
                var fitted = Paging.fit(tail == nil ? wanted : wanted.reversed())
                if tail != nil { fitted.page.reverse() }
                let more = tail == nil && (records.count > limit || fitted.cut)
                return JSONResponse.make(
                    status: .ok, AuditPage(records: fitted.page, next: fitted.page.last?.seq ?? Int64(after), more: more))
            }
        }
    }
}
