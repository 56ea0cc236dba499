/// What makes an acceptable e-mail address and password; shared by the API and the CLI.
public enum AccountRules {
    /// Lengths count Unicode scalars, as JSON Schema's minLength and maxLength do.
    public static let minimumPasswordLength = 10
    /// Long passphrases are welcome (the server hashes a password's SHA-256, so bcrypt's 72-byte
    /// input limit does not cut them); the bound only keeps requests sane.
    public static let maximumPasswordLength = 1024

    /// The canonical (trimmed, lower-cased) address, or nil when it is not an address.
    public static func normalizedEmail(_ raw: String) -> String? {
        let email = raw.trimmingWhitespace().lowercased()
        let parts = email.split(separator: "@", omittingEmptySubsequences: false)
        guard email.count <= maximumEmailLength, parts.count == 2, !parts[0].isEmpty, parts[1].contains("."),
            !parts[1].hasPrefix("."), !parts[1].hasSuffix("."),
            !email.contains(where: { $0.isWhitespace || $0.unicodeScalars.contains { $0.properties.generalCategory == .control } })
        else { return nil }
        return email
    }

    /// Why the password is refused, or nil when it is acceptable.
    public static func passwordProblem(_ password: String) -> String? {
        let length = password.unicodeScalars.count
        if length < minimumPasswordLength {
            return "The password must be at least \(minimumPasswordLength) characters long."
        }
        if length > maximumPasswordLength {
            return "The password must be at most \(maximumPasswordLength) characters long."
        }
        return nil
    }

    /// The longest e-mail address (RFC 5321's path limit).
    public static let maximumEmailLength = 254
}
