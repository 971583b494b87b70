import Hummingbird
import HummingbirdCore
import NIOCore
import NIOHTTPTypes

/// Bounds how long one request may take to arrive, head to last body byte (when given a limit:
/// the lead's requests are small and local; a node's snapshot upload to the coordinator may take
/// long on a slow link), and ends a connection whose request was refused (4xx, 5xx) before its
/// body ended. Hummingbird's idle timeout restarts at every body chunk, and it drains a body the
/// handler did not read before the next request: a client sending one byte of a refused body
/// every few seconds held its connection for as long as it liked, and 2,048 of them held every
/// slot of `api.max_connections` (helper probe, no credential needed).
///
/// After a refusal the lead's side is shut (FIN after the answer) and the rest of the body is
/// read and dropped for `linger` at most before the socket closes: closing at once with unread
/// bytes would make the kernel send a reset, which can destroy the answer before the client has
/// read it. This handler asks for those reads itself: Hummingbird, having answered a
/// `Connection: close` request, consumes no more of it, and NIO's async channel then reads no
/// more (its buffer full, or for good once Hummingbird lets go of the request), so a client
/// still sending into a full unix socket got EPIPE instead of its answer. An early success (the
/// coordinator's 200 for a snapshot it already holds) is left to Hummingbird, which drains the
/// body of a keep-alive request; one with `Connection: close` is not read on and ends at the
/// request deadline or the idle timeout.
public final class RequestDeadline: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = HTTPRequestPart
    public typealias InboundOut = HTTPRequestPart
    public typealias OutboundIn = HTTPResponsePart
    public typealias OutboundOut = HTTPResponsePart

    static let linger: TimeAmount = .seconds(2)

    private let limit: TimeAmount?
    /// Heads read and answers finished: with pipelining the answer being written may be for an
    /// earlier request than the one being read.
    private var requestsRead = 0
    private var answersEnded = 0
    private var requestBeingRead = false
    /// The answer to the request being read refuses it before its body ended.
    private var refusingEarly = false
    /// That answer is out: what is left of the body is dropped.
    private var refusalSent = false
    private var closing = false
    /// A close asked for (Hummingbird's, after answering a `Connection: close` request) while
    /// the refused body was still coming: done once it ends or the linger is over.
    private var deferredClose: EventLoopPromise<Void>?
    private var deadline: Scheduled<Void>?
    private var lingering: Scheduled<Void>?

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

    private var answeringTheRequestBeingRead: Bool { requestBeingRead && answersEnded + 1 == requestsRead }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            requestsRead += 1
            requestBeingRead = true
            deadline?.cancel()
            if let limit {
                let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
                deadline = context.eventLoop.scheduleTask(in: limit) { loopBound.value.close(promise: nil) }
            }
        case .body:
            if refusalSent { return }
        case .end:
            requestBeingRead = false
            deadline?.cancel()
            deadline = nil
            // The refused body is read to its end: nothing unread is left to cause a reset.
            if refusalSent {
                closeForGood(context)
                return
            }
        }
        context.fireChannelRead(data)
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        if refusalSent, !closing { context.read() }
        context.fireChannelReadComplete()
    }

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(let response) where answeringTheRequestBeingRead && response.status.code >= 400:
            // Not `Connection: close`: Hummingbird would close the socket itself, body unread.
            refusingEarly = true
            context.write(data, promise: promise)
        case .end where refusingEarly:
            answersEnded += 1
            let written = context.writeAndFlush(data)
            written.cascade(to: promise)
            let loopBound = NIOLoopBound((handler: self, context: context), eventLoop: context.eventLoop)
            written.whenComplete { _ in
                let (handler, context) = loopBound.value
                handler.refusalSent = true
                handler.linger(context)
            }
        case .end:
            answersEnded += 1
            context.write(data, promise: promise)
        default:
            context.write(data, promise: promise)
        }
    }

    public func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        guard mode == .all, refusingEarly, requestBeingRead, !closing else {
            context.close(mode: mode, promise: promise)
            return
        }
        if let deferredClose { promise.map { deferredClose.futureResult.cascade(to: $0) } } else { deferredClose = promise ?? context.eventLoop.makePromise() }
        // Put off for the linger at most, even if the refusal is never written out (a client
        // that reads nothing): the coordinator has no request deadline to end it otherwise.
        if lingering == nil { scheduleFinalClose(context) }
    }

    /// After a refusal: FIN once the answer is out, then read and drop the rest of the body
    /// for `linger` at most.
    private func linger(_ context: ChannelHandlerContext) {
        guard !closing else { return }
        guard requestBeingRead else {
            closeForGood(context)
            return
        }
        context.close(mode: .output, promise: nil)
        context.read()
        // The linger bounds what is left; the deadline's close would come with the body unread.
        deadline?.cancel()
        deadline = nil
        scheduleFinalClose(context)
    }

    private func scheduleFinalClose(_ context: ChannelHandlerContext) {
        lingering?.cancel()
        let loopBound = NIOLoopBound((handler: self, context: context), eventLoop: context.eventLoop)
        lingering = context.eventLoop.scheduleTask(in: Self.linger) {
            let (handler, context) = loopBound.value
            handler.closeForGood(context)
        }
    }

    private func closeForGood(_ context: ChannelHandlerContext) {
        guard !closing else { return }
        closing = true
        lingering?.cancel()
        lingering = nil
        context.close(promise: deferredClose)
        deferredClose = nil
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
        lingering?.cancel()
        lingering = nil
        // Closed by the client meanwhile: the close asked for has happened.
        deferredClose?.succeed(())
        deferredClose = nil
    }
}
