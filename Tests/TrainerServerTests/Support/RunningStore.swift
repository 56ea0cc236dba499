import AsyncHTTPClient
import Foundation
import ObjectStorage
import Testing
import TrainerCore
@testable import TrainerServer
import VaporTesting

/// A test app listening on a real loopback port, with the built-in store's endpoint and keys.
struct RunningStore {
    let app: Application
    let http: HTTPClient
    let endpoint: S3Endpoint
    let baseURL: URL
    /// The server's clock; it starts at the real time (SigV4 checks it against the client's).
    let clock: TestClock

    func client(secret: String? = nil, now: @escaping @Sendable () -> Date = { Date() }, retry: RetryPolicy = .none) -> S3Client {
        var endpoint = endpoint
        if let secret { endpoint.credentials.secretAccessKey = Secret(secret) }
        return S3Client(endpoint: endpoint, httpClient: http, retry: retry, now: now)
    }
}

/// Runs `test` with the app serving on a free port; the server's clock is the real time.
func withRunningStore(environment: [String: String] = [:], _ test: (RunningStore) async throws -> Void) async throws {
    let dataDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("gomodel-store-\(UUID().uuidString)").path
    let clock = TestClock(Date())
    try await withTestApp(environment: environment.merging(["GOMODEL_DATA_DIR": dataDirectory]) { _, new in new }, clock: clock) { app in
        try await app.server.start(address: .hostname("127.0.0.1", port: 0))
        let port = try #require(app.http.server.shared.localAddress?.port)
        let credentials = try StoreCredentials.loadOrCreate(dataDirectory: dataDirectory)
        let baseURL = URL(string: "http://127.0.0.1:\(port)")!
        let endpoint = S3Endpoint(url: baseURL.appendingPathComponent("s3"), bucket: "gomodel", region: "us-east-1", credentials: credentials)
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        var failure: (any Error)?
        do { try await test(RunningStore(app: app, http: http, endpoint: endpoint, baseURL: baseURL, clock: clock)) } catch { failure = error }
        try await http.shutdown()
        await app.server.shutdown()
        if let failure { throw failure }
    }
}
