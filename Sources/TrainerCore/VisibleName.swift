import Foundation

/// Names people read and tell apart (datasets, API tokens, worker keys): at most 100 characters
/// as sent, counted as JSON Schema counts them (Unicode scalars), with something besides
/// whitespace and nothing hidden (`HiddenCharacters`); kept trimmed. `pattern` states the same rule
/// for the OpenAPI document, so what a client checks against the schema is what the server takes.
public enum VisibleName {
    public static let maximumLength = 100

    /// The name, trimmed, or nil when it breaks the rule.
    public static func checked(_ raw: String) -> String? {
        guard raw.unicodeScalars.count <= maximumLength, HiddenCharacters.first(in: raw) == nil else { return nil }
        let name = raw.trimmingCharacters(in: .whitespacesAndNewlines)
        return name.isEmpty ? nil : name
    }

    /// The rule as a regular expression that ECMA-262 and Python's `re` read alike (no `\p{…}`):
    /// no hidden character anywhere, and one that is neither hidden nor a space somewhere.
    public static let pattern: String = {
        let hidden = HiddenCharacters.regexClassBody
        let spaces = ranges { $0.properties.generalCategory == .spaceSeparator }
        return "^[^\(hidden)]*[^\(hidden)\(spaces)][^\(hidden)]*$"
    }()

    /// Every scalar for which `include` holds, as the body of a regex character class.
    static func ranges(where include: (Unicode.Scalar) -> Bool) -> String {
        var body = ""
        var start: Unicode.Scalar?
        var last: Unicode.Scalar?
        func close() {
            guard let first = start, let end = last else { return }
            body += escaped(first) + (end == first ? "" : "-" + escaped(end))
        }
        for value in UInt32(0)...0x10FFFF {
            guard let scalar = Unicode.Scalar(value), include(scalar) else { continue }
            if let end = last, end.value + 1 == value {
                last = scalar
            } else {
                close()
                start = scalar
                last = scalar
            }
        }
        close()
        return body
    }

    /// `\uXXXX` in the Basic Multilingual Plane; beyond it the character itself (ECMA-262 without
    /// the `u` flag has no escape for it).
    private static func escaped(_ scalar: Unicode.Scalar) -> String {
        guard scalar.value <= 0xFFFF else { return String(Character(scalar)) }
        let hex = String(scalar.value, radix: 16, uppercase: true)
        return "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
    }
}
