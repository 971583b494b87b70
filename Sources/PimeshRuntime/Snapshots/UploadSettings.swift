import PimeshSnapshot

extension LeadConfig.Upload {
    public struct Problem: Error, CustomStringConvertible {
        public var description: String
    }

    /// The configured target, with S3 keys from the config or else the environment; nil for `none`.
    public func target(environment: [String: String]) throws(Problem) -> UploadTarget? {
        switch target {
        case "coordinator": return .coordinator(url: url ?? "")
        case "directory": return .directory(directory ?? "")
        case "s3":
            guard let key = s3AccessKeyID ?? environment["AWS_ACCESS_KEY_ID"],
                let secret = s3SecretAccessKey ?? environment["AWS_SECRET_ACCESS_KEY"]
            else {
                throw Problem(description: "upload.s3 needs access_key_id and secret_access_key, in the config or as $AWS_ACCESS_KEY_ID / $AWS_SECRET_ACCESS_KEY")
            }
            return .s3(
                .init(
                    endpoint: s3Endpoint ?? "", bucket: s3Bucket ?? "", region: s3Region, prefix: s3Prefix, accessKeyID: key,
                    secretAccessKey: secret))
        default: return nil
        }
    }
}
