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

    @ArgumentParser.Option(help: "The dataset's id or name.") var dataset: String
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

    func run() async throws {
        try await withClient(try ClientLogin.load()) { api, _ in
            let found = try await api.findDataset(dataset)
            var parameters = API.JobParameters()
            parameters.steps = steps
            parameters.learningRate = lr
            parameters.rank = rank
            parameters.profile = profile
            parameters.triggerWord = triggerWord
            parameters.samplePairs = samplePairs.isEmpty ? nil : samplePairs
            parameters.hfRepo = hfRepo
            parameters.hfPublic = hfPublic ? true : nil
            let job = try await api.createJob(datasetID: found.id, preset: preset, parameters: parameters)
            // Unbuffered, like the live lines that follow.
            FileHandle.standardOutput.write(Data("Queued job \(job.id.uuidString.lowercased()) on '\(found.name)'.\n".utf8))
            if watch {
                try await follow(job.id, api: api)
            } else {
                print("Follow it with `gomodel jobs watch \(job.id.uuidString.lowercased())`.")
            }
        }
    }
}

struct Jobs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Follow and manage training jobs.", subcommands: [List.self, Show.self, Watch.self, Cancel.self, Retry.self, Promote.self, Download.self])

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
