import Hummingbird
import PimeshSystem

/// An error a client can act on: the status, a sentence, and the field at fault when there is one.
public struct APIError: Error, Sendable {
    public var status: HTTPResponse.Status
    public var message: String
    public var field: String?
    /// Sent as `Retry-After` with 429 and 503.
    public var retryAfterSeconds: Int?

    public init(status: HTTPResponse.Status, message: String, field: String? = nil, retryAfterSeconds: Int? = nil) {
        self.status = status
        self.message = message
        self.field = field
        self.retryAfterSeconds = retryAfterSeconds
    }

    public static func badRequest(_ message: String, field: String? = nil) -> APIError {
        APIError(status: .badRequest, message: message, field: field)
    }

    struct Body: Encodable {
        var error: String
        var field: String?
    }

    public var response: Response {
        var response = JSONResponse.make(status: status, Body(error: message, field: field))
        if let retryAfterSeconds { response.headers[.retryAfter] = String(retryAfterSeconds) }
        return response
    }

    /// Runs a route's body and answers whatever it throws as JSON: an APIError as itself,
    /// anything else as a 500 that names it.
    public static func answering(_ body: () async throws -> Response) async -> Response {
        do {
            return try await body()
        } catch let error as APIError {
            return error.response
        } catch {
            return APIError(status: .internalServerError, message: "\(error)").response
        }
    }
}

public enum JSONResponse {
    public static func make<T: Encodable>(status: HTTPResponse.Status, _ value: T) -> Response {
        let bytes = (try? APICoding.encode(value)) ?? Array(#"{"error":"response could not be encoded"}"#.utf8)
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: bytes + [10])))
    }
}

extension HTTPResponse.Status {
    /// RFC 4918: the lead cannot store more of what was sent (agents, task bytes) until some goes.
    public static let insufficientStorage = HTTPResponse.Status(code: 507, reasonPhrase: "Insufficient Storage")
}
