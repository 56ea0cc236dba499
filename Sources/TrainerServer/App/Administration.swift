import Fluent
import Vapor

/// Headless account setup for the CLI (`gomodel users create`, `gomodel tokens create`),
/// following the same rules as the API.
public struct Administration: Sendable {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    private let app: Application
    private let accounts: AccountService

    public init(app: Application, dependencies: ServerDependencies = .live) {
        self.app = app
        self.accounts = AccountService(now: dependencies.now, bcryptCost: dependencies.bcryptCost)
    }

    /// Creates an account; `admin: nil` makes it an admin only if it is the first.
    /// Returns whether the new account is an admin.
    public func createUser(email: String, password: String, admin: Bool?) async throws -> Bool {
        try await reportingFailures {
            try await accounts.createUser(email: email, password: password, admin: admin, on: app.db).isAdmin
        }
    }

    /// Creates an API token for an existing account and returns its value.
    public func createToken(email: String, name: String) async throws -> String {
        try await reportingFailures {
            guard let user = try await User.query(on: app.db).filter(\.$email == email.lowercased()).first() else {
                throw Failure(description: "No account has the e-mail address \(email); create it with `gomodel users create`.")
            }
            return try await accounts.issueToken(for: user, name: name, on: app.db).value
        }
    }

    /// Creates a key for a GPU worker of the built-in queue and returns its value (shown once).
    public func createWorkerKey(name: String) async throws -> String {
        let value = OpaqueToken.generate(prefix: "gmw_")
        try await WorkerKey(name: name, keyHash: OpaqueToken.digest(value), createdAt: Date()).create(on: app.db)
        return value
    }

    private func reportingFailures<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as APIError {
            throw Failure(description: error.message)
        }
    }
}
