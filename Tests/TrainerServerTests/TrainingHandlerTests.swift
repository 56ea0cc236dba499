import Foundation
import NIOCore
import ObjectStorage
import Testing
import TrainerCore
@testable import TrainerServer
import TrainerWorker
import VaporTesting

/// A job from the built-in queue through the worker's runtime and training handler, with the
/// stand-in trainer: dataset sync, progress, uploads, the LoRA, and resume after a crash.
@Suite(.serialized) struct TrainingHandlerTests {
    static let standIn = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/stand-in-trainer.py").path

    static func handler(_ store: RunningStore, work: String, crashAt: Int? = nil, extra: [String: String] = [:]) -> TrainingHandler {
        var environment = extra.merging(["STAND_IN_STEP_SECONDS": "0.01"]) { old, _ in old }
        if let crashAt { environment["STAND_IN_CRASH_AT_STEP"] = String(crashAt) }
        var handler = TrainingHandler(
            bucket: store.client(retry: .default), workRoot: work, trainerCommand: ["python3", standIn], trainerDirectory: nil, trainerEnvironment: environment
        )
        handler.uploadScanInterval = .milliseconds(100)
        return handler
    }

    @Test func aJobTrainsUploadsAndResumesAfterACrash() async throws {
        try await WorkerRuntimeTests.withWorker { setup, client in
            var setup = setup
            let work = FileManager.default.temporaryDirectory.appendingPathComponent("gomodel-worker-\(UUID().uuidString)").path
            defer { try? FileManager.default.removeItem(atPath: work) }
            let id = try #require(try await setup.createJob(#"{"steps": 40, "saveEvery": 10, "sampleEvery": 20}"#)["id"] as? String)
            let prefix = "outputs/\(id.lowercased())/"

            // First attempt: the trainer dies at step 25; its checkpoints are kept.
            try await WorkerRuntime(client: client, handler: Self.handler(setup.store, work: work, crashAt: 25), progressInterval: .milliseconds(50)).run(maximumJobs: 1)
            var shown = try await setup.job(id)
            #expect(shown["status"] as? String == "failed", "\(shown)")
            #expect((shown["errorDetail"] as? String)?.contains("stand-in crash requested") == true)
            let kept = try await setup.store.client().listAllObjects(prefix: prefix + "checkpoints/").map(\.key)
            #expect(kept.contains(prefix + "checkpoints/gm_\(String(id.lowercased().filter(\.isHexDigit).prefix(12)))_000000020.safetensors"), "\(kept)")

            // Retry: the next attempt resumes from step 20 and completes.
            _ = try await setup.user.client.send(.POST, "/api/jobs/\(id)/retry")
            try await WorkerRuntime(client: client, handler: Self.handler(setup.store, work: work + "-2"), progressInterval: .milliseconds(50)).run(maximumJobs: 1)
            shown = try await setup.job(id)
            #expect(shown["status"] as? String == "completed", "\(shown)")
            let kinds = Set((shown["artifacts"] as? [[String: Any]] ?? []).compactMap { $0["kind"] as? String })
            #expect(kinds.isSuperset(of: ["lora", "checkpoint", "sample", "log", "loss", "config"]), "\(kinds)")
            #expect((shown["progress"] as? [String: Any])?["step"] as? Int == 40)

            let lora = try #require((shown["artifacts"] as? [[String: Any]])?.first { $0["kind"] as? String == "lora" }?["key"] as? String)
            var header = try await setup.store.client().getObjectBytes(key: lora)
            let length = header.readInteger(endianness: .little, as: UInt64.self) ?? 0
            let json = header.readString(length: Int(length)) ?? ""
            #expect(json.contains("training_info") && json.contains("\\\"step\\\": 40"))
            let log = try await setup.store.client().getObjectBytes(key: prefix + "log.txt")
            #expect(String(buffer: log).contains("Found step 20 in metadata"))
            let csv = String(buffer: try await setup.store.client().getObjectBytes(key: prefix + "loss.csv"))
            #expect(csv.hasPrefix("step,loss\n") && csv.contains("\n39,"))
        }
    }
}
