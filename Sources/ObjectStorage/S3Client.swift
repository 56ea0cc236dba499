import AsyncHTTPClient
import Crypto
import Foundation
import NIOCore
import NIOFileSystem
import NIOFoundationCompat
import NIOHTTP1
import TrainerCore

/// An S3 client on AsyncHTTPClient: streamed uploads and downloads (never a whole file in memory),
/// automatic parallel multipart uploads, listing, copy, presigning, retries on 429/5xx and
/// connection errors. Works with R2, AWS, rclone, MinIO and the built-in store.
public struct S3Client: Sendable {
    public let endpoint: S3Endpoint
    public let signer: SigV4Signer
    let http: HTTPClient
    public let retry: RetryPolicy
    /// Objects at least this large are uploaded in parts.
    public var multipartThreshold: Int64 = 64 << 20
    public var partSize: Int64 = 16 << 20
    public var partConcurrency = 4
    let now: @Sendable () -> Date
    var requestTimeout: TimeAmount = .minutes(10)

    public init(endpoint: S3Endpoint, httpClient: HTTPClient, retry: RetryPolicy = .default, now: @escaping @Sendable () -> Date = { Date() }) {
        self.endpoint = endpoint
        self.signer = SigV4Signer(credentials: endpoint.credentials, region: endpoint.region)
        self.http = httpClient
        self.retry = retry
        self.now = now
    }

    // MARK: Objects

    /// Uploads a file, in parallel parts when it is at least `multipartThreshold` bytes.
    @discardableResult
    public func putObject(key: String, file path: String, contentType: String? = nil) async throws -> String {
        let size = try await FileSystem.shared.info(forFileAt: FilePath(path))?.size ?? 0
        if size >= multipartThreshold {
            return try await multipartUpload(key: key, file: path, size: size, contentType: contentType)
        }
        let response = try await send(.PUT, key: key, headers: contentType.map { [("content-type", $0)] } ?? [], body: .file(path, 0..<size))
        return Self.etag(response.headers)
    }

    /// With `onlyIfAbsent`, S3's conditional write (`If-None-Match: *`, which R2, S3 and the
    /// built-in store honour): the object is created only if the key is free, else
    /// `S3Error.preconditionFailed`. A retry after a lost answer may meet its own first write.
    @discardableResult
    public func putObject(key: String, bytes: ByteBuffer, contentType: String? = nil, onlyIfAbsent: Bool = false) async throws -> String {
        let headers = (contentType.map { [("content-type", $0)] } ?? []) + (onlyIfAbsent ? [("if-none-match", "*")] : [])
        let response = try await send(.PUT, key: key, headers: headers, body: .bytes(bytes))
        return Self.etag(response.headers)
    }

    /// Downloads to `path`, which appears only once the whole body has arrived (written to an
    /// unnamed temporary file and linked into place); `range` is inclusive.
    @discardableResult
    public func getObject(key: String, to path: String, range: ClosedRange<Int64>? = nil) async throws -> ObjectInfo {
        var headers: [(String, String)] = []
        if let range { headers.append(("range", "bytes=\(range.lowerBound)-\(range.upperBound)")) }
        return try await withRetries { () async throws -> ObjectInfo in
            let response = try await execute(.GET, key: key, headers: headers, body: .none)
            guard (200..<300).contains(response.status.code) else { throw try await Self.error(from: response) }
            try await FileSystem.shared.withFileHandle(forWritingAt: FilePath(path), options: .newFile(replaceExisting: true)) { file in
                var offset: Int64 = 0
                for try await chunk in response.body {
                    try await file.write(contentsOf: chunk, toAbsoluteOffset: offset)
                    offset += Int64(chunk.readableBytes)
                }
                if let expected = response.headers.first(name: "content-length").flatMap(Int64.init), expected != offset {
                    throw S3Error(status: response.status.code.asInt, code: .other("IncompleteBody"), message: "received \(offset) of \(expected) bytes")
                }
            }
            return Self.objectInfo(key: key, response.headers)
        }
    }

    /// Small objects only: the whole body in memory. `range` is inclusive.
    public func getObjectBytes(key: String, range: ClosedRange<Int64>? = nil, limit: Int = 64 << 20) async throws -> ByteBuffer {
        var headers: [(String, String)] = []
        if let range { headers.append(("range", "bytes=\(range.lowerBound)-\(range.upperBound)")) }
        return try await send(.GET, key: key, headers: headers, bodyLimit: limit).body
    }

    /// An object's first `count` bytes and what HEAD would tell (its whole size from
    /// Content-Range), in one request; nil when there is no such object.
    public func getObjectPrefix(key: String, count: Int) async throws -> (ObjectInfo, ByteBuffer)? {
        do {
            let response = try await send(.GET, key: key, headers: [("range", "bytes=0-\(count - 1)")], bodyLimit: count)
            var info = Self.objectInfo(key: key, response.headers)
            // "bytes 0-65535/1048576": the total is after the slash.
            if let total = response.headers.first(name: "content-range")?.split(separator: "/").last.flatMap({ Int64($0) }) { info.size = total }
            return (info, response.body)
        } catch let error as S3Error where error.status == 404 {
            return nil
        } catch let error as S3Error where error.code == .invalidRange {
            // An empty object has no byte 0 to range over.
            return try await headObject(key: key).map { ($0, ByteBuffer()) }
        }
    }

    /// nil when there is no such object.
    public func headObject(key: String) async throws -> ObjectInfo? {
        do {
            return Self.objectInfo(key: key, try await send(.HEAD, key: key).headers)
        } catch let error as S3Error where error.status == 404 {
            return nil
        }
    }

    public func deleteObject(key: String) async throws {
        try await send(.DELETE, key: key)
    }

    /// Server-side copy within the bucket.
    public func copyObject(from source: String, to destination: String) async throws {
        let copySource = "/" + endpoint.bucket + "/" + SigV4Encoding.encode(source, keepSlash: true)
        let response = try await send(.PUT, key: destination, headers: [("x-amz-copy-source", copySource)])
        // S3 may answer 200 with an error in the body when a copy fails late.
        if let root = XMLNode.parse(Data(buffer: response.body)), root.name == "Error" {
            throw S3Error(status: 200, code: .init(root.value("Code") ?? "InternalError"), message: root.value("Message") ?? "copy failed", requestID: root.value("RequestId"))
        }
    }

    // MARK: Listing

    public func listObjects(prefix: String = "", delimiter: String? = nil, continuationToken: String? = nil, maxKeys: Int = 1000) async throws -> ListPage {
        var parameters = [("list-type", "2"), ("max-keys", String(maxKeys))]
        if !prefix.isEmpty { parameters.append(("prefix", prefix)) }
        if let delimiter { parameters.append(("delimiter", delimiter)) }
        if let continuationToken { parameters.append(("continuation-token", continuationToken)) }
        let response = try await send(.GET, key: nil, query: Self.query(parameters))
        guard let root = XMLNode.parse(Data(buffer: response.body)), root.name == "ListBucketResult" else {
            throw S3Error(status: 200, code: .other("MalformedResponse"), message: "ListObjectsV2 did not return a ListBucketResult")
        }
        let objects = root.children("Contents").map { node in
            ObjectSummary(
                key: node.value("Key") ?? "", size: Int64(node.value("Size") ?? "") ?? 0,
                etag: Self.unquote(node.value("ETag") ?? ""), lastModified: node.value("LastModified").flatMap(HTTPDates.parseISO8601)
            )
        }
        let truncated = root.value("IsTruncated") == "true"
        return ListPage(
            objects: objects,
            commonPrefixes: root.children("CommonPrefixes").compactMap { $0.value("Prefix") },
            nextContinuationToken: truncated ? root.value("NextContinuationToken") : nil
        )
    }

    /// Every object under `prefix`, following continuation tokens.
    public func listAllObjects(prefix: String = "") async throws -> [ObjectSummary] {
        var objects: [ObjectSummary] = []
        var token: String?
        repeat {
            let page = try await listObjects(prefix: prefix, continuationToken: token)
            objects += page.objects
            token = page.nextContinuationToken
        } while token != nil
        return objects
    }

    // MARK: Multipart

    public func createMultipartUpload(key: String, contentType: String? = nil) async throws -> String {
        let response = try await send(.POST, key: key, query: "uploads=", headers: contentType.map { [("content-type", $0)] } ?? [])
        guard let uploadID = XMLNode.parse(Data(buffer: response.body))?.value("UploadId"), !uploadID.isEmpty else {
            throw S3Error(status: response.status.code.asInt, code: .other("MalformedResponse"), message: "CreateMultipartUpload returned no UploadId")
        }
        return uploadID
    }

    public func uploadPart(key: String, uploadID: String, partNumber: Int, file path: String, range: Range<Int64>) async throws -> UploadedPart {
        let query = Self.query([("partNumber", String(partNumber)), ("uploadId", uploadID)])
        let response = try await send(.PUT, key: key, query: query, body: .file(path, range))
        return UploadedPart(partNumber: partNumber, etag: Self.etag(response.headers), size: Int64(range.count))
    }

    public func uploadPart(key: String, uploadID: String, partNumber: Int, bytes: ByteBuffer) async throws -> UploadedPart {
        let query = Self.query([("partNumber", String(partNumber)), ("uploadId", uploadID)])
        let response = try await send(.PUT, key: key, query: query, body: .bytes(bytes))
        return UploadedPart(partNumber: partNumber, etag: Self.etag(response.headers), size: Int64(bytes.readableBytes))
    }

    @discardableResult
    public func completeMultipartUpload(key: String, uploadID: String, parts: [UploadedPart]) async throws -> String {
        let document = XMLNode(
            "CompleteMultipartUpload",
            children: parts.sorted { $0.partNumber < $1.partNumber }.map { part in
                XMLNode("Part", children: [XMLNode("PartNumber", String(part.partNumber)), XMLNode("ETag", "\"\(part.etag)\"")])
            }
        ).document()
        let response = try await send(
            .POST, key: key, query: Self.query([("uploadId", uploadID)]), headers: [("content-type", "application/xml")], body: .bytes(ByteBuffer(string: document)))
        guard let root = XMLNode.parse(Data(buffer: response.body)) else {
            throw S3Error(status: response.status.code.asInt, code: .other("MalformedResponse"), message: "CompleteMultipartUpload returned no XML")
        }
        if root.name == "Error" {
            throw S3Error(status: 200, code: .init(root.value("Code") ?? "InternalError"), message: root.value("Message") ?? "", requestID: root.value("RequestId"))
        }
        return Self.unquote(root.value("ETag") ?? "")
    }

    public func abortMultipartUpload(key: String, uploadID: String) async throws {
        try await send(.DELETE, key: key, query: Self.query([("uploadId", uploadID)]))
    }

    public func listParts(key: String, uploadID: String) async throws -> [UploadedPart] {
        let response = try await send(.GET, key: key, query: Self.query([("uploadId", uploadID)]))
        return (XMLNode.parse(Data(buffer: response.body))?.children("Part") ?? []).map { part in
            UploadedPart(partNumber: Int(part.value("PartNumber") ?? "") ?? 0, etag: Self.unquote(part.value("ETag") ?? ""), size: Int64(part.value("Size") ?? "") ?? 0)
        }
    }

    /// Uploads `size` bytes of `path` in parts, `partConcurrency` at a time; aborts the upload on failure.
    func multipartUpload(key: String, file path: String, size: Int64, contentType: String?) async throws -> String {
        let uploadID = try await createMultipartUpload(key: key, contentType: contentType)
        do {
            // S3 allows at most 10,000 parts: larger files get larger parts.
            let partSize = max(partSize, (size + 9_999) / 10_000)
            let ranges = stride(from: Int64(0), to: size, by: Int(partSize)).map { $0..<min($0 + partSize, size) }
            let parts = try await withThrowingTaskGroup(of: UploadedPart.self) { group in
                var parts: [UploadedPart] = []
                for (index, range) in ranges.enumerated() {
                    if index >= partConcurrency, let done = try await group.next() { parts.append(done) }
                    group.addTask { try await uploadPart(key: key, uploadID: uploadID, partNumber: index + 1, file: path, range: range) }
                }
                for try await done in group { parts.append(done) }
                return parts
            }
            do {
                return try await completeMultipartUpload(key: key, uploadID: uploadID, parts: parts)
            } catch let error as S3Error where error.code == .noSuchUpload {
                // A retried completion whose first attempt succeeded finds the upload gone: the
                // object is there if it has our size and a multipart ETag of our part count.
                if let info = try await headObject(key: key), info.size == size, info.etag.hasSuffix("-\(parts.count)") { return info.etag }
                throw error
            }
        } catch {
            try? await abortMultipartUpload(key: key, uploadID: uploadID)
            throw error
        }
    }

    // MARK: Presigning

    /// A PUT URL bound to the key, the exact size and the content type, and with `sha256` to the
    /// content: `x-amz-checksum-sha256` makes S3, R2 and the built-in store refuse other bytes
    /// (BadDigest), and `x-amz-meta-sha256` stays on the object for HEAD to show.
    public func presignedPut(key: String, contentType: String, contentLength: Int64, sha256: [UInt8]? = nil, expires: Int = 900) -> PresignedRequest {
        var headers = [("content-length", String(contentLength)), ("content-type", contentType)]
        if let sha256 {
            headers.append(("x-amz-checksum-sha256", Data(sha256).base64EncodedString()))
            headers.append(("x-amz-meta-sha256", SigV4Signer.hex(sha256)))
        }
        let url = signer.presign(method: "PUT", url: endpoint.objectURL(key), headers: headers, expires: expires, date: now())
        return PresignedRequest(method: "PUT", url: url, headers: Dictionary(uniqueKeysWithValues: headers.map { ($0.0, $0.1) }))
    }

    /// A GET URL; with `downloadName` the browser saves the file under that name.
    public func presignedGet(key: String, downloadName: String? = nil, expires: Int = 900) -> PresignedRequest {
        var query = ""
        if let downloadName {
            query = Self.query([("response-content-disposition", ContentDisposition.attachment(filename: downloadName))])
        }
        let url = signer.presign(method: "GET", url: endpoint.objectURL(key, query: query), expires: expires, date: now())
        return PresignedRequest(method: "GET", url: url, headers: [:])
    }

    // MARK: Transport

    enum Body: Sendable {
        case none
        case bytes(ByteBuffer)
        /// Streamed from disk, never read whole; sent as UNSIGNED-PAYLOAD.
        case file(String, Range<Int64>)
    }

    struct CollectedResponse {
        var status: HTTPResponseStatus
        var headers: HTTPHeaders
        var body: ByteBuffer
    }

    /// Sends with retries and returns the collected body; non-2xx answers become `S3Error`s.
    @discardableResult
    func send(
        _ method: HTTPMethod, key: String?, query: String = "", headers: [(String, String)] = [], body: Body = .none, bodyLimit: Int = 16 << 20
    ) async throws -> CollectedResponse {
        try await withRetries {
            let response = try await execute(method, key: key, query: query, headers: headers, body: body)
            guard (200..<300).contains(response.status.code) else { throw try await Self.error(from: response) }
            let collected = method == .HEAD ? ByteBuffer() : try await response.body.collect(upTo: bodyLimit)
            return CollectedResponse(status: response.status, headers: response.headers, body: collected)
        }
    }

    func execute(_ method: HTTPMethod, key: String?, query: String = "", headers: [(String, String)], body: Body) async throws -> HTTPClientResponse {
        let url = endpoint.objectURL(key, query: query)
        var request = HTTPClientRequest(url: url.absoluteString)
        request.method = method
        let payloadHash: String
        switch body {
        case .none:
            payloadHash = SigV4Signer.emptyPayloadHash
        case .bytes(let buffer):
            payloadHash = SigV4Signer.hex(SHA256.hash(data: Data(buffer: buffer)))
            request.body = .bytes(buffer)
        case .file:
            payloadHash = SigV4Signer.unsignedPayload
        }
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        for (name, value) in signer.signHeaders(method: method.rawValue, url: url, headers: headers, payloadHash: payloadHash, date: now()) where name != "host" {
            request.headers.add(name: name, value: value)
        }
        if case .file(let path, let range) = body {
            return try await FileSystem.shared.withFileHandle(forReadingAt: FilePath(path)) { file in
                request.body = .stream(file.readChunks(in: range, chunkLength: .kibibytes(256)), length: .known(Int64(range.count)))
                return try await http.execute(request, timeout: requestTimeout)
            }
        }
        return try await http.execute(request, timeout: requestTimeout)
    }

    func withRetries<T>(_ attempt: () async throws -> T) async throws -> T {
        try await retry.run(retryable: Self.isRetryable, retryAfter: { ($0 as? S3Error)?.retryAfter }, attempt)
    }

    /// Whether a failed request may succeed if sent again (throttling, server errors, dropped connections).
    public static func isRetryable(_ error: any Error) -> Bool {
        switch error {
        case let error as S3Error: error.status == 429 || error.status >= 500 || error.code == .other("IncompleteBody")
        case is CancellationError, is FileSystemError, is NIOTooManyBytesError: false
        // Transient transport failures only: a bad URL or a body-length mismatch would fail again.
        case let error as HTTPClientError:
            [.remoteConnectionClosed, .connectTimeout, .readTimeout, .writeTimeout, .deadlineExceeded, .getConnectionFromPoolTimeout].contains(error)
        // Everything else is the connection: refused, reset, timed out, closed early.
        default: true
        }
    }

    static func error(from response: HTTPClientResponse) async throws -> S3Error {
        let body = (try? await response.body.collect(upTo: 1 << 20)) ?? ByteBuffer()
        let status = response.status.code.asInt
        let retryAfter = response.headers.first(name: "retry-after").flatMap(Int64.init).map { Duration.seconds($0) }
        if let root = XMLNode.parse(Data(buffer: body)), root.name == "Error" {
            return S3Error(status: status, code: .init(root.value("Code") ?? ""), message: root.value("Message") ?? "", requestID: root.value("RequestId"), retryAfter: retryAfter)
        }
        let code: S3Error.Code =
            switch status {
            case 404: .noSuchKey
            case 403: .accessDenied
            case 416: .invalidRange
            case 412: .preconditionFailed
            case 503: .slowDown
            default: .other("HTTP\(status)")
            }
        return S3Error(status: status, code: code, message: "HTTP \(status) \(response.status.reasonPhrase)", retryAfter: retryAfter)
    }

    static func objectInfo(key: String, _ headers: HTTPHeaders) -> ObjectInfo {
        ObjectInfo(
            key: key, size: headers.first(name: "content-length").flatMap(Int64.init) ?? 0, etag: etag(headers),
            contentType: headers.first(name: "content-type"), lastModified: headers.first(name: "last-modified").flatMap(HTTPDates.parseRFC1123),
            metadata: Dictionary(
                headers.filter { $0.name.lowercased().hasPrefix("x-amz-meta-") }.map { (String($0.name.lowercased().dropFirst(11)), $0.value) },
                uniquingKeysWith: { first, _ in first }
            )
        )
    }

    static func etag(_ headers: HTTPHeaders) -> String { unquote(headers.first(name: "etag") ?? "") }

    static func unquote(_ etag: String) -> String {
        etag.hasPrefix("\"") && etag.hasSuffix("\"") && etag.count >= 2 ? String(etag.dropFirst().dropLast()) : etag
    }

    static func query(_ parameters: [(String, String)]) -> String {
        parameters.map { "\(SigV4Encoding.encode($0.0, keepSlash: false))=\(SigV4Encoding.encode($0.1, keepSlash: false))" }.joined(separator: "&")
    }
}

extension UInt {
    var asInt: Int { Int(self) }
}

/// `Content-Disposition: attachment` with an ASCII fallback and the exact UTF-8 name (RFC 6266).
public enum ContentDisposition {
    public static func attachment(filename: String) -> String {
        let ascii = String(filename.unicodeScalars.map { $0.isASCII && $0 != "\"" && $0 != "\\" && $0.value >= 0x20 ? Character($0) : "_" })
        return "attachment; filename=\"\(ascii)\"; filename*=UTF-8''\(SigV4Encoding.encode(filename, keepSlash: false))"
    }
}

/// The two date formats of S3 (ISO 8601 in XML, RFC 1123 in headers), always UTC. Written by hand
/// on the civil-date arithmetic the signer uses: listings format and parse one per object, and
/// Foundation's formatters are slow to make and not safe to share across tasks.
enum HTTPDates {
    static let weekdays = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    /// (year, month, day, seconds of the day, milliseconds, days since 1970).
    private static func parts(_ date: Date) -> (Int, Int, Int, Int, Int, Int) {
        let milliseconds = Int((date.timeIntervalSince1970 * 1000).rounded(.down))
        let (seconds, millisecond) = floorDivide(milliseconds, 1000)
        let (days, secondOfDay) = floorDivide(seconds, 86_400)
        let (year, month, day) = SigV4Signer.civilDate(daysSinceEpoch: days)
        return (year, month, day, secondOfDay, millisecond, days)
    }

    /// `2026-11-29T07:11:51.000Z`
    static func iso8601(_ date: Date) -> String {
        let (year, month, day, second, millisecond, _) = parts(date)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", year, month, day, second / 3600, second / 60 % 60, second % 60, millisecond)
    }

    /// `Sun, 29 Nov 2026 07:11:51 GMT`
    static func rfc1123(_ date: Date) -> String {
        let (year, month, day, second, _, days) = parts(date)
        let weekday = weekdays[floorDivide(days + 4, 7).1]  // 1970-01-01 was a Thursday
        return String(format: "%@, %02d %@ %04d %02d:%02d:%02d GMT", weekday, day, months[month - 1], year, second / 3600, second / 60 % 60, second % 60)
    }

    /// `2026-11-29T07:11:51Z`, with or without fractional seconds.
    static func parseISO8601(_ text: String) -> Date? {
        let characters = Array(text.utf8)
        guard characters.count >= 20, characters.last == UInt8(ascii: "Z"), characters[4] == UInt8(ascii: "-"),
            characters[10] == UInt8(ascii: "T")
        else { return nil }
        func number(_ range: Range<Int>) -> Int? { Int(String(decoding: characters[range], as: UTF8.self)) }
        guard let year = number(0..<4), let month = number(5..<7), let day = number(8..<10),
            let hour = number(11..<13), let minute = number(14..<16), let second = number(17..<19)
        else { return nil }
        var fraction = 0.0
        if characters.count > 20, characters[19] == UInt8(ascii: "."), let value = Double("0" + String(decoding: characters[19..<(characters.count - 1)], as: UTF8.self)) {
            fraction = value
        }
        return date(year: year, month: month, day: day, hour: hour, minute: minute, second: second, fraction: fraction)
    }

    /// `Sun, 29 Nov 2026 07:11:51 GMT`
    static func parseRFC1123(_ text: String) -> Date? {
        let fields = text.split(separator: " ")
        guard fields.count == 6, fields[5] == "GMT", let day = Int(fields[1]), let monthIndex = months.firstIndex(of: String(fields[2])),
            let year = Int(fields[3])
        else { return nil }
        let time = fields[4].split(separator: ":").compactMap { Int($0) }
        guard time.count == 3 else { return nil }
        return date(year: year, month: monthIndex + 1, day: day, hour: time[0], minute: time[1], second: time[2], fraction: 0)
    }

    private static func date(year: Int, month: Int, day: Int, hour: Int, minute: Int, second: Int, fraction: Double) -> Date? {
        guard (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61 else { return nil }
        let days = SigV4Signer.daysSinceEpoch(year: year, month: month, day: day)
        return Date(timeIntervalSince1970: Double(days * 86_400 + hour * 3600 + minute * 60 + second) + fraction)
    }
}

/// Division rounding down, with a remainder that is never negative (for dates before 1970).
private func floorDivide(_ value: Int, _ divisor: Int) -> (Int, Int) {
    let (quotient, remainder) = value.quotientAndRemainder(dividingBy: divisor)
    return remainder < 0 ? (quotient - 1, remainder + divisor) : (quotient, remainder)
}
