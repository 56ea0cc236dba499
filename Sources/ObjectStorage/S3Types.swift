import Foundation

/// Where a bucket lives and how to reach it.
public struct S3Endpoint: Sendable {
    public enum Addressing: Sendable {
        /// `https://host/bucket/key` (R2, MinIO, rclone, the built-in store).
        case path
        /// `https://bucket.host/key` (AWS).
        case virtualHosted
    }

    /// Base URL, possibly with a path prefix (the built-in store is at `…/s3`).
    public var url: URL
    public var bucket: String
    public var region: String
    public var credentials: S3Credentials
    public var addressing: Addressing

    public init(url: URL, bucket: String, region: String, credentials: S3Credentials, addressing: Addressing = .path) {
        self.url = url
        self.bucket = bucket
        self.region = region
        self.credentials = credentials
        self.addressing = addressing
    }

    /// The URL of `key` (nil: the bucket itself), with the key encoded by S3's rules.
    public func objectURL(_ key: String?, query: String = "") -> URL {
        var components = URLComponents(url: url, resolvingAgainstBaseURL: false)!
        var base = components.percentEncodedPath
        while base.hasSuffix("/") { base.removeLast() }
        let encodedKey = key.map { SigV4Encoding.encode($0, keepSlash: true) } ?? ""
        switch addressing {
        case .path:
            components.percentEncodedPath = base + "/" + bucket + (key == nil ? "" : "/" + encodedKey)
        case .virtualHosted:
            components.host = bucket + "." + (components.host ?? "")
            components.percentEncodedPath = base + "/" + encodedKey
        }
        components.percentEncodedQuery = query.isEmpty ? nil : query
        return components.url!
    }
}

/// What HEAD (and GET) tell about an object.
public struct ObjectInfo: Sendable, Equatable {
    public var key: String
    public var size: Int64
    public var etag: String
    public var contentType: String?
    public var lastModified: Date?
    /// User metadata (`x-amz-meta-*`), names lower-case without the prefix.
    public var metadata: [String: String] = [:]

    public init(key: String, size: Int64, etag: String, contentType: String? = nil, lastModified: Date? = nil, metadata: [String: String] = [:]) {
        self.key = key
        self.size = size
        self.etag = etag
        self.contentType = contentType
        self.lastModified = lastModified
        self.metadata = metadata
    }
}

/// One entry of a listing.
public struct ObjectSummary: Sendable, Equatable {
    public var key: String
    public var size: Int64
    public var etag: String
    public var lastModified: Date?
}

public struct ListPage: Sendable {
    public var objects: [ObjectSummary]
    public var commonPrefixes: [String]
    public var nextContinuationToken: String?
}

public struct UploadedPart: Sendable, Equatable {
    public var partNumber: Int
    public var etag: String
    public var size: Int64

    public init(partNumber: Int, etag: String, size: Int64 = 0) {
        self.partNumber = partNumber
        self.etag = etag
        self.size = size
    }
}

/// A presigned request: the URL, and the headers the uploader must send exactly as signed.
public struct PresignedRequest: Sendable {
    public var method: String
    public var url: URL
    /// Headers the request must carry exactly as given (they are part of the signature).
    public var headers: [String: String]

    public init(method: String, url: URL, headers: [String: String]) {
        self.method = method
        self.url = url
        self.headers = headers
    }
}

/// An error answered by an S3 server (its XML `<Error>`), or a transport failure.
public struct S3Error: Error, Sendable, CustomStringConvertible {
    public enum Code: Sendable, Equatable {
        case noSuchKey, noSuchBucket, noSuchUpload, accessDenied, signatureDoesNotMatch, invalidAccessKeyID
        case requestTimeTooSkewed, expiredToken, entityTooSmall, entityTooLarge, invalidPart, invalidPartOrder
        case invalidRange, slowDown, internalError, badDigest, preconditionFailed
        /// Any other code, kept as the server sent it.
        case other(String)

        init(_ text: String) {
            switch text {
            case "NoSuchKey": self = .noSuchKey
            case "NoSuchBucket": self = .noSuchBucket
            case "NoSuchUpload": self = .noSuchUpload
            case "AccessDenied": self = .accessDenied
            case "SignatureDoesNotMatch": self = .signatureDoesNotMatch
            case "InvalidAccessKeyId": self = .invalidAccessKeyID
            case "RequestTimeTooSkewed": self = .requestTimeTooSkewed
            case "ExpiredToken": self = .expiredToken
            case "EntityTooSmall": self = .entityTooSmall
            case "EntityTooLarge": self = .entityTooLarge
            case "InvalidPart": self = .invalidPart
            case "InvalidPartOrder": self = .invalidPartOrder
            case "InvalidRange": self = .invalidRange
            case "SlowDown": self = .slowDown
            case "InternalError": self = .internalError
            case "BadDigest": self = .badDigest
            case "PreconditionFailed": self = .preconditionFailed
            default: self = .other(text)
            }
        }
    }

    public var status: Int
    public var code: Code
    public var message: String
    public var requestID: String? = nil
    /// The wait the server asked for (`Retry-After`), if any.
    public var retryAfter: Duration? = nil

    public var description: String {
        "S3 error \(status) \(code): \(message)"
    }
}
