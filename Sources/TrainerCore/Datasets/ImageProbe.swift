/// Reads an image's format and size from its first bytes (PNG, JPEG, WebP), without decoding it.
///
/// 64 KiB from the start of the file are enough for every case here except JPEGs with very large
/// metadata before their frame header; those report `needsMoreBytes`.
public enum ImageProbe {
    public static let headerBytes = 64 << 10

    public enum Format: String, Sendable, Equatable {
        case png, jpeg, webp
    }

    public enum Result: Sendable, Equatable {
        case image(Format, width: Int, height: Int)
        /// Starts like an image but its size was not within the bytes given.
        case needsMoreBytes(Format)
        case notAnImage
    }

    public static func inspect(_ bytes: [UInt8]) -> Result {
        if bytes.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) { return png(bytes) }
        if bytes.starts(with: [0xFF, 0xD8, 0xFF]) { return jpeg(bytes) }
        if bytes.count >= 12, bytes.starts(with: Array("RIFF".utf8)), Array(bytes[8..<12]) == Array("WEBP".utf8) { return webp(bytes) }
        return .notAnImage
    }

    private static func png(_ bytes: [UInt8]) -> Result {
        // The IHDR chunk comes first: length(4) "IHDR"(4) width(4) height(4).
        guard bytes.count >= 24, Array(bytes[12..<16]) == Array("IHDR".utf8) else {
            return bytes.count >= 24 ? .notAnImage : .needsMoreBytes(.png)
        }
        return .image(.png, width: bigEndian(bytes, 16, 4), height: bigEndian(bytes, 20, 4))
    }

    private static func jpeg(_ bytes: [UInt8]) -> Result {
        var index = 2
        while index + 4 <= bytes.count {
            guard bytes[index] == 0xFF else { return .notAnImage }
            let marker = bytes[index + 1]
            if marker == 0xFF {
                index += 1
                continue
            }  // fill byte
            if marker == 0xD8 || marker == 0x01 || (0xD0...0xD7).contains(marker) {
                index += 2
                continue
            }  // no length
            let length = bigEndian(bytes, index + 2, 2)
            guard length >= 2 else { return .notAnImage }
            // Start-of-frame markers carry the size: C0–CF except C4 (DHT), C8 (JPG) and CC (DAC).
            if (0xC0...0xCF).contains(marker), ![0xC4, 0xC8, 0xCC].contains(marker) {
                guard index + 9 <= bytes.count else { return .needsMoreBytes(.jpeg) }
                return .image(.jpeg, width: bigEndian(bytes, index + 7, 2), height: bigEndian(bytes, index + 5, 2))
            }
            if marker == 0xDA || marker == 0xD9 { return .notAnImage }  // scan data or end before any frame
            index += 2 + length
        }
        return .needsMoreBytes(.jpeg)
    }

    private static func webp(_ bytes: [UInt8]) -> Result {
        guard bytes.count >= 30 else { return .needsMoreBytes(.webp) }
        switch String(decoding: bytes[12..<16], as: UTF8.self) {
        case "VP8 ":
            // Key frame: start code 9D 01 2A at 23, then 14-bit width and height.
            guard Array(bytes[23..<26]) == [0x9D, 0x01, 0x2A] else { return .notAnImage }
            return .image(.webp, width: littleEndian(bytes, 26, 2) & 0x3FFF, height: littleEndian(bytes, 28, 2) & 0x3FFF)
        case "VP8L":
            guard bytes[20] == 0x2F else { return .notAnImage }
            let bits = littleEndian(bytes, 21, 4)
            return .image(.webp, width: (bits & 0x3FFF) + 1, height: ((bits >> 14) & 0x3FFF) + 1)
        case "VP8X":
            return .image(.webp, width: littleEndian(bytes, 24, 3) + 1, height: littleEndian(bytes, 27, 3) + 1)
        default:
            return .notAnImage
        }
    }

    private static func bigEndian(_ bytes: [UInt8], _ offset: Int, _ count: Int) -> Int {
        bytes[offset..<(offset + count)].reduce(0) { $0 << 8 | Int($1) }
    }

    private static func littleEndian(_ bytes: [UInt8], _ offset: Int, _ count: Int) -> Int {
        bytes[offset..<(offset + count)].reversed().reduce(0) { $0 << 8 | Int($1) }
    }
}
