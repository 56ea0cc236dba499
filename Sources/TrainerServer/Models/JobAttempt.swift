import Fluent
import Foundation
import TrainerCore

/// One attempt of a job as its reproducibility record keeps it: where it ran (the worker's
/// environment report), what it saved, how fast it trained, and the dataset it read.
final class JobAttempt: Model, @unchecked Sendable {
    static let schema = "job_attempts"

    @ID(key: .id) var id: UUID?
    @Parent(key: "job_id") var job: Job
    @Field(key: "attempt") var attempt: Int
    @Field(key: "preset") var preset: String
    @Field(key: "profile") var profile: String
    /// The job's status for this attempt, or `interrupted` (its worker was shut down or lost, and
    /// the job was queued again as the next attempt).
    @Field(key: "status") var status: String
    @OptionalField(key: "runner_id") var runnerID: String?
    @OptionalField(key: "started_at") var startedAt: Date?
    @OptionalField(key: "ended_at") var endedAt: Date?
    /// The worker's `environment` report (JSON).
    @OptionalField(key: "environment") var environment: String?
    @OptionalField(key: "gpu_name") var gpuName: String?
    /// The checkpoint steps it saved (JSON array).
    @Field(key: "checkpoints") var checkpoints: String
    @OptionalField(key: "resumed_from_step") var resumedFromStep: Int?
    @OptionalField(key: "steps_trained") var stepsTrained: Int?
    @OptionalField(key: "seconds_per_step") var secondsPerStep: Double?
    @OptionalField(key: "overhead_seconds") var overheadSeconds: Double?
    @OptionalField(key: "dataset_sha256") var datasetSHA256: String?

    static let interrupted = "interrupted"

    init() {}

    var checkpointSteps: [Int] { (try? JSONDecoder().decode([Int].self, from: Data(checkpoints.utf8))) ?? [] }

    /// Records what a change of `job` (from `previous`, with the runner's `output`) says about
    /// its attempt; called in the transaction that saves the change.
    static func record(_ job: Job, from previous: JobStatus, output: JSONValue?, at time: Date, on db: any Database) async throws {
        guard !job.isDraftJob else { return }
        // Queued again by this change (its worker was shut down or lost): the attempt before ended.
        let requeued = job.status == .queued && previous != .queued
        guard job.status != .queued || requeued else { return }
        let number = requeued ? job.attempt - 1 : job.attempt
        let row =
            try await JobAttempt.query(on: db).filter(\.$job.$id == job.id!).filter(\.$attempt == number).first() ?? JobAttempt(of: job, attempt: number)
        row.status = requeued ? interrupted : job.status.rawValue
        if !requeued, let runner = job.runPodJobID { row.runnerID = runner }
        if job.status == .running, previous != .running { row.startedAt = row.startedAt ?? time }
        if requeued || job.status.isFinal { row.endedAt = row.endedAt ?? time }
        if let output {
            if let environment = output["environment"], case .object = environment {
                row.environment = environment.rendered()
                row.gpuName = environment["gpu_name"]?.stringValue.map { String($0.prefix(200)) }
            }
            let saved = JobArtifact.list(in: output, prefix: job.outputPrefix).filter { $0.kind == .checkpoint }.compactMap(\.step)
            if !saved.isEmpty { row.checkpoints = JSONValue.array(Set(row.checkpointSteps + saved).sorted().map { .int($0) }).rendered() }
            if let resumed = output["resumed_from_step"]?.numberValue { row.resumedFromStep = Int(resumed) }
            if job.status == .completed, !requeued {
                let steps = output["steps"]?.numberValue.map { Int($0) }
                row.stepsTrained = steps.map { $0 - (row.resumedFromStep ?? 0) }
                if let timing = RunRecord.timing(
                    steps: steps, resumedFromStep: row.resumedFromStep, durationSeconds: output["duration_seconds"]?.numberValue, itPerSec: job.latestProgress?.itPerSec)
                {
                    row.secondsPerStep = timing.secondsPerStep
                    row.overheadSeconds = timing.overheadSeconds
                }
            }
        }
        try await row.save(on: db)
    }

    private convenience init(of job: Job, attempt: Int) {
        self.init()
        self.$job.id = job.id!
        self.attempt = attempt
        preset = job.preset
        profile = (try? JSONDecoder().decode(QwenImageEdit.Parameters.self, from: Data(job.parameters.utf8)))?.profile.rawValue ?? ""
        status = job.status.rawValue
        checkpoints = "[]"
        datasetSHA256 = job.datasetSHA256
    }

    /// What completed attempts of `preset` on `profile` measured, newest first.
    static func learnedSpeed(preset: String, profile: String, on db: any Database) async throws -> TrainingEstimate.Learned? {
        let rows = try await JobAttempt.query(on: db).filter(\.$preset == preset).filter(\.$profile == profile).filter(\.$status == JobStatus.completed.rawValue)
            .filter(\.$secondsPerStep != nil).filter(\.$gpuName != nil).sort(\.$endedAt, .descending).limit(100).all()
        return TrainingEstimate.Learned(
            measured: rows.compactMap { row in
                guard let gpu = row.gpuName, let perStep = row.secondsPerStep else { return nil }
                return (gpu, perStep, row.overheadSeconds ?? 0)
            })
    }
}
