import Fluent

/// What a job's outputs weigh (for quotas and metrics), and when retention deleted them.
struct M0019JobOutputBytes: AsyncMigration {
    var name: String { "0019_job_output_bytes" }

    func prepare(on database: any Database) async throws {
        // One column per statement: SQLite adds one at a time.
        try await database.schema("jobs").field("output_bytes", .int64).update()
        try await database.schema("jobs").field("outputs_deleted_at", .datetime).update()
    }

    func revert(on database: any Database) async throws {
        try await database.schema("jobs").deleteField("outputs_deleted_at").update()
        try await database.schema("jobs").deleteField("output_bytes").update()
    }
}
