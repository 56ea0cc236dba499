import AsyncHTTPClient
import Foundation
import ObjectStorage
import Testing
import TrainerCore
import VaporTesting

@testable import TrainerServer

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
/// With `publicURL`, GOMODEL_PUBLIC_URL is the server's own address (RunPod mode needs one).
func withRunningStore(
    environment: [String: String] = [:], publicURL: Bool = false, jobTakeWait: Duration = .milliseconds(300), _ test: (RunningStore) async throws -> Void
) async throws {
    let dataDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("gomodel-store-\(UUID().uuidString)").path
    let clock = TestClock(Date())
    let chosenPort = publicURL ? try freePort() : 0
    var environment = environment.merging(["GOMODEL_DATA_DIR": dataDirectory]) { _, new in new }
    if publicURL { environment["GOMODEL_PUBLIC_URL"] = "http://127.0.0.1:\(chosenPort)" }
    try await withTestApp(environment: environment, clock: clock, jobTakeWait: jobTakeWait) { app in
        try await app.server.start(address: .hostname("127.0.0.1", port: chosenPort))
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

/// A loopback port nothing listens on right now.
func freePort() throws -> Int {
    let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(descriptor) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, length) == 0 && getsockname(descriptor, $0, &length) == 0 }
    }
    guard bound else { throw POSIXError(.EADDRNOTAVAIL) }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// A throwaway app on a loopback port, for servers that fail on purpose: `routes` sets it up,
/// `test` gets its base URL, and it is shut down afterwards whatever happens.
func withLoopbackServer(_ routes: (Application) throws -> Void, _ test: (URL) async throws -> Void) async throws {
    let app = try await Application.make(.testing)
    app.logger.logLevel = .critical
    var failure: (any Error)?
    do {
        try routes(app)
        try await app.server.start(address: .hostname("127.0.0.1", port: 0))
        let port = try #require(app.http.server.shared.localAddress?.port)
        try await test(URL(string: "http://127.0.0.1:\(port)")!)
    } catch { failure = error }
    await app.server.shutdown()
    try await app.asyncShutdown()
    if let failure { throw failure }
}
