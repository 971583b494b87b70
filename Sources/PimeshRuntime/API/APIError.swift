import Hummingbird
import PimeshAgent

/// An error a client can act on: the status, a sentence, and the field at fault when there is one.
struct APIError: Error, Sendable {
    var status: HTTPResponse.Status
    var message: String
    var field: String?

    static func badRequest(_ message: String, field: String? = nil) -> APIError {
        APIError(status: .badRequest, message: message, field: field)
    }

    struct Body: Encodable {
        var error: String
        var field: String?
    }

    var response: Response {
        JSONResponse.make(status: status, Body(error: message, field: field))
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
