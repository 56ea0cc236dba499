import AsyncHTTPClient
import Foundation
import NIOConcurrencyHelpers
import ObjectStorage
import Testing
import TrainerCore
import VaporTesting

/// The client's retries, against a server that fails on purpose (a real S3 cannot be made to).
@Suite struct S3ClientRetryTests {
    /// Serves `/bucket/key`, answering each request with the next status in `statuses` (then 200).
    func withFlakyServer(statuses: [HTTPResponseStatus], _ test: (URL, NIOLockedValueBox<Int>, HTTPClient) async throws -> Void) async throws {
        let calls = NIOLockedValueBox(0)
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        var failure: (any Error)?
        do {
            try await withLoopbackServer({ app in
                app.on(.PUT, "bucket", "**", body: .collect(maxSize: "1mb")) { _ -> Response in
                    let index = calls.withLockedValue { count -> Int in
                        count += 1
                        return count - 1
                    }
                    let status = index < statuses.count ? statuses[index] : .ok
                    var headers: HTTPHeaders = ["ETag": "\"abc\""]
                    if status == .tooManyRequests { headers.add(name: "Retry-After", value: "0") }
                    let body = status == .ok ? "" : "<Error><Code>\(status == .badRequest ? "InvalidArgument" : "SlowDown")</Code><Message>try later</Message></Error>"
                    return Response(status: status, headers: headers, body: .init(string: body))
                }
            }) { url in try await test(url, calls, http) }
        } catch { failure = error }
        try await http.shutdown()
        if let failure { throw failure }
    }

    func client(_ url: URL, _ http: HTTPClient, attempts: Int = 4) -> S3Client {
        S3Client(
            endpoint: S3Endpoint(url: url, bucket: "bucket", region: "us-east-1", credentials: S3Credentials(accessKeyID: "k", secretAccessKey: Secret("s"))),
            httpClient: http, retry: RetryPolicy(maxAttempts: attempts, baseDelay: .milliseconds(1), maxDelay: .milliseconds(20))
        )
    }

    @Test func serverErrorsAndThrottlingAreRetried() async throws {
        try await withFlakyServer(statuses: [.serviceUnavailable, .tooManyRequests, .internalServerError]) { url, calls, http in
            let etag = try await client(url, http).putObject(key: "a.txt", bytes: ByteBuffer(string: "x"))
            #expect(etag == "abc")
            #expect(calls.withLockedValue { $0 } == 4)
        }
    }

    @Test func clientErrorsAreNotRetried() async throws {
        try await withFlakyServer(statuses: [.badRequest]) { url, calls, http in
            do {
                try await client(url, http).putObject(key: "a.txt", bytes: ByteBuffer(string: "x"))
                Issue.record("a 400 must fail")
            } catch let error as S3Error {
                #expect(error.status == 400)
                #expect(error.code == .other("InvalidArgument"))
            }
            #expect(calls.withLockedValue { $0 } == 1)
        }
    }

    @Test func retriesStopAfterTheLastAttempt() async throws {
        try await withFlakyServer(statuses: Array(repeating: .serviceUnavailable, count: 10)) { url, calls, http in
            await #expect(throws: S3Error.self) { try await client(url, http, attempts: 3).putObject(key: "a.txt", bytes: ByteBuffer(string: "x")) }
            #expect(calls.withLockedValue { $0 } == 3)
        }
    }

    @Test func refusedConnectionsAreRetriedThenReported() async throws {
        // AsyncHTTPClient keeps trying to connect until its connect timeout; keep that short here.
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(timeout: .init(connect: .milliseconds(200))))
        let start = ContinuousClock.now
        await #expect(throws: (any Error).self) {
            try await client(URL(string: "http://127.0.0.1:1")!, http, attempts: 3).putObject(key: "a.txt", bytes: ByteBuffer(string: "x"))
        }
        // Three tries of 200 ms and short waits; a loaded machine stretches that (6.7 s seen in CI
        // while builds ran), but the client's own 10 s connect timeout would make it over 30 s.
        #expect(ContinuousClock.now - start < .seconds(15))
        try await http.shutdown()
    }
}
