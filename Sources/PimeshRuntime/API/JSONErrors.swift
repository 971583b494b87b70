import Hummingbird
import PimeshServer
import Synchronization

/// Errors the framework answers by itself (no such route, a method the route does not have)
/// come back as the same JSON as the lead's own (docs/api.md): a 404 names the path, and a path
/// that exists with other methods answers 405 with `Allow`.
struct JSONErrors<Context: RequestContext>: RouterMiddleware {
    /// The router's routes, filled in once they are all added (this middleware comes first).
    final class Routes: Sendable {
        private let table = Mutex<[(method: HTTPRequest.Method, segments: [Substring])]>([])

        func set(_ routes: [Router<Context>.RouteDescription]) {
            table.withLock { $0 = routes.map { ($0.method, $0.path.description.split(separator: "/")) } }
        }

        /// The methods of every route whose pattern matches `path`.
        func methods(matching path: String) -> [HTTPRequest.Method] {
            let parts = path.split(separator: "/")
            return table.withLock { table in
                table.filter { route in
                    route.segments.count == parts.count
                        && zip(route.segments, parts).allSatisfy { pattern, part in pattern.hasPrefix("{") || pattern == part }
                }.map(\.method)
            }
        }
    }

    let routes: Routes

    @_optimize(size)  // cold: a bad request (the 25 MB budget)
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as HTTPError {
            guard error.status == .notFound else {
                return APIError(status: error.status, message: error.body ?? error.status.reasonPhrase).response
            }
            let path = request.uri.path
            let allowed = routes.methods(matching: path)
            guard !allowed.isEmpty else {
                return APIError(status: .notFound, message: "there is no route \(path) (docs/api.md)").response
            }
            let names = Set(allowed.map(\.rawValue)).sorted()
            var response = APIError(
                status: .methodNotAllowed, message: "\(path) takes \(names.joined(separator: ", ")), not \(request.method.rawValue)"
            ).response
            response.headers[.allow] = names.joined(separator: ", ")
            return response
        }
    }
}
