import CLZ4
import Crypto
import Glibc

/// Streams a file through liblz4's frame API: the output is a standard LZ4 frame with a content
/// checksum, which `lz4 -d` reads. Both directions work in fixed-size chunks (memory stays near
/// 2.5 MB whatever the file size) and hash what passes with SHA-256 on the way.
public enum LZ4Frame {
    /// What went through: sizes and SHA-256 of both forms.
    public struct Digest: Sendable, Equatable {
        public var rawBytes: UInt64 = 0
        public var compressedBytes: UInt64 = 0
        public var rawSHA256: [UInt8] = []
        public var compressedSHA256: [UInt8] = []

        public init() {}
    }

    public struct Failure: Error, CustomStringConvertible, Equatable {
        public var description: String
    }

    static let chunk = 1 << 20

    /// Compresses `input` into `output` (file descriptors), the way `lz4 -1` frames it:
    /// independent blocks, content checksum; 256 KiB blocks keep liblz4's own buffer small.
    public static func compress(
        input: Int32, output: Int32, level: Int32 = 1, progress: (UInt64) -> Void = { _ in }
    ) throws(Failure) -> Digest {
        var context: OpaquePointer?
        guard LZ4F_isError(LZ4F_createCompressionContext(&context, UInt32(LZ4F_VERSION))) == 0, let context else {
            throw Failure(description: "liblz4: cannot create a compression context")
        }
        defer { LZ4F_freeCompressionContext(context) }
        var preferences = LZ4F_preferences_t()
        preferences.frameInfo.blockSizeID = LZ4F_max256KB
        preferences.frameInfo.blockMode = LZ4F_blockIndependent
        preferences.frameInfo.contentChecksumFlag = LZ4F_contentChecksumEnabled
        preferences.compressionLevel = level
        preferences.autoFlush = 1
        let capacity = LZ4F_compressBound(chunk, &preferences) + 64
        let source = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 16)
        let destination = UnsafeMutableRawBufferPointer.allocate(byteCount: capacity, alignment: 16)
        defer {
            source.deallocate()
            destination.deallocate()
        }
        // Both hashes run on threads of their own, overlapping the compression.
        let rawHash = DigestThread()
        let compressedHash = DigestThread()
        var digest = Digest()
        defer {
            // On an error path the threads still have to end.
            if digest.rawSHA256.isEmpty {
                _ = rawHash.finish()
                _ = compressedHash.finish()
            }
        }
        func emit(_ count: Int) throws(Failure) {
            let written = UnsafeRawBufferPointer(rebasing: destination[0..<count])
            compressedHash.submit(written)
            try writeAll(output, written)
            digest.compressedBytes += UInt64(count)
        }
        let header = LZ4F_compressBegin(context, destination.baseAddress, capacity, &preferences)
        guard LZ4F_isError(header) == 0 else { throw Failure(description: "liblz4: \(String(cString: LZ4F_getErrorName(header)))") }
        try emit(header)
        while true {
            let count = try readFull(input, source)
            if count == 0 { break }
            let raw = UnsafeRawBufferPointer(rebasing: source[0..<count])
            rawHash.submit(raw)
            digest.rawBytes += UInt64(count)
            let produced = LZ4F_compressUpdate(context, destination.baseAddress, capacity, raw.baseAddress, count, nil)
            guard LZ4F_isError(produced) == 0 else {
                throw Failure(description: "liblz4: \(String(cString: LZ4F_getErrorName(produced)))")
            }
            try emit(produced)
            progress(digest.rawBytes)
        }
        let end = LZ4F_compressEnd(context, destination.baseAddress, capacity, nil)
        guard LZ4F_isError(end) == 0 else { throw Failure(description: "liblz4: \(String(cString: LZ4F_getErrorName(end)))") }
        try emit(end)
        digest.rawSHA256 = rawHash.finish()
        digest.compressedSHA256 = compressedHash.finish()
        return digest
    }

    /// Decompresses an LZ4 frame from `input`, into `output` when given (else only checked).
    /// liblz4 checks the frame's content checksum; a damaged frame is a `Failure` that says so.
    /// Past `rawLimit` bytes it stops: a frame of a few MB can decompress to hundreds, and the
    /// checksum that would refuse it is read only at its end.
    public static func decompress(
        input: Int32, output: Int32?, rawLimit: UInt64 = .max, progress: (UInt64) -> Void = { _ in }
    ) throws(Failure) -> Digest {
        var context: OpaquePointer?
        guard LZ4F_isError(LZ4F_createDecompressionContext(&context, UInt32(LZ4F_VERSION))) == 0, let context else {
            throw Failure(description: "liblz4: cannot create a decompression context")
        }
        defer { LZ4F_freeDecompressionContext(context) }
        let source = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 16)
        let destination = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 16)
        defer {
            source.deallocate()
            destination.deallocate()
        }
        var rawHash = SHA256()
        var compressedHash = SHA256()
        var digest = Digest()
        var finished = false
        while true {
            let count = try readFull(input, source)
            if count == 0 { break }
            if finished { throw Failure(description: "data after the end of the LZ4 frame") }
            compressedHash.update(bufferPointer: UnsafeRawBufferPointer(rebasing: source[0..<count]))
            digest.compressedBytes += UInt64(count)
            var offset = 0
            while offset < count {
                var sourceSize = count - offset
                var destinationSize = chunk
                let hint = LZ4F_decompress(
                    context, destination.baseAddress, &destinationSize, source.baseAddress! + offset, &sourceSize, nil)
                guard LZ4F_isError(hint) == 0 else {
                    throw Failure(description: "the LZ4 frame is damaged: \(String(cString: LZ4F_getErrorName(hint)))")
                }
                offset += sourceSize
                if destinationSize > 0 {
                    guard UInt64(destinationSize) <= rawLimit - digest.rawBytes else {
                        throw Failure(description: "it decompresses to more than the \(rawLimit) bytes its manifest says")
                    }
                    let raw = UnsafeRawBufferPointer(rebasing: destination[0..<destinationSize])
                    rawHash.update(bufferPointer: raw)
                    if let output { try writeAll(output, raw) }
                    digest.rawBytes += UInt64(destinationSize)
                }
                if hint == 0 {
                    finished = true
                    if offset < count { throw Failure(description: "data after the end of the LZ4 frame") }
                    break
                }
                if sourceSize == 0 && destinationSize == 0 { break }
            }
            progress(digest.compressedBytes)
        }
        guard finished else { throw Failure(description: "the LZ4 frame is truncated") }
        digest.rawSHA256 = Array(rawHash.finalize())
        digest.compressedSHA256 = Array(compressedHash.finalize())
        return digest
    }

    /// SHA-256 of a whole file, streamed.
    public static func sha256(of fd: Int32) throws(Failure) -> (bytes: UInt64, digest: [UInt8]) {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 16)
        defer { buffer.deallocate() }
        var hash = SHA256()
        var total: UInt64 = 0
        while true {
            let count = try readFull(fd, buffer)
            if count == 0 { break }
            hash.update(bufferPointer: UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
            total += UInt64(count)
        }
        return (total, Array(hash.finalize()))
    }

    public static func readFull(_ fd: Int32, _ buffer: UnsafeMutableRawBufferPointer) throws(Failure) -> Int {
        var filled = 0
        while filled < buffer.count {
            let count = read(fd, buffer.baseAddress! + filled, buffer.count - filled)
            if count == 0 { break }
            if count < 0 {
                if errno == EINTR { continue }
                throw Failure(description: "read: \(String(cString: strerror(errno)))")
            }
            filled += count
        }
        return filled
    }

    public static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) throws(Failure) {
        var offset = 0
        while offset < bytes.count {
            let count = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if count < 0 {
                if errno == EINTR { continue }
                throw Failure(description: "write: \(String(cString: strerror(errno)))")
            }
            offset += count
        }
    }
}
