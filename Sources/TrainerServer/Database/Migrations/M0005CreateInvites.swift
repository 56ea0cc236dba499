import Fluent

struct M0005CreateInvites: AsyncMigration {
    var name: String { "0005_create_invites" }

    func prepare(on database: any Database) async throws {
        try await database.schema("invites")
            .id()
            .field("code_hash", .string, .required)
            .field("created_by", .uuid, .required, .references("users", "id", onDelete: .cascade))
            .field("created_at", .datetime, .required)
            .field("expires_at", .datetime, .required)
            .field("used_at", .datetime)
            .unique(on: "code_hash")
            .create()
    }

    func revert(on database: any Database) async throws {
        try await database.schema("invites").delete()
    }
}
