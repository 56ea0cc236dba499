import Foundation

/// Parser for `.env` files: `KEY=value` lines, `#` comments, an optional `export ` prefix,
/// and single- or double-quoted values (double quotes understand `\n`, `\"` and `\\`).
public enum DotEnv {
    public struct ParseError: Error, Equatable, CustomStringConvertible {
        public let line: Int
        public let reason: String

        public init(line: Int, reason: String) {
            self.line = line
            self.reason = reason
        }

        public var description: String { ".env line \(line): \(reason)" }
    }

    public static func parse(_ text: String) throws(ParseError) -> [String: String] {
        var values: [String: String] = [:]
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let lineNumber = index + 1
            var line = Substring(rawLine.hasSuffix("\r") ? rawLine.dropLast() : rawLine)
            line = line.drop(while: \.isWhitespace)
            if line.isEmpty || line.hasPrefix("#") { continue }
            if line.hasPrefix("export ") { line = line.dropFirst("export ".count).drop(while: \.isWhitespace) }
            guard let equals = line.firstIndex(of: "=") else {
                throw ParseError(line: lineNumber, reason: "expected KEY=value")
            }
            let key = String(line[..<equals]).trimmingWhitespace()
            guard isValidName(key) else {
                throw ParseError(line: lineNumber, reason: "'\(key)' is not a valid variable name (letters, digits and _)")
            }
            values[key] = try value(of: line[line.index(after: equals)...], line: lineNumber)
        }
        return values
    }

    private static func isValidName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, first == "_" || first.isASCIILetter else {
            return false
        }
        return name.unicodeScalars.allSatisfy { $0 == "_" || $0.isASCIILetter || ("0"..."9").contains($0) }
    }

    private static func value(of raw: Substring, line: Int) throws(ParseError) -> String {
        let trimmed = raw.drop(while: \.isWhitespace)
        guard let quote = trimmed.first, quote == "\"" || quote == "'" else {
            // Unquoted: an inline comment starts at " #".
            var value = trimmed
            if let comment = value.range(of: " #") { value = value[..<comment.lowerBound] }
            return String(value).trimmingWhitespace()
        }
        var result = ""
        var index = trimmed.index(after: trimmed.startIndex)
        while index < trimmed.endIndex {
            let character = trimmed[index]
            if character == quote {
                let rest = trimmed[trimmed.index(after: index)...].drop(while: \.isWhitespace)
                guard rest.isEmpty || rest.hasPrefix("#") else {
                    throw ParseError(line: line, reason: "unexpected text after the closing quote")
                }
                return result
            }
            if quote == "\"", character == "\\" {
                let next = trimmed.index(after: index)
                guard next < trimmed.endIndex else { break }
                switch trimmed[next] {
                case "n": result.append("\n")
                case "t": result.append("\t")
                default: result.append(trimmed[next])
                }
                index = trimmed.index(after: next)
                continue
            }
            result.append(character)
            index = trimmed.index(after: index)
        }
        throw ParseError(line: line, reason: "missing closing \(quote)")
    }
}

extension Unicode.Scalar {
    var isASCIILetter: Bool { ("a"..."z").contains(self) || ("A"..."Z").contains(self) }
}

extension StringProtocol {
    func trimmingWhitespace() -> String {
        String(drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed())
    }
}
