import Hummingbird
import NIOCore
import PimeshServer

/// Reads a request body with a size cap and parses it as JSON, with errors a client can act on.
enum RequestBody {
    static func json(_ request: Request, limit: Int) async throws(APIError) -> JSONValue {
        var request = request
        let buffer: ByteBuffer
        do {
            buffer = try await request.collectBody(upTo: limit)
        } catch is NIOTooManyBytesError {
            throw APIError(status: .contentTooLarge, message: "the body is larger than \(limit) bytes")
        } catch {
            // A chunk size that is not hex, a client gone mid-body: no size was passed.
            throw APIError.badRequest("the body could not be read to its end (\(error))")
        }
        // No body is an empty object: `curl -X POST …/ack` says as much as `-d '{}'`, and a
        // route that needs a field still names it.
        if buffer.readableBytes == 0 { return .object([:]) }
        do {
            return try JSONValue.parse(Array(buffer.readableBytesView))
        } catch {
            throw APIError.badRequest("the body is \(error.description)")
        }
    }
}
