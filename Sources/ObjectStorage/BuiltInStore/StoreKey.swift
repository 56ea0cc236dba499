/// Object keys and where they live on disk.
///
/// Each key segment becomes one path component, percent-encoded so that any key maps to a safe
/// name inside the bucket folder, with a suffix that keeps objects (`.o`) and folders (`.d`) apart:
/// S3 allows both `a` and `a/b` as keys, which a plain mapping could not hold.
enum StoreKey {
    static let maximumBytes = 1024
    /// File names are limited to 255 bytes; leave room for the suffix.
    static let maximumSegmentBytes = 250

    /// The key's segments, or an error saying why the key is refused.
    static func segments(_ key: String) throws(S3StoreError) -> [String] {
        guard !key.isEmpty else { throw .invalidKey("The object key is empty.") }
        guard key.utf8.count <= maximumBytes else {
            throw S3StoreError(status: 400, code: "KeyTooLongError", message: "The object key is longer than \(maximumBytes) bytes.")
        }
        guard !key.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f }) else {
            throw .invalidKey("The object key contains a control character (such as NUL); rename the file.")
        }
        let segments = key.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        for segment in segments {
            if segment == "." || segment == ".." {
                throw .invalidKey("The object key contains a '\(segment)' segment; keys cannot step outside their folder.")
            }
            if encode(segment).utf8.count > maximumSegmentBytes {
                throw S3StoreError(status: 400, code: "KeyTooLongError", message: "A part of the object key between slashes is too long for the built-in store; shorten it.")
            }
        }
        return segments
    }

    /// The path of the object file relative to the bucket folder.
    static func relativePath(_ segments: [String]) -> String {
        (segments.dropLast().map { encode($0) + ".d" } + [encode(segments.last!) + ".o"]).joined(separator: "/")
    }

    static func encode(_ segment: String) -> String {
        var result = ""
        for byte in segment.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "~"):
                result.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                result += "%" + String(byte, radix: 16, uppercase: true).leftPadded(to: 2)
            }
        }
        return result
    }

    /// A directory entry back to (segment, isFolder), or nil for anything that is not ours.
    static func decode(entry name: String) -> (segment: String, isFolder: Bool)? {
        if name.hasSuffix(".o") { return (SigV4Encoding.decode(String(name.dropLast(2))), false) }
        if name.hasSuffix(".d") { return (SigV4Encoding.decode(String(name.dropLast(2))), true) }
        return nil
    }
}

extension String {
    func leftPadded(to length: Int) -> String {
        count >= length ? self : String(repeating: "0", count: length - count) + self
    }

    /// S3 orders keys by their UTF-8 bytes (Swift's `<` compares Unicode-normalised text).
    func utf8Precedes(_ other: String) -> Bool {
        utf8.lexicographicallyPrecedes(other.utf8)
    }
}
