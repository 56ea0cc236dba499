import Fluent

struct M0008CreateWorkerKeys: AsyncMigration {
    var name: String { "0008_create_worker_keys" }

    func prepare(on database: any Database) async throws {
        try await database.schema("worker_keys")
            .id()
            .field("name", .string, .required)
            .field("key_hash", .string, .required)
            .field("created_at", .datetime, .required)
            .field("last_used_at", .datetime)
            .unique(on: "key_hash")
            .create()
    }

    func revert(on database: any Database) async throws {
        try await database.schema("worker_keys").delete()
    }
}
