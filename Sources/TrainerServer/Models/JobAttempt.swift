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
    /// The checkpoint steps it saved itself (JSON array; not those it resumed with).
    @Field(key: "checkpoints") var checkpoints: String
    @OptionalField(key: "resumed_from_step") var resumedFromStep: Int?
    @OptionalField(key: "steps_trained") var stepsTrained: Int?
    /// 1 / the trainer's last reported it/s while training.
    @OptionalField(key: "seconds_per_step") var secondsPerStep: Double?
    @OptionalField(key: "overhead_seconds") var overheadSeconds: Double?
    @OptionalField(key: "dataset_sha256") var datasetSHA256: String?

    static let interrupted = "interrupted"

    init() {}

    var checkpointSteps: [Int] { (try? JSONDecoder().decode([Int].self, from: Data(checkpoints.utf8))) ?? [] }

    /// Records what a change of `job` (from `previous`, with the runner's `output`) says about
    /// its attempts; called in the transaction that saves the change.
    static func record(_ job: Job, from previous: JobStatus, output: JSONValue?, at time: Date, on db: any Database) async throws {
        guard !job.isDraftJob else { return }
        // Earlier attempts still open ended when the job was queued again as a new attempt (its
        // worker shut down or lost); a preempted worker's last report is about the one before.
        let earlier = try await JobAttempt.query(on: db).filter(\.$job.$id == job.id!).filter(\.$attempt < job.attempt).filter(\.$endedAt == nil).all()
        for row in earlier {
            row.status = interrupted
            row.endedAt = time
            if job.status == .queued, row.attempt == job.attempt - 1, let output { row.take(output, of: job, completed: false) }
            try await row.save(on: db)
        }
        let current = try await JobAttempt.query(on: db).filter(\.$job.$id == job.id!).filter(\.$attempt == job.attempt).first()
        // Queued and never run: nothing to record yet.
        guard job.status != .queued || current != nil else { return }
        let row = current ?? JobAttempt(of: job, attempt: job.attempt)
        // Handed back before its worker got it, the attempt waits to start again.
        row.status = job.status.rawValue
        if let runner = job.runPodJobID { row.runnerID = runner }
        if job.status == .running, previous != .running { row.startedAt = row.startedAt ?? time }
        if job.status.isFinal { row.endedAt = row.endedAt ?? time }
        if let output, job.status != .queued { row.take(output, of: job, completed: job.status == .completed) }
        try await row.save(on: db)
    }

    /// What a runner's report says: the environment, checkpoints and resume step; and with the
    /// result of a completed attempt, its steps and speed.
    private func take(_ output: JSONValue, of job: Job, completed: Bool) {
        if let environment = output["environment"], case .object = environment {
            self.environment = environment.rendered()
            gpuName = environment["gpu_name"]?.stringValue.map { String($0.prefix(200)) }
        }
        if let resumed = output["resumed_from_step"]?.numberValue { resumedFromStep = Int(resumed) }
        // Its own saves: the listed checkpoints after the one it resumed from.
        let saved = JobArtifact.list(in: output, prefix: job.outputPrefix).filter { $0.kind == .checkpoint }.compactMap(\.step)
        let own = Set(checkpointSteps + saved).filter { $0 > (resumedFromStep ?? .min) }.sorted()
        if own != checkpointSteps { checkpoints = JSONValue.array(own.map { .int($0) }).rendered() }
        // The speed of the training steps, as last reported (sampling and saving report none).
        if let speed = JobProgress(output: output).itPerSec, speed > 0 { secondsPerStep = 1 / speed }
        guard completed else { return }
        let steps = output["steps"]?.numberValue.map { Int($0) }
        stepsTrained = steps.map { $0 - (resumedFromStep ?? 0) }
        overheadSeconds = RunRecord.overhead(
            steps: steps, resumedFromStep: resumedFromStep, durationSeconds: output["duration_seconds"]?.numberValue, secondsPerStep: secondsPerStep)
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
            .filter(\.$secondsPerStep != nil).filter(\.$overheadSeconds != nil).filter(\.$gpuName != nil).sort(\.$endedAt, .descending).limit(100).all()
        return TrainingEstimate.Learned(
            measured: rows.compactMap { row in
                guard let gpu = row.gpuName, let perStep = row.secondsPerStep else { return nil }
                return (gpu, perStep, row.overheadSeconds ?? 0)
            })
    }
}
