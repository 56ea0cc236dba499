import Fluent
import SQLKit

/// How many of a job's attempts ended because their worker was shut down (preempted): they do not
/// count against the attempts a job gets when workers fail.
struct M0009AddJobPreemptions: AsyncMigration {
    var name: String { "0009_add_job_preemptions" }

    func prepare(on database: any Database) async throws {
        try await database.schema("jobs").field("preemptions", .int, .required, .sql(.default(0))).update()
    }

    func revert(on database: any Database) async throws {
        try await database.schema("jobs").deleteField("preemptions").update()
    }
}
