import Fluent

/// What each attempt of a job ran on and produced (the reproducibility record, learned
/// estimates), and the dataset's content as each attempt trains it.
struct M0018CreateJobAttempts: AsyncMigration {
    var name: String { "0018_create_job_attempts" }

    func prepare(on database: any Database) async throws {
        try await database.schema("job_attempts")
            .id()
            .field("job_id", .uuid, .required, .references("jobs", "id", onDelete: .cascade))
            .field("attempt", .int, .required)
            .field("preset", .string, .required)
            .field("profile", .string, .required)
            .field("status", .string, .required)
            .field("runner_id", .string)
            .field("started_at", .datetime)
            .field("ended_at", .datetime)
            .field("environment", .string)
            .field("gpu_name", .string)
            .field("checkpoints", .string, .required)
            .field("resumed_from_step", .int)
            .field("steps_trained", .int)
            .field("seconds_per_step", .double)
            .field("overhead_seconds", .double)
            .field("dataset_sha256", .string)
            .unique(on: "job_id", "attempt")
            .create()
        // One column per statement: SQLite adds one at a time.
        try await database.schema("jobs").field("dataset_files", .string).update()
        try await database.schema("jobs").field("dataset_sha256", .string).update()
    }

    func revert(on database: any Database) async throws {
        try await database.schema("jobs").deleteField("dataset_sha256").update()
        try await database.schema("jobs").deleteField("dataset_files").update()
        try await database.schema("job_attempts").delete()
    }
}
