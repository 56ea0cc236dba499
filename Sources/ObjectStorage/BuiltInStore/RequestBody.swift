import Crypto
import Foundation
import NIOCore
import TrainerCore

/// A request body as the store must keep it: passed through, or decoded from the aws-chunked
/// framing that SDKs use for streamed uploads (`STREAMING-…` payload modes), checking each
/// chunk's signature when the client signed them.
public struct RequestBody<Upstream: AsyncSequence>: AsyncSequence where Upstream.Element == ByteBuffer {
    public typealias Element = ByteBuffer

    /// The signing context of a signed aws-chunked body.
    public struct ChunkSigner: Sendable {
        let seedSignature: String
        /// Everything but the previous signature and the chunk's hash is the same for every chunk.
        let prefix: String
        let key: SymmetricKey

        public init(verified: S3RequestAuthenticator.Verified) {
            seedSignature = verified.seedSignature
            prefix = ["AWS4-HMAC-SHA256-PAYLOAD", verified.timestamp, verified.signer.scope(verified.timestamp)].joined(separator: "\n")
            key = verified.signer.signingKey(day: String(verified.timestamp.prefix(8)))
        }

        func signature(chunk: ByteBuffer, previous: String) -> String {
            let chunkHash = chunk.withUnsafeReadableBytes { SigV4Signer.hex(Array(SHA256.hash(data: $0))) }
            let toSign = [prefix, previous, SigV4Signer.emptyPayloadHash, chunkHash].joined(separator: "\n")
            return SigV4Signer.hex(Array(HMAC<SHA256>.authenticationCode(for: Data(toSign.utf8), using: key)))
        }
    }

    public enum Framing: Sendable {
        case plain
        case awsChunked(ChunkSigner?)
    }

    let upstream: Upstream
    let framing: Framing

    public init(_ upstream: Upstream, framing: Framing) {
        self.upstream = upstream
        self.framing = framing
    }

    public func makeAsyncIterator() -> Iterator {
        Iterator(upstream: upstream.makeAsyncIterator(), framing: framing)
    }

    public struct Iterator: AsyncIteratorProtocol {
        var upstream: Upstream.AsyncIterator
        let framing: Framing
        var buffer = ByteBuffer()
        var previousSignature: String?
        var finished = false
        static var maximumChunk: Int { 16 << 20 }

        init(upstream: Upstream.AsyncIterator, framing: Framing) {
            self.upstream = upstream
            self.framing = framing
            if case .awsChunked(let signer?) = framing { previousSignature = signer.seedSignature }
        }

        public mutating func next() async throws -> ByteBuffer? {
            guard case .awsChunked(let signer) = framing else { return try await upstream.next() }
            guard !finished else { return nil }
            let header = try await line()
            let fields = header.split(separator: ";", maxSplits: 1)
            guard let size = fields.first.flatMap({ Int($0.trimmingCharacters(in: .whitespaces), radix: 16) }), size >= 0, size <= Self.maximumChunk else {
                throw Self.malformed
            }
            let signature = fields.count > 1 ? fields[1].split(separator: "=", maxSplits: 1).last.map(String.init) : nil
            let chunk = try await bytes(size)
            if size > 0 { guard try await line().isEmpty else { throw Self.malformed } }
            if let signer, let previous = previousSignature {
                let expected = signer.signature(chunk: chunk, previous: previous)
                guard let signature, constantTimeEquals(signature, expected) else { throw S3StoreError.signatureDoesNotMatch }
                previousSignature = expected
            }
            if size == 0 {
                // Trailing headers (checksums) until an empty line, then the end.
                while try await !line().isEmpty {}
                finished = true
                return nil
            }
            return chunk
        }

        static var malformed: S3StoreError {
            S3StoreError(status: 400, code: "IncompleteBody", message: "The aws-chunked request body is malformed or ends early.")
        }

        private mutating func fill(_ count: Int) async throws {
            while buffer.readableBytes < count {
                guard var more = try await upstream.next() else { throw Self.malformed }
                buffer.writeBuffer(&more)
            }
        }

        private mutating func line() async throws -> String {
            while true {
                if let index = buffer.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) {
                    let length = index - buffer.readerIndex
                    var text = buffer.readString(length: length) ?? ""
                    buffer.moveReaderIndex(forwardBy: 1)
                    if text.hasSuffix("\r") { text.removeLast() }
                    return text
                }
                guard buffer.readableBytes < 4096 else { throw Self.malformed }
                guard var more = try await upstream.next() else {
                    if buffer.readableBytes == 0 { return "" }
                    throw Self.malformed
                }
                buffer.writeBuffer(&more)
            }
        }

        private mutating func bytes(_ count: Int) async throws -> ByteBuffer {
            try await fill(count)
            return buffer.readSlice(length: count)!
        }
    }
}

/// A `Range: bytes=…` header against an object of `size` bytes (one range; more are not supported).
public enum ByteRange {
    /// nil when the header should be ignored (not a bytes range); throws when unsatisfiable.
    public static func parse(_ header: String, size: Int64) throws(S3StoreError) -> Range<Int64>? {
        guard header.hasPrefix("bytes="), !header.contains(",") else { return nil }
        let spec = header.dropFirst("bytes=".count).split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
        guard spec.count == 2 else { return nil }
        let first = Int64(spec[0].trimmingCharacters(in: .whitespaces))
        let last = Int64(spec[1].trimmingCharacters(in: .whitespaces))
        switch (first, last) {
        case (let start?, let end?) where start <= end:
            guard start < size else { throw .invalidRange }
            return start..<(min(end, size - 1) + 1)
        case (let start?, nil) where spec[1].isEmpty:
            guard start < size else { throw .invalidRange }
            return start..<size
        case (nil, let suffix?) where spec[0].isEmpty:
            guard suffix > 0, size > 0 else { throw .invalidRange }
            return max(0, size - suffix)..<size
        default:
            return nil
        }
    }
}
