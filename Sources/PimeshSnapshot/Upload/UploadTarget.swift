import PimeshCore

/// Where snapshots go (DESIGN.md §6): the pimesh coordinator, an S3-compatible store, or a
/// directory (a mounted NAS, a USB stick).
public enum UploadTarget: Sendable, Equatable {
    case coordinator(url: String)
    case s3(S3)
    case directory(String)

    public struct S3: Sendable, Equatable {
        /// `https://s3.eu-central-1.amazonaws.com`, or any S3-compatible endpoint (path-style URLs).
        public var endpoint: String
        public var bucket: String
        public var region: String
        public var prefix: String
        public var accessKeyID: String
        public var secretAccessKey: String

        public init(endpoint: String, bucket: String, region: String, prefix: String, accessKeyID: String, secretAccessKey: String) {
            self.endpoint = endpoint
            self.bucket = bucket
            self.region = region
            self.prefix = prefix
            self.accessKeyID = accessKeyID
            self.secretAccessKey = secretAccessKey
        }
    }

    /// A short stable name: the upload markers in the spool carry it, so that changing the
    /// target uploads everything again to the new one.
    public var name: String {
        switch self {
        case .coordinator(let url): "coordinator-" + Self.slug(url)
        case .s3(let s3): "s3-" + Self.slug(s3.endpoint + "/" + s3.bucket + "/" + s3.prefix)
        case .directory(let path): "dir-" + Self.slug(path)
        }
    }

    static func slug(_ text: String) -> String {
        String(ConsistentHashRing.hash(text), radix: 16)
    }
}
