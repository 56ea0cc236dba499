import Fluent

/// Outgoing webhooks: a user's endpoints, and one delivery per endpoint and event (the outbox,
/// written in the transaction that changes the job).
struct M0017CreateWebhooks: AsyncMigration {
    var name: String { "0017_create_webhooks" }

    func prepare(on database: any Database) async throws {
        try await database.schema("webhook_endpoints")
            .id()
            .field("user_id", .uuid, .required, .references("users", "id", onDelete: .cascade))
            .field("url", .string, .required)
            .field("events", .string, .required)
            .field("secret", .string, .required)
            .field("description", .string)
            .field("created_at", .datetime, .required)
            .create()
        try await database.schema("webhook_deliveries")
            .id()
            .field("endpoint_id", .uuid, .required, .references("webhook_endpoints", "id", onDelete: .cascade))
            .field("message_id", .string, .required)
            .field("event_key", .string, .required)
            .field("event_type", .string, .required)
            .field("job_id", .uuid)
            .field("payload", .string, .required)
            .field("state", .string, .required)
            .field("attempts", .int, .required)
            .field("next_attempt_at", .datetime)
            .field("lease_until", .datetime)
            .field("last_status_code", .int)
            .field("last_error", .string)
            .field("log", .string, .required)
            .field("created_at", .datetime, .required)
            .field("delivered_at", .datetime)
            .unique(on: "endpoint_id", "event_key")
            .create()
    }

    func revert(on database: any Database) async throws {
        try await database.schema("webhook_deliveries").delete()
        try await database.schema("webhook_endpoints").delete()
    }
}
