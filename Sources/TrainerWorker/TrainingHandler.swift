import Foundation
import NIOConcurrencyHelpers
import ObjectStorage
import TrainerCore

/// Runs one training job (DESIGN §5): syncs the dataset from the bucket, restores the newest
/// checkpoint of earlier attempts, writes the config with the worker's paths, runs the trainer,
/// turns its output into progress, uploads checkpoints and samples as they appear, and at the end
/// the LoRA, the log, the loss curve and the config.
public struct TrainingHandler: JobHandler {
    let bucket: S3Client
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

    public init(bucket: S3Client, workRoot: String, trainerCommand: [String], trainerDirectory: String?, trainerEnvironment: [String: String]) {
        self.bucket = bucket
        self.workRoot = workRoot
        self.trainerCommand = trainerCommand
        self.trainerDirectory = trainerDirectory
        self.trainerEnvironment = trainerEnvironment
    }

    public func run(_ taken: WorkerProtocolClient.TakenJob, progress: ProgressReporter) async throws -> JSONValue {
        let started = Date()
        let job: WorkerJob
        do { job = try WorkerJob(input: taken.input) } catch { throw JobFailure("The job's input is not valid: \(error.description)") }
        guard job.datasetBucket == bucket.endpoint.bucket, job.outputBucket == bucket.endpoint.bucket else {
            throw JobFailure("This worker writes to bucket '\(bucket.endpoint.bucket)' but the job uses '\(job.datasetBucket)'; give the worker the server's R2_* settings.")
        }
        let jobFolder = workRoot + "/jobs/" + job.trainerJobID
        let outputFolder = workRoot + "/output/" + job.runName
        try FileManager.default.createDirectory(atPath: jobFolder, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: outputFolder, withIntermediateDirectories: true)

        await progress.report(["phase": "syncing", "message": "Downloading the dataset"])
        _ = try await DatasetSync(bucket: bucket).sync(prefix: job.datasetPrefix, into: workRoot + "/datasets/" + job.datasetID)
        let resumedFrom = try await restoreCheckpoint(job, into: outputFolder)

        let configPath = jobFolder + "/config.json"
        try job.config(workRoot: workRoot).rendered().write(toFile: configPath, atomically: true, encoding: .utf8)
        await progress.report(["phase": "loading", "message": .string(resumedFrom.map { "Resuming from step \($0)" } ?? "Starting the trainer")])

        let uploaded = NIOLockedValueBox<[JobArtifact]>([])
        let uploads = Uploads(job: job, bucket: bucket, folder: outputFolder, published: uploaded)
        // Updates go out in the order the trainer printed them, each with the files uploaded so
        // far (so checkpoints can be downloaded while it trains).
        let (updates, sink) = AsyncStream<JSONValue>.makeStream()
        let forwarder = Task {
            for await update in updates { await progress.report(update) }
        }
        let state = NIOLockedValueBox(RunState())
        let lossFile = jobFolder + "/loss.csv"
        let scanner = Task { [uploadScanInterval, lossUploadInterval] in
            var lossesSent = 0
            var lossSentAt = ContinuousClock.now
            while !Task.isCancelled {
                try? await Task.sleep(for: uploadScanInterval)
                if Task.isCancelled { break }
                try? await uploads.scan(onlyStable: true)
                // The curve so far, now and then, so a job page opened mid-run can draw it.
                let losses = state.withLockedValue { $0.losses }
                guard losses.count > lossesSent, ContinuousClock.now - lossSentAt >= lossUploadInterval else { continue }
                try? Self.lossCSV(losses).write(toFile: lossFile, atomically: true, encoding: .utf8)
                if (try? await uploads.put(file: lossFile, key: job.outputPrefix + "loss.csv", kind: .loss)) != nil {
                    lossesSent = losses.count
                    lossSentAt = .now
                }
            }
        }
        defer { scanner.cancel() }
        let trainer = TrainerProcess(command: trainerCommand + [configPath], directory: trainerDirectory, environment: trainerEnvironment, logPath: jobFolder + "/log.txt")
        let trainerRun = Task { [stopGrace] in
            try await trainer.run(stopGrace: stopGrace) { line in
                state.withLockedValue { $0.lastOutput = .now }
                guard let event = TrainerLog.parse(line, runName: job.runName) else { return }
                let update: JSONValue? = state.withLockedValue { state in
                    switch event {
                    case .step(let step, let total, let speed, let eta, let loss):
                        if let loss { state.losses.append((step, loss)) }
                        state.lastStep = step
                        var fields: [(String, JSONValue)] = [("phase", "training"), ("step", .int(step)), ("total_steps", .int(total))]
                        if let loss { fields.append(("loss", .double(loss))) }
                        if let speed { fields.append(("it_per_sec", .double(speed))) }
                        if let eta { fields.append(("eta_seconds", .double(eta))) }
                        return .object(fields)
                    case .phase(let phase, let message):
                        return ["phase": .string(phase), "step": .int(state.lastStep), "message": .string(String(message.prefix(200)))]
                    case .resumed(let step):
                        state.lastStep = step
                        return nil
                    case .error(let message):
                        state.firstError = state.firstError ?? message
                        return nil
                    }
                }
                guard case .object(var fields) = update else { return }
                let artifacts = uploaded.withLockedValue { $0 }
                if !artifacts.isEmpty { fields.append(("artifacts", .array(artifacts.map(\.contractJSON)))) }
                sink.yield(.object(fields))
            }
        }
        let watchdog = Task { [quietAfterFinalLoRA, uploadScanInterval] in
            let finalLoRA = outputFolder + "/" + job.runName + ".safetensors"
            while !Task.isCancelled {
                try? await Task.sleep(for: uploadScanInterval)
                guard let written = (try? FileManager.default.attributesOfItem(atPath: finalLoRA))?[.modificationDate] as? Date, written > started else { continue }
                if ContinuousClock.now - state.withLockedValue({ $0.lastOutput }) > quietAfterFinalLoRA {
                    state.withLockedValue { $0.stoppedWhenStuck = true }
                    trainerRun.cancel()
                    return
                }
            }
        }
        defer { watchdog.cancel(); sink.finish() }
        var status = try await withTaskCancellationHandler { try await trainerRun.value } onCancel: { trainerRun.cancel() }
        watchdog.cancel()
        sink.finish()
        await forwarder.value
        // The final pass below must not overlap a scan or a loss.csv upload still in flight.
        scanner.cancel()
        await scanner.value
        let final = state.withLockedValue { $0 }
        if final.stoppedWhenStuck {
            let note = "\ngomodel worker: the trainer wrote its final LoRA, then printed nothing for \(quietAfterFinalLoRA.components.seconds) s without exiting; it was stopped and the job completes.\n"
            if let log = FileHandle(forWritingAtPath: jobFolder + "/log.txt") {
                log.seekToEndOfFile()
                log.write(Data(note.utf8))
                try? log.close()
            }
            status = 0
        }
        await progress.report(["phase": "uploading", "step": .int(final.lastStep), "message": "Uploading the results"])
        // Also when stopped (cancel, SIGTERM): the newest checkpoint is what a resume starts from,
        // so these uploads run in a task of their own that the stop does not cancel.
        try await Task {
            try await uploads.scan(onlyStable: false)
            try await uploads.put(file: jobFolder + "/log.txt", key: job.outputPrefix + "log.txt", kind: .log)
            try await uploads.put(file: configPath, key: job.outputPrefix + "config.json", kind: .config)
            try Self.lossCSV(final.losses).write(toFile: lossFile, atomically: true, encoding: .utf8)
            try await uploads.put(file: lossFile, key: job.outputPrefix + "loss.csv", kind: .loss)
        }.value

        if Task.isCancelled { throw CancellationError() }
        guard status == 0 else {
            let tail = (try? String(contentsOfFile: jobFolder + "/log.txt", encoding: .utf8)).map { String($0.suffix(4000)) }
            throw JobFailure(final.firstError ?? "The trainer exited with status \(status).", detail: tail)
        }
        let artifacts = await uploads.uploaded
        guard artifacts.contains(where: { $0.kind == .lora }) else {
            throw JobFailure("The trainer ended without writing \(job.runName).safetensors.", detail: nil)
        }
        var result: [(String, JSONValue)] = [
            ("artifacts", .array(artifacts.map(\.contractJSON))), ("steps", .int(final.lastStep)),
            ("duration_seconds", .double(Date().timeIntervalSince(started).rounded())),
        ]
        if let loss = final.losses.last?.1 { result.append(("final_loss", .double(loss))) }
        if let resumedFrom { result.append(("resumed_from_step", .int(resumedFrom))) }
        return .object(result)
    }

    static func lossCSV(_ losses: [(Int, Double)]) -> String {
        "step,loss\n" + losses.map { "\($0.0),\($0.1)" }.joined(separator: "\n") + "\n"
    }

    struct RunState {
        var lastOutput = ContinuousClock.now
        var stoppedWhenStuck = false
        var lastStep = 0
        var losses: [(Int, Double)] = []
        var firstError: String?
    }

    /// Earlier attempts' newest checkpoint (and optimizer state), so the trainer resumes from
    /// it; downloaded last so its ctime is the newest (ai-toolkit picks by ctime).
    func restoreCheckpoint(_ job: WorkerJob, into folder: String) async throws -> Int? {
        let saved = try await bucket.listAllObjects(prefix: job.outputPrefix + "checkpoints/")
        let checkpoints = saved.compactMap { object -> (Int, String)? in
            let name = String(object.key.split(separator: "/").last ?? "")
            guard let artifact = job.artifact(forOutputFile: name), artifact.kind == .checkpoint, let step = artifact.step else { return nil }
            return (step, name)
        }
        guard let (step, name) = checkpoints.max(by: { $0.0 < $1.0 }) else { return nil }
        if saved.contains(where: { $0.key.hasSuffix("/optimizer.pt") }) {
            _ = try await bucket.getObject(key: job.outputPrefix + "checkpoints/optimizer.pt", to: folder + "/optimizer.pt")
        }
        _ = try await bucket.getObject(key: job.outputPrefix + "checkpoints/" + name, to: folder + "/" + name)
        return step
    }
}

/// The output folder's files, uploaded once each when complete (size unchanged since the last
/// scan, or at the end), with what they are.
actor Uploads {
    let job: WorkerJob
    let bucket: S3Client
    let folder: String
    /// The uploaded list, readable without waiting (the trainer's output handler needs it).
    let published: NIOLockedValueBox<[JobArtifact]>
    private var seen: [String: Int64] = [:]
    private var done: [String: Int64] = [:]
    private(set) var uploaded: [JobArtifact] = [] {
        didSet { published.withLockedValue { [uploaded] in $0 = uploaded } }
    }

    init(job: WorkerJob, bucket: S3Client, folder: String, published: NIOLockedValueBox<[JobArtifact]>) {
        self.job = job
        self.bucket = bucket
        self.folder = folder
        self.published = published
    }

    func scan(onlyStable: Bool) async throws {
        guard let walker = FileManager.default.enumerator(atPath: folder) else { return }
        var files: [String] = []
        while let relative = walker.nextObject() as? String { files.append(relative) }
        for relative in files.sorted() {
            guard var artifact = job.artifact(forOutputFile: relative) else { continue }
            let path = folder + "/" + relative
            guard let size = (try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int64 else { continue }
            defer { seen[relative] = size }
            if done[relative] == size { continue }
            if onlyStable, seen[relative] != size { continue }
            artifact.bytes = size
            try await send(path, to: artifact.key)
            done[relative] = size
            uploaded.removeAll { $0.key == artifact.key }
            uploaded.append(artifact)
        }
    }

    func put(file: String, key: String, kind: JobArtifact.Kind) async throws {
        guard FileManager.default.fileExists(atPath: file) else { return }
        try await send(file, to: key)
        let size = (try? FileManager.default.attributesOfItem(atPath: file))?[.size] as? Int64
        uploaded.removeAll { $0.key == key }
        uploaded.append(JobArtifact(kind: kind, key: key, bytes: size))
    }

    /// One upload (the client retries what can be retried); a refusal fails the job saying so.
    private func send(_ file: String, to key: String) async throws {
        do {
            try await bucket.putObject(key: key, file: file)
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            let tries = S3Client.isRetryable(error) ? "after \(bucket.retry.maxAttempts) tries" : "not retried"
            throw JobFailure("The bucket refused \(key) \(tries) (\(error)); check the worker's R2_* settings and the bucket, then retry the job: it resumes from the newest checkpoint in the bucket.")
        }
    }
}
