import Fluent

struct M0013CreateKnownDevices: AsyncMigration {
    var name: String { "0013_create_known_devices" }

    func prepare(on database: any Database) async throws {
        try await database.schema("known_devices")
            .id()
            .field("user_id", .uuid, .required, .references("users", "id", onDelete: .cascade))
            .field("token_hash", .string, .required)
            .field("created_at", .datetime, .required)
            .unique(on: "token_hash")
            .create()
    }

    func revert(on database: any Database) async throws {
        try await database.schema("known_devices").delete()
    }
}
