import Crypto
import FoundationEssentials
import Glibc
import PimeshCore
import PimeshSystem

/// Ships one spooled snapshot to the target and returns only once the receiver confirmed the
/// checksum: the coordinator answers with the SHA-256 it computed, S3 with the ETag (MD5 of a
/// single PUT) that this side computes too, a directory copy is read back and hashed.
public struct SnapshotUploader: Sendable {
    public let target: UploadTarget
    /// Who carries out the PUTs: a lead's helper process, or libcurl in this process.
    public let transport: any PutTransport
    /// Ends an upload in progress when the lead stops, instead of waiting out libcurl's timeout.
    public let abort = TransferAbort()

    public init(target: UploadTarget, transport: any PutTransport) {
        self.target = target
        self.transport = transport
    }

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
        /// A refusal the receiver will repeat (bad signature, unknown node): retrying is pointless
        /// until an operator acts, but the uploader keeps trying slowly in case they do.
        public var permanent: Bool
    }

    /// Returns the receiver's confirmation, for the log.
    public func upload(_ entry: SnapshotSpool.Entry) throws -> String {
        switch target {
        case .directory(let path): try toDirectory(entry, path)
        case .coordinator(let url): try toCoordinator(entry, url)
        case .s3(let s3): try toS3(entry, s3)
        }
    }

    private func openFile(_ path: String) throws -> (Int32, UInt64) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Failure(description: "cannot open \(path): \(String(cString: strerror(errno)))", permanent: false) }
        var info = stat()
        fstat(fd, &info)
        return (fd, UInt64(info.st_size))
    }

    @_optimize(size)  // cold: an upload every few minutes (the 25 MB budget)
    private func toDirectory(_ entry: SnapshotSpool.Entry, _ root: String) throws -> String {
        let directory = root + "/" + entry.manifest.nodeID
        // Snapshots hold every agent's secret: the copies are the node's alone, as the
        // coordinator's archive is.
        try FileIO.makeDirectories(directory, mode: 0o700)
        chmod(directory, 0o700)  // one an earlier version made 0755
        let target = directory + "/" + entry.manifest.file
        let temporary = directory + "/.tmp-" + entry.manifest.file
        let (input, _) = try openFile(entry.filePath)
        defer { close(input) }
        unlink(temporary)  // a copy cut short, which may carry an earlier version's mode
        let output = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard output >= 0 else { throw Failure(description: "cannot create \(temporary): \(String(cString: strerror(errno)))", permanent: false) }
        // Whatever fails from here on, no descriptor and no half-written copy stays behind.
        var outputOpen = true
        var keepTemporary = false
        defer {
            if outputOpen { close(output) }
            if !keepTemporary { unlink(temporary) }
        }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { buffer.deallocate() }
        while true {
            if abort.isAborted { throw Failure(description: "copy to \(directory) aborted: the lead is stopping", permanent: false) }
            let count = try LZ4Frame.readFull(input, buffer)
            if count == 0 { break }
            try LZ4Frame.writeAll(output, UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
        }
        guard fsync(output) == 0 else { throw Failure(description: "cannot sync \(temporary): \(String(cString: strerror(errno)))", permanent: false) }
        outputOpen = false
        close(output)
        // Read back what landed: the confirmation is the copy's own checksum.
        let check = open(temporary, O_RDONLY | O_CLOEXEC)
        guard check >= 0 else { throw Failure(description: "cannot read back \(temporary): \(String(cString: strerror(errno)))", permanent: false) }
        defer { close(check) }
        let (_, digest) = try LZ4Frame.sha256(of: check)
        guard Hex.encode(digest) == entry.manifest.compressedSHA256 else {
            throw Failure(description: "the copy in \(directory) does not match its SHA-256", permanent: false)
        }
        guard rename(temporary, target) == 0 else { throw Failure(description: "cannot rename into \(target)", permanent: false) }
        keepTemporary = true
        try FileIO.writeAtomically(
            path: directory + "/" + SnapshotManifest.manifestName(sequence: entry.manifest.sequence),
            bytes: try FileIO.read(path: entry.manifestPath), mode: 0o600)
        return "copied to \(target), SHA-256 read back"
    }

    /// Sends one incident (JSON) to the coordinator, signed with the node key: the coordinator
    /// files it under the node and groups it with other nodes' (docs/incidents.md). Only for a
    /// coordinator target; returns false when the target is something else.
    public func pushIncident(nodeID: String, id: Int64, body: [UInt8], signature: [UInt8]) throws -> Bool {
        guard case .coordinator(let url) = target else { return false }
        let request = PutRequest(
            url: url.trimmingSuffix("/") + "/v1/nodes/\(nodeID)/incidents/\(id)",
            headers: ["Content-Type: application/json", "Pimesh-Signature: " + Hex.encode(signature)], timeoutS: 30)
        let answer: PutAnswer
        do {
            answer = try transport.put(request, body: .bytes(body), abort: abort)
        } catch {
            throw Failure(description: "\(error)", permanent: false)
        }
        // 409: the coordinator holds a later version of it; there is nothing left to send.
        guard (200..<300).contains(answer.status) || answer.status == 409 else {
            throw Failure(
                description: "the coordinator answered \(answer.status): \(answer.bodyExcerpt)",
                permanent: (400..<500).contains(answer.status))
        }
        return true
    }

    private func toCoordinator(_ entry: SnapshotSpool.Entry, _ url: String) throws -> String {
        let manifest = try FileIO.read(path: entry.manifestPath, limit: 1 << 16)
        let request = PutRequest(
            url: url.trimmingSuffix("/") + "/v1/nodes/\(entry.manifest.nodeID)/snapshots/\(entry.manifest.sequence)",
            headers: ["Content-Type: application/octet-stream", "Pimesh-Manifest: " + Hex.encode(manifest)])
        let answer: PutAnswer
        do {
            answer = try transport.put(request, body: .file(path: entry.filePath), abort: abort)
        } catch {
            throw Failure(description: "\(error)", permanent: false)
        }
        let text = answer.bodyExcerpt
        // 410: older than what the coordinator keeps for this node (its retention); sending it
        // again would change nothing, and the newer snapshots behind it are waiting.
        if answer.status == 410 { return "the coordinator keeps no snapshot this old for this node (410): \(text)" }
        guard (200..<300).contains(answer.status) else {
            throw Failure(description: "the coordinator answered \(answer.status): \(text)", permanent: (400..<500).contains(answer.status))
        }
        struct Receipt: Decodable { var compressedSha256: String }
        guard let receipt = try? APICoding.decode(Receipt.self, from: answer.body), receipt.compressedSha256 == entry.manifest.compressedSHA256 else {
            throw Failure(description: "the coordinator did not confirm the snapshot's SHA-256: \(text)", permanent: false)
        }
        return "the coordinator confirmed SHA-256 \(receipt.compressedSha256.prefix(16))…"
    }

    private func md5Hex(of path: String) throws -> String {
        let (fd, _) = try openFile(path)
        defer { close(fd) }
        var md5 = Insecure.MD5()
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { buffer.deallocate() }
        while true {
            let count = try LZ4Frame.readFull(fd, buffer)
            if count == 0 { break }
            md5.update(bufferPointer: UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
        }
        return Hex.encode(Array(md5.finalize()))
    }

    private func toS3(_ entry: SnapshotSpool.Entry, _ s3: UploadTarget.S3) throws -> String {
        let base = s3.endpoint.trimmingSuffix("/") + "/" + s3.bucket + "/"
            + (s3.prefix.isEmpty ? "" : s3.prefix.trimmingSuffix("/") + "/") + entry.manifest.nodeID + "/"
        let signing = PutRequest.AWSSigV4(provider: "aws:amz:\(s3.region):s3", credentials: "\(s3.accessKeyID):\(s3.secretAccessKey)")
        func put(_ path: String, name: String, sha256: String) throws -> String {
            // The ETag S3 must answer with: what the PUT below streams from the same file.
            let etag = try md5Hex(of: path)
            let request = PutRequest(url: base + name, headers: ["x-amz-content-sha256: " + sha256], awsSigV4: signing)
            let answer: PutAnswer
            do {
                answer = try transport.put(request, body: .file(path: path), abort: abort)
            } catch {
                throw Failure(description: "\(error)", permanent: false)
            }
            guard (200..<300).contains(answer.status) else {
                throw Failure(
                    description: "S3 answered \(answer.status): \(answer.bodyExcerpt)",
                    permanent: answer.status == 403 || answer.status == 404)
            }
            let returned = (answer.headers["etag"] ?? "").replacing("\"", with: "")
            guard returned == etag else {
                throw Failure(
                    description: "S3 stored \(name) with ETag \(PrintableText.of(returned, limit: 80)), not the MD5 \(etag) of what was sent",
                    permanent: false)
            }
            return etag
        }
        let manifestBytes = try FileIO.read(path: entry.manifestPath, limit: 1 << 16)
        let etag = try put(entry.filePath, name: entry.manifest.file, sha256: entry.manifest.compressedSHA256)
        // The manifest goes last: a reader that finds it finds the snapshot it describes.
        _ = try put(
            entry.manifestPath, name: SnapshotManifest.manifestName(sequence: entry.manifest.sequence),
            sha256: Hex.encode(Array(SHA256.hash(data: manifestBytes))))
        return "S3 confirmed ETag \(etag) (MD5 of the snapshot) at \(base)"
    }
}

extension String {
    func trimmingSuffix(_ suffix: String) -> String {
        var text = self
        while text.hasSuffix(suffix) { text.removeLast(suffix.count) }
        return text
    }
}
