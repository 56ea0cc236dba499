import AsyncHTTPClient
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOFoundationCompat
import ObjectStorage
import TrainerCore

/// Runs one training job (DESIGN §5): syncs the dataset from the bucket, restores the newest
/// checkpoint of earlier attempts, writes the config with the worker's paths, runs the trainer,
/// turns its output into progress, uploads checkpoints and samples as they appear, and at the end
/// the LoRA, the log, the loss curve and the config.
public struct TrainingHandler: JobHandler {
    let jobBucket: JobBucket
    let workRoot: String
    /// The trainer's words; the config's path is appended (`python run.py`, or the stand-in).
    let trainerCommand: [String]
    let trainerDirectory: String?
    let trainerEnvironment: [String: String]
    /// A stopped trainer gets this long after SIGINT before SIGKILL.
    public var stopGrace: Duration = .seconds(30)
    public var uploadScanInterval: Duration = .seconds(5)
    /// A trainer that has written its final LoRA and then prints nothing for this long is stuck
    /// in its teardown: it is stopped and the job completes (ai-toolkit samples after the final
    /// save, which can be quiet for minutes on a slow GPU, hence the margin).
    public var quietAfterFinalLoRA: Duration = .seconds(600)
    /// How often `loss.csv` is uploaded while training (also at the end).
    public var lossUploadInterval: Duration = .seconds(30)

    /// This machine, as each result reports it for the job's record.
    let machine: TrainerEnvironment

    public init(bucket: JobBucket, workRoot: String, trainerCommand: [String], trainerDirectory: String?, trainerEnvironment: [String: String]) {
        self.jobBucket = bucket
        self.workRoot = workRoot
        self.trainerCommand = trainerCommand
        self.trainerDirectory = trainerDirectory
        self.trainerEnvironment = trainerEnvironment
        machine = TrainerEnvironment(trainerCommand: trainerCommand, trainerDirectory: trainerDirectory, environment: trainerEnvironment)
    }

    public func run(_ taken: WorkerProtocolClient.TakenJob, progress: ProgressReporter) async throws -> JSONValue {
        let started = Date()
        let job: WorkerJob
        do { job = try WorkerJob(input: taken.input) } catch { throw JobFailure("The job's input is not valid: \(error.description)") }
        // Without HF_TOKEN ai-toolkit would ask for a login on a terminal nobody watches, after training.
        if let repo = job.hubRepo, (trainerEnvironment["HF_TOKEN"] ?? ProcessInfo.processInfo.environment["HF_TOKEN"] ?? "").isEmpty {
            throw JobFailure(
                "This job pushes the LoRA to the Hugging Face repo '\(repo)', but this worker has no HF_TOKEN; give the worker a write token (HF_TOKEN) and retry the job.")
        }
        let bucket = try self.bucket(for: job)
        guard job.datasetBucket == bucket.endpoint.bucket, job.outputBucket == bucket.endpoint.bucket else {
            throw JobFailure("This worker writes to bucket '\(bucket.endpoint.bucket)' but the job uses '\(job.datasetBucket)'; give the worker the server's R2_* settings.")
        }
        // Exactly one run trains an attempt: a run that did not win the attempt's claim, or whose
        // job was cancelled before it started, ends here without training.
        await progress.report(["phase": "syncing", "message": "Claiming the attempt"])
        switch try await claim(job, runID: taken.id, bucket: bucket) {
        case .won: break
        case .heldBy(let other): return WorkerResult.duplicate(of: other)
        case .cancelled: return WorkerResult.cancelledBeforeStart
        }
        let jobFolder = workRoot + "/jobs/" + job.trainerJobID
        let outputFolder = workRoot + "/output/" + job.runName
        try FileManager.default.createDirectory(atPath: jobFolder, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: outputFolder, withIntermediateDirectories: true)

        // In every update from here, so a failed attempt's record says where it ran too.
        let environment = await machine.report()
        await progress.attach("environment", environment)
        await progress.report(["phase": "syncing", "message": "Downloading the dataset"])
        _ = try await DatasetSync(bucket: bucket).sync(prefix: job.datasetPrefix, into: workRoot + "/datasets/" + job.datasetID)
        let restored = try await restore(job, into: outputFolder, from: bucket)
        // The checkpoints listed up to this step are earlier attempts' (the record tells them apart).
        if let restored { await progress.attach("resumed_from_step", .int(restored.step)) }

        let configPath = jobFolder + "/config.json"
        try job.config(workRoot: workRoot).rendered().write(toFile: configPath, atomically: true, encoding: .utf8)
        // The log starts with what the worker restored; the trainer's output follows.
        try (restored.map { "gomodel worker: \($0.message) (\($0.files.joined(separator: ", ")))\n" } ?? "")
            .write(toFile: jobFolder + "/log.txt", atomically: true, encoding: .utf8)
        await progress.report(["phase": "loading", "message": .string(restored?.message ?? "Starting the trainer")])
        let trainerStarted = Date()

        let run = TrainingRun(
            job: job, jobFolder: jobFolder, outputFolder: outputFolder, progress: progress,
            uploads: Uploads(job: job, bucket: bucket, folder: outputFolder, earlier: restored?.artifacts ?? []),
            trainer: TrainerProcess(
                command: trainerCommand + [configPath], directory: trainerDirectory, environment: trainerEnvironment, logPath: jobFolder + "/log.txt", stopGrace: stopGrace),
            curve: LossCurve(earlier: restored?.losses ?? [])
        )
        var status = try await run.train(scanEvery: uploadScanInterval, lossUploadEvery: lossUploadInterval, quietAfterFinalLoRA: quietAfterFinalLoRA, startedAt: started)
        let trainerEnded = Date()
        let final = run.state.withLockedValue { $0 }
        if final.stoppedWhenStuck {
            let note =
                "\ngomodel worker: the trainer wrote its final LoRA, then printed nothing for \(quietAfterFinalLoRA.components.seconds) s without exiting; it was stopped and the job completes.\n"
            if let log = FileHandle(forWritingAtPath: jobFolder + "/log.txt") {
                log.seekToEndOfFile()
                log.write(Data(note.utf8))
                try? log.close()
            }
            status = 0
        }
        await progress.report(["phase": "uploading", "step": .int(final.lastStep), "message": "Uploading the results"])
        // Also when stopped (cancel, SIGTERM): the newest checkpoint is what a resume starts from,
        // so these uploads run in a task of their own that the stop does not cancel; it is awaited.
        try await Task { try await run.uploadFinal(configPath: configPath) }.value

        let artifacts = await run.uploads.uploaded
        let ended = Date()
        func seconds(_ from: Date, _ to: Date) -> JSONValue { .double((to.timeIntervalSince(from) * 1000).rounded() / 1000) }
        var result: [(String, JSONValue)] = [
            ("artifacts", .array(artifacts.map(\.contractJSON))), ("steps", .int(final.lastStep)),
            ("duration_seconds", .double(ended.timeIntervalSince(started).rounded())),
            // Where the time went: the worker's own share is everything but the trainer.
            (
                "timings",
                ["prepare_seconds": seconds(started, trainerStarted), "trainer_seconds": seconds(trainerStarted, trainerEnded), "upload_seconds": seconds(trainerEnded, ended)]
            ),
        ]
        // How soon each checkpoint was safe in the bucket after its save.
        let lags = await run.uploads.checkpointLags.sorted()
        if let slowest = lags.last {
            result.append(("checkpoint_upload_lag_seconds", ["count": .int(lags.count), "median": .double(lags[lags.count / 2]), "max": .double(slowest)]))
        }
        if let loss = final.curve.points.last?.loss { result.append(("final_loss", .double(loss))) }
        if let restored { result.append(("resumed_from_step", .int(restored.step))) }
        result.append(("environment", environment))
        // Stopped (SIGTERM, or a stop the runtime does not report): what was saved is in the bucket.
        if Task.isCancelled { throw JobPreempted(output: .object(result)) }
        guard status == 0 else {
            let tail = (try? String(contentsOfFile: jobFolder + "/log.txt", encoding: .utf8)).map { String($0.suffix(4000)) }
            throw JobFailure(final.firstError ?? "The trainer exited with status \(status).", detail: tail)
        }
        guard artifacts.contains(where: { $0.kind == .lora }) else {
            throw JobFailure("The trainer ended without writing \(job.runName).safetensors.", detail: nil)
        }
        return .object(result)
    }

    enum Claim: Equatable {
        case won
        case heldBy(String)
        case cancelled
    }

    /// Claims the job's attempt for this run (`AttemptClaim`): created only if absent; a claim
    /// that names this run is this run's own (RunPod handing the same job out again, or a retried
    /// write that had arrived). Then the cancel mark, which the server leaves for a run it cannot
    /// name: read after the claim, so either this run sees it or the server sees the claim.
    func claim(_ job: WorkerJob, runID: String, bucket: S3Client) async throws -> Claim {
        let key = AttemptClaim.key(outputPrefix: job.outputPrefix, attempt: job.attempt)
        do {
            try await bucket.putObject(
                key: key, bytes: ByteBuffer(data: AttemptClaim(runID: runID, claimedAt: Date()).encoded()),
                contentType: "application/json", onlyIfAbsent: true)
        } catch let error as S3Error where error.code == .preconditionFailed {
            let holder = AttemptClaim.decode(Data(buffer: try await bucket.getObjectBytes(key: key, limit: 1 << 16)))
            guard let holder else { throw JobFailure("The claim \(key) in the bucket cannot be read; delete it and retry the job.") }
            if holder.runID != runID { return .heldBy(holder.runID) }
        } catch {
            throw JobFailure.bucketRefused(key, error, bucket: bucket)
        }
        let mark = AttemptClaim.cancelledKey(outputPrefix: job.outputPrefix, attempt: job.attempt)
        do {
            _ = try await bucket.getObjectBytes(key: mark, limit: 1 << 10)
            return .cancelled
        } catch let error as S3Error where error.code == .noSuchKey {
            return .won
        } catch {
            throw JobFailure.bucketRefused(mark, error, bucket: bucket)
        }
    }

    func bucket(for job: WorkerJob) throws -> S3Client { try jobBucket.client(for: job.input) }

    /// What an earlier attempt left to resume from.
    struct Restored {
        let step: Int
        let withOptimizerState: Bool
        let losses: [LossCurve.Point]
        let artifacts: [JobArtifact]
        /// The keys it was restored from.
        let files: [String]

        var message: String {
            "Resuming from step \(step)" + (withOptimizerState ? " with its optimizer state" : " (no optimizer state was saved with it; the optimizer starts afresh)")
        }
    }

    /// Earlier attempts' newest checkpoint, the optimizer state saved with it, and their loss
    /// curve. The checkpoint is downloaded last so its ctime is the newest (ai-toolkit resumes
    /// from the newest checkpoint by ctime and loads `optimizer.pt` beside it).
    func restore(_ job: WorkerJob, into folder: String, from bucket: S3Client) async throws -> Restored? {
        let saved = try await bucket.listAllObjects(prefix: job.outputPrefix)
        let earlier = Self.earlierArtifacts(job, saved)
        let checkpoints = earlier.compactMap { artifact -> (Int, String)? in
            guard artifact.kind == .checkpoint, let step = artifact.step else { return nil }
            return (step, String(artifact.key.split(separator: "/").last ?? ""))
        }
        guard let (step, name) = checkpoints.max(by: { $0.0 < $1.0 }) else { return nil }
        let optimizerState = job.optimizerState(step: step).key
        let withOptimizerState = saved.contains { $0.key == optimizerState }
        let optimizerFile = folder + "/optimizer.pt"
        if withOptimizerState {
            _ = try await bucket.getObject(key: optimizerState, to: optimizerFile)
        } else if FileManager.default.fileExists(atPath: optimizerFile) {
            // A warm worker's own optimizer.pt belongs to whatever it saved last, not to this step.
            try FileManager.default.removeItem(atPath: optimizerFile)
        }
        _ = try await bucket.getObject(key: job.outputPrefix + "checkpoints/" + name, to: folder + "/" + name)
        var losses: [LossCurve.Point] = []
        if saved.contains(where: { $0.key == job.outputPrefix + "loss.csv" }) {
            losses = LossCurve.points(csv: String(buffer: try await bucket.getObjectBytes(key: job.outputPrefix + "loss.csv"))).filter { $0.step < step }
        }
        let files = [job.outputPrefix + "checkpoints/" + name] + (withOptimizerState ? [optimizerState] : [])
        return Restored(step: step, withOptimizerState: withOptimizerState, losses: losses, artifacts: earlier, files: files)
    }

    /// The checkpoints, optimizer states and samples earlier attempts uploaded: still the job's
    /// files, so the result lists them too.
    static func earlierArtifacts(_ job: WorkerJob, _ objects: [ObjectSummary]) -> [JobArtifact] {
        objects.compactMap { object in
            let relative = String(object.key.dropFirst(job.outputPrefix.count))
            var artifact: JobArtifact
            if let step = job.optimizerStep(key: object.key) {
                artifact = job.optimizerState(step: step)
            } else if relative.hasPrefix("checkpoints/"), let found = job.artifact(forOutputFile: String(relative.dropFirst("checkpoints/".count))), found.kind == .checkpoint {
                artifact = found
            } else if relative.hasPrefix("samples/"), let found = job.artifact(forOutputFile: relative), found.kind == .sample {
                artifact = found
            } else {
                return nil
            }
            artifact.bytes = object.size
            return artifact
        }
    }
}

/// One run of the trainer and the work beside it, as one task group with a role per child:
/// the trainer (its output becomes progress, in order), the uploader (finished files and the
/// loss curve while it trains) and the watchdog (a trainer stuck after its final LoRA). The
/// group ends when the trainer has exited and the others have stopped; nothing of it outlives
/// `train`.
final class TrainingRun: Sendable {
    let job: WorkerJob
    let jobFolder: String
    let outputFolder: String
    let progress: ProgressReporter
    let uploads: Uploads
    let trainer: TrainerProcess
    let state: NIOLockedValueBox<State>
    /// Set when the trainer reports a save: the uploader goes at once instead of at its next round,
    /// so a checkpoint is in the bucket within seconds of its save (a worker lost right after a save
    /// resumes from that save).
    private let saved = NIOLockedValueBox(false)

    struct State {
        var lastOutput = ContinuousClock.now
        var stoppedWhenStuck = false
        var lastStep = 0
        var curve: LossCurve
        var firstError: String?
        /// The step of the checkpoint ai-toolkit saved last (nil after the final LoRA); its
        /// `optimizer.pt` follows it.
        var lastSavedStep: Int?
    }

    private enum Role {
        case trainer(status: Int32)
        case uploader, watchdog
    }

    init(job: WorkerJob, jobFolder: String, outputFolder: String, progress: ProgressReporter, uploads: Uploads, trainer: TrainerProcess, curve: LossCurve) {
        self.job = job
        self.jobFolder = jobFolder
        self.outputFolder = outputFolder
        self.progress = progress
        self.uploads = uploads
        self.trainer = trainer
        self.state = NIOLockedValueBox(State(curve: curve))
    }

    var lossFile: String { jobFolder + "/loss.csv" }

    /// Runs the trainer to its end (or its stop, when the calling task is cancelled) and returns
    /// its exit status.
    func train(scanEvery: Duration, lossUploadEvery: Duration, quietAfterFinalLoRA: Duration, startedAt: Date) async throws -> Int32 {
        try await withThrowingTaskGroup(of: Role.self) { group in
            group.addTask { .trainer(status: try await self.trainer.run { await self.handle($0) }) }
            group.addTask {
                await self.uploadWhileTraining(every: scanEvery, lossEvery: lossUploadEvery)
                return .uploader
            }
            group.addTask {
                await self.watchTeardown(every: scanEvery, quiet: quietAfterFinalLoRA, startedAt: startedAt)
                return .watchdog
            }
            var status: Int32?
            while let ended = try await group.next() {
                guard case .trainer(let code) = ended else { continue }
                // The others only serve a running trainer; an upload cut short here is redone by
                // `uploadFinal`.
                status = code
                group.cancelAll()
            }
            guard let status else { throw CancellationError() }
            return status
        }
    }

    /// One line of the trainer's output: state, optimizer snapshots, progress.
    func handle(_ line: String) async {
        guard let event = TrainerLog.parse(line, runName: job.runName) else {
            state.withLockedValue { $0.lastOutput = .now }
            return
        }
        var snapshotStep: Int?
        var checkpointSaved = false
        let update: JSONValue? = state.withLockedValue { state in
            state.lastOutput = .now
            switch event {
            case .step(let step, let total, let speed, let eta, let loss):
                if let loss { state.curve.observe(count: step, loss: loss) }
                state.lastStep = step
                var fields: [(String, JSONValue)] = [("phase", "training"), ("step", .int(step)), ("total_steps", .int(total))]
                if let loss = state.curve.points.last?.loss { fields.append(("loss", .double(loss))) }
                if let speed { fields.append(("it_per_sec", .double(speed))) }
                if let eta { fields.append(("eta_seconds", .double(eta))) }
                return .object(fields)
            case .phase(let phase, let message):
                return ["phase": .string(phase), "step": .int(state.lastStep), "message": .string(String(message.prefix(200)))]
            case .resumed(let step):
                state.lastStep = step
                return nil
            case .checkpointSaved(let file):
                let saved = job.artifact(forOutputFile: file)
                state.lastSavedStep = saved?.kind == .checkpoint ? saved?.step : nil
                if let step = state.lastSavedStep {
                    state.curve.settle(before: step)
                    uploads.markComplete(file)
                    checkpointSaved = true
                }
                return nil
            case .optimizerSaved:
                snapshotStep = state.lastSavedStep
                return nil
            case .error(let message):
                state.firstError = state.firstError ?? message
                return nil
            }
        }
        // ai-toolkit rewrites optimizer.pt in place at the next save: copied now, it is the state
        // of the checkpoint just saved (the final LoRA's is not needed to resume).
        if let step = snapshotStep { uploads.snapshotOptimizerState(step: step) }
        if checkpointSaved || snapshotStep != nil { saved.withLockedValue { $0 = true } }
        guard case .object(var fields) = update else { return }
        let artifacts = uploads.published.withLockedValue { $0 }
        if !artifacts.isEmpty { fields.append(("artifacts", .array(artifacts.map(\.contractJSON)))) }
        await progress.report(.object(fields))
    }

    /// Uploader: finished files as they appear, and the loss curve now and then so a job page
    /// opened mid-run can draw it, and with every checkpoint (a resumed attempt continues the
    /// curve from there). Failures wait for the next round (or `uploadFinal`).
    func uploadWhileTraining(every interval: Duration, lossEvery: Duration) async {
        var lossesSent = 0
        var lossSentAt = ContinuousClock.now
        var checkpointsSent = 0
        while !Task.isCancelled {
            var waited = Duration.zero
            while waited < interval, !saved.withLockedValue({ $0 }), !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(50))
                waited += .milliseconds(50)
            }
            if Task.isCancelled { return }
            saved.withLockedValue { $0 = false }
            try? await uploads.scan(onlyStable: true)
            let curve = state.withLockedValue { $0.curve }
            let checkpoints = uploads.published.withLockedValue { $0.filter { $0.kind == .checkpoint }.count }
            let newCheckpoint = checkpoints > checkpointsSent
            checkpointsSent = checkpoints
            guard curve.points.count != lossesSent, newCheckpoint || ContinuousClock.now - lossSentAt >= lossEvery else { continue }
            try? curve.csv.write(toFile: lossFile, atomically: true, encoding: .utf8)
            if (try? await uploads.put(file: lossFile, key: job.outputPrefix + "loss.csv", kind: .loss)) != nil {
                lossesSent = curve.points.count
                lossSentAt = .now
            }
        }
    }

    /// Watchdog: a trainer that has written its final LoRA and then prints nothing for `quiet`
    /// is stuck in its teardown; it is stopped and the job completes.
    func watchTeardown(every interval: Duration, quiet: Duration, startedAt: Date) async {
        let finalLoRA = outputFolder + "/" + job.runName + ".safetensors"
        while !Task.isCancelled {
            try? await Task.sleep(for: interval)
            guard let written = (try? FileManager.default.attributesOfItem(atPath: finalLoRA))?[.modificationDate] as? Date, written > startedAt else { continue }
            if ContinuousClock.now - state.withLockedValue({ $0.lastOutput }) > quiet {
                state.withLockedValue { $0.stoppedWhenStuck = true }
                trainer.stop()
                return
            }
        }
    }

    /// After the trainer: everything not uploaded yet, then the log, the config and the curve.
    func uploadFinal(configPath: String) async throws {
        try await uploads.scan(onlyStable: false)
        try await uploads.put(file: jobFolder + "/log.txt", key: job.outputPrefix + "log.txt", kind: .log)
        try await uploads.put(file: configPath, key: job.outputPrefix + "config.json", kind: .config)
        try state.withLockedValue { $0.curve }.csv.write(toFile: lossFile, atomically: true, encoding: .utf8)
        try await uploads.put(file: lossFile, key: job.outputPrefix + "loss.csv", kind: .loss)
    }
}

/// The output folder's files, uploaded once each when complete, with what they are: when the
/// trainer said so (`markComplete`: a checkpoint it reported saved), when their size held still
/// between two scans, or at the end. Optimizer states are copied at each save and uploaded beside
/// their checkpoint.
actor Uploads {
    let job: WorkerJob
    let bucket: S3Client
    let folder: String
    /// The uploaded list, readable without waiting (the trainer's output handler needs it).
    nonisolated let published = NIOLockedValueBox<[JobArtifact]>([])
    /// Files the trainer reported complete, and optimizer-state copies waiting for upload.
    private nonisolated let announced = NIOLockedValueBox<(complete: [String: ContinuousClock.Instant], optimizerStates: [Int: String])>(([:], [:]))
    /// Seconds from each checkpoint's save (as the trainer reported it) to its upload's end.
    private(set) var checkpointLags: [Double] = []
    private var seen: [String: Int64] = [:]
    private var done: [String: Int64] = [:]
    private(set) var uploaded: [JobArtifact] = [] {
        didSet { published.withLockedValue { [uploaded] in $0 = uploaded } }
    }

    init(job: WorkerJob, bucket: S3Client, folder: String, earlier: [JobArtifact] = []) {
        self.job = job
        self.bucket = bucket
        self.folder = folder
        uploaded = earlier
        published.withLockedValue { $0 = earlier }
    }

    /// The trainer reported this output file complete: the next scan uploads it without waiting.
    nonisolated func markComplete(_ relativePath: String) {
        announced.withLockedValue { $0.complete[relativePath] = $0.complete[relativePath] ?? .now }
    }

    /// Copies `optimizer.pt` as the state of the checkpoint of `step`, for the next scan.
    nonisolated func snapshotOptimizerState(step: Int) {
        let copies = folder + "/.optimizer-states"
        let copy = copies + "/" + String(step) + ".pt"
        try? FileManager.default.createDirectory(atPath: copies, withIntermediateDirectories: true)
        try? FileManager.default.removeItem(atPath: copy)
        guard (try? FileManager.default.copyItem(atPath: folder + "/optimizer.pt", toPath: copy)) != nil else { return }
        announced.withLockedValue { $0.optimizerStates[step] = copy }
    }

    func scan(onlyStable: Bool) async throws {
        guard let walker = FileManager.default.enumerator(atPath: folder) else { return }
        var files: [String] = []
        while let relative = walker.nextObject() as? String { files.append(relative) }
        let complete = announced.withLockedValue { $0.complete }
        for relative in files.sorted() {
            guard var artifact = job.artifact(forOutputFile: relative) else { continue }
            let path = folder + "/" + relative
            guard let size = FileManager.default.sizeOfFile(atPath: path) else { continue }
            defer { seen[relative] = size }
            if done[relative] == size { continue }
            if onlyStable, seen[relative] != size, complete[relative] == nil { continue }
            artifact.bytes = size
            artifact.sha256 = try? await FileDigest.sha256(ofFile: path)
            try await send(path, to: artifact.key)
            done[relative] = size
            record(artifact)
            if let savedAt = complete[relative], artifact.kind == .checkpoint {
                checkpointLags.append(Double((ContinuousClock.now - savedAt) / .milliseconds(1)) / 1000)
            }
        }
        // After the checkpoints: a resume pairs a checkpoint with the state saved with it.
        for (step, copy) in announced.withLockedValue({ $0.optimizerStates }).sorted(by: { $0.key < $1.key }) {
            var artifact = job.optimizerState(step: step)
            artifact.bytes = FileManager.default.sizeOfFile(atPath: copy)
            artifact.sha256 = try? await FileDigest.sha256(ofFile: copy)
            try await send(copy, to: artifact.key)
            record(artifact)
            announced.withLockedValue { _ = $0.optimizerStates.removeValue(forKey: step) }
            try? FileManager.default.removeItem(atPath: copy)
        }
    }

    private func record(_ artifact: JobArtifact) {
        uploaded.removeAll { $0.key == artifact.key }
        uploaded.append(artifact)
    }

    func put(file: String, key: String, kind: JobArtifact.Kind) async throws {
        guard FileManager.default.fileExists(atPath: file) else { return }
        // No checksum rather than a wrong one when the file cannot be read.
        let sha256 = try? await FileDigest.sha256(ofFile: file)
        try await send(file, to: key)
        record(JobArtifact(kind: kind, key: key, bytes: FileManager.default.sizeOfFile(atPath: file), sha256: sha256))
    }

    /// One upload (the client retries what can be retried); a refusal fails the job saying so.
    private func send(_ file: String, to key: String) async throws {
        do {
            try await bucket.putObject(key: key, file: file)
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            throw JobFailure.bucketRefused(key, error, bucket: bucket)
        }
    }
}

extension JobFailure {
    /// The bucket refused a request of the job's even after the client's retries: what to check.
    static func bucketRefused(_ key: String, _ error: any Error, bucket: S3Client) -> JobFailure {
        let tries = S3Client.isRetryable(error) ? "after \(bucket.retry.maxAttempts) tries" : "not retried"
        return JobFailure(
            "The bucket refused \(key) \(tries) (\(error)); check the worker's R2_* settings and the bucket, then retry the job: it resumes from the newest checkpoint in the bucket."
        )
    }
}
