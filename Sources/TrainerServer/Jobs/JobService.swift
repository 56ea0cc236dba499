import Crypto
import Fluent
import Foundation
import ObjectStorage
import RunPod
import SQLKit
import TrainerCore

/// Training jobs: creation from a sound dataset, the one place where a job changes state
/// (every change an event), cancel and retry. `JobRunner` moves jobs through RunPod.
struct JobService: Sendable {
    let datasets: DatasetService
    let now: @Sendable () -> Date
    /// Told when a job is queued (wakes this instance's runner at once).
    var created: @Sendable () -> Void = {}

    /// What the job rules refuse; `description` says what to do (HTTPMapping gives each its status).
    enum Failure: Error, Equatable, CustomStringConvertible {
        case notFound
        case invalidParameters([QwenImageEdit.ParameterError])
        /// Valid on its own, but not with this dataset (a sample pair's stem it does not hold).
        case parameterDoesNotFitDataset(QwenImageEdit.ParameterError)
        case uploadInProgress(key: String, until: Date)
        case importInProgress(fileName: String)
        case datasetNotReady([DatasetValidation.Finding])
        case alreadyEnded(JobStatus)
        case notRetryable(JobStatus)
        case datasetGone
        case notPromotable(JobStatus)
        case noSuchCheckpoint(Int)
        case checkpointGone(Int)
        case stillActive(JobStatus)
        case outputsDeleted
        case changedMeanwhile

        var description: String {
            switch self {
            case .notFound: "No job with this id; GET /api/jobs lists yours."
            case .invalidParameters(let problems): problems.map { "\(Self.path(of: $0)) \($0.message)" }.joined(separator: "; ")
            case .parameterDoesNotFitDataset(let problem): "params.\(problem.field) \(problem.message)"
            case .uploadInProgress(let key, let until):
                "Uploads to this dataset are under way (\(key) and maybe others); finish them (POST …/uploads/complete), or start the job after \(until) when their URLs expire."
            case .importInProgress(let fileName): "'\(fileName)' is being unpacked into this dataset; start the job when its import is done."
            case .datasetNotReady(let errors):
                "The dataset is not ready to train on: \(errors.count) problem(s). " + DatasetService.list(errors.map(\.message), limit: 5)
            case .alreadyEnded(let status): "The job already ended (\(status.rawValue)); there is nothing to cancel."
            case .notRetryable(let status):
                status == .completed ? "The job completed; start a new job to train again." : "The job is still \(status.rawValue); cancel it first or wait until it ends."
            case .datasetGone: "The job's dataset was deleted; it cannot be retried."
            case .notPromotable(let status): "Only a completed or cancelled job's checkpoint can be its result; this job is \(status.rawValue)."
            case .noSuchCheckpoint(let step): "The job has no checkpoint at step \(step); GET /api/jobs/{id} lists its checkpoints (artifacts of kind checkpoint)."
            case .checkpointGone(let step): "The checkpoint of step \(step) is no longer in the bucket; pick another one."
            case .stillActive(let status): "The job is \(status.rawValue); cancel it first (POST /api/jobs/{id}/cancel), then delete it once it has ended."
            case .outputsDeleted:
                "The job's outputs were deleted, its checkpoints with them, so it cannot resume; train again from its record (gomodel train --from-record)."
            case .changedMeanwhile: "The job changed while this request ran (another retry, or a delete); reload it and try again."
            }
        }

        /// Where the problem is in the request body: the preset beside `params`, the rest in it.
        static func path(of problem: QwenImageEdit.ParameterError) -> String {
            problem.field == "preset" ? "preset" : "params.\(problem.field)"
        }
    }

    /// The named preset, or the default one when none is named.
    static func preset(_ id: String?) throws -> QwenImageEdit.Preset {
        guard let id else { return QwenImageEdit.defaultPreset }
        guard let preset = QwenImageEdit.preset(id) else { throw Failure.invalidParameters([QwenImageEdit.unknownPreset(id)]) }
        return preset
    }

    static func parameters(from input: API.JobParameters, preset: QwenImageEdit.Preset) throws -> QwenImageEdit.Parameters {
        var parameters = preset.defaults
        if let value = input.steps { parameters.steps = value }
        if let value = input.learningRate { parameters.learningRate = value }
        if let value = input.rank { parameters.rank = value }
        if let value = input.profile {
            guard let profile = QwenImageEdit.Profile(rawValue: value) else {
                throw Failure.invalidParameters([
                    .init(field: "profile", message: "must be one of \(QwenImageEdit.Profile.allCases.map(\.rawValue).joined(separator: ", ")) (GPU memory); got '\(value)'.")
                ])
            }
            parameters.profile = profile
        }
        if let value = input.resolutions { parameters.resolutions = value }
        // Unset intervals follow the step count: every 250 steps, or a quarter of a short run. An
        // interval longer than the run means "at the end", which is when the last save and sample
        // happen anyway.
        let interval = min(250, max(10, parameters.steps / 4))
        parameters.saveEvery = min(input.saveEvery ?? interval, max(parameters.steps, QwenImageEdit.Limits.minimumInterval))
        parameters.sampleEvery = min(input.sampleEvery ?? interval, max(parameters.steps, QwenImageEdit.Limits.minimumInterval))
        if let value = input.keepCheckpoints { parameters.keepCheckpoints = value }
        if let value = input.seed { parameters.seed = value }
        if let value = input.triggerWord, !value.isEmpty { parameters.triggerWord = value }
        if let value = input.samplePairs { parameters.samplePairs = value }
        if let value = input.hfRepo, !value.isEmpty { parameters.hfRepo = value }
        if let value = input.hfPublic { parameters.hfPublic = value }
        let problems = QwenImageEdit.validate(parameters)
        if !problems.isEmpty {
            throw Failure.invalidParameters(problems)
        }
        return parameters
    }

    // MARK: Creation

    /// The user's job with this id; someone else's answers exactly like a missing one (404).
    func find(_ id: UUID?, userID: UUID, on db: any Database) async throws -> Job {
        guard let id, let job = try await Job.query(on: db).filter(\.$id == id).filter(\.$user.$id == userID).first() else {
            throw Failure.notFound
        }
        return job
    }

    /// A job's events, oldest first.
    func events(of job: Job, on db: any Database) async throws -> [JobEvent] {
        try await JobEvent.query(on: db).filter(\.$job.$id == job.id!).sort(\.$at).all()
    }

    /// The job a secret of its current attempt belongs to (the progress channel's, or RunPod's
    /// webhook's); only digests are stored.
    func job(progressSecret secret: String, on db: any Database) async throws -> Job? {
        try await Job.query(on: db).filter(\.$progressDigest == OpaqueToken.digest(secret)).first()
    }

    func job(webhookSecret secret: String, on db: any Database) async throws -> Job? {
        try await Job.query(on: db).filter(\.$webhookDigest == OpaqueToken.digest(secret)).first()
    }

    /// After a report on the progress channel the runner need not poll RunPod soon. Only the poll
    /// time is written: the rest of the row may have changed since it was read.
    func postponePoll(of job: Job, by interval: TimeInterval, on db: any Database) async throws {
        try await db.sql().raw(
            """
            UPDATE jobs SET next_poll_at = \(bind: now().addingTimeInterval(interval))
            WHERE id = \(bind: job.id!) AND status IN (\(bind: JobStatus.submitted.rawValue), \(bind: JobStatus.running.rawValue))
            """
        ).run()
    }

    func create(userID: UUID, dataset: Dataset, preset: QwenImageEdit.Preset, parameters: QwenImageEdit.Parameters, on db: any Database) async throws -> Job {
        // Upload URLs cannot be revoked: while some are valid, the files could change under the job.
        let cutoff = now().addingTimeInterval(-DatasetService.uploadWindow)
        if let pending = try await DatasetFile.query(on: db).filter(\.$dataset.$id == dataset.id!).filter(\.$pendingBytes != nil)
            .filter(\.$signedAt > cutoff).sort(\.$signedAt, .descending).first(), let signed = pending.signedAt
        {
            throw Failure.uploadInProgress(key: pending.key, until: signed.addingTimeInterval(DatasetService.uploadWindow))
        }
        if let unpacking = try await DatasetImporter.unpacking(into: dataset.id!, now: now(), on: db) {
            throw Failure.importInProgress(fileName: unpacking.fileName)
        }
        let (files, report) = try await datasets.currentReport(dataset, on: db)
        guard report.isSound, report.samples > 0, let controls = report.controlsPerSample else {
            throw Failure.datasetNotReady(report.findings.filter { $0.severity == .error })
        }
        let samples = Self.samples(files, defaultCaption: dataset.defaultCaption)
        let id = UUID()
        let buildInput = QwenImageEdit.Job(
            id: id.uuidString.lowercased(), datasetID: dataset.id!.uuidString.lowercased(), preset: preset, controlsPerSample: controls,
            defaultCaption: dataset.defaultCaption, samples: samples, parameters: parameters
        )
        let config: JSONValue
        do {
            config = try QwenImageEdit.buildJobConfig(buildInput)
        } catch {
            // Only what the dataset holds can make a valid parameter fail here (a sample pair's stem).
            throw Failure.parameterDoesNotFitDataset(error)
        }
        let job = Job()
        try Self.takeSnapshot(of: files, into: job)
        return try await insert(
            job, id: id, userID: userID, dataset: dataset, preset: preset.id, parameters: String(decoding: try JSONEncoder().encode(parameters), as: UTF8.self),
            config: config.rendered(), message: "Queued (attempt 1).", locking: true, on: db)
    }

    /// A drafting job for GPU workers: the same queue, runners and attempts as training, but it
    /// reads the dataset without locking it (it changes nothing there; its drafts wait for review).
    func createDraftJob(userID: UUID, dataset: Dataset, request: InstructionDraft.WorkerRequest, on db: any Database) async throws -> Job {
        try await insert(
            Job(), id: UUID(), userID: userID, dataset: dataset, preset: InstructionDraft.jobPreset,
            parameters: try Self.encoded(["samples": .int(request.items.count), "model": .string(request.model)] as JSONValue), config: try Self.encoded(request),
            message: "Queued: draft instructions for \(request.items.count) sample(s).", locking: false, on: db)
    }

    /// A new job, queued as its first attempt, with its first event; `locking`: the dataset must
    /// not change while the job may read it.
    private func insert(
        _ job: Job, id: UUID, userID: UUID, dataset: Dataset, preset: String, parameters: String, config: String, message: String, locking: Bool,
        on db: any Database
    ) async throws -> Job {
        job.id = id
        job.$user.id = userID
        job.datasetID = dataset.id!
        job.preset = preset
        job.parameters = parameters
        job.jobConfig = config
        job.status = .queued
        job.attempt = 1
        job.preemptions = 0
        job.createdAt = now()
        job.updatedAt = job.createdAt
        job.cancelRequested = false
        try await db.transaction { db in
            try await job.create(on: db)
            try await JobEvent(jobID: id, at: job.createdAt, status: JobStatus.queued.rawValue, message: message).create(on: db)
            if locking {
                dataset.lockedByJobID = id
                try await dataset.save(on: db)
            }
        }
        created()
        return job
    }

    /// Samples in stem order with their caption (or the default) and controls, for sample prompts.
    static func samples(_ files: [DatasetFile], defaultCaption: String?) -> [QwenImageEdit.Sample] {
        let byStem = Dictionary(grouping: files, by: \.stem)
        return byStem.keys.sorted().compactMap { stem in
            let group = byStem[stem]!
            guard group.contains(where: { $0.role == "target" }) else { return nil }
            let caption = group.first { $0.role == "caption" }?.caption ?? defaultCaption ?? ""
            let controls = (1...DatasetLayout.maximumControls).compactMap { index in group.first { $0.role == "control_\(index)" }?.key }
            return QwenImageEdit.Sample(stem: stem, caption: caption, controls: controls)
        }
    }

    /// The job's input for a runner (DESIGN §5), with the attempt's progress channel when the
    /// server can be reached (`POST /api/runpod/progress/{secret}`).
    func input(for job: Job, bucket: String, progressChannel: URL? = nil) throws -> JobInput {
        let datasetID = job.datasetID.uuidString.lowercased()
        return JobInput(
            task: job.isDraftJob ? .draftInstructions : .train, trainerJobID: job.id!.uuidString.lowercased(), attempt: job.attempt,
            jobConfig: try JSONDecoder().decode(JSONValue.self, from: Data(job.jobConfig.utf8)),
            dataset: .init(datasetId: datasetID, bucket: bucket, prefix: StorageKeys.datasetPrefix(datasetID)),
            output: .init(bucket: bucket, prefix: job.outputPrefix),
            progressChannel: progressChannel.map { .init(url: $0.absoluteString) }
        )
    }

    /// What a worker posts (to job-done, or to its progress channel) as a report on `runnerID`:
    /// progress (`status: IN_PROGRESS`), a result (`output`) or an error.
    static func workerReport(_ body: JSONValue, runnerID: String, cancelRequested: Bool) -> RunPodJob {
        let status: RunPodStatus
        if body["status"]?.stringValue.map(RunPodStatus.init) == .inProgress {
            status = .inProgress
        } else if cancelRequested {
            status = .cancelled
        } else if body["error"] != nil {
            status = .failed
        } else {
            status = .completed
        }
        return RunPodJob(id: runnerID, status: status, output: body["output"], error: body["error"].map { $0.stringValue ?? $0.rendered() })
    }

    // MARK: State changes

    /// Applies what a runner reports: status, progress, result or error. Stale reports (a state
    /// the job has passed, anything after a final state) change nothing. Returns whether the job
    /// changed.
    @discardableResult
    func apply(_ report: RunPodJob, to job: Job, on db: any Database) async throws -> Bool {
        let time = now()
        let previous = job.status
        var changed = false
        if job.runnerStatus != report.status.rawValue, !job.status.isFinal {
            job.runnerStatus = report.status.rawValue
            changed = true
        }
        if job.status.isFinal { return false }
        if report.status == .completed, WorkerResult.isPreempted(report.output) {
            return try await requeuePreempted(job, report: report, on: db)
        }
        if report.status == .completed, let holder = WorkerResult.duplicateOf(report.output) {
            return try await followHolder(holder, of: job, report: report, on: db)
        }
        if report.status == .completed, report.output?[WorkerResult.cancelledBeforeStartKey] == .bool(true), !job.cancelRequested {
            // A run that read a cancel mark of an earlier cancel of this attempt; nothing trained.
            return false
        }
        var events: [JobEvent] = []
        if let next = JobStatus(report.status) {
            if job.status.accepts(next) {
                events.append(transition(job, to: next, at: time, message: Self.message(for: next, report: report)))
                changed = true
            }
        } else if changed {
            events.append(
                JobEvent(
                    jobID: job.id!, at: time, status: job.status.rawValue,
                    message: "RunPod reports the status \(report.status.rawValue), unknown to us; the job stays \(job.status.rawValue)."))
        }
        if let output = report.output {
            switch job.status {
            case .running:
                let progress = JobProgress(output: output)
                job.progress = try Self.encoded(progress)
                let artifacts = JobArtifact.list(in: output, prefix: job.outputPrefix)
                if !artifacts.isEmpty { job.artifacts = try Self.encoded(artifacts) }
                changed = true
            case .completed:
                job.artifacts = try Self.encoded(JobArtifact.list(in: output, prefix: job.outputPrefix))
                var progress = job.latestProgress ?? JobProgress()
                if let steps = output["steps"]?.numberValue {
                    progress.step = Int(steps)
                    progress.totalSteps = progress.totalSteps ?? Int(steps)
                }
                if let loss = output["final_loss"]?.numberValue { progress.loss = loss }
                progress.phase = "done"
                progress.etaSeconds = 0
                // The last running update's message ("Saving at step 80") no longer says where the job is.
                progress.message = nil
                job.progress = try Self.encoded(progress)
                changed = true
            default:
                break
            }
        }
        if job.status == .failed, let error = report.error.map(JobError.readable) {
            job.error = JobError.headline(error)
            job.errorDetail = String(error.suffix(20000))
        }
        guard changed else { return false }
        job.updatedAt = time
        return try await commit(job, from: previous, events: events, output: report.output, on: db)
    }

    /// A run ended without training because another run of the same attempt holds its claim
    /// (a submission whose answer was lost, then submitted again): the job follows the holder.
    private func followHolder(_ holder: String, of job: Job, report: RunPodJob, on db: any Database) async throws -> Bool {
        guard holder != job.runPodJobID else { return false }
        let previous = job.status
        job.runPodJobID = holder
        job.runnerStatus = RunPodStatus.inProgress.rawValue
        job.nextPollAt = now()
        job.updatedAt = now()
        let event = JobEvent(
            jobID: job.id!, at: now(), status: job.status.rawValue,
            message: "Run \(report.id) found the attempt already claimed by run \(holder) and ended without training; following \(holder).")
        // Once, whether the poll or the webhook brings it first.
        return try await commit(job, from: previous, events: [event], condition: "runpod_job_id = \(bind: report.id)", on: db)
    }

    /// `apply` for a report that arrives once (a worker's channel post, RunPod's webhook): when
    /// another writer changed the job meanwhile (the submission recording its RunPod id, a poll)
    /// and so won the commit, the report is applied again to the job as it now is, instead of
    /// being dropped. Returns whether the job changed.
    @discardableResult
    func applyDeliveredOnce(_ report: RunPodJob, to job: Job, on db: any Database) async throws -> Bool {
        for _ in 0..<3 {
            let read = (job.status, job.updatedAt)
            if try await apply(report, to: job, on: db) { return true }
            // Unchanged since it was read: the report had nothing new.
            if (job.status, job.updatedAt) == read || job.status.isFinal { return false }
        }
        return false
    }

    /// A job whose worker was shut down mid-run (SIGTERM) and reported what it had saved: queued
    /// again at once as its next attempt, resuming from that checkpoint, without counting as a
    /// failed attempt; a cancel asked for meanwhile ends it instead.
    static let maximumPreemptions = 20

    private func requeuePreempted(_ job: Job, report: RunPodJob, on db: any Database) async throws -> Bool {
        let time = now()
        let previous = job.status
        let artifacts = JobArtifact.list(in: report.output, prefix: job.outputPrefix)
        if !artifacts.isEmpty { job.artifacts = try Self.encoded(artifacts) }
        let resumeStep = artifacts.filter { $0.kind == .checkpoint }.compactMap(\.step).max()
        let event: JobEvent
        if job.cancelRequested {
            event = transition(job, to: .cancelled, at: time, message: "Cancelled; its worker was shut down meanwhile.")
        } else if job.preemptions >= Self.maximumPreemptions {
            event = transition(job, to: .failed, at: time, message: "Its worker was shut down for the \(job.preemptions + 1). time; not queued again.")
            job.error = "Workers were shut down mid-run \(job.preemptions + 1) times; retry it to go on from the last checkpoint."
        } else {
            Self.prepareNextAttempt(job, at: time)
            job.preemptions += 1
            let from = resumeStep.map { "from step \($0)" } ?? "from the start (no checkpoint was saved yet)"
            event = JobEvent(
                jobID: job.id!, at: time, status: JobStatus.queued.rawValue,
                message: "Its worker was shut down (preempted); back in the queue as attempt \(job.attempt), resuming \(from).")
        }
        job.leaseOwner = nil
        job.leaseUntil = nil
        return try await commit(job, from: previous, events: [event], output: report.output, on: db)
    }

    /// Makes `job` its own next attempt, queued, with nothing of the last attempt's runner: a new
    /// runner id, no submission, webhook, progress channel, lease or poll (the output prefix stays,
    /// so it resumes from the last checkpoint). One place for a retry, a lost worker and a
    /// preemption, so a new per-attempt column is reset by all three.
    static func prepareNextAttempt(_ job: Job, at time: Date) {
        job.attempt += 1
        job.status = .queued
        job.runnerStatus = nil
        job.runPodJobID = nil
        job.submitStartedAt = nil
        // The old attempt's webhook and progress channel must not be taken for the new one's.
        job.webhookDigest = nil
        job.progressDigest = nil
        job.leaseOwner = nil
        job.leaseUntil = nil
        job.nextPollAt = nil
        job.updatedAt = time
    }

    /// Saves a job whose status was read as `previous`, and its events, only if the stored status
    /// is still `previous` (and `condition` holds): the webhook, a poll, a worker and the user may
    /// act on one job at once, and exactly one of them wins each change. The loser's copy is
    /// refreshed from the database. Returns whether this one won.
    @discardableResult
    func commit(
        _ job: Job, from previous: JobStatus, events: [JobEvent] = [], condition: SQLQueryString? = nil, output: JSONValue? = nil, on db: any Database
    ) async throws -> Bool {
        let applied = try await db.transaction { db in
            let sql = try db.sql()
            var query: SQLQueryString =
                "UPDATE jobs SET status = \(bind: job.status.rawValue), updated_at = \(bind: job.updatedAt) WHERE id = \(bind: job.id!) AND status = \(bind: previous.rawValue)"
            if let condition { query = query + " AND " + condition }
            guard try await sql.raw(query + " RETURNING id").all().count == 1 else { return false }
            // What was stored before this change (the row is locked now), for the checkpoints it adds.
            var artifactsBefore: [JobArtifact] = []
            if job.storedArtifacts.contains(where: { $0.kind == .checkpoint }),
                let stored = try await sql.raw("SELECT artifacts FROM jobs WHERE id = \(bind: job.id!)").first()?.decode(column: "artifacts", as: String?.self)
            {
                artifactsBefore = (try? JSONDecoder().decode([JobArtifact].self, from: Data(stored.utf8))) ?? []
            }
            job.outputBytes = job.storedArtifacts.reduce(0) { $0 + ($1.bytes ?? 0) }
            try await job.save(on: db)
            try await WebhookService.announce(job, from: previous, artifactsBefore: artifactsBefore, at: job.updatedAt, on: db)
            try await JobAttempt.record(job, from: previous, output: output, at: job.updatedAt, on: db)
            for event in events { try await event.create(on: db) }
            // The dataset may change again once no active job uses it (in the same transaction,
            // so a crash cannot leave it locked by a finished job).
            if job.status.isFinal { try await releaseDataset(job.datasetID, on: db) }
            // A drafting job's drafts are stored with its end, once, by whoever wins it.
            if job.status.isFinal, job.isDraftJob { try await DraftService.finish(job, output: output, datasets: datasets, on: db) }
            return true
        }
        if !applied, let current = try await Job.find(job.id, on: db) { try Self.copy(current, into: job) }
        return applied
    }

    /// Refreshes a loaded job with the stored one. A RunPod id this copy learned (from /run) is
    /// never dropped: it is the only handle on a paid run.
    static func copy(_ source: Job, into job: Job) throws {
        let learned = job.runPodJobID
        try job.takeStoredFields(of: source)
        if job.runPodJobID == nil { job.runPodJobID = learned }
    }

    /// Moves the job to `status`, stamping the times; the caller saves it with the event.
    func transition(_ job: Job, to status: JobStatus, at time: Date, message: String) -> JobEvent {
        job.status = status
        job.updatedAt = time
        switch status {
        case .submitted: job.submittedAt = job.submittedAt ?? time
        case .running: job.startedAt = job.startedAt ?? time
        case .completed, .failed, .cancelled, .timedOut:
            job.finishedAt = time
            job.nextPollAt = nil
        case .queued: break
        }
        return JobEvent(jobID: job.id!, at: time, status: status.rawValue, message: message)
    }

    static func message(for status: JobStatus, report: RunPodJob) -> String {
        switch status {
        case .queued: "Queued."
        case .submitted: "RunPod has the job (\(report.id)); waiting for a GPU."
        case .running: "Training on a GPU."
        case .completed: "Completed."
        case .failed: "Failed: " + JobError.headline(report.error.map(JobError.readable) ?? "no error given")
        case .cancelled: "Cancelled."
        case .timedOut: "Timed out at RunPod (the job waited or ran longer than its limits)."
        }
    }

    /// After a job ends, its dataset may change again, unless another job still uses it.
    func releaseDataset(_ datasetID: UUID, on db: any Database) async throws {
        guard let dataset = try await Dataset.find(datasetID, on: db) else { return }
        let active = try await Job.query(on: db).filter(\.$datasetID == datasetID).filter(\.$preset != InstructionDraft.jobPreset)
            .filter(\.$status ~~ [JobStatus.queued, .submitted, .running]).sort(\.$createdAt, .descending).first()
        if dataset.lockedByJobID != active?.id {
            dataset.lockedByJobID = active?.id
            try await dataset.save(on: db)
        }
    }

    // MARK: The result

    /// Makes the checkpoint of `step` the job's result (nil: the final LoRA again). `stored` tells
    /// whether an artifact's object is still in the bucket.
    func promote(_ job: Job, step: Int?, stored: (JobArtifact) async throws -> Bool, on db: any Database) async throws {
        guard [.completed, .cancelled].contains(job.status) else { throw Failure.notPromotable(job.status) }
        let message: String
        if let step {
            guard let checkpoint = job.storedArtifacts.first(where: { $0.kind == .checkpoint && $0.step == step }) else { throw Failure.noSuchCheckpoint(step) }
            guard try await stored(checkpoint) else { throw Failure.checkpointGone(step) }
            message = "The checkpoint of step \(step) is now the result."
        } else {
            message = "The final LoRA is the result again."
        }
        job.promotedStep = step
        job.updatedAt = now()
        try await db.transaction { db in
            try await job.save(on: db)
            try await JobEvent(jobID: job.id!, at: job.updatedAt, status: job.status.rawValue, message: message).create(on: db)
        }
    }

    // MARK: Cancel and retry

    /// A job not yet handed to a runner ends at once; otherwise the runner is asked to stop it
    /// and the job ends when it confirms.
    func requestCancel(_ job: Job, on db: any Database) async throws {
        guard !job.status.isFinal else {
            throw Failure.alreadyEnded(job.status)
        }
        let time = now()
        let previous = job.status
        job.cancelRequested = true
        job.updatedAt = time
        if job.status == .queued, job.runPodJobID == nil, job.submitStartedAt == nil {
            // Only while nobody is submitting it or handing it to a worker (no live lease).
            let event = transition(job, to: .cancelled, at: time, message: "Cancelled before it reached a GPU.")
            if try await commit(job, from: previous, events: [event], condition: "submit_started_at IS NULL AND (lease_until IS NULL OR lease_until < \(bind: time))", on: db) {
                return
            }
            job.cancelRequested = true
            job.updatedAt = time
        }
        guard !job.status.isFinal else { return }
        let sql = try db.sql()
        try await sql.raw("UPDATE jobs SET cancel_requested = \(bind: true), updated_at = \(bind: time) WHERE id = \(bind: job.id!)").run()
        try await JobEvent(jobID: job.id!, at: time, status: job.status.rawValue, message: "Cancel requested.").create(on: db)
    }

    /// Deletes an ended job: claims it (so it cannot be retried meanwhile), deletes its outputs
    /// in the bucket, then its rows (events, attempts), so nothing is left that no row knows. Its
    /// reproducibility record goes with it.
    func delete(_ job: Job, bucket: Bucket, on db: any Database) async throws {
        guard job.status.isFinal else { throw Failure.stillActive(job.status) }
        let claimed = try await db.sql().raw(
            """
            UPDATE jobs SET outputs_deleted_at = COALESCE(outputs_deleted_at, \(bind: now()))
            WHERE id = \(bind: job.id!) AND status IN (\(binds: [JobStatus.completed, .failed, .cancelled, .timedOut].map(\.rawValue))) RETURNING id
            """
        ).all()
        guard claimed.count == 1 else {
            let current = try await Job.find(job.id, on: db)
            throw Failure.stillActive(current?.status ?? job.status)
        }
        do {
            try await bucket.deleteAll(prefix: job.outputPrefix)
        } catch {
            // Kept as it was, to be deleted again.
            if job.outputsDeletedAt == nil {
                try? await db.sql().raw("UPDATE jobs SET outputs_deleted_at = NULL WHERE id = \(bind: job.id!)").run()
            }
            throw error
        }
        try await db.transaction { db in
            try await JobEvent.query(on: db).filter(\.$job.$id == job.id!).delete()
            try await JobAttempt.query(on: db).filter(\.$job.$id == job.id!).delete()
            try await job.delete(on: db)
        }
    }

    /// A new attempt of a failed, cancelled or timed-out job, with the same output prefix so the
    /// worker resumes from the last checkpoint.
    func retry(_ job: Job, on db: any Database) async throws {
        guard [.failed, .cancelled, .timedOut].contains(job.status) else {
            throw Failure.notRetryable(job.status)
        }
        // Its checkpoints are gone (retention, a delete under way): nothing to resume from.
        guard job.outputsDeletedAt == nil else { throw Failure.outputsDeleted }
        let previous = job.status
        guard let dataset = try await Dataset.find(job.datasetID, on: db) else {
            throw Failure.datasetGone
        }
        if !job.isDraftJob {
            // The dataset may have changed since: it must be sound now, as for a new job.
            if let unpacking = try await DatasetImporter.unpacking(into: dataset.id!, now: now(), on: db) {
                throw Failure.importInProgress(fileName: unpacking.fileName)
            }
            let (files, report) = try await datasets.currentReport(dataset, on: db)
            guard report.isSound else { throw Failure.datasetNotReady(report.findings.filter { $0.severity == .error }) }
            // The new attempt trains the dataset as it is now.
            try Self.takeSnapshot(of: files, into: job)
        }
        let time = now()
        Self.prepareNextAttempt(job, at: time)
        // The new attempt makes a new final LoRA; a checkpoint promoted before is no longer the result.
        job.promotedStep = nil
        job.error = nil
        job.errorDetail = nil
        job.submittedAt = nil
        job.startedAt = nil
        job.finishedAt = nil
        job.cancelRequested = false
        let retried = try await db.transaction { db in
            // Only the job as it was read: ended, and its outputs not claimed by a delete since.
            guard
                try await db.sql().raw(
                    "UPDATE jobs SET updated_at = \(bind: time) WHERE id = \(bind: job.id!) AND status = \(bind: previous.rawValue) AND outputs_deleted_at IS NULL RETURNING id"
                ).all().count == 1
            else { return false }
            try await job.save(on: db)
            if job.isDraftJob { try await DraftService.reopen(runOf: job, at: time, on: db) }
            let message = job.isDraftJob ? "Queued again (attempt \(job.attempt))." : "Queued again (attempt \(job.attempt)); it resumes from the last checkpoint."
            try await JobEvent(jobID: job.id!, at: time, status: JobStatus.queued.rawValue, message: message).create(on: db)
            if !job.isDraftJob {
                dataset.lockedByJobID = job.id
                try await dataset.save(on: db)
            }
            return true
        }
        guard retried else { throw Failure.changedMeanwhile }
        created()
    }

    /// Records the dataset's files and their digest on the job, for its reproducibility record.
    static func takeSnapshot(of files: [DatasetFile], into job: Job) throws {
        let content = DatasetService.content(of: files)
        job.datasetFiles = try encoded(content.files)
        job.datasetSHA256 = content.sha256
    }

    static func encoded(_ value: some Encodable) throws -> String {
        String(decoding: try JSONEncoder().encode(value), as: UTF8.self)
    }
}
