import Foundation
import TrainerCore

/// The built-in store's access key pair: made on first start, kept in the data folder (mode 0600).
public enum StoreCredentials {
    public static func loadOrCreate(dataDirectory: String) throws -> S3Credentials {
        let path = dataDirectory + "/store-credentials.json"
        struct Stored: Codable {
            var accessKeyId: String
            var secretAccessKey: String
        }
        if let data = FileManager.default.contents(atPath: path) {
            let stored = try JSONDecoder().decode(Stored.self, from: data)
            return S3Credentials(accessKeyID: stored.accessKeyId, secretAccessKey: Secret(stored.secretAccessKey))
        }
        try FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true)
        let stored = Stored(
            accessKeyId: "GM" + random(from: "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", count: 18),
            secretAccessKey: random(from: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", count: 40))
        // Created with 0600 from the start, then moved into place, so no one else can ever read it.
        let temporary = path + ".\(UUID().uuidString)"
        guard FileManager.default.createFile(atPath: temporary, contents: try JSONEncoder().encode(stored), attributes: [.posixPermissions: 0o600]) else {
            throw CocoaError(.fileWriteUnknown)
        }
        if link(temporary, path) != 0 {
            let error = errno
            unlink(temporary)
            // Another process made the pair first: use theirs.
            if error == EEXIST { return try loadOrCreate(dataDirectory: dataDirectory) }
            throw POSIXError(POSIXErrorCode(rawValue: error) ?? .EIO)
        }
        unlink(temporary)
        return S3Credentials(accessKeyID: stored.accessKeyId, secretAccessKey: Secret(stored.secretAccessKey))
    }

    private static func random(from alphabet: String, count: Int) -> String {
        var generator = SystemRandomNumberGenerator()
        let characters = Array(alphabet)
        return String((0..<count).map { _ in characters[Int.random(in: 0..<characters.count, using: &generator)] })
    }
}
