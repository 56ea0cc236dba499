import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFileSystem
import NIOHTTP1

/// Sends a file to a presigned PUT URL, streamed from disk, with the headers the URL was signed
/// with. Used by clients that never hold the bucket's keys (the CLI's dataset push).
public enum PresignedTransfer {
    /// Uploads `path`; `progress` is told the bytes sent so far as they go. Throws `S3Error` for an
    /// answer other than 2xx (the store's own code, e.g. SignatureDoesNotMatch, BadDigest).
    public static func put(
        file path: String, to presigned: PresignedRequest, http: HTTPClient, timeout: TimeAmount = .minutes(10),
        progress: @escaping @Sendable (Int64) -> Void = { _ in }
    ) async throws {
        var request = HTTPClientRequest(url: presigned.url.absoluteString)
        request.method = HTTPMethod(rawValue: presigned.method)
        for (name, value) in presigned.headers where name.lowercased() != "content-length" {
            request.headers.add(name: name, value: value)
        }
        let response = try await FileSystem.shared.withFileHandle(forReadingAt: FilePath(path)) { file in
            let size = try await file.info().size
            if let signed = presigned.headers.first(where: { $0.key.lowercased() == "content-length" }).flatMap({ Int64($0.value) }), signed != size {
                throw S3Error(status: 0, code: .other("SizeChanged"), message: "\(path) is \(size) bytes now but \(signed) when the upload was signed; it changed while uploading.")
            }
            let counted = CountingChunks(base: file.readChunks(in: 0..<size, chunkLength: .kibibytes(256)), progress: progress)
            request.body = .stream(counted, length: .known(size))
            return try await http.execute(request, timeout: timeout)
        }
        guard (200..<300).contains(response.status.code) else { throw try await S3Client.error(from: response) }
        _ = try await response.body.collect(upTo: 1 << 20)
    }
}

/// File chunks that report the running byte count as they are read by the sender.
struct CountingChunks<Base: AsyncSequence & Sendable>: AsyncSequence, Sendable where Base.Element == ByteBuffer {
    typealias Element = ByteBuffer
    let base: Base
    let progress: @Sendable (Int64) -> Void

    struct AsyncIterator: AsyncIteratorProtocol {
        var base: Base.AsyncIterator
        let progress: @Sendable (Int64) -> Void
        var sent: Int64 = 0

        mutating func next() async throws -> ByteBuffer? {
            guard let chunk = try await base.next() else { return nil }
            sent += Int64(chunk.readableBytes)
            progress(sent)
            return chunk
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(base: base.makeAsyncIterator(), progress: progress) }
}
