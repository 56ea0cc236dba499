import Crypto
import Foundation
import TrainerCore

/// An access key pair for SigV4.
public struct S3Credentials: Sendable {
    public var accessKeyID: String
    public var secretAccessKey: Secret

    public init(accessKeyID: String, secretAccessKey: Secret) {
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
    }
}

/// AWS Signature Version 4, as a pure value: no clock, no I/O. The date is always passed in, so
/// signatures are reproducible and testable against published vectors.
///
/// S3 rules (service `s3`) differ from other services: the path is encoded once and never
/// normalised; other services normalise `.`/`..` segments and encode the path a second time.
public struct SigV4Signer: Sendable {
    public static let algorithm = "AWS4-HMAC-SHA256"
    public static let unsignedPayload = "UNSIGNED-PAYLOAD"
    /// SHA-256 of the empty string.
    public static let emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

    public let credentials: S3Credentials
    public let region: String
    public let service: String

    public init(credentials: S3Credentials, region: String, service: String = "s3") {
        self.credentials = credentials
        self.region = region
        self.service = service
    }

    /// The parts of an HTTP request that the signature covers.
    public struct Request: Sendable {
        public var method: String
        /// The path as on the request line (percent-encoded as sent).
        public var path: String
        /// The raw query string without `?` (percent-encoded as sent), "" for none.
        public var query: String
        public var headers: [(name: String, value: String)]

        public init(method: String, path: String, query: String, headers: [(name: String, value: String)]) {
            self.method = method
            self.path = path
            self.query = query
            self.headers = headers
        }
    }

    // MARK: Signing

    /// Header signing: returns the headers to add (`host` if missing, `x-amz-date`,
    /// `x-amz-content-sha256`, `authorization`). Every header already in `headers` is signed.
    public func signHeaders(
        method: String, url: URL, headers: [(name: String, value: String)], payloadHash: String, date: Date
    ) -> [(name: String, value: String)] {
        let timestamp = Self.timestamp(date)
        var added: [(name: String, value: String)] = []
        if !headers.contains(where: { $0.name.lowercased() == "host" }) { added.append(("host", Self.hostHeader(url))) }
        added.append(("x-amz-date", timestamp))
        if service == "s3" { added.append(("x-amz-content-sha256", payloadHash)) }
        let all = headers + added
        let signedHeaders = Self.signedHeaderNames(all)
        let request = Request(method: method, path: Self.requestPath(url), query: url.query(percentEncoded: true) ?? "", headers: all)
        let canonical = canonicalRequest(request, signedHeaders: signedHeaders, payloadHash: payloadHash)
        let signature = signature(canonicalRequest: canonical, timestamp: timestamp)
        added.append(("authorization", authorization(signedHeaders: signedHeaders, signature: signature, timestamp: timestamp)))
        return added
    }

    /// A presigned URL valid for `expires` seconds. `headers` are signed too (besides `host`): a
    /// presigned PUT that signs `content-type` and `content-length` is only good for that type and size.
    public func presign(method: String, url: URL, headers: [(name: String, value: String)] = [], expires: Int, date: Date) -> URL {
        let timestamp = Self.timestamp(date)
        var all = headers
        if !all.contains(where: { $0.name.lowercased() == "host" }) { all.append(("host", Self.hostHeader(url))) }
        let signedHeaders = Self.signedHeaderNames(all)
        var query = url.query(percentEncoded: true) ?? ""
        let parameters = [
            ("X-Amz-Algorithm", Self.algorithm),
            ("X-Amz-Credential", "\(credentials.accessKeyID)/\(scope(timestamp))"),
            ("X-Amz-Date", timestamp),
            ("X-Amz-Expires", String(expires)),
            ("X-Amz-SignedHeaders", signedHeaders.joined(separator: ";")),
        ].map { "\($0)=\(SigV4Encoding.encode($1, keepSlash: false))" }.joined(separator: "&")
        query = query.isEmpty ? parameters : query + "&" + parameters
        let request = Request(method: method, path: Self.requestPath(url), query: query, headers: all)
        let canonical = canonicalRequest(request, signedHeaders: signedHeaders, payloadHash: Self.unsignedPayload)
        let signature = signature(canonicalRequest: canonical, timestamp: timestamp)
        var components = URLComponents(url: url, resolvingAgainstBaseURL: false)!
        components.percentEncodedQuery = query + "&X-Amz-Signature=" + signature
        return components.url!
    }

    // MARK: The steps, public for verification and tests

    public func canonicalRequest(_ request: Request, signedHeaders: [String], payloadHash: String) -> String {
        var lines = [request.method.uppercased(), canonicalURI(request.path), Self.canonicalQuery(request.query)]
        let grouped = Dictionary(grouping: request.headers, by: { $0.name.lowercased() })
        for name in signedHeaders {
            let values = (grouped[name] ?? []).map { Self.trimHeaderValue($0.value) }
            lines.append("\(name):\(values.joined(separator: ","))")
        }
        lines.append("")
        lines.append(signedHeaders.joined(separator: ";"))
        lines.append(payloadHash)
        return lines.joined(separator: "\n")
    }

    public func stringToSign(canonicalRequest: String, timestamp: String) -> String {
        [Self.algorithm, timestamp, scope(timestamp), Self.hex(SHA256.hash(data: Data(canonicalRequest.utf8)))].joined(separator: "\n")
    }

    public func signature(canonicalRequest: String, timestamp: String) -> String {
        let key = signingKey(day: String(timestamp.prefix(8)))
        let toSign = stringToSign(canonicalRequest: canonicalRequest, timestamp: timestamp)
        return Self.hex(HMAC<SHA256>.authenticationCode(for: Data(toSign.utf8), using: key))
    }

    public func authorization(signedHeaders: [String], signature: String, timestamp: String) -> String {
        "\(Self.algorithm) Credential=\(credentials.accessKeyID)/\(scope(timestamp)), SignedHeaders=\(signedHeaders.joined(separator: ";")), Signature=\(signature)"
    }

    /// `yyyyMMdd/region/service/aws4_request`.
    public func scope(_ timestamp: String) -> String {
        "\(timestamp.prefix(8))/\(region)/\(service)/aws4_request"
    }

    func signingKey(day: String) -> SymmetricKey {
        var key = SymmetricKey(data: Data(("AWS4" + credentials.secretAccessKey.value).utf8))
        for part in [day, region, service, "aws4_request"] {
            key = SymmetricKey(data: Data(HMAC<SHA256>.authenticationCode(for: Data(part.utf8), using: key)))
        }
        return key
    }

    func canonicalURI(_ rawPath: String) -> String {
        let path = rawPath.isEmpty ? "/" : rawPath
        if service == "s3" {
            // Decode what the client sent, then encode every byte outside the unreserved set.
            return SigV4Encoding.encode(SigV4Encoding.decode(path), keepSlash: true)
        }
        return SigV4Encoding.encode(Self.removeDotSegments(path), keepSlash: true)
    }

    // MARK: Helpers

    /// The query as a sorted list of encoded `name=value` pairs; `+` is a literal plus, not a space.
    public static func canonicalQuery(_ rawQuery: String) -> String {
        guard !rawQuery.isEmpty else { return "" }
        var pairs = SigV4Encoding.queryParameters(rawQuery).map {
            (name: SigV4Encoding.encode($0.name, keepSlash: false), value: SigV4Encoding.encode($0.value, keepSlash: false))
        }
        pairs.sort { $0.name == $1.name ? $0.value < $1.value : $0.name < $1.name }
        return pairs.map { "\($0.name)=\($0.value)" }.joined(separator: "&")
    }

    static func signedHeaderNames(_ headers: [(name: String, value: String)]) -> [String] {
        Array(Set(headers.map { $0.name.lowercased() })).sorted()
    }

    static func trimHeaderValue(_ value: String) -> String {
        value.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }).joined(separator: " ")
    }

    static func requestPath(_ url: URL) -> String {
        let path = url.path(percentEncoded: true)
        return path.isEmpty ? "/" : path
    }

    /// `host` or `host:port` when the port is not the scheme's default.
    public static func hostHeader(_ url: URL) -> String {
        let host = url.host(percentEncoded: false) ?? ""
        guard let port = url.port, !(url.scheme == "http" && port == 80), !(url.scheme == "https" && port == 443) else { return host }
        return "\(host):\(port)"
    }

    public static func timestamp(_ date: Date) -> String {
        let seconds = Int(date.timeIntervalSince1970.rounded(.down))
        let days = seconds.quotientAndRemainder(dividingBy: 86_400)
        let (year, month, day) = civilDate(daysSinceEpoch: days.quotient - (days.remainder < 0 ? 1 : 0))
        let secondOfDay = (days.remainder + 86_400) % 86_400
        return String(format: "%04d%02d%02dT%02d%02d%02dZ", year, month, day, secondOfDay / 3600, secondOfDay / 60 % 60, secondOfDay % 60)
    }

    /// Parses `yyyyMMdd'T'HHmmss'Z'`.
    public static func date(fromTimestamp text: String) -> Date? {
        let digits = Array(text.utf8)
        guard digits.count == 16, digits[8] == UInt8(ascii: "T"), digits[15] == UInt8(ascii: "Z") else { return nil }
        func number(_ range: Range<Int>) -> Int? { Int(String(decoding: digits[range], as: UTF8.self)) }
        guard let year = number(0..<4), let month = number(4..<6), let day = number(6..<8),
            let hour = number(9..<11), let minute = number(11..<13), let second = number(13..<15),
            (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61
        else { return nil }
        let days = daysSinceEpoch(year: year, month: month, day: day)
        return Date(timeIntervalSince1970: TimeInterval(days * 86_400 + hour * 3600 + minute * 60 + second))
    }

    // Howard Hinnant's civil-date algorithms: no Calendar, no locale, no time zone surprises.
    static func civilDate(daysSinceEpoch z0: Int) -> (Int, Int, Int) {
        let z = z0 + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }

    static func daysSinceEpoch(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    /// RFC 3986 dot-segment removal, plus collapsing empty segments (AWS's normalisation for
    /// services other than S3).
    static func removeDotSegments(_ path: String) -> String {
        var output: [Substring] = []
        for segment in path.split(separator: "/", omittingEmptySubsequences: true) {
            switch segment {
            case ".": continue
            case "..": _ = output.popLast()
            default: output.append(segment)
            }
        }
        let trailingSlash = path.hasSuffix("/") || path.hasSuffix("/.") || path.hasSuffix("/..")
        let joined = "/" + output.joined(separator: "/")
        return trailingSlash && !output.isEmpty ? joined + "/" : joined
    }

    public static func hex<D: Sequence>(_ bytes: D) -> String where D.Element == UInt8 {
        let digits = Array("0123456789abcdef".utf8)
        var result = [UInt8]()
        for byte in bytes {
            result.append(digits[Int(byte >> 4)])
            result.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: result, as: UTF8.self)
    }

    static func hex(_ digest: some Digest) -> String { hex(Array(digest)) }
    static func hex(_ code: HMAC<SHA256>.MAC) -> String { hex(Array(code)) }
}

/// SigV4's URI encoding: every byte outside `A-Z a-z 0-9 - _ . ~` becomes `%XX` (upper case).
public enum SigV4Encoding {
    public static func encode(_ text: String, keepSlash: Bool) -> String {
        var result = [UInt8]()
        result.reserveCapacity(text.utf8.count)
        let hexDigits = Array("0123456789ABCDEF".utf8)
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "~"):
                result.append(byte)
            case UInt8(ascii: "/") where keepSlash:
                result.append(byte)
            default:
                result.append(UInt8(ascii: "%"))
                result.append(hexDigits[Int(byte >> 4)])
                result.append(hexDigits[Int(byte & 0x0f)])
            }
        }
        return String(decoding: result, as: UTF8.self)
    }

    /// A raw query string as decoded (name, value) pairs in order; `a` alone is `a=""`, `+` stays `+`.
    public static func queryParameters(_ rawQuery: String) -> [(name: String, value: String)] {
        rawQuery.split(separator: "&").map { pair in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            return (decode(String(parts[0])), parts.count > 1 ? decode(String(parts[1])) : "")
        }
    }

    /// Percent-decoding that leaves malformed escapes as they are and `+` as `+`.
    public static func decode(_ text: String) -> String {
        guard text.contains("%") else { return text }
        var bytes = [UInt8]()
        let input = Array(text.utf8)
        var index = 0
        while index < input.count {
            if input[index] == UInt8(ascii: "%"), index + 2 < input.count,
                let high = hexValue(input[index + 1]), let low = hexValue(input[index + 2])
            {
                bytes.append(high << 4 | low)
                index += 3
            } else {
                bytes.append(input[index])
                index += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
