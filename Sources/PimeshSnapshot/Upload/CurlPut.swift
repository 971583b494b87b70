import CCurl
import Glibc
import Synchronization

/// Set from another thread to end a transfer in progress: libcurl checks it through its
/// progress callback about once a second, and at once on any progress.
public final class TransferAbort: Sendable {
    private let flag = Atomic<Bool>(false)
    /// The transfer helper's parent, the lead (0: not watched). Once getppid() differs, the lead
    /// is gone: nobody waits for the answer, and the next lead uploads the snapshot again.
    private let parent: pid_t

    /// `endingWithParent`: also aborted once that process is no longer this one's parent (the
    /// pid the lead wrote into the order: a lead that died before the helper looked is caught too).
    public init(endingWithParent parent: pid_t = 0) {
        self.parent = parent
    }

    public func abort() {
        flag.store(true, ordering: .relaxed)
    }

    public var isAborted: Bool {
        flag.load(ordering: .relaxed) || (parent != 0 && getppid() != parent)
    }
}

/// One HTTP PUT through libcurl in this process: the body is streamed from a file or copied
/// from memory, the answer's status, body (capped) and headers are kept. Used for the
/// coordinator and for S3 (libcurl signs with AWS SigV4 itself, CURLOPT_AWS_SIGV4). A lead
/// never runs it itself (`PutTransport`): it maps libcurl and its chain for good.
struct CurlPut {
    var request: PutRequest
    var abort: TransferAbort

    private final class Transfer {
        var fd: Int32
        var abort: TransferAbort
        var memory: [UInt8]?
        var offset = 0
        var body: [UInt8] = []
        var headers: [String: String] = [:]

        init(fd: Int32, abort: TransferAbort) {
            self.fd = fd
            self.abort = abort
        }
    }

    static func loadLibcurl() throws(TransferFailure) {
        var error = [CChar](repeating: 0, count: 512)
        guard pimesh_curl_load(&error, error.count) == 0 else {
            throw TransferFailure(description: "libcurl: \(String(decoding: error.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))")
        }
    }

    func put(_ body: PutBody) throws(TransferFailure) -> PutAnswer {
        switch body {
        case .bytes(let bytes):
            return try put(file: -1, size: UInt64(bytes.count), memory: bytes)
        case .file(let path):
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw TransferFailure(description: "cannot open \(path): \(String(cString: strerror(errno)))") }
            defer { close(fd) }
            var info = stat()
            guard fstat(fd, &info) == 0 else { throw TransferFailure(description: "cannot stat \(path): \(String(cString: strerror(errno)))") }
            return try put(file: fd, size: UInt64(info.st_size), memory: nil)
        }
    }

    private func put(file fd: Int32, size: UInt64, memory: [UInt8]?) throws(TransferFailure) -> PutAnswer {
        try Self.loadLibcurl()
        guard let curl = pimesh_curl_easy_init() else { throw TransferFailure(description: "libcurl: cannot start a transfer") }
        defer { pimesh_curl_easy_cleanup(curl) }
        let url = request.url
        guard !abort.isAborted else { throw TransferFailure(description: "\(url): aborted, the lead is stopping") }
        let transfer = Transfer(fd: fd, abort: abort)
        transfer.memory = memory
        let context = Unmanaged.passUnretained(transfer).toOpaque()
        var list: UnsafeMutablePointer<curl_slist>?
        for header in request.headers + ["Expect:"] { list = pimesh_curl_slist_append(list, header) }
        defer { pimesh_curl_slist_free_all(list) }
        _ = pimesh_curl_string(curl, CURLOPT_URL, url)
        _ = pimesh_curl_long(curl, CURLOPT_UPLOAD, 1)
        _ = pimesh_curl_offset(curl, CURLOPT_INFILESIZE_LARGE, curl_off_t(size))
        _ = pimesh_curl_pointer(curl, CURLOPT_HTTPHEADER, UnsafeMutableRawPointer(list))
        _ = pimesh_curl_long(curl, CURLOPT_TIMEOUT, request.timeoutS)
        _ = pimesh_curl_long(curl, CURLOPT_CONNECTTIMEOUT, 10)
        _ = pimesh_curl_long(curl, CURLOPT_NOSIGNAL, 1)
        if let sigv4 = request.awsSigV4 {
            _ = pimesh_curl_string(curl, CURLOPT_AWS_SIGV4, sigv4.provider)
            _ = pimesh_curl_string(curl, CURLOPT_USERPWD, sigv4.credentials)
        }
        _ = pimesh_curl_pointer(curl, CURLOPT_READDATA, context)
        _ = pimesh_curl_callback(curl, CURLOPT_READFUNCTION) { buffer, size, count, context in
            let transfer = Unmanaged<Transfer>.fromOpaque(context!).takeUnretainedValue()
            if let memory = transfer.memory {
                let n = min(size * count, memory.count - transfer.offset)
                memory.withUnsafeBytes { source in
                    if n > 0 { UnsafeMutableRawPointer(buffer!).copyMemory(from: source.baseAddress! + transfer.offset, byteCount: n) }
                }
                transfer.offset += n
                return n
            }
            let n = read(transfer.fd, buffer, size * count)
            return n < 0 ? Int(CURL_READFUNC_ABORT) : n
        }
        _ = pimesh_curl_pointer(curl, CURLOPT_WRITEDATA, context)
        _ = pimesh_curl_callback(curl, CURLOPT_WRITEFUNCTION) { buffer, size, count, context in
            let transfer = Unmanaged<Transfer>.fromOpaque(context!).takeUnretainedValue()
            let total = size * count
            if transfer.body.count < 1 << 16 {
                transfer.body += UnsafeRawBufferPointer(start: buffer, count: total)
            }
            return total
        }
        _ = pimesh_curl_pointer(curl, CURLOPT_HEADERDATA, context)
        _ = pimesh_curl_callback(curl, CURLOPT_HEADERFUNCTION) { buffer, size, count, context in
            let transfer = Unmanaged<Transfer>.fromOpaque(context!).takeUnretainedValue()
            let total = size * count
            let line = String(decoding: UnsafeRawBufferPointer(start: buffer, count: total), as: UTF8.self)
            if let colon = line.firstIndex(of: ":") {
                let name = line[..<colon].lowercased()
                let value = line[line.index(after: colon)...].trimmingSpacesAndNewlines
                transfer.headers[name] = value
            }
            return total
        }
        _ = pimesh_curl_pointer(curl, CURLOPT_XFERINFODATA, context)
        _ = pimesh_curl_long(curl, CURLOPT_NOPROGRESS, 0)
        _ = pimesh_curl_progress_callback(curl) { context, _, _, _, _ in
            Unmanaged<Transfer>.fromOpaque(context!).takeUnretainedValue().abort.isAborted ? 1 : 0
        }
        let code = pimesh_curl_easy_perform(curl)
        if abort.isAborted { throw TransferFailure(description: "\(url): aborted, the lead is stopping") }
        guard code == CURLE_OK else {
            throw TransferFailure(description: "\(url): \(String(cString: pimesh_curl_easy_strerror(code)))")
        }
        var status = 0
        _ = pimesh_curl_info_long(curl, CURLINFO_RESPONSE_CODE, &status)
        return PutAnswer(status: status, body: transfer.body, headers: transfer.headers)
    }
}

extension Substring {
    var trimmingSpacesAndNewlines: String {
        // "\r\n" is one Character in Swift: test the property, not the scalar.
        let isSpace: (Character) -> Bool = { $0.isWhitespace || $0.isNewline }
        return String(drop(while: isSpace).reversed().drop(while: isSpace).reversed())
    }
}
