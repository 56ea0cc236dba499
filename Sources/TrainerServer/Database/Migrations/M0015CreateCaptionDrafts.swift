import Fluent

struct M0015CreateCaptionDrafts: AsyncMigration {
    var name: String { "0015_create_caption_drafts" }

    func prepare(on database: any Database) async throws {
        try await database.schema("caption_drafts")
            .id()
            .field("dataset_id", .uuid, .required, .references("datasets", "id", onDelete: .cascade))
            .field("stem", .string, .required)
            .field("text", .string, .required)
            .field("source", .string, .required)
            .field("created_at", .datetime, .required)
            .unique(on: "dataset_id", "stem")
            .create()
        try await database.schema("draft_runs")
            .id()
            .field("dataset_id", .uuid, .required, .references("datasets", "id", onDelete: .cascade))
            .field("mode", .string, .required)
            .field("job_id", .uuid)
            .field("state", .string, .required)
            .field("samples_total", .int, .required)
            .field("samples_done", .int, .required)
            .field("drafted", .int, .required)
            .field("error", .string)
            .field("created_at", .datetime, .required)
            .field("updated_at", .datetime, .required)
            .create()
    }

    func revert(on database: any Database) async throws {
        try await database.schema("draft_runs").delete()
        try await database.schema("caption_drafts").delete()
    }
}
