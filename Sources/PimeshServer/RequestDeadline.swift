import Hummingbird
import HummingbirdCore
import NIOCore
import NIOHTTPTypes

/// Bounds how long one request may take to arrive, head to last body byte (when given a limit:
/// the lead's requests are small and local; a node's snapshot upload to the coordinator may take
/// long on a slow link), and closes a connection whose answer went out before its request body
/// ended (a 401, 413 or 400 sent
/// early). Hummingbird's idle timeout restarts at every body chunk, and it drains a body the
/// handler did not read before the next request: a client sending one byte of a refused body
/// every few seconds held its connection for as long as it liked, and 2,048 of them held every
/// slot of `api.max_connections` (helper probe, no credential needed).
public final class RequestDeadline: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = HTTPRequestPart
    public typealias InboundOut = HTTPRequestPart
    public typealias OutboundIn = HTTPResponsePart
    public typealias OutboundOut = HTTPResponsePart

    private let limit: TimeAmount?
    private var requestBeingRead = false
    private var deadline: Scheduled<Void>?

    public init(limit: TimeAmount?) {
        self.limit = limit
    }

    /// Hummingbird's HTTP/1 server with its idle timeout (`idleTimeoutS` without a byte, or
    /// without a request head after an answer) and this handler.
    public static func http1(idleTimeoutS: Int, requestTimeoutS: Int?) -> HTTPServerBuilder {
        .http1(
            configuration: .init(
                additionalChannelHandlers: [RequestDeadline(limit: requestTimeoutS.map { .seconds(Int64($0)) })],
                idleTimeout: .seconds(Int64(idleTimeoutS))))
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            requestBeingRead = true
            deadline?.cancel()
            if let limit {
                let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
                deadline = context.eventLoop.scheduleTask(in: limit) { loopBound.value.close(promise: nil) }
            }
        case .body:
            break
        case .end:
            requestBeingRead = false
            deadline?.cancel()
            deadline = nil
        }
        context.fireChannelRead(data)
    }

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard requestBeingRead, case .end = unwrapOutboundIn(data) else {
            context.write(data, promise: promise)
            return
        }
        context.writeAndFlush(data, promise: promise)
        context.close(promise: nil)
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
    }
}
