import Fluent
import TrainerCore
import Vapor

/// Headless account setup for the CLI (`gomodel users create`, `gomodel tokens create`),
/// following the same rules as the API.
public struct Administration: Sendable {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    private let app: Application
    private let accounts: AccountService
    private let workerKeys: WorkerKeyService

    public init(app: Application, dependencies: ServerDependencies = .live) {
        self.app = app
        self.accounts = AccountService(now: dependencies.now, bcryptCost: dependencies.bcryptCost)
        self.workerKeys = WorkerKeyService(now: dependencies.now)
    }

    /// Creates an account; `admin: nil` makes it an admin only if it is the first.
    /// Returns whether the new account is an admin.
    public func createUser(email: String, password: String, admin: Bool?) async throws -> Bool {
        try await accounts.createUser(email: email, password: password, admin: admin, on: app.db).isAdmin
    }

    /// Lifts the sign-in locks that failed passwords put on an account.
    public func unlock(email: String) async throws {
        try await accounts.unlock(email: email, on: app.db)
    }

    /// Creates an API token for an existing account and returns its value.
    public func createToken(email: String, name: String) async throws -> String {
        guard let user = try await User.query(on: app.db).filter(\.$email == email.lowercased()).first() else {
            throw Failure(description: "No account has the e-mail address \(email); create it with `gomodel users create`.")
        }
        return try await accounts.issueToken(for: user, name: name, on: app.db).value
    }

    /// Creates a key for a GPU worker of the built-in queue and returns its value (shown once).
    public func createWorkerKey(name: String) async throws -> String {
        try await workerKeys.create(name: name, on: app.db).value
    }

    /// Every worker key, newest first, with the jobs its workers hold (`gomodel workers list`).
    public func workerKeys() async throws -> [API.WorkerKey] {
        let running = try await workerKeys.runningJobs(on: app.db)
        return try await workerKeys.list(on: app.db).map { $0.shape(runningJobs: running[$0.id!] ?? 0) }
    }

    /// Revokes the worker key with this id or name; returns its name and how many jobs its workers
    /// held (they go back to the queue).
    public func revokeWorkerKey(_ reference: String) async throws -> (name: String, runningJobs: Int) {
        let key = try await workerKeys.find(reference, on: app.db)
        guard key.revokedAt == nil else { throw Failure(description: "The worker key '\(key.name)' was already revoked.") }
        let running = try await workerKeys.runningJobs(on: app.db)[key.id!] ?? 0
        try await workerKeys.revoke(key, on: app.db)
        return (key.name, running)
    }
}
