import Crypto
import Foundation
import TrainerCore

/// What a scoped key of the built-in store may touch, until when.
public struct StoreScope: Sendable, Equatable {
    /// Keys under these may be read (listed, downloaded).
    public var readPrefixes: [String]
    /// Keys under these may be read and written (uploaded, deleted).
    public var writePrefixes: [String]
    public var expires: Date
    /// Who the key was handed to (the server's id for a worker key), so that the server can refuse
    /// it as soon as that holder is revoked, before it expires.
    public var holder: String?

    public init(readPrefixes: [String], writePrefixes: [String], expires: Date, holder: String? = nil) {
        self.readPrefixes = readPrefixes
        self.writePrefixes = writePrefixes
        self.expires = expires
        self.holder = holder
    }

    public func mayRead(_ key: String) -> Bool { (readPrefixes + writePrefixes).contains { key.hasPrefix($0) } }
    public func mayWrite(_ key: String) -> Bool { writePrefixes.contains { key.hasPrefix($0) } }
}

/// Access keys for the built-in store that reach only one scope (a job's dataset to read, its
/// outputs to write) and expire: what the built-in queue hands a worker with each job, so a GPU
/// box needs no store keys of its own and never holds the admin pair.
///
/// Stateless: the access key id carries the scope (`GMS` + base64url of it), and its secret is an
/// HMAC of that id under the admin secret, so the store checks a scoped request without a lookup,
/// and a changed scope is a different id whose secret nobody has.
public enum ScopedStoreKey {
    static let marker = "GMS"

    /// Credentials for `scope`, derived from the store's admin pair. Prefixes may not contain
    /// `|`, `;` or newlines (they separate the fields), nor may the holder contain `;`.
    public static func make(_ scope: StoreScope, admin: S3Credentials) -> S3Credentials {
        var fields = [scope.readPrefixes.joined(separator: "|"), scope.writePrefixes.joined(separator: "|"), String(Int(scope.expires.timeIntervalSince1970))]
        if let holder = scope.holder { fields.append(holder) }
        let id = marker + base64URL(Data(fields.joined(separator: ";").utf8))
        return S3Credentials(accessKeyID: id, secretAccessKey: secret(forAccessKeyID: id, admin: admin))
    }

    /// The scope an access key id names, if it is a scoped key's (its secret is checked by the signature).
    public static func scope(ofAccessKeyID id: String) -> StoreScope? {
        guard id.hasPrefix(marker), let data = data(base64URL: String(id.dropFirst(marker.count))),
            let text = String(data: data, encoding: .utf8)
        else { return nil }
        let fields = text.split(separator: ";", omittingEmptySubsequences: false).map(String.init)
        guard fields.count == 3 || fields.count == 4, let expires = TimeInterval(fields[2]) else { return nil }
        func prefixes(_ field: String) -> [String] { field.split(separator: "|").map(String.init).filter { !$0.isEmpty } }
        return StoreScope(
            readPrefixes: prefixes(fields[0]), writePrefixes: prefixes(fields[1]), expires: Date(timeIntervalSince1970: expires),
            holder: fields.count == 4 ? fields[3] : nil)
    }

    static func secret(forAccessKeyID id: String, admin: S3Credentials) -> Secret {
        let key = SymmetricKey(data: Data(admin.secretAccessKey.value.utf8))
        return Secret(base64URL(Data(HMAC<SHA256>.authenticationCode(for: Data(("gomodel scoped store key\n" + id).utf8), using: key))))
    }

    private static func base64URL(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    private static func data(base64URL text: String) -> Data? {
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        base64 += String(repeating: "=", count: (4 - base64.count % 4) % 4)
        return Data(base64Encoded: base64)
    }
}
