import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFileSystem
import ObjectStorage
import TrainerCore

/// The bucket that holds datasets and outputs, as the API needs it: presigned URLs for clients,
/// and the few small reads and writes the server does itself (HEAD, image headers, captions,
/// deletes). R2/S3 is reached over HTTP; the built-in store is called directly, without a
/// loopback request, but its presigned URLs are the same SigV4 URLs any S3 client would get.
struct Bucket: Sendable {
    enum Backend: Sendable {
        case remote(S3Client)
        /// `publicURL`: GOMODEL_PUBLIC_URL; without it URLs point where the client reached us.
        case builtIn(BuiltInStore, credentials: S3Credentials, publicURL: URL?)
    }

    let name: String
    let backend: Backend
    let now: @Sendable () -> Date

    static func make(_ settings: ObjectStoreSettings, builtIn: (BuiltInStore, S3Credentials)?, publicURL: URL?, http: HTTPClient, now: @escaping @Sendable () -> Date) -> Bucket {
        switch settings {
        case .s3(let s3):
            let endpoint = S3Endpoint(
                url: s3.endpoint, bucket: s3.bucket, region: s3.region,
                credentials: S3Credentials(accessKeyID: s3.accessKeyID, secretAccessKey: s3.secretAccessKey)
            )
            return Bucket(name: s3.bucket, backend: .remote(S3Client(endpoint: endpoint, httpClient: http, now: now)), now: now)
        case .builtIn(let name):
            let (store, credentials) = builtIn!
            return Bucket(name: name, backend: .builtIn(store, credentials: credentials, publicURL: publicURL), now: now)
        }
    }

    /// A PUT URL for `key`, bound to size, type and (when given) content. `origin` is the base
    /// URL the client used to reach this server; only the built-in store needs it.
    func presignedPut(key: String, contentType: String, contentLength: Int64, sha256: [UInt8]?, origin: URL, expires: Int) -> PresignedRequest {
        presigner(origin: origin).presignedPut(key: key, contentType: contentType, contentLength: contentLength, sha256: sha256, expires: expires)
    }

    func presignedGet(key: String, downloadName: String?, origin: URL) -> PresignedRequest {
        presigner(origin: origin).presignedGet(key: key, downloadName: downloadName, expires: 900)
    }

    /// The origin browsers send presigned requests to when it is not this server (R2, S3, or the
    /// built-in store behind GOMODEL_PUBLIC_URL), for the pages' Content-Security-Policy.
    var browserOrigin: String? {
        switch backend {
        case .remote(let client):
            // Presign a probe: virtual-hosted buckets have their own host.
            return Self.origin(of: client.presignedGet(key: "probe", expires: 1).url)
        case .builtIn(_, _, let publicURL):
            return publicURL.flatMap(Self.origin(of:))
        }
    }

    static func origin(of url: URL) -> String? {
        guard let scheme = url.scheme, let host = url.host else { return nil }
        return "\(scheme)://\(host)" + (url.port.map { ":\($0)" } ?? "")
    }

    private func presigner(origin: URL) -> S3Client {
        switch backend {
        case .remote(let client):
            return client
        case .builtIn(_, let credentials, let publicURL):
            // Presigning is pure: the HTTP client is never used.
            let endpoint = S3Endpoint(url: (publicURL ?? origin).appendingPathComponent("s3"), bucket: name, region: "us-east-1", credentials: credentials)
            return S3Client(endpoint: endpoint, httpClient: HTTPClient.shared, now: now)
        }
    }

    /// An object's first `count` bytes (fewer when it is shorter) and what HEAD would tell, in one
    /// request; nil when there is no such object.
    func fetchPrefix(key: String, count: Int) async throws -> (ObjectInfo, [UInt8])? {
        switch backend {
        case .remote(let client):
            return try await client.getObjectPrefix(key: key, count: count).map { ($0, Array(buffer: $1)) }
        case .builtIn(let store, _, _):
            let stored: StoredObject
            let file: ReadFileHandle
            do {
                (stored, file) = try await store.openObject(bucket: name, key: key)
            } catch let error as S3StoreError where error.code == "NoSuchKey" {
                return nil
            }
            let info = ObjectInfo(key: key, stored: stored)
            let length = min(Int64(count), stored.size)
            do {
                let chunk = length == 0 ? ByteBuffer() : try await file.readChunk(fromAbsoluteOffset: 0, length: .bytes(length))
                try await file.close()
                return (info, Array(buffer: chunk))
            } catch {
                try? await file.close()
                throw error
            }
        }
    }

    func put(key: String, bytes: ByteBuffer, contentType: String) async throws {
        switch backend {
        case .remote(let client):
            try await client.putObject(key: key, bytes: bytes, contentType: contentType)
        case .builtIn(let store, _, _):
            _ = try await store.putObject(bucket: name, key: key, contentType: contentType, contentLength: Int64(bytes.readableBytes), sha256: nil, body: OneBuffer(buffer: bytes))
        }
    }

    /// What HEAD tells of an object; nil when there is no such object.
    func head(key: String) async throws -> ObjectInfo? {
        switch backend {
        case .remote(let client):
            return try await client.headObject(key: key)
        case .builtIn(let store, _, _):
            do {
                let stored = try await store.headObject(bucket: name, key: key)
                return ObjectInfo(key: key, stored: stored)
            } catch let error as S3StoreError where error.code == "NoSuchKey" {
                return nil
            }
        }
    }

    /// Streams an object into a local file (a zip to unpack); nil when there is no such object.
    func download(key: String, to path: String) async throws -> ObjectInfo? {
        switch backend {
        case .remote(let client):
            do {
                return try await client.getObject(key: key, to: path)
            } catch let error as S3Error where error.code == .noSuchKey {
                return nil
            }
        case .builtIn(let store, _, _):
            let stored: StoredObject
            let file: ReadFileHandle
            do {
                (stored, file) = try await store.openObject(bucket: name, key: key)
            } catch let error as S3StoreError where error.code == "NoSuchKey" {
                return nil
            }
            do {
                try await FileSystem.shared.withFileHandle(forWritingAt: FilePath(path), options: .newFile(replaceExisting: true)) { output in
                    var offset: Int64 = 0
                    for try await chunk in file.readChunks(in: 0..<stored.size, chunkLength: .mebibytes(1)) {
                        try await output.write(contentsOf: chunk, toAbsoluteOffset: offset)
                        offset += Int64(chunk.readableBytes)
                    }
                }
                try await file.close()
            } catch {
                try? await file.close()
                throw error
            }
            return ObjectInfo(key: key, stored: stored)
        }
    }

    /// Uploads a local file as an object.
    func upload(file path: String, key: String, contentType: String) async throws {
        switch backend {
        case .remote(let client):
            try await client.putObject(key: key, file: path, contentType: contentType)
        case .builtIn(let store, _, _):
            try await FileSystem.shared.withFileHandle(forReadingAt: FilePath(path)) { file in
                let size = try await file.info().size
                _ = try await store.putObject(
                    bucket: name, key: key, contentType: contentType, contentLength: size, sha256: nil, body: file.readChunks(in: 0..<size, chunkLength: .mebibytes(1)))
            }
        }
    }

    func delete(key: String) async throws {
        switch backend {
        case .remote(let client): try await client.deleteObject(key: key)
        case .builtIn(let store, _, _): try store.deleteObject(bucket: name, key: key)
        }
    }

    /// Deletes every object under `prefix`, several at a time; returns how many there were.
    @discardableResult
    func deleteAll(prefix: String) async throws -> Int {
        var keys: [String] = []
        switch backend {
        case .remote(let client):
            keys = try await client.listAllObjects(prefix: prefix).map(\.key)
        case .builtIn(let store, _, _):
            var startAfter: String?
            repeat {
                let page = try await store.list(bucket: name, prefix: prefix, delimiter: nil, startAfter: startAfter, maxKeys: 1000)
                keys += page.keys.map(\.key)
                startAfter = page.nextStartAfter
            } while startAfter != nil
        }
        try await keys.concurrentMap(limit: 16) { try await delete(key: $0) }
        return keys.count
    }
}

extension ObjectInfo {
    /// What HEAD would tell of an object of the built-in store.
    init(key: String, stored: StoredObject) {
        self.init(key: key, size: stored.size, etag: stored.etag, contentType: stored.contentType, lastModified: stored.lastModified, metadata: stored.metadata ?? [:])
    }
}

/// A body of one buffer, for the store's streaming `putObject`.
struct OneBuffer: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    let buffer: ByteBuffer

    struct AsyncIterator: AsyncIteratorProtocol {
        var buffer: ByteBuffer?
        mutating func next() async -> ByteBuffer? {
            defer { buffer = nil }
            return buffer
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(buffer: buffer) }
}
