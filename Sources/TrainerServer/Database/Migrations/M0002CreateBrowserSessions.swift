import Fluent

struct M0002CreateBrowserSessions: AsyncMigration {
    var name: String { "0002_create_browser_sessions" }

    func prepare(on database: any Database) async throws {
        try await database.schema("browser_sessions")
            .id()
            .field("user_id", .uuid, .required, .references("users", "id", onDelete: .cascade))
            .field("token_hash", .string, .required)
            .field("csrf_token", .string, .required)
            .field("created_at", .datetime, .required)
            .field("expires_at", .datetime, .required)
            .unique(on: "token_hash")
            .create()
    }

    func revert(on database: any Database) async throws {
        try await database.schema("browser_sessions").delete()
    }
}
