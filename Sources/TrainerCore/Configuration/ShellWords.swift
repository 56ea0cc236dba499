/// Splits a command line into words the way a POSIX shell would for plain words and quotes
/// (no expansion): `python "my trainer.py" --flag` → `["python", "my trainer.py", "--flag"]`.
public enum ShellWords {
    public struct SplitError: Error, Equatable {
        public let reason: String
    }

    public static func split(_ line: String) -> Result<[String], SplitError> {
        var words: [String] = []
        var current = ""
        var inWord = false
        var quote: Character?
        var escaping = false
        for character in line {
            if escaping {
                current.append(character)
                escaping = false
                continue
            }
            switch (quote, character) {
            case (nil, "\\"), ("\"", "\\"):
                escaping = true
                inWord = true
            case (nil, "'"), (nil, "\""):
                quote = character
                inWord = true
            case (let open?, let c) where c == open:
                quote = nil
            case (nil, let c) where c.isWhitespace:
                if inWord { words.append(current) }
                current = ""
                inWord = false
            default:
                current.append(character)
                inWord = true
            }
        }
        if let quote { return .failure(SplitError(reason: "has an unclosed \(quote)")) }
        if escaping { return .failure(SplitError(reason: "ends with a lone \\")) }
        if inWord { words.append(current) }
        if words.isEmpty { return .failure(SplitError(reason: "is empty")) }
        return .success(words)
    }
}
