import Foundation
import Testing
import TrainerCore

@testable import ObjectStorage

/// One case of `Fixtures/*.json` (see `Fixtures/README.md` for where they come from).
struct SigningVector: Decodable, CustomTestStringConvertible, Sendable {
    struct Expected: Decodable, Sendable {
        let canonical_request: String
        let string_to_sign: String
        let authorization: String?
        let signature: String?
        let presigned_url: String?
    }

    let name: String
    let service: String
    let region: String
    let access_key: String
    let secret_key: String
    let date: String
    let mode: String
    let method: String
    let url: String?
    let path: String?
    let query: String?
    let headers: [[String]]
    let payload_hash: String?
    let session_token: String?
    let expires: Int?
    let expected: Expected

    var testDescription: String { name }

    var signer: SigV4Signer {
        SigV4Signer(credentials: S3Credentials(accessKeyID: access_key, secretAccessKey: Secret(secret_key)), region: region, service: service)
    }

    var signingDate: Date { SigV4Signer.date(fromTimestamp: date)! }
    var headerPairs: [(name: String, value: String)] { headers.map { ($0[0], $0[1]) } }

    static func load(_ file: String) -> [SigningVector] {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/\(file)")
        return try! JSONDecoder().decode([SigningVector].self, from: Data(contentsOf: url))
    }
}

@Suite struct SigV4Tests {
    static let awsSuite = SigningVector.load("aws-sigv4-testsuite.json")
    static let botocoreHeaderCases = SigningVector.load("botocore-s3-vectors.json").filter { $0.mode == "header" }
    static let botocorePresignCases = SigningVector.load("botocore-s3-vectors.json").filter { $0.mode == "presign" }

    @Test func fixturesAreLoaded() {
        #expect(Self.awsSuite.count >= 30)
        #expect(Self.botocoreHeaderCases.count >= 30)
        #expect(Self.botocorePresignCases.count >= 10)
    }

    /// AWS's published suite (service "service": paths are normalised, not S3's rules).
    @Test(arguments: awsSuite)
    func awsTestSuite(vector: SigningVector) {
        var headers = vector.headerPairs
        if let token = vector.session_token { headers.append(("X-Amz-Security-Token", token)) }
        let request = SigV4Signer.Request(method: vector.method, path: vector.path!, query: vector.query!, headers: headers)
        let signer = vector.signer
        let signedHeaders = SigV4Signer.signedHeaderNames(headers)
        let canonical = signer.canonicalRequest(request, signedHeaders: signedHeaders, payloadHash: vector.payload_hash!)
        #expect(canonical == vector.expected.canonical_request)
        #expect(signer.stringToSign(canonicalRequest: canonical, timestamp: vector.date) == vector.expected.string_to_sign)
        let signature = signer.signature(canonicalRequest: canonical, timestamp: vector.date)
        #expect(signer.authorization(signedHeaders: signedHeaders, signature: signature, timestamp: vector.date) == vector.expected.authorization)
    }

    /// What botocore signs for S3 (header mode), including the headers the signer adds itself.
    @Test(arguments: botocoreHeaderCases)
    func botocoreHeaderSigning(vector: SigningVector) throws {
        let url = try #require(URL(string: vector.url!))
        let added = vector.signer.signHeaders(method: vector.method, url: url, headers: vector.headerPairs, payloadHash: vector.payload_hash!, date: vector.signingDate)
        let authorization = added.first { $0.name == "authorization" }?.value
        #expect(authorization == vector.expected.authorization)
        let all = vector.headerPairs + added.filter { $0.name != "authorization" }
        let request = SigV4Signer.Request(method: vector.method, path: SigV4Signer.requestPath(url), query: url.query(percentEncoded: true) ?? "", headers: all)
        let canonical = vector.signer.canonicalRequest(request, signedHeaders: SigV4Signer.signedHeaderNames(all), payloadHash: vector.payload_hash!)
        #expect(canonical == vector.expected.canonical_request)
    }

    /// Presigned URLs as botocore makes them: same signature, same parameters.
    @Test(arguments: botocorePresignCases)
    func botocorePresigning(vector: SigningVector) throws {
        let url = try #require(URL(string: vector.url!))
        let presigned = vector.signer.presign(method: vector.method, url: url, headers: vector.headerPairs, expires: vector.expires!, date: vector.signingDate)
        let expected = try #require(URLComponents(string: vector.expected.presigned_url!))
        let actual = try #require(URLComponents(url: presigned, resolvingAgainstBaseURL: false))
        #expect(actual.percentEncodedPath == expected.percentEncodedPath)
        #expect(actual.host == expected.host)
        func parameters(_ components: URLComponents) -> [String: String] {
            Dictionary(
                uniqueKeysWithValues: (components.percentEncodedQuery ?? "").split(separator: "&").map { pair in
                    let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                    return (SigV4Encoding.decode(String(parts[0])), parts.count > 1 ? SigV4Encoding.decode(String(parts[1])) : "")
                })
        }
        #expect(parameters(actual) == parameters(expected))
        #expect(parameters(actual)["X-Amz-Signature"] == vector.expected.signature)
    }

    @Test func timestampsRoundTripWithoutCalendars() {
        let date = Date(timeIntervalSince1970: 1_796_000_000)
        let stamp = SigV4Signer.timestamp(date)
        #expect(stamp == "20261130T005320Z")
        #expect(SigV4Signer.date(fromTimestamp: stamp) == date)
        #expect(SigV4Signer.timestamp(Date(timeIntervalSince1970: 951_782_400)) == "20000229T000000Z")
        #expect(SigV4Signer.date(fromTimestamp: "20261329T000000Z") == nil)
        #expect(SigV4Signer.date(fromTimestamp: "2026-11-29") == nil)
    }

    @Test func encodingFollowsAWSRules() {
        #expect(SigV4Encoding.encode("a b+c~d/é", keepSlash: true) == "a%20b%2Bc~d/%C3%A9")
        #expect(SigV4Encoding.encode("a/b", keepSlash: false) == "a%2Fb")
        #expect(SigV4Encoding.decode("a%20b+c%2") == "a b+c%2")
        #expect(SigV4Signer.canonicalQuery("b=2&a=&a=1&uploads") == "a=&a=1&b=2&uploads=")
        #expect(SigV4Signer.canonicalQuery("prefix=a+b") == "prefix=a%2Bb")
    }
}

@Suite struct EndpointTests {
    let credentials = S3Credentials(accessKeyID: "k", secretAccessKey: Secret("s"))

    @Test func pathStyleKeepsABasePath() {
        let endpoint = S3Endpoint(url: URL(string: "http://127.0.0.1:8080/s3/")!, bucket: "gomodel", region: "us-east-1", credentials: credentials)
        #expect(endpoint.objectURL("a b/c+d.png").absoluteString == "http://127.0.0.1:8080/s3/gomodel/a%20b/c%2Bd.png")
        #expect(endpoint.objectURL(nil, query: "list-type=2").absoluteString == "http://127.0.0.1:8080/s3/gomodel?list-type=2")
    }

    @Test func virtualHostedPutsTheBucketInTheHost() {
        let endpoint = S3Endpoint(
            url: URL(string: "https://s3.us-east-1.amazonaws.com")!, bucket: "loras", region: "us-east-1", credentials: credentials, addressing: .virtualHosted)
        #expect(endpoint.objectURL("x/é.png").absoluteString == "https://loras.s3.us-east-1.amazonaws.com/x/%C3%A9.png")
    }

    @Test func downloadNamesHaveAnASCIIFallbackAndTheExactName() {
        #expect(
            ContentDisposition.attachment(filename: "my \"lora\" é.safetensors")
                == #"attachment; filename="my _lora_ _.safetensors"; filename*=UTF-8''my%20%22lora%22%20%C3%A9.safetensors"#)
    }
}

@Suite struct ByteRangeTests {
    @Test func rangesFollowRFC7233() throws {
        #expect(try ByteRange.parse("bytes=0-4", size: 10) == 0..<5)
        #expect(try ByteRange.parse("bytes=5-", size: 10) == 5..<10)
        #expect(try ByteRange.parse("bytes=-3", size: 10) == 7..<10)
        #expect(try ByteRange.parse("bytes=8-100", size: 10) == 8..<10)
        #expect(try ByteRange.parse("bytes=0-9223372036854775807", size: 10) == 0..<10)
        #expect(try ByteRange.parse("bytes=5-2", size: 10) == nil)
        #expect(try ByteRange.parse("bytes=0-1,3-4", size: 10) == nil)
        #expect(try ByteRange.parse("items=0-1", size: 10) == nil)
        #expect(throws: S3StoreError.invalidRange) { try ByteRange.parse("bytes=10-", size: 10) }
        #expect(throws: S3StoreError.invalidRange) { try ByteRange.parse("bytes=-0", size: 10) }
    }
}

@Suite struct HTTPDatesTests {
    @Test func formatsAndParsesBothFormats() {
        let date = Date(timeIntervalSince1970: 1_795_937_511.25)  // Sun, 29 Nov 2026 07:31:51.250 GMT
        #expect(HTTPDates.iso8601(date) == "2026-11-29T07:31:51.250Z")
        #expect(HTTPDates.rfc1123(date) == "Sun, 29 Nov 2026 07:31:51 GMT")
        #expect(HTTPDates.parseISO8601("2026-11-29T07:31:51.250Z") == date)
        #expect(HTTPDates.parseISO8601("2026-11-29T07:31:51Z") == Date(timeIntervalSince1970: 1_795_937_511))
        #expect(HTTPDates.parseRFC1123("Sun, 29 Nov 2026 07:31:51 GMT") == Date(timeIntervalSince1970: 1_795_937_511))
        #expect(HTTPDates.rfc1123(Date(timeIntervalSince1970: 0)) == "Thu, 01 Jan 1970 00:00:00 GMT")
        #expect(HTTPDates.rfc1123(Date(timeIntervalSince1970: 951_782_400)) == "Tue, 29 Feb 2000 00:00:00 GMT")
        #expect(HTTPDates.parseISO8601("yesterday") == nil)
        #expect(HTTPDates.parseRFC1123("Sun, 29 Foo 2026 07:31:51 GMT") == nil)
    }
}
