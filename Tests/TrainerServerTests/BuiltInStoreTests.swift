import AsyncHTTPClient
import Foundation
import NIOCore
import Testing
import TrainerCore
import VaporTesting

@testable import ObjectStorage
@testable import TrainerServer

/// The built-in store through our own S3 client, and the refusals it must make.
/// (boto3, the aws CLI and rclone are run against it by scripts/store-clients.)
@Suite struct BuiltInStoreTests {
    @Test func ourClientRoundTripsEveryOperation() async throws {
        try await withRunningStore { store in
            var client = store.client()
            client.multipartThreshold = 5 << 20
            client.partSize = 5 << 20

            try await client.putObject(key: "datasets/1/target/a b+é.png", bytes: ByteBuffer(string: "png bytes"), contentType: "image/png")
            let info = try #require(try await client.headObject(key: "datasets/1/target/a b+é.png"))
            #expect(info.size == 9)
            #expect(info.contentType == "image/png")
            #expect(String(buffer: try await client.getObjectBytes(key: "datasets/1/target/a b+é.png", range: 4...8)) == "bytes")

            let data = Data((0..<(11 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31) })
            let folder = FileManager.default.temporaryDirectory.appendingPathComponent(UUID().uuidString)
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            try data.write(to: folder.appendingPathComponent("big.bin"))
            let etag = try await client.putObject(key: "outputs/j/lora/big.bin", file: folder.appendingPathComponent("big.bin").path)
            #expect(etag.hasSuffix("-3"))
            try await client.getObject(key: "outputs/j/lora/big.bin", to: folder.appendingPathComponent("back.bin").path)
            #expect(try Data(contentsOf: folder.appendingPathComponent("back.bin")) == data)

            try await client.copyObject(from: "datasets/1/target/a b+é.png", to: "datasets/1/control_1/a b+é.png")
            for index in 0..<5 { try await client.putObject(key: "datasets/1/target/\(index).txt", bytes: ByteBuffer(string: "caption \(index)")) }

            let page = try await client.listObjects(prefix: "datasets/1/target/", maxKeys: 4)
            #expect(page.objects.map(\.key) == ["datasets/1/target/0.txt", "datasets/1/target/1.txt", "datasets/1/target/2.txt", "datasets/1/target/3.txt"])
            let rest = try await client.listObjects(prefix: "datasets/1/target/", continuationToken: page.nextContinuationToken, maxKeys: 4)
            #expect(rest.objects.map(\.key) == ["datasets/1/target/4.txt", "datasets/1/target/a b+é.png"])
            #expect(rest.nextContinuationToken == nil)
            let top = try await client.listObjects(prefix: "datasets/1/", delimiter: "/")
            #expect(top.commonPrefixes == ["datasets/1/control_1/", "datasets/1/target/"])
            #expect(try await client.listAllObjects().count == 8)

            try await client.deleteObject(key: "datasets/1/control_1/a b+é.png")
            #expect(try await client.headObject(key: "datasets/1/control_1/a b+é.png") == nil)
            #expect(try await client.listObjects(prefix: "datasets/1/", delimiter: "/").commonPrefixes == ["datasets/1/target/"])
        }
    }

    @Test(arguments: ["a/../b.png", "../escape.png", "a/./b.png", "nul\u{0}key.png", "tab\tkey.png"])
    func unsafeKeysAreRefused(key: String) async throws {
        try await withRunningStore { store in
            do {
                try await store.client().putObject(key: key, bytes: ByteBuffer(string: "x"))
                Issue.record("\(key) was accepted")
            } catch let error as S3Error {
                #expect(error.status == 400)
                #expect(error.code == .other("InvalidArgument"))
            }
        }
    }

    /// S3's and R2's conditional write (`If-None-Match: *`): of writers racing for one key exactly
    /// one creates it; the others get 412 and the object is the winner's, whole.
    @Test func aConditionalPutCreatesAKeyOnceAmongRacingWriters() async throws {
        try await withRunningStore { store in
            let client = store.client(retry: .none)
            let outcomes = try await withThrowingTaskGroup(of: (Int, Bool).self) { group in
                for writer in 0..<8 {
                    group.addTask {
                        do {
                            try await client.putObject(key: "claims/attempt-1.json", bytes: ByteBuffer(string: "writer \(writer)"), onlyIfAbsent: true)
                            return (writer, true)
                        } catch let error as S3Error where error.code == .preconditionFailed {
                            return (writer, false)
                        }
                    }
                }
                return try await group.reduce(into: [(Int, Bool)]()) { $0.append($1) }
            }
            let winners = outcomes.filter(\.1).map(\.0)
            #expect(winners.count == 1, "\(outcomes)")
            let stored = String(buffer: try await client.getObjectBytes(key: "claims/attempt-1.json"))
            #expect(stored == "writer \(winners.first ?? -1)")
            // A plain PUT still replaces it.
            try await client.putObject(key: "claims/attempt-1.json", bytes: ByteBuffer(string: "replaced"))
            #expect(String(buffer: try await client.getObjectBytes(key: "claims/attempt-1.json")) == "replaced")
        }
    }

    @Test func aWrongSecretIsRefusedWithSignatureDoesNotMatch() async throws {
        try await withRunningStore { store in
            do {
                try await store.client(secret: "wrong-secret").putObject(key: "x.txt", bytes: ByteBuffer(string: "x"))
                Issue.record("a wrong secret was accepted")
            } catch let error as S3Error {
                #expect(error.status == 403)
                #expect(error.code == .signatureDoesNotMatch)
            }
            #expect(try await store.client().headObject(key: "x.txt") == nil)
        }
    }

    @Test func unsignedRequestsAreRefused() async throws {
        try await withRunningStore { store in
            let response = try await store.http.execute(HTTPClientRequest(url: store.baseURL.absoluteString + "/s3/gomodel/x.txt"), timeout: .seconds(10))
            #expect(response.status == .forbidden)
            let body = String(buffer: try await response.body.collect(upTo: 1 << 16))
            #expect(body.contains("<Code>AccessDenied</Code>"))
        }
    }

    @Test func presignedURLsWorkUntilTheyExpire() async throws {
        try await withRunningStore { store in
            let client = store.client()
            try await client.putObject(key: "lora/final.safetensors", bytes: ByteBuffer(string: "weights"))
            let fresh = client.presignedGet(key: "lora/final.safetensors", downloadName: "my lora.safetensors")
            let ok = try await store.http.execute(HTTPClientRequest(url: fresh.url.absoluteString), timeout: .seconds(10))
            #expect(ok.status == .ok)
            #expect(ok.headers.first(name: "content-disposition")?.contains("my lora.safetensors") == true)
            #expect(String(buffer: try await ok.body.collect(upTo: 1024)) == "weights")

            let old = store.client(now: { Date().addingTimeInterval(-3600) }).presignedGet(key: "lora/final.safetensors", expires: 60)
            let expired = try await store.http.execute(HTTPClientRequest(url: old.url.absoluteString), timeout: .seconds(10))
            #expect(expired.status == .forbidden)
            #expect(String(buffer: try await expired.body.collect(upTo: 1 << 16)).contains("Request has expired"))
        }
    }

    @Test func aPresignedPutIsBoundToItsSizeAndType() async throws {
        try await withRunningStore { store in
            let put = store.client().presignedPut(key: "datasets/1/target/a.png", contentType: "image/png", contentLength: 4)
            func send(_ body: String, contentType: String) async throws -> HTTPClientResponse {
                var request = HTTPClientRequest(url: put.url.absoluteString)
                request.method = .PUT
                request.headers.add(name: "content-type", value: contentType)
                request.body = .bytes(ByteBuffer(string: body))
                return try await store.http.execute(request, timeout: .seconds(10))
            }
            let tooBig = try await send("12345", contentType: "image/png")
            #expect(tooBig.status == .forbidden)
            let otherType = try await send("1234", contentType: "text/html")
            #expect(otherType.status == .forbidden)
            #expect(try await store.client().headObject(key: "datasets/1/target/a.png") == nil)
            let exact = try await send("1234", contentType: "image/png")
            #expect(exact.status == .ok)
            #expect(try await store.client().headObject(key: "datasets/1/target/a.png")?.size == 4)
        }
    }

    @Test func aPresignedPutCannotBeTurnedIntoACopyOrCarryUnsignedMetadata() async throws {
        try await withRunningStore { store in
            try await store.client().putObject(key: "datasets/victim/target/a.txt", bytes: ByteBuffer(string: "secret caption"))
            let put = store.client().presignedPut(key: "datasets/attacker/target/x.txt", contentType: "text/plain", contentLength: 0)
            for (name, value) in [("x-amz-copy-source", "/gomodel/datasets/victim/target/a.txt"), ("x-amz-meta-sha256", "0000")] {
                var request = HTTPClientRequest(url: put.url.absoluteString)
                request.method = .PUT
                request.headers.add(name: "content-type", value: "text/plain")
                request.headers.add(name: name, value: value)
                let response = try await store.http.execute(request, timeout: .seconds(10))
                #expect(response.status == .forbidden, "\(name)")
                #expect(String(buffer: try await response.body.collect(upTo: 1 << 16)).contains("\(name) must be signed"))
            }
            #expect(try await store.client().headObject(key: "datasets/attacker/target/x.txt") == nil)
        }
    }

    @Test func aBodyThatDoesNotMatchItsSignedHashIsRefused() async throws {
        try await withRunningStore { store in
            let url = store.endpoint.objectURL("tampered.txt")
            let signer = SigV4Signer(credentials: store.endpoint.credentials, region: "us-east-1")
            let claimed = SigV4Signer.hex(Array("the signed body".utf8).sha256)
            var request = HTTPClientRequest(url: url.absoluteString)
            request.method = .PUT
            for (name, value) in signer.signHeaders(method: "PUT", url: url, headers: [], payloadHash: claimed, date: Date()) where name != "host" {
                request.headers.add(name: name, value: value)
            }
            request.body = .bytes(ByteBuffer(string: "a different body"))
            let response = try await store.http.execute(request, timeout: .seconds(10))
            #expect(response.status == .badRequest)
            #expect(String(buffer: try await response.body.collect(upTo: 1 << 16)).contains("XAmzContentSHA256Mismatch"))
            #expect(try await store.client().headObject(key: "tampered.txt") == nil)
        }
    }

    @Test func aTruncatedUploadLeavesNoObject() async throws {
        try await withRunningStore { store in
            // Announce 1 MiB, send half, then drop the connection.
            let url = store.endpoint.objectURL("datasets/1/target/truncated.png")
            let signer = SigV4Signer(credentials: store.endpoint.credentials, region: "us-east-1")
            var request = HTTPClientRequest(url: url.absoluteString)
            request.method = .PUT
            for (name, value) in signer.signHeaders(method: "PUT", url: url, headers: [], payloadHash: SigV4Signer.unsignedPayload, date: Date()) where name != "host" {
                request.headers.add(name: name, value: value)
            }
            struct Dropped: Error {}
            let half = AsyncThrowingStream<ByteBuffer, any Error> { continuation in
                continuation.yield(ByteBuffer(repeating: 7, count: 512 << 10))
                continuation.finish(throwing: Dropped())
            }
            request.body = .stream(half, length: .known(Int64(1 << 20)))
            _ = try? await store.http.execute(request, timeout: .seconds(10))
            // Until the server has finished with it (its metrics count a request when it ends).
            try await JobRestartTests.waitFor("the server to end the upload") {
                try await store.app.testing().sendRequest(.GET, "/metrics").body.string.contains(#"http_requests_total{method="PUT",route="/s3/**""#)
            }
            #expect(try await store.client().headObject(key: "datasets/1/target/truncated.png") == nil)
            #expect(try await store.client().listAllObjects().isEmpty)
        }
    }

    @Test func aHugeRangeEndIsClampedNotACrash() async throws {
        try await withRunningStore { store in
            let client = store.client()
            try await client.putObject(key: "r.txt", bytes: ByteBuffer(string: "0123456789"))
            #expect(String(buffer: try await client.getObjectBytes(key: "r.txt", range: 2...Int64.max)) == "23456789")
            await #expect(throws: S3Error.self) { try await client.getObjectBytes(key: "r.txt", range: 10...20) }
            #expect(try await client.headObject(key: "r.txt")?.size == 10, "the server is still up")
        }
    }

    /// Sends a header-signed request the S3 client has no method for.
    func signedRequest(
        _ store: RunningStore, _ method: String, key: String, query: String = "", headers: [(String, String)] = [], signedHeaders: [(String, String)] = [], body: String = ""
    ) async throws -> HTTPClientResponse {
        let url = store.endpoint.objectURL(key, query: query)
        let signer = SigV4Signer(credentials: store.endpoint.credentials, region: "us-east-1")
        var request = HTTPClientRequest(url: url.absoluteString)
        request.method = .init(rawValue: method)
        let payload = SigV4Signer.hex(Array(body.utf8).sha256)
        for (name, value) in signedHeaders + signer.signHeaders(method: method, url: url, headers: signedHeaders, payloadHash: payload, date: Date()) where name != "host" {
            request.headers.add(name: name, value: value)
        }
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        request.body = .bytes(ByteBuffer(string: body))
        return try await store.http.execute(request, timeout: .seconds(10))
    }

    @Test func unimplementedSubResourcesNeverTouchTheObject() async throws {
        try await withRunningStore { store in
            try await store.client().putObject(key: "keep.txt", bytes: ByteBuffer(string: "keep me"))
            let tagging = try await signedRequest(store, "PUT", key: "keep.txt", query: "tagging=", body: "<Tagging/>")
            #expect(tagging.status == .notImplemented)
            let deleteTags = try await signedRequest(store, "DELETE", key: "keep.txt", query: "tagging=")
            #expect(deleteTags.status == .notImplemented)
            #expect(String(buffer: try await store.client().getObjectBytes(key: "keep.txt")) == "keep me")
        }
    }

    @Test func unsignedAmzHeadersAreRefused() async throws {
        try await withRunningStore { store in
            try await store.client().putObject(key: "source.txt", bytes: ByteBuffer(string: "secret source"))
            let response = try await signedRequest(store, "PUT", key: "copy.txt", headers: [("x-amz-copy-source", "/gomodel/source.txt")])
            #expect(response.status == .forbidden)
            #expect(try await store.client().headObject(key: "copy.txt") == nil)
        }
    }

    @Test func listingPrefixesCompareBytesNotUnicodeEquivalence() async throws {
        try await withRunningStore { store in
            let client = store.client()
            let decomposed = "e\u{301}tude.png"
            let precomposed = "\u{e9}tude.png"
            try await client.putObject(key: decomposed, bytes: ByteBuffer(string: "d"))
            try await client.putObject(key: precomposed, bytes: ByteBuffer(string: "p"))
            #expect(try await client.listObjects(prefix: "e").objects.map(\.key) == [decomposed])
            #expect(try await client.listObjects(prefix: "\u{e9}").objects.map(\.key) == [precomposed])
            #expect(try await client.listAllObjects().map(\.key) == [decomposed, precomposed], "UTF-8 byte order")
        }
    }

    /// A streamed upload in aws-chunked framing with signed chunks, as SDKs send it; the chunk
    /// signatures are chained from the seed signature (computed here from the spec, by hand).
    @Test func signedAwsChunkedUploadsAreDecodedAndChecked() async throws {
        try await withRunningStore { store in
            let chunks = [String(repeating: "a", count: 70_000), "tail", ""]
            func upload(key: String, tamper: Bool) async throws -> HTTPClientResponse {
                let url = store.endpoint.objectURL(key)
                let signer = SigV4Signer(credentials: store.endpoint.credentials, region: "us-east-1")
                let date = Date()
                let timestamp = SigV4Signer.timestamp(date)
                let decoded = chunks.reduce(0) { $0 + $1.utf8.count }
                let headers = [("content-encoding", "aws-chunked"), ("x-amz-decoded-content-length", String(decoded))]
                let signed = signer.signHeaders(method: "PUT", url: url, headers: headers, payloadHash: "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", date: date)
                let authorization = signed.first { $0.name == "authorization" }!.value
                var previous = String(authorization.split(separator: "=").last!)
                let key = signer.signingKey(day: String(timestamp.prefix(8)))
                var body = ""
                for (index, chunk) in chunks.enumerated() {
                    let toSign = [
                        "AWS4-HMAC-SHA256-PAYLOAD", timestamp, signer.scope(timestamp), previous, SigV4Signer.emptyPayloadHash,
                        SigV4Signer.hex(Array(chunk.utf8).sha256),
                    ].joined(separator: "\n")
                    var signature = SigV4Signer.hex(Array(HMAC<SHA256>.authenticationCode(for: Data(toSign.utf8), using: key)))
                    previous = signature
                    if tamper, index == 1 { signature = String(repeating: "0", count: 64) }
                    body += String(chunk.utf8.count, radix: 16) + ";chunk-signature=" + signature + "\r\n" + chunk + "\r\n"
                }
                body += "\r\n"
                var request = HTTPClientRequest(url: url.absoluteString)
                request.method = .PUT
                for (name, value) in headers + signed where name != "host" { request.headers.add(name: name, value: value) }
                request.body = .bytes(ByteBuffer(string: body))
                return try await store.http.execute(request, timeout: .seconds(10))
            }
            let accepted = try await upload(key: "chunked.txt", tamper: false)
            #expect(accepted.status == .ok)
            let stored = try await store.client().getObjectBytes(key: "chunked.txt")
            #expect(String(buffer: stored) == chunks.joined())
            let refused = try await upload(key: "tampered-chunk.txt", tamper: true)
            #expect(refused.status == .forbidden)
            let tampered = try await store.client().headObject(key: "tampered-chunk.txt")
            #expect(tampered == nil)
        }
    }

    @Test func otherBucketsDoNotExist() async throws {
        try await withRunningStore { store in
            var endpoint = store.endpoint
            endpoint.bucket = "someone-else"
            let client = S3Client(endpoint: endpoint, httpClient: store.http, retry: .none)
            do {
                _ = try await client.listObjects()
                Issue.record("another bucket was listed")
            } catch let error as S3Error {
                #expect(error.code == .noSuchBucket)
            }
        }
    }
}

extension Array where Element == UInt8 {
    var sha256: [UInt8] { Array(SHA256.hash(data: self)) }
}
