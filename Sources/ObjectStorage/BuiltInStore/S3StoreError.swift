/// An error the built-in store answers in S3's XML shape, with S3's code and status.
public struct S3StoreError: Error, Sendable, Equatable {
    public let status: Int
    public let code: String
    public let message: String

    public init(status: Int, code: String, message: String) {
        self.status = status
        self.code = code
        self.message = message
    }

    public static func invalidKey(_ message: String) -> Self { .init(status: 400, code: "InvalidArgument", message: message) }
    public static let noSuchKey = Self(status: 404, code: "NoSuchKey", message: "The specified key does not exist.")
    public static let noSuchUpload = Self(status: 404, code: "NoSuchUpload", message: "The specified multipart upload does not exist; it may have been completed or aborted.")
    public static func noSuchBucket(_ bucket: String) -> Self { .init(status: 404, code: "NoSuchBucket", message: "The bucket '\(bucket)' does not exist.") }
    public static let accessDenied = Self(status: 403, code: "AccessDenied", message: "Access Denied: sign the request with SigV4 (Authorization header or a presigned URL).")
    public static let expired = Self(status: 403, code: "AccessDenied", message: "Request has expired.")
    public static func outOfScope(_ what: String) -> Self {
        .init(status: 403, code: "AccessDenied", message: "This key may not \(what): it is scoped to one job's dataset (read) and outputs (read and write).")
    }
    public static let signatureDoesNotMatch = Self(
        status: 403, code: "SignatureDoesNotMatch", message: "The request signature we calculated does not match the signature you provided. Check your key and signing method.")
    public static let invalidAccessKeyID = Self(
        status: 403, code: "InvalidAccessKeyId", message: "The access key id you provided does not exist in our records; see `gomodel storage credentials`.")
    public static let requestTimeTooSkewed = Self(status: 403, code: "RequestTimeTooSkewed", message: "The difference between the request time and the server's time is too large.")
    public static func incompleteBody(expected: Int64, received: Int64) -> Self {
        .init(status: 400, code: "IncompleteBody", message: "You did not provide the number of bytes specified by the Content-Length HTTP header (\(received) of \(expected)).")
    }
    public static let contentSHA256Mismatch = Self(
        status: 400, code: "XAmzContentSHA256Mismatch", message: "The provided 'x-amz-content-sha256' header does not match what was computed.")
    public static let badDigest = Self(status: 400, code: "BadDigest", message: "The x-amz-checksum-sha256 you specified did not match the calculated checksum.")
    public static let missingContentLength = Self(status: 411, code: "MissingContentLength", message: "You must provide the Content-Length HTTP header.")
    public static let entityTooSmall = Self(
        status: 400, code: "EntityTooSmall", message: "Your proposed upload is smaller than the minimum allowed object size; every part but the last must be at least 5 MiB.")
    public static let invalidPart = Self(status: 400, code: "InvalidPart", message: "One or more of the specified parts could not be found, or its ETag did not match.")
    public static let invalidPartOrder = Self(status: 400, code: "InvalidPartOrder", message: "The list of parts was not in ascending order.")
    public static let malformedXML = Self(status: 400, code: "MalformedXML", message: "The XML you provided was not well-formed or did not validate against our published schema.")
    /// `If-None-Match: *` on a key that exists: the write did not happen.
    public static let preconditionFailed = Self(status: 412, code: "PreconditionFailed", message: "At least one of the pre-conditions you specified did not hold.")
    public static let invalidRange = Self(status: 416, code: "InvalidRange", message: "The requested range is not satisfiable.")
    public static func invalidArgument(_ message: String) -> Self { .init(status: 400, code: "InvalidArgument", message: message) }
    public static func notImplemented(_ what: String) -> Self { .init(status: 501, code: "NotImplemented", message: "\(what) is not implemented by the built-in store.") }
}
