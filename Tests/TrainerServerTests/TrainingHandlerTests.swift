import Foundation
import NIOCore
import ObjectStorage
import Testing
import TrainerCore
import TrainerWorker
import VaporTesting

@testable import TrainerServer

/// A job from the built-in queue through the worker's runtime and training handler, with the
/// stand-in trainer: dataset sync, progress, uploads, the LoRA, and resume after a crash.
/// Serialized: each test trains with the stand-in trainer (CPU-bound processes).
@Suite(.serialized) struct TrainingHandlerTests {
    static let standIn = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/stand-in-trainer.py").path

    /// With `scopedStoreKeys`, the worker has no store settings: it uses the key each job from the
    /// built-in queue brings (`gomodel worker --server` alone).
    static func handler(_ store: RunningStore, work: String, crashAt: Int? = nil, extra: [String: String] = [:], scopedStoreKeys: Bool = false) -> TrainingHandler {
        var environment = extra.merging(["STAND_IN_STEP_SECONDS": "0.01"]) { old, _ in old }
        if let crashAt { environment["STAND_IN_CRASH_AT_STEP"] = String(crashAt) }
        let bucket: JobBucket =
            scopedStoreKeys
            ? .builtInStore(url: store.endpoint.url, http: store.http, retry: .default) : .configured(store.client(retry: .default))
        var handler = TrainingHandler(
            bucket: bucket, workRoot: work, trainerCommand: ["python3", standIn], trainerDirectory: nil, trainerEnvironment: environment
        )
        handler.uploadScanInterval = .milliseconds(100)
        return handler
    }

    @Test func aJobTrainsUploadsAndResumesAfterACrash() async throws {
        try await WorkerRuntimeTests.withWorker { setup, client in
            var setup = setup
            let work = WorkerFailureTests.work()
            defer { try? FileManager.default.removeItem(atPath: work) }
            let id = try #require(try await setup.createJob(#"{"steps": 40, "saveEvery": 10, "sampleEvery": 20}"#)["id"] as? String)
            let prefix = "outputs/\(id.lowercased())/"

            // First attempt: the trainer dies at step 25; its checkpoints are kept.
            // The worker has no store settings: each attempt brings a store key scoped to the job.
            try await WorkerRuntime(client: client, handler: Self.handler(setup.store, work: work, crashAt: 25, scopedStoreKeys: true), progressInterval: .milliseconds(50)).run(
                maximumJobs: 1)
            var shown = try await setup.job(id)
            #expect(shown["status"] as? String == "failed", "\(shown)")
            #expect((shown["errorDetail"] as? String)?.contains("stand-in crash requested") == true)
            let kept = try await setup.store.client().listAllObjects(prefix: prefix + "checkpoints/").map(\.key)
            #expect(kept.contains(prefix + "checkpoints/gm_\(String(id.lowercased().filter(\.isHexDigit).prefix(12)))_000000020.safetensors"), "\(kept)")

            // Retry: the next attempt resumes from step 20 and completes.
            _ = try await setup.user.client.send(.POST, "/api/jobs/\(id)/retry")
            try await WorkerRuntime(client: client, handler: Self.handler(setup.store, work: work + "-2", scopedStoreKeys: true), progressInterval: .milliseconds(50)).run(
                maximumJobs: 1)
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
            let log = String(buffer: try await setup.store.client().getObjectBytes(key: prefix + "log.txt"))
            #expect(log.contains("Found step 20 in metadata"))
            // optimizer.pt is rewritten in place with the same size at every save: the state of
            // step 20 (not the first save's) must come back with checkpoint 20.
            #expect(log.contains("stand-in: optimizer state of step 20"), "\(log.suffix(1500))")
            #expect(log.hasPrefix("gomodel worker: Resuming from step 20 with its optimizer state (\(prefix)checkpoints/"), "\(log.prefix(300))")
            let optimizerStates = (shown["artifacts"] as? [[String: Any]] ?? []).filter { $0["kind"] as? String == "optimizer" }.compactMap { $0["step"] as? Int }
            #expect(optimizerStates.sorted() == [10, 20, 30], "one optimizer state per save: \(optimizerStates)")
            // One point per step across both attempts (the bar draws each step twice).
            let csv = String(buffer: try await setup.store.client().getObjectBytes(key: prefix + "loss.csv"))
            let steps = LossCurve.points(csv: csv).map(\.step)
            #expect(csv.hasPrefix("step,loss\n") && steps == Array(0..<40), "\(steps)")
        }
    }

    /// Two runs of one attempt (a submission whose answer was lost, then submitted again): the
    /// one that finds the attempt claimed ends at once without training, naming the holder; the
    /// holder itself, handed the job again under its own id, goes on; and a run that starts after
    /// the job was cancelled without its run being known stops before training.
    @Test func onlyTheRunHoldingTheAttemptsClaimTrains() async throws {
        try await WorkerRuntimeTests.withWorker { setup, client in
            var setup = setup
            let work = WorkerFailureTests.work()
            defer { try? FileManager.default.removeItem(atPath: work) }
            let id = try #require(try await setup.createJob(#"{"steps": 20, "saveEvery": 10, "sampleEvery": 0}"#)["id"] as? String).lowercased()
            guard case .job(let taken) = try await client.take(timeout: .seconds(5)) else {
                Issue.record("no job")
                return
            }
            let handler = Self.handler(setup.store, work: work)
            let reporter = ProgressReporter(interval: .milliseconds(10)) { _ in }

            try await JobTests.claim(setup, job: id, run: "the-other-run")
            let twin = try await handler.run(taken, progress: reporter)
            #expect(twin == WorkerResult.duplicate(of: "the-other-run"))
            let written = try await setup.store.client().listAllObjects(prefix: "outputs/\(id)/").map(\.key)
            #expect(written == ["outputs/\(id)/claims/attempt-1.json"], "nothing trained or uploaded: \(written)")
            #expect(!FileManager.default.fileExists(atPath: work + "/jobs/" + id), "not even a work folder")

            // The holder, handed the same job again (RunPod retrying it on another machine), trains.
            let holder = try await handler.run(WorkerProtocolClient.TakenJob(id: "the-other-run", input: taken.input), progress: reporter)
            #expect(holder["steps"] == 20 && WorkerResult.duplicateOf(holder) == nil, "\(holder)")

            // A cancel mark for the next attempt: a run that starts after it stops before training.
            var next = try JobInput(json: taken.input)
            next.attempt = 2
            let mark = AttemptClaim.cancelledKey(outputPrefix: StorageKeys.outputPrefix(id), attempt: 2)
            try await setup.store.client().putObject(key: mark, bytes: ByteBuffer(string: "cancelled\n"))
            let late = try await handler.run(WorkerProtocolClient.TakenJob(id: "late-run", input: next.json), progress: reporter)
            #expect(late == WorkerResult.cancelledBeforeStart)
        }
    }

    /// A checkpoint and its optimizer state are in the bucket within moments of their save, not
    /// at the uploader's next round (a minute here): a worker lost right after a save resumes
    /// from that save.
    @Test func aCheckpointIsInTheBucketMomentsAfterItsSave() async throws {
        try await WorkerRuntimeTests.withWorker { setup, client in
            var setup = setup
            let work = WorkerFailureTests.work()
            defer { try? FileManager.default.removeItem(atPath: work) }
            let id = try #require(try await setup.createJob(#"{"steps": 400, "saveEvery": 20, "sampleEvery": 0}"#)["id"] as? String).lowercased()
            var handler = Self.handler(setup.store, work: work, extra: ["STAND_IN_STEP_SECONDS": "0.05"])
            handler.uploadScanInterval = .seconds(60)
            let running = Task { try await WorkerRuntime(client: client, handler: handler, progressInterval: .milliseconds(50)).run(maximumJobs: 1) }
            defer { running.cancel() }
            let checkpoint = "outputs/\(id)/checkpoints/gm_\(String(id.filter(\.isHexDigit).prefix(12)))_000000020.safetensors"
            let optimizer = checkpoint.replacingOccurrences(of: ".safetensors", with: ".optimizer.pt")
            let deadline = ContinuousClock.now + .seconds(20)
            var keys: [String] = []
            while ContinuousClock.now < deadline {
                keys = try await setup.store.client().listAllObjects(prefix: "outputs/\(id)/checkpoints/").map(\.key)
                if keys.contains(checkpoint) && keys.contains(optimizer) { break }
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(keys.contains(checkpoint) && keys.contains(optimizer), "checkpoint 20 and its optimizer state within seconds of the save: \(keys)")
            running.cancel()
            _ = try? await running.value
        }
    }
}

/// The server in RunPod mode and a real worker: the suite's fake RunPod hands the job to the
/// worker over RunPod's worker protocol, the server tracks it through `/status` and webhooks.
/// Serialized: the stand-in trainer runs in each test (CPU-bound processes).
@Suite(.serialized) struct RunPodWorkerTests {
    @Test func aJobTrainsThroughRunPodAndACancelStopsTheTrainer() async throws {
        try await JobTests.withSetup { setup in
            let endpoints = try WorkerEndpoints.fromRunPod(environment: setup.fake.workerEnvironment(podID: "pod-7"))
            let client = WorkerProtocolClient(endpoints: endpoints, http: setup.store.http)
            let work = WorkerFailureTests.work()
            defer { try? FileManager.default.removeItem(atPath: work) }
            let runtime = WorkerRuntime(
                client: client, handler: TrainingHandlerTests.handler(setup.store, work: work), progressInterval: .milliseconds(50), stopPollInterval: .milliseconds(100))

            // Submitted to RunPod, taken by the worker, trained, completed.
            let id = try #require(try await setup.createJob(#"{"steps": 40, "saveEvery": 10, "sampleEvery": 20}"#)["id"] as? String)
            let worker = Task { try await runtime.run(maximumJobs: 1) }
            var shown = try await Self.track(&setup, id) { $0["status"] as? String == "completed" }
            try await worker.value
            let runPodJob = try #require(setup.fake.jobs.first)
            #expect(runPodJob.status == "COMPLETED" && shown["runpodJobId"] as? String == runPodJob.id)
            #expect((shown["progress"] as? [String: Any])?["step"] as? Int == 40)
            let kinds = Set((shown["artifacts"] as? [[String: Any]] ?? []).compactMap { $0["kind"] as? String })
            #expect(kinds.isSuperset(of: ["lora", "checkpoint", "sample", "log", "loss", "config"]), "\(kinds)")
            // Pings with the job's id: WorkerLifecycleTests (the heartbeat is the worker's, every 10 s).
            let lora = try #require((shown["artifacts"] as? [[String: Any]])?.first { $0["kind"] as? String == "lora" }?["key"] as? String)
            var header = try await setup.store.client().getObjectBytes(key: lora)
            let length = header.readInteger(endianness: .little, as: UInt64.self) ?? 0
            #expect(header.readString(length: Int(length))?.contains("training_info") == true)

            // Cancelled mid-run: RunPod's job-stop reaches the worker, the trainer stops, and
            // the checkpoints written so far stay in the bucket.
            var slow = TrainingHandlerTests.handler(setup.store, work: work + "-2", extra: ["STAND_IN_STEP_SECONDS": "0.05"])
            slow.stopGrace = .seconds(5)
            slow.lossUploadInterval = .milliseconds(200)
            let second = try #require(try await setup.createJob(#"{"steps": 400, "saveEvery": 10, "sampleEvery": 100}"#)["id"] as? String)
            let stopping = Task {
                try await WorkerRuntime(client: client, handler: slow, progressInterval: .milliseconds(50), stopPollInterval: .milliseconds(100)).run(maximumJobs: 1)
            }
            let midRun = try await Self.track(&setup, second) { (($0["progress"] as? [String: Any])?["step"] as? Int ?? 0) >= 25 }
            let lossSoFar = try #require(
                (midRun["artifacts"] as? [[String: Any]])?.first { $0["kind"] as? String == "loss" }?["key"] as? String, "loss.csv is uploaded while training")
            let csv = String(buffer: try await setup.store.client().getObjectBytes(key: lossSoFar))
            #expect(csv.hasPrefix("step,loss\n") && csv.split(separator: "\n").count > 2, "\(csv)")
            _ = try await setup.user.client.send(.POST, "/api/jobs/\(second)/cancel")
            shown = try await Self.track(&setup, second) { $0["status"] as? String == "cancelled" }
            try await stopping.value
            let kept = try await setup.store.client().listAllObjects(prefix: "outputs/\(second.lowercased())/checkpoints/").map(\.key)
            #expect(kept.contains { $0.hasSuffix("_000000020.safetensors") }, "\(kept)")
            #expect(((shown["progress"] as? [String: Any])?["step"] as? Int ?? 400) < 400, "stopped before the end")
        }
    }

    /// Runs the server's runner (its clock moved on each time, so it polls) until `done` holds.
    static func track(_ setup: inout JobTests.Setup, _ id: String, until done: ([String: Any]) -> Bool) async throws -> [String: Any] {
        let deadline = ContinuousClock.now + .seconds(90)
        while ContinuousClock.now < deadline {
            try await setup.pollAgain()
            let shown = try await setup.job(id)
            if done(shown) { return shown }
            try await Task.sleep(for: .milliseconds(100))
        }
        Issue.record("job \(id) did not get there in 90 s: \(try await setup.job(id))")
        return try await setup.job(id)
    }
}
