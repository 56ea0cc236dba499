import Fluent

struct M0006CreateDatasets: AsyncMigration {
    var name: String { "0006_create_datasets" }

    func prepare(on database: any Database) async throws {
        try await database.schema("datasets")
            .id()
            .field("user_id", .uuid, .required, .references("users", "id", onDelete: .cascade))
            .field("name", .string, .required)
            .field("default_caption", .string)
            .field("locked_by_job_id", .uuid)
            .field("file_count", .int, .required)
            .field("sample_count", .int, .required)
            .field("total_bytes", .int64, .required)
            .field("controls_per_sample", .int)
            .field("error_count", .int, .required)
            .field("warning_count", .int, .required)
            .field("created_at", .datetime, .required)
            .field("updated_at", .datetime, .required)
            .unique(on: "user_id", "name")
            .create()
        try await database.schema("dataset_files")
            .id()
            .field("dataset_id", .uuid, .required, .references("datasets", "id", onDelete: .cascade))
            .field("key", .string, .required)
            .field("role", .string, .required)
            .field("stem", .string, .required)
            .field("file_extension", .string, .required)
            .field("bytes", .int64)
            .field("sha256", .string)
            .field("uploaded_at", .datetime)
            .field("pending_bytes", .int64)
            .field("pending_sha256", .string)
            .field("signed_at", .datetime)
            .field("format", .string)
            .field("width", .int)
            .field("height", .int)
            .field("caption", .string)
            .unique(on: "dataset_id", "key")
            .create()
    }

    func revert(on database: any Database) async throws {
        try await database.schema("dataset_files").delete()
        try await database.schema("datasets").delete()
    }
}
