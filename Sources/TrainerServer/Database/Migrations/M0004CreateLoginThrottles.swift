import Fluent

struct M0004CreateLoginThrottles: AsyncMigration {
    var name: String { "0004_create_login_throttles" }

    func prepare(on database: any Database) async throws {
        try await database.schema("login_throttles")
            .id()
            .field("subject", .string, .required)
            .field("failures", .int, .required)
            .field("window_start", .datetime, .required)
            .field("locked_until", .datetime)
            .unique(on: "subject")
            .create()
    }

    func revert(on database: any Database) async throws {
        try await database.schema("login_throttles").delete()
    }
}
