import Crypto
import Foundation
import NIOCore
import NIOFileSystem
import NIOFoundationCompat
import NIOPosix
import TrainerCore

/// The S3-compatible store built into `gomodel serve`: objects on local disk under `root`.
///
/// Layout: `buckets/{bucket}/…` holds objects (see `StoreKey`, `ObjectFile`); `multipart/{uploadId}/`
/// holds an upload's `upload.json` and its parts. Streaming in and out keeps memory constant.
public struct BuiltInStore: Sendable {
    public let root: String
    public let bucket: String
    let now: @Sendable () -> Date

    public init(root: String, bucket: String, now: @escaping @Sendable () -> Date = { Date() }) throws {
        self.root = root
        self.bucket = bucket
        self.now = now
        try FileManager.default.createDirectory(atPath: bucketPath, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: multipartPath, withIntermediateDirectories: true)
    }

    var bucketPath: String { root + "/buckets/" + bucket }
    var multipartPath: String { root + "/multipart" }

    public func checkBucket(_ name: String) throws(S3StoreError) {
        guard name == bucket else { throw .noSuchBucket(name) }
    }

    func objectPath(_ key: String) throws(S3StoreError) -> String {
        bucketPath + "/" + StoreKey.relativePath(try StoreKey.segments(key))
    }

    // MARK: Objects

    public func putObject<Body: AsyncSequence>(
        bucket: String, key: String, contentType: String?, metadata: [String: String]? = nil,
        contentLength: Int64?, sha256: String?, checksumSHA256: String? = nil, onlyIfAbsent: Bool = false, body: Body
    ) async throws -> StoredObject where Body.Element == ByteBuffer {
        try checkBucket(bucket)
        let path = try objectPath(key)
        return try await withParentFolders(of: path) {
            try await ObjectFile.write(
                to: path, body: body, expectedLength: contentLength, expectedSHA256: sha256, checksumSHA256: checksumSHA256,
                contentType: contentType, metadata: metadata, now: now(), onlyIfAbsent: onlyIfAbsent
            )
        }
    }

    /// Opens an object for reading; the caller closes the handle. Holding the handle keeps these
    /// exact bytes readable even if the key is replaced or deleted meanwhile.
    public func openObject(bucket: String, key: String) async throws -> (StoredObject, ReadFileHandle) {
        try checkBucket(bucket)
        let path = try objectPath(key)
        let file: ReadFileHandle
        do {
            file = try await FileSystem.shared.openFile(forReadingAt: FilePath(path))
        } catch let error as FileSystemError where error.code == .notFound {
            throw S3StoreError.noSuchKey
        }
        do {
            return (try await ObjectFile.metadata(of: file), file)
        } catch {
            try? await file.close()
            throw error
        }
    }

    public func headObject(bucket: String, key: String) async throws -> StoredObject {
        let (stored, file) = try await openObject(bucket: bucket, key: key)
        try await file.close()
        return stored
    }

    /// Deleting a missing key succeeds, as in S3.
    public func deleteObject(bucket: String, key: String) throws {
        try checkBucket(bucket)
        let path = try objectPath(key)
        if unlink(path) == 0 { removeEmptyFolders(above: path) }
    }

    public func copyObject(bucket: String, from source: String, to destination: String) async throws -> StoredObject {
        let (stored, file) = try await openObject(bucket: bucket, key: source)
        return try await withClosing(file) { file in
            try await putObject(
                bucket: bucket, key: destination, contentType: stored.contentType, metadata: stored.metadata, contentLength: stored.size, sha256: nil,
                body: file.readChunks(in: 0..<stored.size, chunkLength: .mebibytes(1))
            )
        }
    }

    // MARK: Listing

    public struct Listing: Sendable {
        public var keys: [(key: String, object: StoredObject)]
        public var commonPrefixes: [String]
        /// The last key or prefix returned, when there is more to list.
        public var nextStartAfter: String?
    }

    /// ListObjectsV2: keys in UTF-8 byte order after `startAfter`, rolled up at `delimiter`.
    public func list(bucket: String, prefix: String, delimiter: String?, startAfter: String?, maxKeys: Int) async throws -> Listing {
        try checkBucket(bucket)
        var collector = ListingCollector(prefix: prefix, delimiter: delimiter.flatMap { $0.isEmpty ? nil : $0 }, startAfter: startAfter ?? "", maxKeys: max(0, min(maxKeys, 1000)))
        _ = try await walk(folder: bucketPath, keyPrefix: "", collector: &collector)
        var listing = Listing(keys: [], commonPrefixes: [], nextStartAfter: nil)
        for entry in collector.entries.prefix(collector.maxKeys) {
            switch entry {
            case .key(let key):
                // A key deleted since it was seen is simply left out.
                if let (stored, file) = try? await openObject(bucket: bucket, key: key) {
                    try? await file.close()
                    listing.keys.append((key, stored))
                }
            case .prefix(let prefix):
                listing.commonPrefixes.append(prefix)
            }
        }
        if collector.entries.count > collector.maxKeys, let last = collector.entries.prefix(collector.maxKeys).last {
            listing.nextStartAfter = last.name
        }
        return listing
    }

    /// Depth-first in key order; returns false once the collector has enough.
    private func walk(folder: String, keyPrefix: String, collector: inout ListingCollector) async throws -> Bool {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return true }
        let entries = names.compactMap { name -> (sortKey: String, segment: String, isFolder: Bool, name: String)? in
            guard let (segment, isFolder) = StoreKey.decode(entry: name) else { return nil }
            return (isFolder ? keyPrefix + segment + "/" : keyPrefix + segment, segment, isFolder, name)
        }.sorted { $0.sortKey.utf8Precedes($1.sortKey) }
        for entry in entries {
            if !entry.isFolder {
                if !collector.accept(key: entry.sortKey) { return false }
                continue
            }
            let subtree = entry.sortKey
            guard collector.mayContain(subtree: subtree) else { continue }
            if let rolledUp = collector.rollUp(subtree: subtree) {
                guard hasObject(in: folder + "/" + entry.name) else { continue }
                if !collector.accept(prefix: rolledUp) { return false }
                continue
            }
            if try await !walk(folder: folder + "/" + entry.name, keyPrefix: subtree, collector: &collector) { return false }
        }
        return true
    }

    private func hasObject(in folder: String) -> Bool {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return false }
        return names.contains { $0.hasSuffix(".o") } || names.contains { $0.hasSuffix(".d") && hasObject(in: folder + "/" + $0) }
    }

    // MARK: Multipart uploads

    struct Upload: Codable {
        var bucket: String
        var key: String
        var contentType: String?
        var initiated: Date
    }

    public func createMultipartUpload(bucket: String, key: String, contentType: String?) throws -> String {
        try checkBucket(bucket)
        _ = try StoreKey.segments(key)
        let uploadID = (0..<16).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
        let folder = multipartPath + "/" + uploadID
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: false)
        let data = try JSONEncoder().encode(Upload(bucket: bucket, key: key, contentType: contentType, initiated: now()))
        try data.write(to: URL(fileURLWithPath: folder + "/upload.json"), options: .atomic)
        return uploadID
    }

    func upload(_ uploadID: String, bucket: String, key: String) throws -> (Upload, String) {
        // Upload ids are ours (hex); anything else cannot name a folder.
        guard uploadID.count == 32, uploadID.allSatisfy(\.isHexDigit) else { throw S3StoreError.noSuchUpload }
        let folder = multipartPath + "/" + uploadID
        guard let data = FileManager.default.contents(atPath: folder + "/upload.json"),
            let upload = try? JSONDecoder().decode(Upload.self, from: data), upload.bucket == bucket, upload.key == key
        else { throw S3StoreError.noSuchUpload }
        return (upload, folder)
    }

    public func uploadPart<Body: AsyncSequence>(
        bucket: String, key: String, uploadID: String, partNumber: Int, contentLength: Int64?, sha256: String?, body: Body
    ) async throws -> StoredObject where Body.Element == ByteBuffer {
        try checkBucket(bucket)
        guard (1...10_000).contains(partNumber) else { throw S3StoreError.invalidArgument("Part number must be an integer between 1 and 10000.") }
        let (_, folder) = try upload(uploadID, bucket: bucket, key: key)
        // Parts are not fsynced: the completed object is, and a part lost to a power cut only
        // means uploading that part again.
        return try await ObjectFile.write(
            to: folder + "/\(partNumber).part", body: body, expectedLength: contentLength, expectedSHA256: sha256, contentType: nil, now: now(), durable: false)
    }

    public func listParts(bucket: String, key: String, uploadID: String) async throws -> [(Int, StoredObject)] {
        try checkBucket(bucket)
        let (_, folder) = try upload(uploadID, bucket: bucket, key: key)
        let numbers =
            (try? FileManager.default.contentsOfDirectory(atPath: folder))?
            .compactMap { $0.hasSuffix(".part") ? Int($0.dropLast(5)) : nil }.sorted() ?? []
        var parts: [(Int, StoredObject)] = []
        for number in numbers {
            let file = try await FileSystem.shared.openFile(forReadingAt: FilePath(folder + "/\(number).part"))
            if let stored = try? await ObjectFile.metadata(of: file) { parts.append((number, stored)) }
            try? await file.close()
        }
        return parts
    }

    public static let minimumPartSize: Int64 = 5 << 20

    /// Joins the listed parts into the object; its ETag is S3's: MD5 of the parts' MD5s, "-", count.
    public func completeMultipartUpload(bucket: String, key: String, uploadID: String, parts requested: [(Int, String)]) async throws -> StoredObject {
        try checkBucket(bucket)
        let (upload, folder) = try upload(uploadID, bucket: bucket, key: key)
        guard !requested.isEmpty else { throw S3StoreError.malformedXML }
        guard zip(requested, requested.dropFirst()).allSatisfy({ $0.0 < $1.0 }) else { throw S3StoreError.invalidPartOrder }
        let available = Dictionary(uniqueKeysWithValues: try await listParts(bucket: bucket, key: key, uploadID: uploadID))
        var parts: [(Int, StoredObject)] = []
        for (number, etag) in requested {
            guard let stored = available[number], stored.etag == etag.trimmingCharacters(in: CharacterSet(charactersIn: "\"")) else {
                throw S3StoreError.invalidPart
            }
            parts.append((number, stored))
        }
        guard parts.dropLast().allSatisfy({ $0.1.size >= Self.minimumPartSize }) else { throw S3StoreError.entityTooSmall }

        var md5s = Data()
        for (_, stored) in parts { md5s.append(contentsOf: Hex.decode(stored.md5 ?? stored.etag) ?? []) }
        let etag = SigV4Signer.hex(Array(Insecure.MD5.hash(data: md5s))) + "-\(parts.count)"
        let path = try objectPath(key)
        var stored = try await withParentFolders(of: path) {
            try await ObjectFile.writeJoined(to: path, parts: parts.map { (folder + "/\($0.0).part", $0.1) }, etag: etag, contentType: upload.contentType, now: now())
        }
        stored.md5 = nil
        try? FileManager.default.removeItem(atPath: folder)
        return stored
    }

    public func abortMultipartUpload(bucket: String, key: String, uploadID: String) throws {
        try checkBucket(bucket)
        let (_, folder) = try upload(uploadID, bucket: bucket, key: key)
        try FileManager.default.removeItem(atPath: folder)
    }

    // MARK: Helpers

    /// Runs `write` after creating the object's folders; a concurrent delete may remove an empty
    /// folder between the two, so that case is retried once.
    private func withParentFolders<T>(of path: String, _ write: () async throws -> T) async throws -> T {
        let parent = (path as NSString).deletingLastPathComponent
        for attempt in 0..<2 {
            try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true)
            do {
                return try await write()
            } catch let error as FileSystemError where error.code == .notFound && attempt == 0 {
                continue
            }
        }
        return try await write()
    }

    private func removeEmptyFolders(above path: String) {
        var folder = (path as NSString).deletingLastPathComponent
        while folder.count > bucketPath.count, folder.hasPrefix(bucketPath + "/"), rmdir(folder) == 0 {
            folder = (folder as NSString).deletingLastPathComponent
        }
    }
}

/// Runs `body` with an open file and closes it afterwards, also when `body` throws.
func withClosing<T>(_ file: ReadFileHandle, _ body: (ReadFileHandle) async throws -> T) async throws -> T {
    let result: T
    do {
        result = try await body(file)
    } catch {
        try? await file.close()
        throw error
    }
    try await file.close()
    return result
}

extension ObjectFile {
    /// Writes the parts' bytes one after another into a new object with the given ETag. The bytes
    /// move file to file inside the kernel (`sendfile`), so memory stays flat whatever the size.
    /// Each part is checked against the metadata the ETag was computed from, on the very handle
    /// it is copied from, so a part re-uploaded meanwhile cannot slip in.
    static func writeJoined(to path: String, parts: [(path: String, expected: StoredObject)], etag: String, contentType: String?, now: Date) async throws -> StoredObject {
        try await FileSystem.shared.withFileHandle(
            forWritingAt: FilePath(path), options: .newFile(replaceExisting: true, permissions: .ownerReadWrite)
        ) { file in
            let destination = try await file.withUnsafeDescriptor { $0.rawValue }
            var offset: Int64 = 0
            for part in parts {
                let source: ReadFileHandle
                do {
                    source = try await FileSystem.shared.openFile(forReadingAt: FilePath(part.path))
                } catch let error as FileSystemError where error.code == .notFound {
                    // Another CompleteMultipartUpload or an abort got there first.
                    throw S3StoreError.noSuchUpload
                }
                let size = part.expected.size
                try await withClosing(source) { source in
                    guard try await ObjectFile.metadata(of: source) == part.expected else { throw S3StoreError.invalidPart }
                    let descriptor = try await source.withUnsafeDescriptor { $0.rawValue }
                    let start = offset
                    try await NIOThreadPool.singleton.runIfActive {
                        guard lseek(destination, off_t(start), SEEK_SET) == off_t(start) else { throw S3StoreError.invalidPart }
                        var sourceOffset = 0
                        while sourceOffset < Int(size) {
                            let sent = sendfile(destination, descriptor, &sourceOffset, Int(size) - sourceOffset)
                            if sent < 0, errno == EINTR { continue }
                            guard sent > 0 else { throw S3StoreError.invalidPart }
                        }
                    }
                }
                offset += size
            }
            let stored = StoredObject(size: offset, etag: etag, contentType: contentType, lastModified: now, md5: nil)
            try await appendMetadata(stored, to: file, at: offset, durable: true)
            return stored
        }
    }
}

// S3 compares keys as UTF-8 bytes; Swift's String compares Unicode-equivalent text ("é" written
// as one or two scalars is equal), which would list the wrong keys.
extension String {
    func utf8HasPrefix(_ prefix: String) -> Bool { utf8.starts(with: prefix.utf8) }

    /// The UTF-8 offset just past the first `needle` found at or after `offset`.
    func utf8End(ofFirst needle: String, after offset: Int) -> Int? {
        let bytes = Array(utf8)
        let pattern = Array(needle.utf8)
        guard !pattern.isEmpty, bytes.count >= pattern.count else { return nil }
        var index = offset
        while index + pattern.count <= bytes.count {
            if bytes[index..<(index + pattern.count)].elementsEqual(pattern) { return index + pattern.count }
            index += 1
        }
        return nil
    }
}

/// Applies ListObjectsV2's rules to keys arriving in order.
struct ListingCollector {
    enum Entry {
        case key(String)
        case prefix(String)

        var name: String {
            switch self {
            case .key(let key): key
            case .prefix(let prefix): prefix
            }
        }
    }

    let prefix: String
    let delimiter: String?
    let startAfter: String
    let maxKeys: Int
    var entries: [Entry] = []

    /// Could any key starting with `subtree` be listed?
    func mayContain(subtree: String) -> Bool {
        guard subtree.utf8HasPrefix(prefix) || prefix.utf8HasPrefix(subtree) else { return false }
        // Every key in the subtree sorts before `startAfter` when it differs from it early.
        if !startAfter.isEmpty, subtree.utf8Precedes(startAfter), !startAfter.utf8HasPrefix(subtree) { return false }
        return true
    }

    /// With delimiter "/", a whole folder below the prefix is one common prefix.
    func rollUp(subtree: String) -> String? {
        guard delimiter == "/", subtree.utf8HasPrefix(prefix) else { return nil }
        let rest = subtree.utf8.dropFirst(prefix.utf8.count)
        guard let slash = rest.firstIndex(of: UInt8(ascii: "/")), rest.index(after: slash) == rest.endIndex else { return nil }
        return subtree
    }

    /// Returns false when one more than `maxKeys` entries are collected (enough to know there is more).
    mutating func accept(key: String) -> Bool {
        guard key.utf8HasPrefix(prefix), startAfter.utf8Precedes(key) || startAfter.isEmpty else { return true }
        if let delimiter, let end = key.utf8End(ofFirst: delimiter, after: prefix.utf8.count) {
            return accept(prefix: String(decoding: key.utf8.prefix(end), as: UTF8.self))
        }
        entries.append(.key(key))
        return entries.count <= maxKeys
    }

    mutating func accept(prefix common: String) -> Bool {
        if case .prefix(let last)? = entries.last, last == common { return true }
        // A continuation that ended on this prefix has listed it already.
        if !startAfter.isEmpty, !startAfter.utf8Precedes(common) || startAfter.utf8HasPrefix(common) { return true }
        entries.append(.prefix(common))
        return entries.count <= maxKeys
    }
}
