/// Characters that show as nothing, or change how the text around them shows: control characters,
/// format characters (bidirectional overrides such as U+202E, zero-width spaces and joiners, the
/// byte-order mark) and line or paragraph separators. A name or file name holding one can pass for
/// another ("invoice‮gnp.exe" shows as "invoiceexe.png"), so names people read refuse them.
public enum HiddenCharacters {
    public static func first(in text: String) -> Unicode.Scalar? {
        text.unicodeScalars.first(where: isHidden)
    }

    public static func isHidden(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.properties.generalCategory {
        case .control, .format, .lineSeparator, .paragraphSeparator: true
        default: false
        }
    }

    /// Every hidden character, as the body of a regex character class (for the OpenAPI document).
    public static let regexClassBody = VisibleName.ranges(where: isHidden)

    /// How to name one in a message: `U+202E`.
    public static func name(_ scalar: Unicode.Scalar) -> String {
        let hex = String(scalar.value, radix: 16, uppercase: true)
        return "U+" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
    }
}
