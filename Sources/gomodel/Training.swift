import ArgumentParser
import Foundation
import NIOConcurrencyHelpers
import TrainerClient
import TrainerCore

#if canImport(Glibc)
    import Glibc
#endif

struct Train: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a Qwen-Image-Edit LoRA on a dataset (after `gomodel login`).",
        discussion: "Unset options take the preset's defaults: 3000 steps, learning rate 0.0001, rank 16, the 32gb profile."
    )

    @ArgumentParser.Option(help: "The dataset's id or name (with --from-record: the recorded dataset unless given).") var dataset: String?
    @ArgumentParser.Option(
        help: ArgumentHelp(
            "A job's reproducibility record (`gomodel jobs record JOB -o FILE`): train again with every parameter it states, the seed too.",
            discussion: "Options given beside it override the record's. The dataset must still hold what the record lists, unless --allow-changed-dataset."))
    var fromRecord: String?
    @ArgumentParser.Flag(help: "With --from-record: train even if the dataset's content differs from the record's.") var allowChangedDataset = false
    @ArgumentParser.Option(
        help: ArgumentHelp(
            "The model: \(QwenImageEdit.presets.map(\.id).joined(separator: " or ")) (default \(QwenImageEdit.defaultPreset.id)).",
            discussion: "The server's own list: GET /api/presets."))
    var preset: String?
    @ArgumentParser.Option(help: "Training steps (500–4000 suit most edit LoRAs).") var steps: Int?
    @ArgumentParser.Option(help: "Learning rate.") var lr: Double?
    @ArgumentParser.Option(help: "LoRA rank.") var rank: Int?
    @ArgumentParser.Option(help: "GPU memory: 32gb (3-bit), 48gb (8-bit) or 80gb (no quantisation).") var profile: String?
    @ArgumentParser.Option(help: "Trigger word added to every caption: 1 to 50 ASCII letters, digits, _ or -.") var triggerWord: String?
    @ArgumentParser.Option(parsing: .upToNextOption, help: "Stems of the samples used for sample images.") var samplePairs: [String] = []
    @ArgumentParser.Option(help: "A Hugging Face repo (me/name) to push the LoRA to at the end; the worker needs HF_TOKEN.") var hfRepo: String?
    @ArgumentParser.Flag(help: "Make the Hugging Face repo public if the push creates it (default: private).") var hfPublic = false
    @ArgumentParser.Flag(help: "Follow the job until it ends.") var watch = false

    func validate() throws {
        if dataset == nil && fromRecord == nil { throw ValidationError("Give --dataset NAME (or --from-record FILE).") }
        if allowChangedDataset && fromRecord == nil { throw ValidationError("--allow-changed-dataset goes with --from-record.") }
    }

    func run() async throws {
        let record = try fromRecord.map(Self.readRecord)
        try await withClient(try ClientLogin.load()) { api, _ in
            let found = try await api.findDataset(dataset ?? record!.dataset.id.uuidString)
            var parameters = record?.job.parameters ?? API.JobParameters()
            // A rerun does not overwrite what the recorded one published, unless told to.
            if let recorded = parameters.hfRepo, hfRepo == nil {
                FileHandle.standardError.write(Data("Note: the recorded run pushed to the Hugging Face repo \(recorded); this one does not (--hf-repo to push).\n".utf8))
                parameters.hfRepo = nil
                parameters.hfPublic = nil
            }
            if let steps { parameters.steps = steps }
            if let lr { parameters.learningRate = lr }
            if let rank { parameters.rank = rank }
            if let profile { parameters.profile = profile }
            if let triggerWord { parameters.triggerWord = triggerWord }
            if !samplePairs.isEmpty { parameters.samplePairs = samplePairs }
            if let hfRepo { parameters.hfRepo = hfRepo }
            if hfPublic { parameters.hfPublic = true }
            if let record { try await Self.checkDataset(found, against: record, allowChanged: allowChangedDataset, api: api) }
            let chosenPreset = preset ?? record?.job.preset
            let job = try await api.createJob(datasetID: found.id, preset: chosenPreset, parameters: parameters)
            // Unbuffered, like the live lines that follow.
            FileHandle.standardOutput.write(Data("Queued job \(job.id.uuidString.lowercased()) on '\(found.name)'.\n".utf8))
            if let steps = job.params?["steps"]?.numberValue,
                let estimate = try? await api.estimate(preset: job.preset, profile: job.params?["profile"]?.stringValue, steps: Int(steps))
            {
                FileHandle.standardOutput.write(Data("Estimated GPU time: \(ProgressLine.duration(estimate.seconds)) (\(estimate.basis)).\n".utf8))
            }
            if watch {
                try await follow(job.id, api: api)
            } else {
                print("Follow it with `gomodel jobs watch \(job.id.uuidString.lowercased())`.")
            }
        }
    }
}

extension Train {
    static func readRecord(_ path: String) throws -> API.JobRecord {
        guard let data = FileManager.default.contents(atPath: path) else { throw CommandFailure("Cannot read \(path).") }
        let record: API.JobRecord
        do {
            record = try API.decoder.decode(API.JobRecord.self, from: data)
        } catch let error as DecodingError {
            let field: String
            switch error {
            case .keyNotFound(let key, let context): field = (context.codingPath + [key]).map(\.stringValue).joined(separator: ".") + " is missing"
            case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context):
                field = context.codingPath.isEmpty ? "it is not JSON" : context.codingPath.map(\.stringValue).joined(separator: ".") + " is not valid"
            @unknown default: field = "it cannot be read"
            }
            throw CommandFailure("\(path) is not a job record (\(field)); `gomodel jobs record JOB -o FILE` writes one.")
        }
        guard record.recordVersion == RunRecord.version else {
            throw CommandFailure("\(path) is a record of version \(record.recordVersion); this gomodel reads version \(RunRecord.version). Use a gomodel of its version.")
        }
        return record
    }

    /// The dataset must hold what the record lists: a rerun on other images is another training.
    static func checkDataset(_ dataset: API.Dataset, against record: API.JobRecord, allowChanged: Bool, api: ServerAPI) async throws {
        let current = try await api.dataset(dataset.id)
        guard let recorded = record.dataset.sha256 else {
            FileHandle.standardError.write(Data("Warning: the record has no digest of its dataset (a file's SHA-256 was unknown); the dataset cannot be compared.\n".utf8))
            return
        }
        guard current.contentSha256 != recorded else { return }
        let now = Dictionary((current.files ?? []).map { ($0.key, $0.sha256) }) { first, _ in first }
        let then = Dictionary(record.dataset.files.map { ($0.path, $0.sha256) }) { first, _ in first }
        var changes: [String] = []
        for (path, sha256) in then.sorted(by: { $0.key < $1.key }) {
            if let nowSHA = now[path] {
                if nowSHA != sha256 { changes.append("\(path) differs") }
            } else {
                changes.append("\(path) is gone")
            }
        }
        changes += now.keys.filter { then[$0] == nil }.sorted().map { "\($0) is new" }
        let listed = changes.prefix(10).joined(separator: "; ") + (changes.count > 10 ? "; and \(changes.count - 10) more" : "")
        let message = "The dataset '\(dataset.name)' is not what the record trained (\(listed.isEmpty ? "its content differs" : listed))."
        guard allowChanged else { throw CommandFailure(message + " Restore those files, or pass --allow-changed-dataset to train on it as it is now.") }
        FileHandle.standardError.write(Data("Warning: \(message) Training on it as it is now.\n".utf8))
    }
}

struct Jobs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Follow and manage training jobs.",
        subcommands: [List.self, Show.self, Watch.self, Cancel.self, Retry.self, Promote.self, Download.self, Record.self, Remove.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List your jobs, newest first.")

        func run() async throws {
            try await withClient(try ClientLogin.load()) { api, _ in
                let jobs = try await api.jobs()
                if jobs.isEmpty { print("No jobs yet; start one with `gomodel train --dataset NAME`.") }
                for job in jobs { print("\(job.id.uuidString.lowercased())  \(JobLine.render(job))") }
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a job: progress, artifacts, events, error.")
        @Argument(help: "The job's id.") var job: String

        func run() async throws {
            try await withClient(try ClientLogin.load()) { api, _ in
                let shown = try await api.job(try jobID(job))
                print("\(shown.id.uuidString.lowercased())  attempt \(shown.attempt)" + (shown.runpodJobId.map { "  RunPod \($0)" } ?? ""))
                print(JobLine.render(shown))
                for artifact in shown.artifacts {
                    print(
                        "  \(artifact.kind)  \(artifact.key)" + (artifact.bytes.map { "  \(ProgressLine.bytes($0))" } ?? "")
                            + "  (GET /api/jobs/\(shown.id.uuidString.lowercased())/artifacts/\(artifact.id))")
                }
                for event in shown.events ?? [] { print("  \(event.status): \(event.message)") }
                if let detail = shown.errorDetail { print("\n" + detail) }
            }
        }
    }

    struct Watch: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Follow a job live until it ends (Ctrl-C stops watching, not the job).")
        @Argument(help: "The job's id.") var job: String

        func run() async throws {
            try await withClient(try ClientLogin.load()) { api, _ in try await follow(try jobID(job), api: api) }
        }
    }

    struct Cancel: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Cancel a job.")
        @Argument(help: "The job's id.") var job: String

        func run() async throws {
            try await withClient(try ClientLogin.load()) { api, _ in
                let cancelled = try await api.cancelJob(try jobID(job))
                print(cancelled.status == "cancelled" ? "Cancelled." : "Cancel requested; the job stops shortly.")
            }
        }
    }

    struct Promote: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make a checkpoint a completed or cancelled job's result (what downloads give), or the final LoRA again.")
        @Argument(help: "The job's id.") var job: String
        @ArgumentParser.Option(help: "The checkpoint's step (`gomodel jobs show` lists them).") var step: Int?
        @ArgumentParser.Flag(help: "Make the final LoRA the result again.") var final = false

        func validate() throws {
            if (step == nil) == !final { throw ValidationError("Give --step N, or --final for the final LoRA.") }
        }

        func run() async throws {
            try await withClient(try ClientLogin.load()) { api, _ in
                let promoted = try await api.promote(try jobID(job), step: final ? nil : step)
                print(
                    promoted.result.map { $0.promoted ? "The checkpoint of step \($0.step ?? 0) is now the result." : "The final LoRA is the result." }
                        ?? "The job has no result yet.")
            }
        }
    }

    struct Download: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Download a job's result (the promoted checkpoint, else the final LoRA), a checkpoint, or all its files.",
            discussion: "Run it again to continue an interrupted download; every file is checked against the SHA-256 the job recorded.")
        @Argument(help: "The job's id.") var job: String
        @ArgumentParser.Option(help: "The checkpoint of this step instead of the result.") var step: Int?
        @ArgumentParser.Flag(help: "Every file: the LoRA, checkpoints, samples, log, loss curve and config (not the optimizer states).") var all = false
        @ArgumentParser.Option(name: .shortAndLong, help: "The folder to save into.") var output = "."

        func run() async throws {
            if step != nil && all { throw ValidationError("Give --step N or --all, not both.") }
            try await withClient(try ClientLogin.load()) { api, http in
                let shown = try await api.job(try jobID(job))
                let wanted: [(API.Job.Artifact, Bool)]
                if all {
                    wanted = shown.artifacts.filter { $0.kind != "optimizer" }.map { ($0, false) }
                } else if let step {
                    guard let checkpoint = shown.artifacts.first(where: { $0.kind == "checkpoint" && $0.step == step }) else {
                        let steps = shown.artifacts.filter { $0.kind == "checkpoint" }.compactMap(\.step).sorted()
                        let listed = steps.map(String.init).joined(separator: ", ")
                        throw ValidationError("The job has no checkpoint at step \(step)" + (steps.isEmpty ? "." : "; it has \(listed)."))
                    }
                    wanted = [(checkpoint, false)]
                } else {
                    guard let result = shown.result, let artifact = shown.artifacts.first(where: { $0.id == result.artifactId }) else {
                        throw ValidationError("The job has no LoRA yet; wait until it completes, or download a checkpoint with --step.")
                    }
                    wanted = [(artifact, true)]
                }
                let terminal = isatty(STDERR_FILENO) == 1
                let started = Date()
                let download = ArtifactDownload(api: api, http: http)
                for (artifact, isResult) in wanted {
                    let drawn = NIOLockedValueBox(Date.distantPast)
                    let (path, alreadyThere) = try await download.run(job: shown, artifact: artifact, isResult: isResult, into: output) { progress in
                        let now = Date()
                        let due = drawn.withLockedValue { last in
                            guard progress.bytesDone == progress.bytesTotal || now.timeIntervalSince(last) >= (terminal ? 0.1 : 5) else { return false }
                            last = now
                            return true
                        }
                        guard due else { return }
                        let line =
                            "\(progress.file): "
                            + ProgressLine.render(
                                .init(filesDone: 0, filesTotal: 0, bytesDone: progress.bytesDone, bytesTotal: progress.bytesTotal), elapsed: now.timeIntervalSince(started))
                        FileHandle.standardError.write(Data((terminal ? "\r\u{1B}[K" + line : line + "\n").utf8))
                    }
                    if terminal && !alreadyThere { FileHandle.standardError.write(Data("\n".utf8)) }
                    print(alreadyThere ? "\(path) (already there, checked)" : path)
                }
            }
        }
    }

    struct Record: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Save a job's reproducibility record: every parameter, the config sent, the dataset's file digests, and each attempt's worker, GPU, trainer commit and packages.",
            discussion: "`gomodel train --from-record FILE` starts the same training again.")
        @Argument(help: "The job's id.") var job: String
        @ArgumentParser.Option(name: .shortAndLong, help: "The file to write (default: standard output).") var output: String?

        func run() async throws {
            try await withClient(try ClientLogin.load()) { api, _ in
                let record = try await api.record(try jobID(job))
                let encoder = JSONEncoder()
                encoder.dateEncodingStrategy = .iso8601
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
                let data = try encoder.encode(record) + Data("\n".utf8)
                if let output {
                    try data.write(to: URL(fileURLWithPath: output))
                    print("Saved the record of \(job) to \(output).")
                } else {
                    FileHandle.standardOutput.write(data)
                }
            }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rm", abstract: "Delete an ended job: its LoRA, checkpoints and samples in the bucket, its events and its record.")
        @Argument(help: "The job's id.") var job: String
        @ArgumentParser.Flag(name: .shortAndLong, help: "Do not ask for confirmation.") var yes = false

        func run() async throws {
            try await withClient(try ClientLogin.load()) { api, _ in
                let id = try jobID(job)
                if !yes {
                    guard isatty(STDIN_FILENO) == 1 else { throw ValidationError("Add --yes to delete job \(job) without a terminal to confirm on.") }
                    print("Delete job \(job) and all its outputs? Type 'yes' to confirm: ", terminator: "")
                    guard readLine(strippingNewline: true) == "yes" else {
                        print("Not deleted.")
                        return
                    }
                }
                try await api.deleteJob(id)
                print("Deleted job \(job).")
            }
        }
    }

    struct Retry: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Run a failed, cancelled or timed-out job again from its last checkpoint.")
        @Argument(help: "The job's id.") var job: String

        func run() async throws {
            try await withClient(try ClientLogin.load()) { api, _ in
                let retried = try await api.retryJob(try jobID(job))
                print("Queued attempt \(retried.attempt) of \(retried.id.uuidString.lowercased()).")
            }
        }
    }
}

private func jobID(_ text: String) throws -> UUID {
    guard let id = UUID(uuidString: text) else { throw ValidationError("'\(text)' is not a job id; `gomodel jobs list` shows them.") }
    return id
}

/// Prints the job's line as it changes (redrawn on a terminal), then its outcome; exits 1 when
/// it did not complete.
private func follow(_ id: UUID, api: ServerAPI) async throws {
    let terminal = isatty(STDOUT_FILENO) == 1
    let final = try await api.watchJob(id) { job in
        let line = JobLine.render(job)
        FileHandle.standardOutput.write(Data((terminal ? "\r\u{1B}[K" + line : line + "\n").utf8))
    }
    if terminal { print() }
    switch final.status {
    case "completed":
        print("Completed. Artifacts:")
        for artifact in final.artifacts where artifact.kind == "lora" {
            print("  \(artifact.key)  →  GET /api/jobs/\(final.id.uuidString.lowercased())/artifacts/\(artifact.id)")
        }
    default:
        print("The job ended \(final.status)" + (final.error.map { ": \($0)" } ?? "."))
        throw ExitCode(1)
    }
}
