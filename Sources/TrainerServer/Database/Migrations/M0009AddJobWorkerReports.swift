import Fluent
import FluentSQL
import SQLKit

/// What workers report beyond RunPod: how many of a job's attempts ended because their worker was
/// shut down (preempted; they do not count against the attempts a job gets when workers fail),
/// and the digest of the attempt's progress channel secret.
struct M0009AddJobWorkerReports: AsyncMigration {
    var name: String { "0009_add_job_worker_reports" }

    func prepare(on database: any Database) async throws {
        try await database.schema("jobs").field("preemptions", .int, .required, .sql(.default(0))).update()
        try await database.schema("jobs").field("progress_digest", .string).update()
    }

    func revert(on database: any Database) async throws {
        try await database.schema("jobs").deleteField("progress_digest").update()
        try await database.schema("jobs").deleteField("preemptions").update()
    }
}
