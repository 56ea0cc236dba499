import Fluent

struct M0014CreateDatasetImports: AsyncMigration {
    var name: String { "0014_create_dataset_imports" }

    func prepare(on database: any Database) async throws {
        try await database.schema("dataset_imports")
            .id()
            .field("dataset_id", .uuid, .required, .references("datasets", "id", onDelete: .cascade))
            .field("file_name", .string, .required)
            .field("size", .int64, .required)
            .field("state", .string, .required)
            .field("entries_total", .int, .required)
            .field("entries_done", .int, .required)
            .field("bytes_total", .int64, .required)
            .field("bytes_written", .int64, .required)
            .field("placed", .int, .required)
            .field("ignored", .int, .required)
            .field("error_code", .string)
            .field("error_message", .string)
            .field("created_at", .datetime, .required)
            .field("updated_at", .datetime, .required)
            .create()
    }

    func revert(on database: any Database) async throws {
        try await database.schema("dataset_imports").delete()
    }
}
