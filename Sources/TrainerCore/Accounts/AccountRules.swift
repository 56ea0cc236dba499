/// What makes an acceptable e-mail address and password; shared by the API and the CLI.
public enum AccountRules {
    public static let minimumPasswordLength = 10
    /// bcrypt reads only the first 72 bytes; longer passwords would be silently truncated.
    public static let maximumPasswordBytes = 72

    /// The canonical (trimmed, lower-cased) address, or nil when it is not an address.
    public static func normalizedEmail(_ raw: String) -> String? {
        let email = raw.trimmingWhitespace().lowercased()
        let parts = email.split(separator: "@", omittingEmptySubsequences: false)
        guard email.count <= 254, parts.count == 2, !parts[0].isEmpty, parts[1].contains("."),
              !parts[1].hasPrefix("."), !parts[1].hasSuffix("."),
              !email.contains(where: { $0.isWhitespace || $0.unicodeScalars.contains { $0.properties.generalCategory == .control } })
        else { return nil }
        return email
    }

    /// Why the password is refused, or nil when it is acceptable.
    public static func passwordProblem(_ password: String) -> String? {
        if password.count < minimumPasswordLength {
            return "The password must be at least \(minimumPasswordLength) characters long."
        }
        if password.utf8.count > maximumPasswordBytes {
            return "The password must be at most \(maximumPasswordBytes) bytes long (bcrypt ignores anything after that)."
        }
        return nil
    }

    /// The most characters a token's or a worker key's name may have.
    public static let maximumNameLength = 100

    /// A token's or worker key's name, trimmed, or nil when it is empty, too long or holds a
    /// character that could disguise it (`HiddenCharacters`).
    public static func visibleName(_ raw: String) -> String? {
        let name = raw.trimmingWhitespace()
        guard !name.isEmpty, name.count <= maximumNameLength, HiddenCharacters.first(in: name) == nil else { return nil }
        return name
    }
}
