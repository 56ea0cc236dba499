import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import ObjectStorage
import Vapor
import _NIOFileSystem

/// The built-in store's S3 API under `/s3/{bucket}/{key}` (path-style). Every request is
/// SigV4-checked; answers and errors are S3's XML. Bodies stream in and out.
struct BuiltInStoreController: Sendable {
    let store: BuiltInStore
    let authenticator: S3RequestAuthenticator
    let now: @Sendable () -> Date
    /// Whether a scoped key's holder has been revoked since the key was handed out.
    let holderRevoked: @Sendable (String) async throws -> Bool

    func register(_ app: Application) {
        for method in [HTTPMethod.GET, .HEAD, .PUT, .POST, .DELETE] {
            app.on(method, "s3", body: .stream, use: handle)
            app.on(method, "s3", "**", body: .stream, use: handle)
        }
    }

    @Sendable func handle(request: Request) async throws -> Response {
        let requestID = UUID().uuidString
        do {
            let response = try await route(request)
            response.headers.replaceOrAdd(name: "x-amz-request-id", value: requestID)
            return response
        } catch {
            let s3Error: S3StoreError
            switch error {
            case let error as S3StoreError:
                s3Error = error
            case is HTTPParserError:
                // The client went away mid-body; nothing was stored.
                s3Error = S3StoreError(status: 400, code: "IncompleteBody", message: "The request body ended before Content-Length bytes arrived.")
            default:
                request.logger.error("built-in store failed", metadata: ["error": "\(String(reflecting: error))"])
                s3Error = S3StoreError(status: 500, code: "InternalError", message: "We encountered an internal error. Please try again.")
            }
            var headers = HTTPHeaders([("content-type", "application/xml"), ("x-amz-request-id", requestID)])
            if request.method == .HEAD {
                // HEAD answers carry no body; S3 clients read the status alone.
                headers.replaceOrAdd(name: "content-length", value: "0")
                return Response(status: .init(statusCode: s3Error.status), headers: headers)
            }
            let body = S3XML.error(s3Error, resource: request.url.path, requestID: requestID)
            return Response(status: .init(statusCode: s3Error.status), headers: headers, body: .init(string: body))
        }
    }

    private func route(_ request: Request) async throws -> Response {
        let rawPath = request.url.path
        let rawQuery = request.url.query ?? ""
        let headers = request.headers.map { (name: $0.name, value: $0.value) }
        let verified = try authenticator.verify(method: request.method.rawValue, path: rawPath, query: rawQuery, headers: headers, now: now())
        if let holder = verified.scope?.holder, try await holderRevoked(holder) {
            throw S3StoreError(status: 403, code: "AccessDenied", message: "The worker key this job's store key was handed to has been revoked.")
        }
        let query = Self.parameters(rawQuery)
        // A sub-resource we do not implement (?tagging, ?acl, ?policy…) must not fall through to
        // the plain object or bucket operation, which would overwrite, delete or list instead.
        if let unsupported = query.keys.first(where: { !Self.knownParameters.contains($0) && !$0.hasPrefix("response-") && !$0.hasPrefix("X-Amz-") }) {
            throw S3StoreError.notImplemented("The '\(unsupported)' sub-resource")
        }

        // "/s3/{bucket}/{key…}", the key exactly as the client encoded it.
        let segments = rawPath.split(separator: "/", maxSplits: 3, omittingEmptySubsequences: false)
        guard segments.count >= 3, !segments[2].isEmpty else {
            throw S3StoreError.notImplemented("Listing buckets")
        }
        let bucket = SigV4Encoding.decode(String(segments[2]))
        let key = segments.count > 3 ? SigV4Encoding.decode(String(segments[3])) : ""

        if key.isEmpty {
            return try await bucketOperation(request, bucket: bucket, query: query, verified: verified)
        }
        if let scope = verified.scope {
            let reads = (request.method == .GET || request.method == .HEAD) && query["uploadId"] == nil
            guard reads ? scope.mayRead(key) : scope.mayWrite(key) else { throw S3StoreError.outOfScope((reads ? "read " : "write ") + key) }
        }
        switch request.method {
        case .GET where query["uploadId"] != nil:
            let parts = try await store.listParts(bucket: bucket, key: key, uploadID: query["uploadId"]!)
            return xml(S3XML.listParts(bucket: bucket, key: key, uploadID: query["uploadId"]!, parts: parts))
        case .GET, .HEAD:
            return try await getObject(request, bucket: bucket, key: key, query: query)
        case .PUT where query["uploadId"] != nil && request.headers.contains(name: "x-amz-copy-source"):
            throw S3StoreError.notImplemented("UploadPartCopy (copying objects larger than the client's multipart threshold)")
        case .PUT where query["uploadId"] != nil:
            guard let partNumber = query["partNumber"].flatMap(Int.init) else { throw S3StoreError.invalidArgument("partNumber is required.") }
            let body = try body(request, verified: verified)
            let stored = try await store.uploadPart(
                bucket: bucket, key: key, uploadID: query["uploadId"]!, partNumber: partNumber,
                contentLength: body.length, sha256: body.sha256, body: body.bytes
            )
            return Response(status: .ok, headers: ["ETag": "\"\(stored.etag)\"", "content-length": "0"])
        case .PUT where request.headers.first(name: "x-amz-copy-source") != nil:
            let source = SigV4Encoding.decode(request.headers.first(name: "x-amz-copy-source")!)
            let trimmed = source.hasPrefix("/") ? String(source.dropFirst()) : source
            let parts = trimmed.split(separator: "/", maxSplits: 1)
            guard parts.count == 2 else { throw S3StoreError.invalidArgument("x-amz-copy-source must be /bucket/key.") }
            if let scope = verified.scope, !scope.mayRead(String(parts[1])) { throw S3StoreError.outOfScope("read " + parts[1]) }
            try store.checkBucket(String(parts[0]))
            let stored = try await store.copyObject(bucket: bucket, from: String(parts[1]), to: key)
            return xml(S3XML.copyResult(stored))
        case .PUT:
            let body = try body(request, verified: verified)
            let stored = try await store.putObject(
                bucket: bucket, key: key, contentType: request.headers.first(name: .contentType), metadata: Self.userMetadata(request.headers),
                contentLength: body.length, sha256: body.sha256, checksumSHA256: try Self.checksumSHA256(request.headers),
                // S3's and R2's conditional write: create the object only if the key is free.
                onlyIfAbsent: request.headers.first(name: "if-none-match") == "*", body: body.bytes
            )
            return Response(status: .ok, headers: ["ETag": "\"\(stored.etag)\"", "content-length": "0"])
        case .POST where query["uploads"] != nil:
            let uploadID = try store.createMultipartUpload(bucket: bucket, key: key, contentType: request.headers.first(name: .contentType))
            return xml(S3XML.initiateMultipartUpload(bucket: bucket, key: key, uploadID: uploadID))
        case .POST where query["uploadId"] != nil:
            let parts = try S3XML.parseCompleteMultipartUpload(try await collect(request, limit: 1 << 20, verified: verified))
            let stored = try await store.completeMultipartUpload(bucket: bucket, key: key, uploadID: query["uploadId"]!, parts: parts)
            return xml(S3XML.completeMultipartUpload(bucket: bucket, key: key, etag: stored.etag))
        case .DELETE where query["uploadId"] != nil:
            try store.abortMultipartUpload(bucket: bucket, key: key, uploadID: query["uploadId"]!)
            return Response(status: .noContent)
        case .DELETE:
            try store.deleteObject(bucket: bucket, key: key)
            return Response(status: .noContent)
        default:
            throw S3StoreError(status: 405, code: "MethodNotAllowed", message: "The specified method is not allowed against this resource.")
        }
    }

    private func bucketOperation(_ request: Request, bucket: String, query: [String: String], verified: S3RequestAuthenticator.Verified) async throws -> Response {
        switch request.method {
        case .HEAD:
            try store.checkBucket(bucket)
            return Response(status: .ok, headers: ["content-length": "0"])
        case .PUT:
            // rclone and others "create" the bucket before writing: ours always exists.
            try store.checkBucket(bucket)
            return Response(status: .ok, headers: ["content-length": "0"])
        case .GET where query["location"] != nil:
            try store.checkBucket(bucket)
            return xml(S3XML.location())
        case .GET where query["uploads"] != nil:
            throw S3StoreError.notImplemented("Listing multipart uploads")
        case .GET:
            if let scope = verified.scope, !scope.mayRead(query["prefix"] ?? "") { throw S3StoreError.outOfScope("list '\(query["prefix"] ?? "")'") }
            let isV2 = query["list-type"] == "2"
            let maxKeys = query["max-keys"].flatMap(Int.init) ?? 1000
            let startAfter = isV2 ? (query["continuation-token"].flatMap(S3XML.decodeToken) ?? query["start-after"]) : query["marker"]
            let listing = try await store.list(bucket: bucket, prefix: query["prefix"] ?? "", delimiter: query["delimiter"], startAfter: startAfter, maxKeys: maxKeys)
            let encodeKeys = query["encoding-type"] == "url"
            return xml(
                isV2
                    ? S3XML.listV2(bucket: bucket, query: query, listing: listing, maxKeys: maxKeys, urlEncode: encodeKeys)
                    : S3XML.listV1(bucket: bucket, query: query, listing: listing, maxKeys: maxKeys, urlEncode: encodeKeys))
        case .POST where query["delete"] != nil:
            let (keys, quiet) = try S3XML.parseDelete(try await collect(request, limit: 2 << 20, verified: verified))
            if let scope = verified.scope, let outside = keys.first(where: { !scope.mayWrite($0) }) { throw S3StoreError.outOfScope("delete " + outside) }
            var deleted: [String] = []
            var failed: [(String, S3StoreError)] = []
            for key in keys {
                do {
                    try store.deleteObject(bucket: bucket, key: key)
                    deleted.append(key)
                } catch let error as S3StoreError {
                    failed.append((key, error))
                }
            }
            return xml(S3XML.deleteResult(deleted: quiet ? [] : deleted, failed: failed))
        default:
            throw S3StoreError.notImplemented("This bucket operation")
        }
    }

    private func getObject(_ request: Request, bucket: String, key: String, query: [String: String]) async throws -> Response {
        let (stored, file) = try await store.openObject(bucket: bucket, key: key)
        var headers = HTTPHeaders()
        headers.add(name: "ETag", value: "\"\(stored.etag)\"")
        headers.add(name: "Last-Modified", value: S3XML.rfc1123(stored.lastModified))
        headers.add(name: "Accept-Ranges", value: "bytes")
        headers.add(name: "Content-Type", value: query["response-content-type"] ?? stored.contentType ?? "binary/octet-stream")
        if let disposition = query["response-content-disposition"] { headers.add(name: "Content-Disposition", value: disposition) }
        for (name, value) in (stored.metadata ?? [:]).sorted(by: { $0.key < $1.key }) { headers.add(name: "x-amz-meta-" + name, value: value) }
        var range: Range<Int64> = 0..<stored.size
        var status = HTTPResponseStatus.ok
        if let rangeHeader = request.headers.first(name: .range) {
            do {
                if let requested = try ByteRange.parse(rangeHeader, size: stored.size) {
                    range = requested
                    status = .partialContent
                    headers.add(name: "Content-Range", value: "bytes \(range.lowerBound)-\(range.upperBound - 1)/\(stored.size)")
                }
            } catch {
                try? await file.close()
                throw error
            }
        }
        headers.add(name: "Content-Length", value: String(range.count))
        let byteRange = range
        if request.method == .HEAD {
            try await file.close()
            // Vapor takes Content-Length from the body and never sends a body for HEAD.
            return Response(status: status, headers: headers, body: .init(asyncStream: { try await $0.write(.end) }, count: Int(byteRange.count)))
        }
        let body = Response.Body(
            asyncStream: { writer in
                do {
                    for try await chunk in file.readChunks(in: byteRange, chunkLength: .mebibytes(1)) {
                        try await writer.write(.buffer(chunk))
                    }
                    try await file.close()
                    try await writer.write(.end)
                } catch {
                    try? await file.close()
                    try await writer.write(.error(error))
                }
            }, count: Int(byteRange.count))
        return Response(status: status, headers: headers, body: body)
    }

    // MARK: Bodies

    /// `x-amz-meta-*` headers, kept with the object and returned by GET and HEAD.
    static func userMetadata(_ headers: HTTPHeaders) -> [String: String]? {
        let metadata = Dictionary(
            headers.filter { $0.name.lowercased().hasPrefix("x-amz-meta-") }.map { (String($0.name.lowercased().dropFirst(11)), $0.value) },
            uniquingKeysWith: { first, second in first + "," + second }
        )
        return metadata.isEmpty ? nil : metadata
    }

    /// `x-amz-checksum-sha256` (base64) as hex: the body must hash to it, or the PUT fails with BadDigest.
    static func checksumSHA256(_ headers: HTTPHeaders) throws -> String? {
        guard let value = headers.first(name: "x-amz-checksum-sha256") else { return nil }
        guard let digest = Data(base64Encoded: value), digest.count == 32 else {
            throw S3StoreError.invalidArgument("x-amz-checksum-sha256 must be the base64 of a 32-byte SHA-256 digest.")
        }
        return SigV4Signer.hex(Array(digest))
    }

    /// The request body as it must be stored, its length, and the SHA-256 to check (if signed).
    private func body(_ request: Request, verified: S3RequestAuthenticator.Verified) throws -> (bytes: RequestBody<Request.Body>, length: Int64, sha256: String?) {
        let contentLength = request.headers.first(name: .contentLength).flatMap(Int64.init)
        switch verified.payloadHash {
        case SigV4Signer.unsignedPayload:
            guard let contentLength else { throw S3StoreError.missingContentLength }
            return (RequestBody(request.body, framing: .plain), contentLength, nil)
        case "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", "STREAMING-UNSIGNED-PAYLOAD-TRAILER":
            guard let decodedLength = request.headers.first(name: "x-amz-decoded-content-length").flatMap(Int64.init) else {
                throw S3StoreError.missingContentLength
            }
            let signer = verified.payloadHash.hasPrefix("STREAMING-AWS4") ? RequestBody<Request.Body>.ChunkSigner(verified: verified) : nil
            return (RequestBody(request.body, framing: .awsChunked(signer)), decodedLength, nil)
        case let hash:
            guard let contentLength else { throw S3StoreError.missingContentLength }
            guard hash.count == 64, hash.allSatisfy(\.isHexDigit) else {
                throw S3StoreError.invalidArgument("x-amz-content-sha256 must be a hex SHA-256, UNSIGNED-PAYLOAD or an aws-chunked STREAMING- mode; got \(hash).")
            }
            return (RequestBody(request.body, framing: .plain), contentLength, hash)
        }
    }

    /// A small XML body, checked against the signed SHA-256 (so a captured request cannot be
    /// replayed with another document).
    private func collect(_ request: Request, limit: Int, verified: S3RequestAuthenticator.Verified) async throws -> Data {
        var buffer = ByteBuffer()
        for try await chunk in request.body {
            guard buffer.readableBytes + chunk.readableBytes <= limit else {
                throw S3StoreError(status: 400, code: "MaxMessageLengthExceeded", message: "Your request was too big.")
            }
            var chunk = chunk
            buffer.writeBuffer(&chunk)
        }
        let data = Data(buffer: buffer)
        if verified.payloadHash != SigV4Signer.unsignedPayload {
            guard SigV4Signer.hex(Array(SHA256.hash(data: data))) == verified.payloadHash.lowercased() else { throw S3StoreError.contentSHA256Mismatch }
        }
        return data
    }

    private func xml(_ document: String) -> Response {
        Response(status: .ok, headers: ["content-type": "application/xml"], body: .init(string: document))
    }

    /// Query parameters of the operations implemented here; anything else is refused with 501.
    static let knownParameters: Set<String> = [
        "list-type", "prefix", "delimiter", "max-keys", "continuation-token", "start-after", "encoding-type", "fetch-owner",
        "marker", "uploads", "uploadId", "partNumber", "location", "delete", "x-id",
    ]

    /// Query parameters, decoded; a parameter without `=` has the value "".
    static func parameters(_ raw: String) -> [String: String] {
        Dictionary(SigV4Encoding.queryParameters(raw).map { ($0.name, $0.value) }, uniquingKeysWith: { first, _ in first })
    }
}
