import Fluent

/// A job's result may be one of its checkpoints, promoted by its owner.
struct M0016JobPromotedStep: AsyncMigration {
    var name: String { "0016_job_promoted_step" }

    func prepare(on database: any Database) async throws {
        try await database.schema("jobs").field("promoted_step", .int).update()
    }

    func revert(on database: any Database) async throws {
        try await database.schema("jobs").deleteField("promoted_step").update()
    }
}
