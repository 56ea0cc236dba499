import Fluent
import FluentPostgresDriver
import Foundation
import NIOConcurrencyHelpers
import Testing
import TrainerCore
import VaporTesting

@testable import TrainerServer

/// A clock the tests move by hand (session expiry, throttling windows).
final class TestClock: Sendable {
    private let current: NIOLockedValueBox<Date>

    init(_ start: Date = Date(timeIntervalSince1970: 1_800_000_000)) {
        current = NIOLockedValueBox(start)
    }

    var now: Date { current.withLockedValue { $0 } }

    func advance(by seconds: TimeInterval) {
        current.withLockedValue { $0.addTimeInterval(seconds) }
    }
}

/// Runs `test` against a fresh app on a database of its own: SQLite in a new temporary data folder
/// (or the `GOMODEL_DATA_DIR` given, which is removed afterwards too),
/// or, when `TEST_POSTGRES_URL` is set, a new PostgreSQL database that is dropped afterwards.
/// Each test is isolated, so the suites run in parallel on both databases.
func withTestApp(
    environment: [String: String] = [:],
    clock: TestClock = TestClock(),
    jobTakeWait: Duration = .milliseconds(300),
    waits: any Clock<Duration> = ContinuousClock(),
    _ test: (Application) async throws -> Void
) async throws {
    let dataDirectory =
        environment["GOMODEL_DATA_DIR"].map { URL(fileURLWithPath: $0) }
        ?? FileManager.default.temporaryDirectory.appendingPathComponent("gomodel-test-\(UUID().uuidString)")
    var environment = environment
    environment["GOMODEL_DATA_DIR"] = dataDirectory.path
    let postgres = try await PostgresTestDatabase.createIfConfigured()
    if let postgres { environment["DATABASE_URL"] = postgres.url }

    let app = try await Application.make(.testing)
    var failure: (any Error)?
    do {
        let configuration = try Configuration(environment: environment)
        try configure(
            app, configuration: configuration,
            dependencies: ServerDependencies(now: { clock.now }, clock: waits, bcryptCost: 4, runsBackgroundServices: false, jobTakeWait: jobTakeWait))
        try await app.autoMigrate()
        try await test(app)
    } catch {
        failure = error
    }
    try await app.asyncShutdown()
    try await postgres?.drop()
    try? FileManager.default.removeItem(at: dataDirectory)
    if let failure { throw failure }
}

/// Which database the server suite runs on, for test names and skips.
enum TestDatabase {
    static var isPostgres: Bool { ProcessInfo.processInfo.environment["TEST_POSTGRES_URL"] != nil }
}

/// One throwaway PostgreSQL database per test, made through an admin URL whose role may CREATE DATABASE.
struct PostgresTestDatabase {
    let name: String
    let url: String
    let adminURL: String

    static func createIfConfigured() async throws -> PostgresTestDatabase? {
        guard let adminURL = ProcessInfo.processInfo.environment["TEST_POSTGRES_URL"] else { return nil }
        let name = "gomodel_test_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        try await execute("CREATE DATABASE \(name)", adminURL: adminURL)
        var components = URLComponents(string: adminURL)!
        components.path = "/" + name
        return PostgresTestDatabase(name: name, url: components.string!, adminURL: adminURL)
    }

    func drop() async throws {
        try await Self.execute("DROP DATABASE IF EXISTS \(name) WITH (FORCE)", adminURL: adminURL)
    }

    private static func execute(_ sql: String, adminURL: String) async throws {
        let logger = Logger(label: "test-postgres")
        let configuration = try SQLPostgresConfiguration(url: adminURL).coreConfiguration
        let connection = try await PostgresConnection.connect(configuration: configuration, id: 1, logger: logger)
        do {
            try await connection.query(PostgresQuery(unsafeSQL: sql), logger: logger)
        } catch {
            try? await connection.close()
            throw error
        }
        try await connection.close()
    }
}
