import Hummingbird
import HummingbirdCore
import NIOCore
import NIOHTTP1
import NIOHTTPTypes

/// Bounds how long one request may take to arrive and how long an answer may wait for its
/// client to read, and ends a connection whose request was refused (4xx, 5xx) before its body
/// ended. Each closes a way a client with no credential held a slot of `api.max_connections`
/// for as long as it liked (helper probes; 2,048 such clients hold them all):
///
/// - Hummingbird's idle timeout restarts at every body chunk, and it drains a body the handler
///   did not read: a client sending one byte of a refused body every few seconds. A whole
///   request, head to last body byte, must arrive within `limit` (when given: the lead's
///   requests are small and local; a node's snapshot upload to the coordinator may take long
///   on a slow link).
/// - A request pipelined behind one still being answered is held here, and nothing more is
///   read, until that answer is out (NIO's pipelining assistance, which Hummingbird leaves
///   off): behind a long poll, a request with a large body was otherwise cut off by
///   Hummingbird's idle timeout while nobody read it, and took the long poll's answer with it.
///   What one read brought in is all that is held.
/// - Hummingbird's idle timeout does not run while an answer is being written: a client that
///   sends a burst of pipelined requests and never reads. An answer that cannot be written
///   (the channel not writable) for `stallLimit` closes the connection.
///
/// After a refusal the lead says `Connection: close`, shuts its side once the answer is out,
/// and reads and drops the rest of the body for `linger` at most before the socket closes:
/// closing at once with unread bytes would make the kernel send a reset, which can destroy the
/// answer before the client has read it. The same happens when Hummingbird closes a connection
/// (after answering a `Connection: close` request) whose body is still coming. This handler
/// asks for those reads itself: Hummingbird consumes no more of such a request, and NIO's
/// async channel then reads no more (its buffer full, or for good once Hummingbird lets go of
/// the request), so a client still sending into a full unix socket got EPIPE instead of its
/// answer. An early success on a keep-alive connection (the coordinator's 200 for a snapshot it
/// already holds) is left to Hummingbird, which drains the body; on a `Connection: close` one,
/// Hummingbird's close waits for the body likewise.
public final class RequestDeadline: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = HTTPRequestPart
    public typealias InboundOut = HTTPRequestPart
    public typealias OutboundIn = HTTPResponsePart
    public typealias OutboundOut = HTTPResponsePart

    static let linger: TimeAmount = .seconds(2)

    private let limit: TimeAmount?
    private let stallLimit: TimeAmount
    /// Heads read and answers finished: with pipelining the answer being written may be for an
    /// earlier request than the one being read.
    private var requestsRead = 0
    private var answersEnded = 0
    private var requestBeingRead = false
    /// An answer refused a request before its body ended: the connection ends after it.
    private var refusing = false
    /// The answer being written, a success, is to the request being read, whose body goes on.
    private var answeringEarly = false
    /// That early answer (a refusal or a success) is out.
    private var earlyAnswerOut = false
    /// What is left of the body is read and dropped until it ends or the linger is over.
    private var dropping = false
    private var closing = false
    /// A head over the bounds was answered `431`: the connection ends after a linger.
    private var refusedHead = false
    /// A close asked for (Hummingbird's, after answering a `Connection: close` request) while
    /// the body of an early-answered request was still coming: done once it ends or the
    /// linger is over.
    private var deferredClose: EventLoopPromise<Void>?
    /// Parts of requests pipelined behind the one being answered, and whether a read was asked
    /// for meanwhile.
    private var held = CircularBuffer<HTTPRequestPart>()
    private var readWanted = false
    /// The client shut its side after the held requests: said once they are handed on, or
    /// Hummingbird would end the connection before answering them.
    private var inputClosedHeld = false
    /// Likewise a parse error in what followed them (anything after a `Connection: close`
    /// request is one): passed on at once, Hummingbird answered 400 in place of the valid
    /// requests held before it (helper probe).
    private var errorHeld: (any Error)?
    private var deadline: Scheduled<Void>?
    private let headBytes = HeadBytes()
    private var lingering: Scheduled<Void>?
    private var stalled: Scheduled<Void>?

    /// Before the parser: NIO does not count the blanks between a header's colon and its value
    /// against the head bounds, and keeps them all (helper probe: 100 connections sending 20 MB
    /// of blanks each took a lead to 2 GB, every one answered 200).
    public func handlerAdded(context: ChannelHandlerContext) {
        try? context.pipeline.syncOperations.addHandler(headBytes, position: .first)
    }

    public init(limit: TimeAmount?, stallLimit: TimeAmount) {
        self.limit = limit
        self.stallLimit = stallLimit
    }

    /// What a request head may hold, counting its target and its headers' names and values; past
    /// it the answer is `431` and the connection closes. NIO's default, 80 KiB, let 2,100
    /// connections that never finished their heads hold about 300 MB of a lead until the idle
    /// timeout (helper probe); the heads pimesh's clients send are under 3 KiB.
    public static let maxHeadBytes = 16 * 1024
    /// One header name or value, and the request target (so the path and query too).
    public static let maxHeadLineBytes = 8 * 1024
    public static let maxHeaderFields = 100

    /// Hummingbird's HTTP/1 server with its idle timeout (`idleTimeoutS` without a byte, or
    /// without a request head after an answer) and this handler; an answer may wait as long
    /// for its client to read.
    public static func http1(idleTimeoutS: Int, requestTimeoutS: Int?) -> HTTPServerBuilder {
        .http1(
            configuration: .init(
                additionalChannelHandlers: [
                    RequestDeadline(limit: requestTimeoutS.map { .seconds(Int64($0)) }, stallLimit: .seconds(Int64(idleTimeoutS)))
                ],
                idleTimeout: .seconds(Int64(idleTimeoutS)),
                httpDecoderConfiguration: .init(
                    maxHeaderFieldSize: maxHeadLineBytes, maxHeaderListSize: maxHeadBytes, maxHeaderFieldCount: maxHeaderFields)))
    }

    private var answeringTheRequestBeingRead: Bool { requestBeingRead && answersEnded + 1 == requestsRead }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        switch part {
        case .head: headBytes.parsed(awaitingHead: false)
        case .end: headBytes.parsed(awaitingHead: true)
        case .body: break
        }
        if !dropping, !held.isEmpty || (isHead(part) && answersEnded < requestsRead) {
            held.append(part)
            return
        }
        process(part, context: context)
    }

    private func isHead(_ part: HTTPRequestPart) -> Bool {
        if case .head = part { return true }
        return false
    }

    /// Hands on what was held while the answer before it was being written, up to the next
    /// request that must wait in turn; reading goes on once nothing is held.
    @_optimize(size)  // cold: pipelining, refusals, stalls (the 25 MB budget)
    private func releaseHeld(_ context: ChannelHandlerContext) {
        guard !closing else { return }
        var released = false
        while let part = held.first, !dropping, !(isHead(part) && answersEnded < requestsRead) {
            held.removeFirst()
            process(part, context: context)
            released = true
        }
        if released { context.fireChannelReadComplete() }
        guard held.isEmpty else { return }
        if let error = errorHeld {
            errorHeld = nil
            context.fireErrorCaught(error)
        }
        if inputClosedHeld {
            inputClosedHeld = false
            context.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        }
        if readWanted {
            readWanted = false
            context.read()
        }
    }

    @_optimize(size)  // cold: bad requests (the 25 MB budget)
    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if !held.isEmpty {
            // The first ends the connection; later ones have nothing to add.
            if errorHeld == nil { errorHeld = error }
            return
        }
        // What follows an oversized head is dropped by the parser, each read as an error.
        if refusedHead { return }
        if error as? HTTPParserError == .headerOverflow, !requestBeingRead, answersEnded == requestsRead, !closing {
            refuseOversizedHead(context)
            return
        }
        context.fireErrorCaught(error)
    }

    /// An answer that names the bound a head passed, where Hummingbird's would be an empty `400`;
    /// the parser drops what follows, and the connection ends after the linger.
    @_optimize(size)  // cold: bad requests (the 25 MB budget)
    private func refuseOversizedHead(_ context: ChannelHandlerContext) {
        refusedHead = true
        // Written out rather than encoded: an encoder specialized for one cold answer costs pages
        // of the 25 MB budget. The test reads it as JSON.
        let body = ByteBuffer(
            string: #"{"error":"the request head is over its bounds: \#(Self.maxHeadBytes) bytes of target and headers, \#(Self.maxHeadLineBytes) for the target or one header's name or value, \#(Self.maxHeaderFields) headers","field":"headers"}"#
                + "\n")
        let head = HTTPResponse(
            status: .init(code: 431, reasonPhrase: "Request Header Fields Too Large"),
            headerFields: [.contentType: "application/json", .contentLength: String(body.readableBytes), .connection: "close"])
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(body)), promise: nil)
        let loopBound = NIOLoopBound((handler: self, context: context), eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
            let (handler, context) = loopBound.value
            context.close(mode: .output, promise: nil)
            context.read()
            handler.scheduleFinalClose(context)
        }
    }

    @_optimize(size)  // cold: pipelining, refusals, stalls (the 25 MB budget)
    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .inputClosed? = event as? ChannelEvent, !held.isEmpty {
            inputClosedHeld = true
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// Not from inside a write: the next request's parts go up once it returns.
    @_optimize(size)  // cold: pipelining, refusals, stalls (the 25 MB budget)
    private func scheduleRelease(_ context: ChannelHandlerContext) {
        guard !held.isEmpty else { return }
        let loopBound = NIOLoopBound((handler: self, context: context), eventLoop: context.eventLoop)
        context.eventLoop.execute {
            let (handler, context) = loopBound.value
            handler.releaseHeld(context)
        }
    }

    public func read(context: ChannelHandlerContext) {
        if held.isEmpty { context.read() } else { readWanted = true }
    }

    private func process(_ part: HTTPRequestPart, context: ChannelHandlerContext) {
        switch part {
        case .head:
            requestsRead += 1
            requestBeingRead = true
            answeringEarly = false
            earlyAnswerOut = false
            deadline?.cancel()
            deadline = nil
            startDeadline(context)
        case .body:
            if dropping { return }
        case .end:
            requestBeingRead = false
            deadline?.cancel()
            deadline = nil
            // The body is read to its end: nothing unread is left to cause a reset.
            if dropping {
                closeForGood(context)
                return
            }
        }
        context.fireChannelRead(wrapInboundOut(part))
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        if dropping, !closing { context.read() }
        context.fireChannelReadComplete()
    }

    @_optimize(size)  // cold: pipelining, refusals, stalls (the 25 MB budget)
    public func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            stalled?.cancel()
            stalled = nil
        } else if stalled == nil {
            let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
            stalled = context.eventLoop.scheduleTask(in: stallLimit) { loopBound.value.close(promise: nil) }
        }
        context.fireChannelWritabilityChanged()
    }

    private func startDeadline(_ context: ChannelHandlerContext) {
        guard let limit, deadline == nil, answeringTheRequestBeingRead, !dropping else { return }
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        deadline = context.eventLoop.scheduleTask(in: limit) { loopBound.value.close(promise: nil) }
    }

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(var response) where answeringTheRequestBeingRead:
            guard response.status.code >= 400 else {
                answeringEarly = true
                context.write(data, promise: promise)
                return
            }
            refusing = true
            // Said, so that a keep-alive client does not send its next request into a closing socket.
            response.headerFields[.connection] = "close"
            context.write(wrapOutboundOut(.head(response)), promise: promise)
        case .end where refusing || answeringEarly:
            answersEnded += 1
            scheduleRelease(context)
            let refusal = refusing
            let written = context.writeAndFlush(data)
            written.cascade(to: promise)
            let loopBound = NIOLoopBound((handler: self, context: context), eventLoop: context.eventLoop)
            written.whenComplete { _ in
                let (handler, context) = loopBound.value
                handler.earlyAnswerOut = true
                if refusal || handler.deferredClose != nil { handler.linger(context) }
            }
        case .end:
            answersEnded += 1
            context.write(data, promise: promise)
            scheduleRelease(context)
        default:
            context.write(data, promise: promise)
        }
    }

    @_optimize(size)  // cold: pipelining, refusals, stalls (the 25 MB budget)
    public func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        // Hummingbird shuts the output when it is done with a `Connection: close` request.
        guard mode != .input, refusing || answeringEarly, requestBeingRead, !closing else {
            context.close(mode: mode, promise: promise)
            return
        }
        if let deferredClose { promise.map { deferredClose.futureResult.cascade(to: $0) } } else { deferredClose = promise ?? context.eventLoop.makePromise() }
        if earlyAnswerOut, !dropping {
            linger(context)
        } else if lingering == nil {
            // Put off for the linger at most, even if the answer is never written out (a
            // client that reads nothing): the coordinator has no request deadline to end it.
            scheduleFinalClose(context)
        }
    }

    /// Once an early answer is out and the connection is to end: FIN, then read and drop the
    /// rest of the body for `linger` at most.
    @_optimize(size)  // cold: pipelining, refusals, stalls (the 25 MB budget)
    private func linger(_ context: ChannelHandlerContext) {
        guard !closing, !dropping else { return }
        guard requestBeingRead else {
            closeForGood(context)
            return
        }
        dropping = true
        // Requests pipelined behind this one get no answer: the connection ends.
        held.removeAll()
        errorHeld = nil
        context.close(mode: .output, promise: nil)
        context.read()
        // The linger bounds what is left; the deadline's close would come with the body unread.
        deadline?.cancel()
        deadline = nil
        scheduleFinalClose(context)
    }

    @_optimize(size)  // cold: pipelining, refusals, stalls (the 25 MB budget)
    private func scheduleFinalClose(_ context: ChannelHandlerContext) {
        lingering?.cancel()
        let loopBound = NIOLoopBound((handler: self, context: context), eventLoop: context.eventLoop)
        lingering = context.eventLoop.scheduleTask(in: Self.linger) {
            let (handler, context) = loopBound.value
            handler.closeForGood(context)
        }
    }

    @_optimize(size)  // cold: pipelining, refusals, stalls (the 25 MB budget)
    private func closeForGood(_ context: ChannelHandlerContext) {
        guard !closing else { return }
        closing = true
        lingering?.cancel()
        lingering = nil
        context.close(promise: deferredClose)
        deferredClose = nil
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        // A release scheduled before has nothing to hand on.
        closing = true
        held.removeAll()
        for task in [deadline, lingering, stalled] { task?.cancel() }
        deadline = nil
        lingering = nil
        stalled = nil
        // Closed by the client meanwhile: the close asked for has happened.
        deferredClose?.succeed(())
        deferredClose = nil
    }
}

/// Counts what a connection sends while the parser waits for a request head, and stops it past
/// the bound: reads that carry only head bytes are counted exactly; one in which a request's head
/// or end is parsed is not (it is bounded by the read size, 64 KiB). The answer is
/// RequestDeadline's `431`, as for a head the parser refuses.
final class HeadBytes: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    /// A legitimate head within the parser's bounds, with its separators, is under 17 KiB.
    static let limit = RequestDeadline.maxHeadBytes + 4096

    private var awaitingHead = true
    private var partsParsed = 0
    private var counted = 0
    private var stopped = false

    func parsed(awaitingHead: Bool) {
        self.awaitingHead = awaitingHead
        partsParsed += 1
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !stopped else { return }
        let bytes = unwrapInboundIn(data).readableBytes
        let onlyHead = awaitingHead
        let partsBefore = partsParsed
        context.fireChannelRead(data)
        counted = onlyHead && awaitingHead && partsParsed == partsBefore ? counted + bytes : 0
        if counted > Self.limit {
            stopped = true
            context.fireErrorCaught(HTTPParserError.headerOverflow)
        }
    }
}

