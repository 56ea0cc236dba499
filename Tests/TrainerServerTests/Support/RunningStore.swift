import AsyncHTTPClient
import Foundation
import NIOCore
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

/// Runs `test` with the app serving on a port the system chose; the server's clock starts at the
/// real time and moves only when a test advances it (`store.clock`).
/// With `publicURL`, GOMODEL_PUBLIC_URL is the server's own address (RunPod mode needs one): the
/// configuration needs it before the server binds, so a free port is picked first, and picked
/// again if another test took it meanwhile.
func withRunningStore(
    environment: [String: String] = [:], publicURL: Bool = false, jobTakeWait: Duration = .milliseconds(300), waits: any Clock<Duration> = ContinuousClock(),
    _ test: (RunningStore) async throws -> Void
) async throws {
    for attempt in 1...5 {
        var bound = false
        do {
            try await withRunningStore(
                environment: environment, port: publicURL ? try freePort() : nil, jobTakeWait: jobTakeWait, waits: waits, bound: { bound = true }, test)
            return
        } catch let error as IOError where error.errnoCode == EADDRINUSE && !bound && attempt < 5 {
            continue
        }
    }
}

private func withRunningStore(
    environment: [String: String], port chosenPort: Int?, jobTakeWait: Duration, waits: any Clock<Duration>, bound: () -> Void,
    _ test: (RunningStore) async throws -> Void
) async throws {
    let dataDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("gomodel-store-\(UUID().uuidString)").path
    let clock = TestClock(Date())
    var environment = environment.merging(["GOMODEL_DATA_DIR": dataDirectory]) { _, new in new }
    if let chosenPort { environment["GOMODEL_PUBLIC_URL"] = "http://127.0.0.1:\(chosenPort)" }
    try await withTestApp(environment: environment, clock: clock, jobTakeWait: jobTakeWait, waits: waits) { app in
        try await app.server.start(address: .hostname("127.0.0.1", port: chosenPort ?? 0))
        bound()
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
    let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
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
