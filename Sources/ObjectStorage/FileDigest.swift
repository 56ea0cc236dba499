import Crypto
import NIOCore
import NIOFileSystem

/// The SHA-256 of a file, as lower-case hex, read in 1 MiB chunks: what uploads are signed with,
/// what workers record for each artifact, and what downloads are checked against.
public enum FileDigest {
    public static func sha256(ofFile path: String) async throws -> String {
        try await FileSystem.shared.withFileHandle(forReadingAt: FilePath(path)) { file in
            var hasher = SHA256()
            for try await chunk in file.readChunks(chunkLength: .mebibytes(1)) {
                chunk.withUnsafeReadableBytes { hasher.update(bufferPointer: $0) }
            }
            return SigV4Signer.hex(Array(hasher.finalize()))
        }
    }
}
