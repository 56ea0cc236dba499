import Fluent

struct M0007CreateJobs: AsyncMigration {
    var name: String { "0007_create_jobs" }

    func prepare(on database: any Database) async throws {
        try await database.schema("jobs")
            .id()
            .field("user_id", .uuid, .required, .references("users", "id", onDelete: .cascade))
            .field("dataset_id", .uuid, .required)
            .field("preset", .string, .required)
            .field("parameters", .string, .required)
            .field("job_config", .string, .required)
            .field("status", .string, .required)
            .field("runner_status", .string)
            .field("runpod_job_id", .string)
            .field("webhook_digest", .string)
            .field("attempt", .int, .required)
            .field("progress", .string)
            .field("artifacts", .string)
            .field("error", .string)
            .field("error_detail", .string)
            .field("created_at", .datetime, .required)
            .field("submitted_at", .datetime)
            .field("started_at", .datetime)
            .field("finished_at", .datetime)
            .field("updated_at", .datetime, .required)
            .field("submit_started_at", .datetime)
            .field("lease_owner", .string)
            .field("lease_until", .datetime)
            .field("next_poll_at", .datetime)
            .field("cancel_requested", .bool, .required)
            .unique(on: "webhook_digest")
            .create()
        try await database.schema("job_events")
            .id()
            .field("job_id", .uuid, .required, .references("jobs", "id", onDelete: .cascade))
            .field("at", .datetime, .required)
            .field("status", .string, .required)
            .field("message", .string, .required)
            .create()
    }

    func revert(on database: any Database) async throws {
        try await database.schema("job_events").delete()
        try await database.schema("jobs").delete()
    }
}
