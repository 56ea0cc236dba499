import Crypto
import Foundation

/// Random bearer secrets (session cookies, API tokens, invite codes) and their stored digests.
///
/// The secrets carry 256 random bits, so a plain SHA-256 is a safe digest to store and look up by;
/// bcrypt is for low-entropy passwords.
enum OpaqueToken {
    /// `prefix` + 43 URL-safe base64 characters.
    static func generate(prefix: String = "") -> String {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        let base64 = Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
        return prefix + base64
    }

    static func digest(_ token: String) -> String {
        SHA256.hash(data: Data(token.utf8)).map { String(format: "%02x", $0) }.joined()
    }
}
