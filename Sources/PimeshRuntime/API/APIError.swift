import Hummingbird
import PimeshAgent

/// An error a client can act on: the status, a sentence, and the field at fault when there is one.
struct APIError: Error, Sendable {
    var status: HTTPResponse.Status
    var message: String
    var field: String?
    /// Sent as `Retry-After` with 429 and 503.
    var retryAfterSeconds: Int?

    init(status: HTTPResponse.Status, message: String, field: String? = nil, retryAfterSeconds: Int? = nil) {
        self.status = status
        self.message = message
        self.field = field
        self.retryAfterSeconds = retryAfterSeconds
    }

    static func badRequest(_ message: String, field: String? = nil) -> APIError {
        APIError(status: .badRequest, message: message, field: field)
    }

    struct Body: Encodable {
        var error: String
        var field: String?
    }

    var response: Response {
        var response = JSONResponse.make(status: status, Body(error: message, field: field))
        if let retryAfterSeconds { response.headers[.retryAfter] = String(retryAfterSeconds) }
        return response
    }
}

enum JSONResponse {
    static func make<T: Encodable>(status: HTTPResponse.Status, _ value: T) -> Response {
        let bytes = (try? APICoding.encode(value)) ?? Array(#"{"error":"response could not be encoded"}"#.utf8)
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: bytes + [10])))
    }
}

extension HTTPResponse.Status {
    /// RFC 4918: the lead cannot store more of what was sent (agents, task bytes) until some goes.
    static let insufficientStorage = HTTPResponse.Status(code: 507, reasonPhrase: "Insufficient Storage")
}
