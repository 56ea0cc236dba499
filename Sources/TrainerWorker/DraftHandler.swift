import Foundation
import NIOConcurrencyHelpers
import ObjectStorage
import TrainerCore

/// Drafts edit instructions on the GPU (`JobInput.Task.draftInstructions`): syncs the dataset,
/// runs the captioner (`caption.py`, Qwen2.5-VL through transformers, beside ai-toolkit) over
/// each sample's pictures, and returns its replies; the server reads them
/// (`InstructionDraft.parse`) and keeps them as drafts for review.
public struct DraftHandler: JobHandler {
    let jobBucket: JobBucket
    let workRoot: String
    /// The captioner's words (`GOMODEL_CAPTION_COMMAND`); `--model M --request R` is appended.
    /// nil: `python` with the `caption.py` shipped beside the binary.
    let command: [String]?
    let environment: [String: String]
    public var stopGrace: Duration = .seconds(10)

    public init(bucket: JobBucket, workRoot: String, command: [String]?, environment: [String: String]) {
        self.jobBucket = bucket
        self.workRoot = workRoot
        self.command = command
        self.environment = environment
    }

    /// The resource folder SwiftPM puts beside the binary. Looked up by hand, only when a drafting
    /// job comes: `Bundle.module` stops the process when the folder is missing, and a worker
    /// deployed without it must still train.
    static let resourceFolder = "gomodel_TrainerWorker.resources"

    func captionerCommand() throws -> [String] {
        if let command { return command }
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        for folder in [binary, Bundle.main.bundleURL] {
            let script = folder.appendingPathComponent(Self.resourceFolder).appendingPathComponent("caption.py").path
            if FileManager.default.fileExists(atPath: script) { return ["python", script] }
        }
        throw JobFailure(
            "This worker cannot draft instructions: \(Self.resourceFolder)/caption.py is not beside the gomodel binary. Copy that folder next to it (the worker image has it), or set GOMODEL_CAPTION_COMMAND."
        )
    }

    public func run(_ taken: WorkerProtocolClient.TakenJob, progress: ProgressReporter) async throws -> JSONValue {
        let started = Date()
        let input: JobInput
        let request: InstructionDraft.WorkerRequest
        do {
            input = try JobInput(json: taken.input)
            request = try JSONDecoder().decode(InstructionDraft.WorkerRequest.self, from: Data(input.jobConfig.rendered().utf8))
        } catch {
            throw JobFailure("The drafting job's input is not valid: \(error)")
        }
        let command = try captionerCommand()
        let bucket = try jobBucket.client(for: input)
        await progress.report(["phase": "syncing", "message": "Downloading the dataset"])
        let datasetFolder = workRoot + "/datasets/" + input.dataset.datasetId
        _ = try await DatasetSync(bucket: bucket).sync(prefix: input.dataset.prefix, into: datasetFolder)

        let jobFolder = workRoot + "/jobs/" + input.trainerJobID
        try FileManager.default.createDirectory(atPath: jobFolder, withIntermediateDirectories: true)
        let requestPath = jobFolder + "/drafts-request.json"
        let items: [JSONValue] = request.items.map { item in
            ["id": .string(item.stem), "images": .array(item.images.map { .string(datasetFolder + "/" + $0) }), "prompt": .string(item.prompt)]
        }
        try (["system": .string(request.system), "max_new_tokens": .int(request.maxNewTokens), "items": .array(items)] as JSONValue).rendered()
            .write(toFile: requestPath, atomically: true, encoding: .utf8)
        await progress.report(["phase": "loading", "message": .string("Loading \(request.model)")])

        let total = request.items.count
        let replies = NIOLockedValueBox<[JSONValue]>([])
        let process = TrainerProcess(
            command: command + ["--model", request.model, "--request", requestPath], directory: nil, environment: environment, logPath: jobFolder + "/log.txt",
            stopGrace: stopGrace)
        let status = try await process.run { line in
            // Its stdout holds JSON lines only; its stderr (diagnostics, progress bars) is in the log.
            guard line.hasPrefix("{"), let json = try? JSONDecoder().decode(JSONValue.self, from: Data(line.utf8)) else { return }
            if json["event"]?.stringValue == "loaded" {
                // The model generates from images as when sampling: the contract's phase for it.
                await progress.report(["phase": "sampling", "step": 0, "total_steps": .int(total), "message": "Drafting instructions"])
            } else if let stem = json["id"]?.stringValue {
                let reply: JSONValue = json["text"].map { ["stem": .string(stem), "text": $0] } ?? ["stem": .string(stem), "error": json["error"] ?? "no answer"]
                let done = replies.withLockedValue {
                    $0.append(reply)
                    return $0.count
                }
                await progress.report(["phase": "sampling", "step": .int(done), "total_steps": .int(total), "message": .string("Drafted \(done) of \(total)")])
            }
        }
        if Task.isCancelled { throw CancellationError() }
        guard status == 0 else {
            let tail = (try? String(contentsOfFile: jobFolder + "/log.txt", encoding: .utf8)).map { String($0.suffix(4000)) }
            throw JobFailure("The captioner exited with status \(status) (\(request.model)).", detail: tail)
        }
        return [
            "drafts": .array(replies.withLockedValue { $0 }), "model": .string(request.model),
            "duration_seconds": .double(Date().timeIntervalSince(started).rounded()),
        ]
    }
}
