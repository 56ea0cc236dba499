import Foundation
import TrainerCore

/// Checks SigV4 on requests to the built-in store: `Authorization` headers and presigned URLs.
///
/// The signature is recomputed with the same `SigV4Signer` the client side uses, from the request
/// as received; the region is taken from the client's credential scope (the store has no region).
public struct S3RequestAuthenticator: Sendable {
    public let credentials: S3Credentials
    public var maximumClockSkew: TimeInterval = 15 * 60
    public static let maximumPresignedExpiry = 604_800

    public init(credentials: S3Credentials) {
        self.credentials = credentials
    }

    /// What the client signed as the body's hash: hex SHA-256 (to check while storing),
    /// `UNSIGNED-PAYLOAD`, or a `STREAMING-…` aws-chunked mode.
    public struct Verified: Sendable {
        public let payloadHash: String
        /// The signing key and seed signature, for aws-chunked bodies whose chunks are signed.
        public let signer: SigV4Signer
        public let timestamp: String
        public let seedSignature: String
        /// Nil for the admin key pair (everything); a scoped key's reach otherwise (`ScopedStoreKey`).
        public let scope: StoreScope?
    }

    public func verify(method: String, path: String, query: String, headers: [(name: String, value: String)], now: Date) throws(S3StoreError) -> Verified {
        if let authorization = headers.first(where: { $0.name.lowercased() == "authorization" })?.value {
            return try verifyHeader(authorization, method: method, path: path, query: query, headers: headers, now: now)
        }
        if query.contains("AWSAccessKeyId=") || headers.contains(where: { $0.name.lowercased() == "authorization" && $0.value.hasPrefix("AWS ") }) {
            throw S3StoreError(
                status: 400, code: "InvalidRequest",
                message: "Signature Version 2 is not supported; sign with SigV4 (for the aws CLI: aws configure set default.s3.signature_version s3v4).")
        }
        if query.contains("X-Amz-Signature=") {
            return try verifyPresigned(method: method, path: path, query: query, headers: headers, now: now)
        }
        throw .accessDenied
    }

    private func verifyHeader(
        _ authorization: String, method: String, path: String, query: String, headers: [(name: String, value: String)], now: Date
    ) throws(S3StoreError) -> Verified {
        let prefix = SigV4Signer.algorithm + " "
        guard authorization.hasPrefix(prefix) else {
            throw S3StoreError(status: 400, code: "InvalidArgument", message: "Only AWS4-HMAC-SHA256 (Signature Version 4) is supported.")
        }
        var fields: [String: String] = [:]
        for part in authorization.dropFirst(prefix.count).split(separator: ",") {
            let pair = part.trimmingCharacters(in: .whitespaces).split(separator: "=", maxSplits: 1)
            if pair.count == 2 { fields[String(pair[0])] = String(pair[1]) }
        }
        guard let credential = fields["Credential"], let signedHeaderList = fields["SignedHeaders"], let signature = fields["Signature"] else {
            throw S3StoreError(status: 400, code: "AuthorizationHeaderMalformed", message: "The Authorization header needs Credential, SignedHeaders and Signature.")
        }
        func header(_ name: String) -> String? { headers.first { $0.name.lowercased() == name }?.value }
        guard let timestamp = header("x-amz-date"), let date = SigV4Signer.date(fromTimestamp: timestamp) else {
            throw S3StoreError(status: 403, code: "AccessDenied", message: "The request needs a valid x-amz-date header.")
        }
        guard abs(date.timeIntervalSince(now)) <= maximumClockSkew else { throw .requestTimeTooSkewed }
        guard let payloadHash = header("x-amz-content-sha256") else {
            throw S3StoreError(status: 400, code: "InvalidRequest", message: "Missing required header for this request: x-amz-content-sha256.")
        }
        let request = SigV4Signer.Request(method: method, path: path, query: query, headers: headers)
        // x-amz-* headers change what a request does (copy source, metadata): unsigned ones would
        // let a captured request be replayed with other meaning.
        return try check(
            signature, credential: credential, timestamp: timestamp, request: request,
            signedHeaders: signedHeaderList.split(separator: ";").map(String.init), payloadHash: payloadHash,
            mustBeSigned: headers.map { $0.name.lowercased() }.filter { $0.hasPrefix("x-amz-") }, now: now
        )
    }

    private func verifyPresigned(
        method: String, path: String, query: String, headers: [(name: String, value: String)], now: Date
    ) throws(S3StoreError) -> Verified {
        let pairs = SigV4Encoding.queryParameters(query)
        let parameters = Dictionary(pairs.map { ($0.name, $0.value) }, uniquingKeysWith: { first, _ in first })
        let unsigned = query.split(separator: "&").filter {
            SigV4Encoding.decode(String($0.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)[0])) != "X-Amz-Signature"
        }
        guard parameters["X-Amz-Algorithm"] == SigV4Signer.algorithm, let credential = parameters["X-Amz-Credential"],
            let timestamp = parameters["X-Amz-Date"], let date = SigV4Signer.date(fromTimestamp: timestamp),
            let expires = parameters["X-Amz-Expires"].flatMap(Int.init), let signedHeaderList = parameters["X-Amz-SignedHeaders"],
            let signature = parameters["X-Amz-Signature"]
        else {
            throw S3StoreError(
                status: 400, code: "AuthorizationQueryParametersError",
                message: "A presigned URL needs X-Amz-Algorithm=AWS4-HMAC-SHA256, X-Amz-Credential, X-Amz-Date, X-Amz-Expires, X-Amz-SignedHeaders and X-Amz-Signature.")
        }
        guard (1...Self.maximumPresignedExpiry).contains(expires) else {
            throw S3StoreError(status: 400, code: "AuthorizationQueryParametersError", message: "X-Amz-Expires must be between 1 and 604800 seconds.")
        }
        guard now.timeIntervalSince(date) <= TimeInterval(expires) else { throw .expired }
        guard date.timeIntervalSince(now) <= maximumClockSkew else { throw .requestTimeTooSkewed }
        let request = SigV4Signer.Request(method: method, path: path, query: unsigned.joined(separator: "&"), headers: headers)
        return try check(
            signature, credential: credential, timestamp: timestamp, request: request,
            signedHeaders: signedHeaderList.split(separator: ";").map(String.init),
            payloadHash: parameters["X-Amz-Content-Sha256"] ?? SigV4Signer.unsignedPayload,
            // Presigned URLs are handed to other people: an unsigned x-amz-copy-source or
            // x-amz-meta-* would let them turn an upload URL into a copy of someone else's object.
            // (The payload hash of a presigned request comes from its query, never the header.)
            mustBeSigned: headers.map { $0.name.lowercased() }.filter { $0.hasPrefix("x-amz-") && $0 != "x-amz-content-sha256" }, now: now
        )
    }

    /// Recomputes the signature for the request as received and compares it with the client's.
    private func check(
        _ signature: String, credential: String, timestamp: String, request: SigV4Signer.Request, signedHeaders: [String],
        payloadHash: String, mustBeSigned: [String], now: Date
    ) throws(S3StoreError) -> Verified {
        let (signer, scope) = try signer(forCredential: credential, timestamp: timestamp, now: now)
        guard signedHeaders.contains("host") else { throw .signatureDoesNotMatch }
        if let unsigned = mustBeSigned.first(where: { !signedHeaders.contains($0) }) {
            throw S3StoreError(status: 403, code: "AccessDenied", message: "The header \(unsigned) must be signed.")
        }
        let expected = signer.signature(canonicalRequest: signer.canonicalRequest(request, signedHeaders: signedHeaders, payloadHash: payloadHash), timestamp: timestamp)
        guard constantTimeEquals(expected, signature) else { throw .signatureDoesNotMatch }
        return Verified(payloadHash: payloadHash, signer: signer, timestamp: timestamp, seedSignature: signature, scope: scope)
    }

    /// `AKID/yyyyMMdd/region/s3/aws4_request` → a signer for that scope, if the key is ours: the
    /// admin pair, or a scoped key derived from it (which must not have expired).
    private func signer(forCredential credential: String, timestamp: String, now: Date) throws(S3StoreError) -> (SigV4Signer, StoreScope?) {
        let parts = credential.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 5, parts[3] == "s3", parts[4] == "aws4_request" else {
            throw S3StoreError(status: 400, code: "AuthorizationHeaderMalformed", message: "The credential must be <access key id>/<yyyyMMdd>/<region>/s3/aws4_request.")
        }
        guard parts[1] == String(timestamp.prefix(8)) else { throw .signatureDoesNotMatch }
        if constantTimeEquals(parts[0], credentials.accessKeyID) {
            return (SigV4Signer(credentials: credentials, region: parts[2], service: "s3"), nil)
        }
        guard let scope = ScopedStoreKey.scope(ofAccessKeyID: parts[0]) else { throw .invalidAccessKeyID }
        guard now < scope.expires else {
            throw S3StoreError(status: 403, code: "ExpiredToken", message: "This job's store key has expired; the worker gets a new one with its next job.")
        }
        let derived = S3Credentials(accessKeyID: parts[0], secretAccessKey: ScopedStoreKey.secret(forAccessKeyID: parts[0], admin: credentials))
        return (SigV4Signer(credentials: derived, region: parts[2], service: "s3"), scope)
    }
}
