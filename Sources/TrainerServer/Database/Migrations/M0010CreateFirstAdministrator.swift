import Fluent

/// One row at most: the account that became the first administrator by signing up first. The
/// primary key decides it, so concurrent first sign-ups make exactly one administrator.
struct M0010CreateFirstAdministrator: AsyncMigration {
    var name: String { "0010_create_first_administrator" }

    func prepare(on database: any Database) async throws {
        try await database.schema("first_administrator")
            .field("id", .int, .identifier(auto: false))
            .field("user_id", .uuid, .required)
            .create()
    }

    func revert(on database: any Database) async throws {
        try await database.schema("first_administrator").delete()
    }
}
