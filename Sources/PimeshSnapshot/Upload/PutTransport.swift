import Glibc
import PimeshCore

/// One HTTP PUT: where, with which headers and signature, and how long it may take.
public struct PutRequest: Sendable {
    public struct AWSSigV4: Sendable {
        /// `aws:amz:REGION:s3`
        public var provider: String
        /// `KEY:SECRET`
        public var credentials: String
    }

    public var url: String
    public var headers: [String]
    /// S3: libcurl signs the request itself (CURLOPT_AWS_SIGV4).
    public var awsSigV4: AWSSigV4?
    public var timeoutS: Int

    public init(url: String, headers: [String] = [], awsSigV4: AWSSigV4? = nil, timeoutS: Int = 300) {
        self.url = url
        self.headers = headers
        self.awsSigV4 = awsSigV4
        self.timeoutS = timeoutS
    }
}

public enum PutBody: Sendable {
    /// A small body from memory (an incident, an enrollment).
    case bytes([UInt8])
    /// Streamed from the file (a snapshot), never held in memory whole.
    case file(path: String)
}

/// The receiver's answer: status, body (the first 64 KiB) and headers (names in lowercase).
public struct PutAnswer: Sendable {
    public var status: Int
    public var body: [UInt8]
    public var headers: [String: String]

    public init(status: Int, body: [UInt8], headers: [String: String]) {
        self.status = status
        self.body = body
        self.headers = headers
    }

    /// The start of the body, fit for the lead's log and a terminal (`PrintableText`).
    public var bodyExcerpt: String { PrintableText.of(String(decoding: body.prefix(1024), as: UTF8.self)) }
}

public struct TransferFailure: Error, CustomStringConvertible {
    public var description: String

    public init(description: String) {
        self.description = description
    }
}

/// Who carries a PUT out. A lead uploads a snapshot every few hours and an incident now and
/// then; libcurl and the chain it loads (GnuTLS, Kerberos, p11-kit, …) cost it 1.2 MB of private
/// memory and 1–1.5 MB of PSS from the first upload on (docs/benchmarks.md), so a lead hands each
/// PUT to a short-lived helper process (`HelperPut` in PimeshRuntime). `InProcessPut` is what
/// that helper, and a CLI command that ends right after, run.
public protocol PutTransport: Sendable {
    func put(_ request: PutRequest, body: PutBody, abort: TransferAbort) throws(TransferFailure) -> PutAnswer
}

/// libcurl in this process, loaded at the first transfer and kept.
public struct InProcessPut: PutTransport {
    public init() {}

    public func put(_ request: PutRequest, body: PutBody, abort: TransferAbort) throws(TransferFailure) -> PutAnswer {
        try CurlPut(request: request, abort: abort).put(body)
    }
}

/// What passes between a lead and its transfer helper (`pimesh transfer-helper`). Both ends
/// are this binary, so the format is private to it: NUL-terminated fields, which no URL, header
/// or credential can contain (libcurl takes them as C strings).
///
/// - stdin: `pimesh-put`, the lead's pid, the URL, the timeout in seconds, the SigV4 provider
///   and credentials (empty: none), the body's path (empty: the body is inline), the number of
///   headers, the headers; then the inline body, to the end.
/// - stdout: a line of its own with `pimesh-put-answer`, the status, the number of headers,
///   each header's name and value and the body in hex; or with `pimesh-put-error` and what
///   failed. stderr shares the pipe: the reader takes the last line that starts with a mark,
///   whatever a library printed around it.
public enum PutHelper {
    public static let commandName = "transfer-helper"
    static let orderMark = "pimesh-put"
    static let answerMark = "pimesh-put-answer"
    static let errorMark = "pimesh-put-error"
    /// The fields before the body; a PUT's URL and headers are far smaller.
    static let maxOrderFieldBytes = 1 << 16
    /// An inline body (incidents are a few KB); files are streamed by path.
    static let maxInlineBodyBytes = 16 << 20

    /// The helper's stdin for one PUT.
    public static func order(_ request: PutRequest, body: PutBody) throws(TransferFailure) -> [UInt8] {
        var fields = [
            orderMark, String(getpid()), request.url, String(request.timeoutS), request.awsSigV4?.provider ?? "", request.awsSigV4?.credentials ?? "",
        ]
        var inline: [UInt8] = []
        switch body {
        case .file(let path):
            guard !path.isEmpty else { throw TransferFailure(description: "\(request.url): an empty body path") }
            fields.append(path)
        case .bytes(let bytes):
            guard bytes.count <= maxInlineBodyBytes else {
                throw TransferFailure(description: "\(request.url): a body of \(bytes.count) bytes is over the \(maxInlineBodyBytes) an inline body may have")
            }
            fields.append("")
            inline = bytes
        }
        fields.append(String(request.headers.count))
        fields += request.headers
        guard !fields.contains(where: { $0.utf8.contains(0) }) else { throw TransferFailure(description: "\(request.url): a NUL byte in the URL, a header or a credential") }
        let encoded = Array(fields.joined(separator: "\0").utf8) + [0]
        guard encoded.count <= maxOrderFieldBytes else {
            throw TransferFailure(description: "\(request.url): the URL and headers take \(encoded.count) bytes, over \(maxOrderFieldBytes)")
        }
        return encoded + inline
    }

    /// Reads an order (the helper's stdin), the inverse of `order(_:body:)`, with the pid of the
    /// lead that wrote it.
    static func decodeOrder(_ bytes: [UInt8]) throws(TransferFailure) -> (PutRequest, PutBody, lead: pid_t) {
        var fields: [String] = []
        var start = 0
        func next(_ what: String) throws(TransferFailure) -> String {
            guard let end = bytes[start...].prefix(max(0, maxOrderFieldBytes - start)).firstIndex(of: 0) else {
                throw TransferFailure(description: "transfer-helper: the request ends before its \(what)")
            }
            defer { start = end + 1 }
            return String(decoding: bytes[start..<end], as: UTF8.self)
        }
        guard try next("mark") == orderMark else { throw TransferFailure(description: "transfer-helper: stdin is not a request (it starts with \(orderMark))") }
        guard let lead = pid_t(try next("lead pid")), lead > 0 else { throw TransferFailure(description: "transfer-helper: the lead's pid is not a pid") }
        let url = try next("URL")
        guard let timeoutS = Int(try next("timeout")), timeoutS > 0 else { throw TransferFailure(description: "transfer-helper: the timeout is not a positive number of seconds") }
        let provider = try next("SigV4 provider")
        let credentials = try next("SigV4 credentials")
        let path = try next("body path")
        guard let count = Int(try next("header count")), count >= 0 else { throw TransferFailure(description: "transfer-helper: the header count is not a number") }
        for index in 0..<count { fields.append(try next("header \(index + 1) of \(count)")) }
        let request = PutRequest(
            url: url, headers: fields, awsSigV4: provider.isEmpty ? nil : PutRequest.AWSSigV4(provider: provider, credentials: credentials), timeoutS: timeoutS)
        let inline = Array(bytes[start...])
        guard path.isEmpty else {
            guard inline.isEmpty else { throw TransferFailure(description: "transfer-helper: a request with a body path has no inline body") }
            return (request, .file(path: path), lead)
        }
        return (request, .bytes(inline), lead)
    }

    /// The helper's answer: a line of its own, so that output a library left without a newline
    /// cannot run into its mark.
    static func encodeOutcome(_ result: Result<PutAnswer, TransferFailure>) -> [UInt8] {
        switch result {
        case .success(let answer):
            var fields = [answerMark, String(answer.status), String(answer.headers.count)]
            for (name, value) in answer.headers.sorted(by: { $0.key < $1.key }) { fields += [name, value] }
            fields.append(Hex.encode(answer.body))
            return [0x0A] + Array(fields.joined(separator: "\0").utf8) + [0x0A]
        case .failure(let failure):
            // One line: a newline in the text would cut the answer in two.
            return [0x0A] + Array((errorMark + "\0" + failure.description.replacing("\n", with: " ")).utf8) + [0x0A]
        }
    }

    /// The answer in what a helper wrote: the last line that starts with a mark. The rest (a
    /// library's complaint on stderr, which shares the pipe, before or after it) is kept for
    /// the error message.
    public static func answer(fromOutput output: [UInt8]) throws(TransferFailure) -> PutAnswer {
        let lines = output.split(separator: 0x0A)
        let marks = [answerMark, errorMark].map { Array($0.utf8) + [0] }
        guard let index = lines.lastIndex(where: { line in marks.contains { line.starts(with: $0) } }) else {
            let shown = Substring(String(decoding: output.suffix(500), as: UTF8.self)).trimmingSpacesAndNewlines
            throw TransferFailure(description: "the transfer helper gave no answer" + (shown.isEmpty ? "" : ": \(shown)"))
        }
        let noise = lines.indices.filter { $0 != index }.map { String(decoding: lines[$0], as: UTF8.self) }.joined(separator: " ")
        let fields = lines[index].split(separator: 0, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
        if fields.first == errorMark, fields.count == 2 {
            throw TransferFailure(description: fields[1] + (noise.isEmpty ? "" : " (\(noise.suffix(300)))"))
        }
        guard fields.first == answerMark, fields.count >= 4, let status = Int(fields[1]), let count = Int(fields[2]), count >= 0,
            fields.count == 4 + 2 * count, let body = Hex.decode(fields[fields.count - 1])
        else {
            throw TransferFailure(description: "the transfer helper's answer is damaged: \(String(decoding: lines[index].prefix(200), as: UTF8.self))")
        }
        var headers: [String: String] = [:]
        for index in 0..<count { headers[fields[3 + 2 * index]] = fields[4 + 2 * index] }
        return PutAnswer(status: status, body: body, headers: headers)
    }

    /// The helper itself: reads one order from stdin, carries it out with libcurl, writes the
    /// answer line to stdout. Exits 0 when it wrote an answer (a failed transfer included: the
    /// line says what failed), 1 when it could not.
    public static func serve() -> Int32 {
        var input: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(0, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count >= 0 else { return respond(.failure(TransferFailure(description: "transfer-helper: cannot read stdin: \(String(cString: strerror(errno)))"))) }
            if count == 0 { break }
            input += chunk[..<count]
            if input.count > maxOrderFieldBytes + maxInlineBodyBytes {
                return respond(.failure(TransferFailure(description: "transfer-helper: stdin holds more than a request and an inline body may")))
            }
        }
        let result: Result<PutAnswer, TransferFailure>
        do throws(TransferFailure) {
            let (request, body, lead) = try decodeOrder(input)
            result = .success(try InProcessPut().put(request, body: body, abort: TransferAbort(endingWithParent: lead)))
        } catch {
            result = .failure(error)
        }
        return respond(result)
    }

    private static func respond(_ result: Result<PutAnswer, TransferFailure>) -> Int32 {
        let line = encodeOutcome(result)
        var offset = 0
        while offset < line.count {
            let written = line[offset...].withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else { return 1 }
            offset += written
        }
        return 0
    }
}
