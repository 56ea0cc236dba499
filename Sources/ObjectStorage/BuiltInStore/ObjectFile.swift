import Crypto
import Foundation
import NIOCore
import NIOFileSystem
import NIOFoundationCompat

/// What the store keeps about an object besides its bytes.
public struct StoredObject: Codable, Sendable, Equatable {
    public var size: Int64
    public var etag: String
    public var contentType: String?
    public var lastModified: Date
    /// MD5 of each part, for multipart uploads' parts (to build the final ETag).
    var md5: String?
    /// User metadata (`x-amz-meta-*`), names lower-case without the prefix.
    public var metadata: [String: String]?
}

/// One object is one file: its bytes, then its metadata as JSON, then a 16-byte trailer
/// (metadata length, big-endian UInt64, and a magic). One file means one atomic rename publishes
/// bytes and metadata together; NIOFileSystem's transactional creation writes it to an unnamed
/// temporary file first, so a crash or a dropped upload never leaves a partial object.
enum ObjectFile {
    static let magic = Array("GMOBJv1\n".utf8)
    static let trailerLength: Int64 = 16
    static let writeSize = 1 << 20

    /// Streams `body` into a new file at `path` (replacing any, unless `onlyIfAbsent`), checking
    /// length and checksum, and returns the stored metadata. Nothing is visible at `path` unless
    /// this returns; with `onlyIfAbsent` the file is linked into place only if none is there, in one
    /// step, so of two writers exactly one wins (`S3StoreError.preconditionFailed` for the other).
    static func write<Body: AsyncSequence>(
        to path: String, body: Body, expectedLength: Int64?, expectedSHA256: String?, checksumSHA256: String? = nil,
        contentType: String?, metadata: [String: String]? = nil, now: Date, durable: Bool = true, onlyIfAbsent: Bool = false
    ) async throws -> StoredObject where Body.Element == ByteBuffer {
        do {
            return try await write(
                to: path, body: body, expectedLength: expectedLength, expectedSHA256: expectedSHA256, checksumSHA256: checksumSHA256,
                contentType: contentType, metadata: metadata, now: now, durable: durable, replaceExisting: !onlyIfAbsent)
        } catch let error as FileSystemError where error.code == .fileAlreadyExists && onlyIfAbsent {
            throw S3StoreError.preconditionFailed
        }
    }

    private static func write<Body: AsyncSequence>(
        to path: String, body: Body, expectedLength: Int64?, expectedSHA256: String?, checksumSHA256: String?,
        contentType: String?, metadata: [String: String]?, now: Date, durable: Bool, replaceExisting: Bool
    ) async throws -> StoredObject where Body.Element == ByteBuffer {
        try await FileSystem.shared.withFileHandle(
            forWritingAt: FilePath(path), options: .newFile(replaceExisting: replaceExisting, permissions: .ownerReadWrite)
        ) { file in
            var md5 = Insecure.MD5()
            var sha256 = expectedSHA256 == nil && checksumSHA256 == nil ? nil : SHA256()
            var offset: Int64 = 0
            // Network chunks are small; gather them so each disk write (a thread-pool hop) is 1 MiB.
            var pending = ByteBuffer()
            for try await var chunk in body {
                if let expectedLength, offset + Int64(pending.readableBytes + chunk.readableBytes) > expectedLength {
                    throw S3StoreError.incompleteBody(expected: expectedLength, received: offset + Int64(pending.readableBytes + chunk.readableBytes))
                }
                chunk.withUnsafeReadableBytes { bytes in
                    md5.update(bufferPointer: bytes)
                    sha256?.update(bufferPointer: bytes)
                }
                pending.writeBuffer(&chunk)
                if pending.readableBytes >= writeSize {
                    try await file.write(contentsOf: pending, toAbsoluteOffset: offset)
                    offset += Int64(pending.readableBytes)
                    pending.clear()
                }
            }
            try await file.write(contentsOf: pending, toAbsoluteOffset: offset)
            offset += Int64(pending.readableBytes)
            if let expectedLength, offset != expectedLength {
                throw S3StoreError.incompleteBody(expected: expectedLength, received: offset)
            }
            if let digest = sha256.map({ SigV4Signer.hex(Array($0.finalize())) }) {
                if let expectedSHA256, digest != expectedSHA256.lowercased() { throw S3StoreError.contentSHA256Mismatch }
                if let checksumSHA256, digest != checksumSHA256.lowercased() { throw S3StoreError.badDigest }
            }
            let digest = SigV4Signer.hex(Array(md5.finalize()))
            let stored = StoredObject(size: offset, etag: digest, contentType: contentType, lastModified: now, md5: digest, metadata: metadata)
            try await appendMetadata(stored, to: file, at: offset, durable: durable)
            return stored
        }
    }

    static func appendMetadata(_ stored: StoredObject, to file: WriteFileHandle, at offset: Int64, durable: Bool) async throws {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .millisecondsSince1970
        let metadata = try encoder.encode(stored)
        var trailer = ByteBuffer()
        trailer.writeBytes(metadata)
        trailer.writeInteger(UInt64(metadata.count), endianness: .big)
        trailer.writeBytes(magic)
        try await file.write(contentsOf: trailer, toAbsoluteOffset: offset)
        // On disk before the link makes it visible, so a power cut cannot publish a hole.
        if durable { try await file.synchronize() }
    }

    /// Reads the metadata of an open object file; a file without a valid trailer is not an object.
    static func metadata(of file: ReadFileHandle) async throws -> StoredObject {
        let size = try await file.info().size
        guard size >= trailerLength else { throw S3StoreError.noSuchKey }
        var trailer = try await file.readChunk(fromAbsoluteOffset: size - trailerLength, length: .bytes(trailerLength))
        guard let length = trailer.readInteger(endianness: .big, as: UInt64.self), trailer.readBytes(length: 8) == magic,
            Int64(length) <= size - trailerLength
        else { throw S3StoreError.noSuchKey }
        let metadata = try await file.readChunk(fromAbsoluteOffset: size - trailerLength - Int64(length), length: .bytes(Int64(length)))
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .millisecondsSince1970
        return try decoder.decode(StoredObject.self, from: Data(buffer: metadata))
    }
}
