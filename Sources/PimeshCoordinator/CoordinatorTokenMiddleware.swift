import Hummingbird
import PimeshServer

/// The coordinator's operator routes (`nodes`) need its own token; nodes authenticate uploads
/// by their enrolled key's signature instead.
struct CoordinatorTokenMiddleware<Context: RequestContext>: RouterMiddleware {
    let token: [UInt8]
    /// The file in the coordinator's dir that holds it, named in the 401 answer.
    let file: String

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let header = request.headers[.authorization] else {
            return APIError(status: .unauthorized, message: "missing bearer token: send 'Authorization: Bearer <contents of the coordinator's \(file) file>'").response
        }
        let prefix = "Bearer "
        guard header.hasPrefix(prefix), SecretToken.constantTimeEqual(Array(header.utf8.dropFirst(prefix.utf8.count)), token) else {
            return APIError(status: .unauthorized, message: "wrong bearer token").response
        }
        return try await next(request, context)
    }
}
