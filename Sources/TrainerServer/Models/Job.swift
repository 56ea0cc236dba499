import Fluent
import Foundation
import TrainerCore

/// A training run of a dataset. `attempt` counts retries; every attempt writes to the same output
/// prefix, so a retry resumes from the last checkpoint.
final class Job: Model, @unchecked Sendable {
    static let schema = "jobs"

    @ID(key: .id) var id: UUID?
    @Parent(key: "user_id") var user: User
    @Field(key: "dataset_id") var datasetID: UUID
    @Field(key: "preset") var preset: String
    /// The parameters as given (JSON), for show and retry.
    @Field(key: "parameters") var parameters: String
    /// The complete ai-toolkit config sent to the worker (JSON).
    @Field(key: "job_config") var jobConfig: String
    @Field(key: "status") var status: JobStatus
    /// The runner's own status string as last seen (RunPod's, unknown ones included).
    @OptionalField(key: "runner_status") var runnerStatus: String?
    @OptionalField(key: "runpod_job_id") var runPodJobID: String?
    /// SHA-256 of the secret in this attempt's webhook URL (made at submission, never stored).
    @OptionalField(key: "webhook_digest") var webhookDigest: String?
    /// SHA-256 of the secret in this attempt's progress channel URL, given to its worker.
    @OptionalField(key: "progress_digest") var progressDigest: String?
    @Field(key: "attempt") var attempt: Int
    /// Attempts that ended because their worker was shut down mid-job (SIGTERM); not failures.
    @Field(key: "preemptions") var preemptions: Int
    /// Latest `JobProgress` (JSON); read it through `latestProgress`.
    @OptionalField(key: "progress") var progress: String?
    /// `[JobArtifact]` (JSON).
    @OptionalField(key: "artifacts") var artifacts: String?
    /// First line of the error, for people.
    @OptionalField(key: "error") var error: String?
    /// The whole error (the trainer log's tail).
    @OptionalField(key: "error_detail") var errorDetail: String?
    @Field(key: "created_at") var createdAt: Date
    @OptionalField(key: "submitted_at") var submittedAt: Date?
    @OptionalField(key: "started_at") var startedAt: Date?
    @OptionalField(key: "finished_at") var finishedAt: Date?
    @Field(key: "updated_at") var updatedAt: Date
    /// Set just before `/run` is sent; with no RunPod id afterwards it means the server stopped
    /// in between (see `JobRunner`).
    @OptionalField(key: "submit_started_at") var submitStartedAt: Date?
    /// Which server instance holds the job for submitting or polling, and until when.
    @OptionalField(key: "lease_owner") var leaseOwner: String?
    @OptionalField(key: "lease_until") var leaseUntil: Date?
    @OptionalField(key: "next_poll_at") var nextPollAt: Date?
    @Field(key: "cancel_requested") var cancelRequested: Bool
    /// The checkpoint its owner made the result (nil: the final LoRA).
    @OptionalField(key: "promoted_step") var promotedStep: Int?
    /// The dataset's files as this attempt trains them (`[RunRecord.DatasetFile]`, JSON), and
    /// their digest (`RunRecord.digestText`): taken when the job is made and at each retry.
    @OptionalField(key: "dataset_files") var datasetFiles: String?
    @OptionalField(key: "dataset_sha256") var datasetSHA256: String?
    /// The bytes of its artifacts (kept with them, for quotas and metrics).
    @OptionalField(key: "output_bytes") var outputBytes: Int64?
    /// When retention (`GOMODEL_RETENTION_DAYS`) deleted its outputs.
    @OptionalField(key: "outputs_deleted_at") var outputsDeletedAt: Date?

    init() {}

    /// The bucket prefix of its outputs (DESIGN §4).
    var outputPrefix: String { StorageKeys.outputPrefix(id!.uuidString) }
}

/// One transition of a job, with its time (DESIGN §6).
final class JobEvent: Model, @unchecked Sendable {
    static let schema = "job_events"

    @ID(key: .id) var id: UUID?
    @Parent(key: "job_id") var job: Job
    @Field(key: "at") var at: Date
    @Field(key: "status") var status: String
    @Field(key: "message") var message: String

    init() {}

    init(jobID: UUID, at: Date, status: String, message: String) {
        self.$job.id = jobID
        self.at = at
        self.status = status
        self.message = message
    }
}

extension Job {
    /// The stored progress, decoded (nil when none was reported yet).
    var latestProgress: JobProgress? {
        progress.flatMap { try? JSONDecoder().decode(JobProgress.self, from: Data($0.utf8)) }
    }

    /// The stored artifacts, decoded (empty when none were reported yet).
    var storedArtifacts: [JobArtifact] {
        artifacts.flatMap { try? JSONDecoder().decode([JobArtifact].self, from: Data($0.utf8)) } ?? []
    }
}

extension Job {
    /// Drafts edit instructions (`InstructionDraft`) rather than training.
    var isDraftJob: Bool { preset == InstructionDraft.jobPreset }
}
