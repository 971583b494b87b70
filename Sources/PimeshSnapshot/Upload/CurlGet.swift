import CCurl
import Glibc

/// One HTTP(S) GET through libcurl into a file descriptor, refused past `maxBytes`: a release
/// download (`pimesh update apply URL`) must not fill the SD card because a server says so.
public struct CurlGet {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    public var url: String
    public var maxBytes: Int
    /// What the refusal calls `maxBytes` ("update.max_release_mb (32 MiB)").
    public var limitName: String
    public var timeoutS = 600

    public init(url: String, maxBytes: Int, limitName: String) {
        self.url = url
        self.maxBytes = maxBytes
        self.limitName = limitName
    }

    private final class Sink {
        let fd: Int32
        let maxBytes: Int
        var written = 0
        var tooLarge = false
        var writeErrno: Int32 = 0

        init(fd: Int32, maxBytes: Int) {
            self.fd = fd
            self.maxBytes = maxBytes
        }
    }

    /// The number of bytes written to `fd`.
    public func download(to fd: Int32) throws(Failure) -> Int {
        do { try CurlPut.loadLibcurl() } catch { throw Failure(description: error.description) }
        guard let curl = pimesh_curl_easy_init() else { throw Failure(description: "libcurl: cannot start a transfer") }
        defer { pimesh_curl_easy_cleanup(curl) }
        let sink = Sink(fd: fd, maxBytes: maxBytes)
        let context = Unmanaged.passUnretained(sink).toOpaque()
        _ = pimesh_curl_string(curl, CURLOPT_URL, url)
        // A redirect to file:// or another scheme would read what the URL never named.
        guard pimesh_curl_string(curl, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK,
            pimesh_curl_string(curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https") == CURLE_OK
        else {
            throw Failure(description: "libcurl older than 7.85 cannot be limited to http and https; download the release yourself")
        }
        _ = pimesh_curl_long(curl, CURLOPT_FOLLOWLOCATION, 1)
        _ = pimesh_curl_long(curl, CURLOPT_MAXREDIRS, 5)
        _ = pimesh_curl_long(curl, CURLOPT_FAILONERROR, 1)
        _ = pimesh_curl_long(curl, CURLOPT_TIMEOUT, timeoutS)
        _ = pimesh_curl_long(curl, CURLOPT_CONNECTTIMEOUT, 10)
        _ = pimesh_curl_long(curl, CURLOPT_NOSIGNAL, 1)
        _ = pimesh_curl_offset(curl, CURLOPT_MAXFILESIZE_LARGE, curl_off_t(maxBytes))
        _ = pimesh_curl_pointer(curl, CURLOPT_WRITEDATA, context)
        _ = pimesh_curl_callback(curl, CURLOPT_WRITEFUNCTION) { buffer, size, count, context in
            let sink = Unmanaged<Sink>.fromOpaque(context!).takeUnretainedValue()
            let total = size * count
            guard sink.written + total <= sink.maxBytes else {
                sink.tooLarge = true
                return 0
            }
            var offset = 0
            while offset < total {
                let n = write(sink.fd, buffer! + offset, total - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    sink.writeErrno = errno
                    return 0
                }
                offset += n
            }
            sink.written += total
            return total
        }
        let code = pimesh_curl_easy_perform(curl)
        if sink.tooLarge || code == CURLE_FILESIZE_EXCEEDED {
            throw Failure(description: "\(url): larger than \(limitName)")
        }
        if sink.writeErrno != 0 { throw Failure(description: "\(url): cannot write the download: \(String(cString: strerror(sink.writeErrno)))") }
        guard code == CURLE_OK else { throw Failure(description: "\(url): \(String(cString: pimesh_curl_easy_strerror(code)))") }
        return sink.written
    }
}
