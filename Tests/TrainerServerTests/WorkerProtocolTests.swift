import Foundation
import NIOConcurrencyHelpers
import NIOCore
import ObjectStorage
import Testing
import TrainerCore
import VaporTesting

@testable import TrainerServer
@testable import TrainerWorker

/// The worker's protocol client against the built-in queue of a listening server.
@Suite struct WorkerProtocolTests {
    @Test func runPodsVariablesBecomeTheURLs() throws {
        let endpoints = try WorkerEndpoints.fromRunPod(environment: [
            "RUNPOD_WEBHOOK_GET_JOB": "https://api.runpod.ai/v2/ep/job-take/$RUNPOD_POD_ID?gpu=H100",
            "RUNPOD_WEBHOOK_POST_OUTPUT": "https://api.runpod.ai/v2/ep/job-done/$RUNPOD_POD_ID/$ID?gpu=H100",
            "RUNPOD_WEBHOOK_PING": "https://api.runpod.ai/v2/ep/ping/$RUNPOD_POD_ID?gpu=H100",
            "RUNPOD_AI_API_KEY": "raw-key", "RUNPOD_POD_ID": "pod7", "RUNPOD_PING_INTERVAL": "4000",
        ])
        #expect(endpoints.jobTake == "https://api.runpod.ai/v2/ep/job-take/pod7?gpu=H100")
        #expect(endpoints.jobDone("job-1-u1") == "https://api.runpod.ai/v2/ep/job-done/pod7/job-1-u1?gpu=H100")
        #expect(endpoints.jobStop == "https://api.runpod.ai/v2/ep/job-stop/pod7?gpu=H100")
        #expect(endpoints.ping == "https://api.runpod.ai/v2/ep/ping/pod7?gpu=H100" && endpoints.pingInterval == .seconds(4))
        #expect(endpoints.authorization == "raw-key")
        // Templates that use $ID for the worker, and no query string.
        let bare = try WorkerEndpoints.fromRunPod(environment: [
            "RUNPOD_WEBHOOK_GET_JOB": "http://x/v2/ep/job-take/$ID", "RUNPOD_WEBHOOK_POST_OUTPUT": "http://x/v2/ep/job-done/$RUNPOD_POD_ID/$ID",
            "RUNPOD_AI_API_KEY": "k", "RUNPOD_POD_ID": "p",
        ])
        #expect(bare.jobTake == "http://x/v2/ep/job-take/p?" && bare.ping == "http://x/v2/ep/ping/p?" && bare.jobDone("j") == "http://x/v2/ep/job-done/p/j?")
        #expect(throws: WorkerEndpoints.MissingSetting.self) { try WorkerEndpoints.fromRunPod(environment: [:]) }
    }

    @Test func aWorkerTakesReportsAndFinishesThroughTheBuiltInQueue() async throws {
        try await withRunningStore { store in
            var user = try await DatasetTests.User(store, email: "ann@example.com")
            let datasetID = try await user.createDataset()
            try await user.upload(datasetID, DatasetTests.pair)
            let key = try await Administration(app: store.app).createWorkerKey(name: "box")
            let client = WorkerProtocolClient(endpoints: .builtInQueue(server: store.baseURL, key: key, workerID: "pod 1"), http: store.http)
            #expect(try await client.take(timeout: .seconds(5)) == WorkerProtocolClient.TakeOutcome.none)

            var setup = JobTests.Setup(user: user, store: store, fake: FakeRunPod(), datasetID: datasetID)
            let id = try #require(try await setup.createJob()["id"] as? String)
            guard case .job(let taken) = try await client.take(timeout: .seconds(5)) else {
                Issue.record("no job")
                return
            }
            let job = try WorkerJob(input: taken.input)
            #expect(job.trainerJobID == id.lowercased() && job.datasetPrefix == "datasets/\(datasetID)/")

            try await client.ping(jobIDs: [taken.id])
            try await client.progress(jobID: taken.id, ["phase": "training", "step": 5, "total_steps": 100, "loss": 0.3])
            #expect((try await setup.job(id)["progress"] as? [String: Any])?["step"] as? Int == 5)
            #expect(try await client.jobsToStop().isEmpty)
            _ = try await user.client.send(.POST, "/api/jobs/\(id)/cancel")
            // Telling the worker ends the job (RunPod's workers post nothing after a stop), and the
            // stop is told again while the lease lasts, in case that answer was lost.
            #expect(try await client.jobsToStop() == [taken.id])
            #expect(try await setup.job(id)["status"] as? String == "cancelled")
            #expect(try await client.jobsToStop() == [taken.id])
            // A late post of the stopped job changes nothing.
            try await client.finish(jobID: taken.id, error: "stopped on request")
            let ended = try await setup.job(id)
            #expect(ended["status"] as? String == "cancelled" && ended["error"] == nil)

            let wrong = WorkerProtocolClient(endpoints: .builtInQueue(server: store.baseURL, key: "gmw_nope", workerID: "x"), http: store.http)
            let refused = await #expect(throws: WorkerProtocolClient.KeyRefused.self) { try await wrong.take(timeout: .seconds(5)) }
            #expect(refused?.status == 401)
        }
    }
}

/// A server running the built-in store hands each job a store key scoped to it, so a worker needs
/// nothing but `--server` and `--key`, and never holds the store's admin pair.
@Suite struct ScopedStoreKeyTests {
    @Test func aJobsStoreKeyReachesItsDatasetAndOutputsOnly() async throws {
        try await WorkerRuntimeTests.withWorker { setup, client in
            var setup = setup
            let id = try #require(try await setup.createJob()["id"] as? String).lowercased()
            guard case .job(let taken) = try await client.take(timeout: .seconds(5)), let key = try JobInput(json: taken.input).storeKey else {
                Issue.record("no job, or no store key in its input")
                return
            }
            #expect(key.accessKeyID != setup.store.endpoint.credentials.accessKeyID, "not the admin pair")
            var endpoint = setup.store.endpoint
            endpoint.credentials = S3Credentials(accessKeyID: key.accessKeyID, secretAccessKey: Secret(key.secretAccessKey))
            let scoped = S3Client(endpoint: endpoint, httpClient: setup.store.http)
            let dataset = "datasets/\(setup.datasetID.lowercased())/"

            // Allowed: read the dataset, read and write the job's outputs.
            let files = try await scoped.listAllObjects(prefix: dataset)
            #expect(!files.isEmpty)
            _ = try await scoped.getObjectBytes(key: try #require(files.first).key)
            _ = try await scoped.putObject(key: "outputs/\(id)/checkpoints/a.safetensors", bytes: ByteBuffer(string: "x"))
            #expect(try await scoped.listAllObjects(prefix: "outputs/\(id)/").count == 1)

            // Refused: writing the dataset, other prefixes, listing the bucket, copying out.
            func refused(_ what: String, _ operation: () async throws -> Void) async {
                do {
                    try await operation()
                    Issue.record("\(what) was allowed")
                } catch let error as S3Error {
                    #expect(error.code == .accessDenied, "\(what): \(error)")
                } catch {
                    Issue.record("\(what): \(error)")
                }
            }
            await refused("writing the dataset") { _ = try await scoped.putObject(key: dataset + "target/evil.png", bytes: ByteBuffer(string: "x")) }
            await refused("deleting from the dataset") { try await scoped.deleteObject(key: try #require(files.first).key) }
            await refused("reading another job's outputs") { _ = try await scoped.getObjectBytes(key: "outputs/00000000-0000-0000-0000-000000000000/log.txt") }
            await refused("listing the bucket") { _ = try await scoped.listAllObjects(prefix: "") }
            await refused("listing another dataset") { _ = try await scoped.listAllObjects(prefix: "datasets/") }
            await refused("copying into the dataset") { try await scoped.copyObject(from: "outputs/\(id)/checkpoints/a.safetensors", to: dataset + "x.png") }

            // A key whose scope was changed has a secret nobody knows.
            var widened = endpoint
            widened.credentials.accessKeyID =
                ScopedStoreKey.make(
                    StoreScope(readPrefixes: [""], writePrefixes: [""], expires: .distantFuture),
                    admin: S3Credentials(accessKeyID: "x", secretAccessKey: Secret("guess"))
                ).accessKeyID
            do {
                _ = try await S3Client(endpoint: widened, httpClient: setup.store.http).listAllObjects(prefix: "")
                Issue.record("a widened key was accepted")
            } catch let error as S3Error {
                #expect(error.code == .signatureDoesNotMatch, "\(error)")
            }
        }
    }

    @Test func anExpiredStoreKeyIsRefusedSayingSo() async throws {
        try await withRunningStore { store in
            let admin = store.endpoint.credentials
            var endpoint = store.endpoint
            endpoint.credentials = ScopedStoreKey.make(StoreScope(readPrefixes: ["datasets/d/"], writePrefixes: [], expires: store.clock.now.addingTimeInterval(-1)), admin: admin)
            do {
                _ = try await S3Client(endpoint: endpoint, httpClient: store.http).listAllObjects(prefix: "datasets/d/")
                Issue.record("an expired key was accepted")
            } catch let error as S3Error {
                #expect(error.code == .expiredToken, "\(error)")
            }
        }
    }
}

/// The worker loop against the built-in queue, with handlers standing in for training.
/// Serialized: progress throttling is measured in real time.
@Suite(.serialized) struct WorkerRuntimeTests {
    struct Scripted: JobHandler {
        let behaviour: @Sendable (WorkerProtocolClient.TakenJob, ProgressReporter) async throws -> JSONValue
        func run(_ job: WorkerProtocolClient.TakenJob, progress: ProgressReporter) async throws -> JSONValue { try await behaviour(job, progress) }
    }

    final class Sent: @unchecked Sendable {
        private let lock = NSLock()
        private var values: [Int] = []
        func append(_ value: Int) { lock.withLock { values.append(value) } }
        var all: [Int] { lock.withLock { values } }
    }

    @Test func progressIsSentInOrderThrottledAndNotAfterTheDrain() async throws {
        let sent = Sent()
        let started = NIOLockedValueBox<[ContinuousClock.Instant]>([])
        let reporter = ProgressReporter(interval: .milliseconds(20)) { value in
            started.withLockedValue { $0.append(.now) }
            try await Task.sleep(for: .milliseconds(Int.random(in: 1...5)))
            sent.append(Int(value["step"]?.numberValue ?? -1))
        }
        for step in 1...60 {
            await reporter.report(["step": .int(step)])
            try await Task.sleep(for: .milliseconds(2))
        }
        await reporter.drain()
        let afterDrain = sent.all
        await reporter.report(["step": 999])
        await reporter.drain()  // would wait for a send that report had started
        #expect(sent.all == afterDrain, "nothing is sent once drained")
        #expect(afterDrain == afterDrain.sorted() && Set(afterDrain).count == afterDrain.count, "in order, no repeats: \(afterDrain)")
        // Throttled: each send starts at least the interval after the one before, however slow
        // the machine (a count of sends would depend on how fast the reports came).
        let gaps = zip(started.withLockedValue { $0 }.dropFirst(), started.withLockedValue { $0 }).map { $0 - $1 }
        #expect(gaps.allSatisfy { $0 >= .milliseconds(20) } && afterDrain.first == 1, "throttled: \(afterDrain), gaps \(gaps)")
    }

    /// A sampling round between two training steps is shorter than the throttle: it is sent
    /// after the shorter phase-change interval instead of being replaced by the next step.
    @Test func aShortPhaseBetweenThrottledUpdatesIsStillSent() async throws {
        let sent = NIOLockedValueBox<[String]>([])
        let reporter = ProgressReporter(interval: .seconds(60), phaseChangeInterval: .milliseconds(100)) { value in
            sent.withLockedValue { $0.append("\(value["phase"]?.stringValue ?? "?") \(Int(value["step"]?.numberValue ?? -1))") }
        }
        func waitFor(_ count: Int) async throws {
            let deadline = ContinuousClock.now + .seconds(5)
            while sent.withLockedValue({ $0.count }) < count, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        }
        for step in 1...5 { await reporter.report(["phase": "training", "step": .int(step)]) }
        try await waitFor(1)
        await reporter.report(["phase": "sampling", "step": 5])
        try await waitFor(2)
        // Back to training: the same phase as 60 s ago would wait out the throttle; a new one does not.
        for step in 6...9 { await reporter.report(["phase": "training", "step": .int(step)]) }
        try await waitFor(3)
        await reporter.drain()
        #expect(sent.withLockedValue { $0 } == ["training 1", "sampling 5", "training 9"])
    }

    static func withWorker(_ test: (JobTests.Setup, WorkerProtocolClient) async throws -> Void) async throws {
        try await withRunningStore { store in
            var user = try await DatasetTests.User(store, email: "ann@example.com")
            let datasetID = try await user.createDataset()
            try await user.upload(datasetID, DatasetTests.pair)
            let key = try await Administration(app: store.app).createWorkerKey(name: "box")
            let client = WorkerProtocolClient(endpoints: .builtInQueue(server: store.baseURL, key: key, workerID: "pod-1"), http: store.http)
            try await test(JobTests.Setup(user: user, store: store, fake: FakeRunPod(), datasetID: datasetID), client)
        }
    }

    @Test func aJobRunsToItsResultAfterItsProgress() async throws {
        try await Self.withWorker { setup, client in
            var setup = setup
            let id = try #require(try await setup.createJob()["id"] as? String)
            let handler = Scripted { _, progress in
                for step in 1...10 { await progress.report(["phase": "training", "step": .int(step * 10), "total_steps": 100]) }
                return ["steps": 100, "final_loss": 0.01, "artifacts": []]
            }
            try await WorkerRuntime(client: client, handler: handler, progressInterval: .milliseconds(10)).run(maximumJobs: 1)
            let shown = try await setup.job(id)
            #expect(shown["status"] as? String == "completed" && (shown["progress"] as? [String: Any])?["loss"] as? Double == 0.01)
        }
    }

    @Test func aStopCancelsTheHandlerAndAFailureFailsTheJob() async throws {
        try await Self.withWorker { setup, client in
            var setup = setup
            let first = try #require(try await setup.createJob()["id"] as? String)
            let sleeper = Scripted { _, _ in
                try await Task.sleep(for: .seconds(60))
                return [:]
            }
            let running = Task { try await WorkerRuntime(client: client, handler: sleeper, stopPollInterval: .milliseconds(100)).run(maximumJobs: 1) }
            try await JobRestartTests.waitFor("the take") { try await setup.job(first)["status"] as? String == "running" }
            _ = try await setup.user.client.send(.POST, "/api/jobs/\(first)/cancel")
            try await running.value
            #expect(try await setup.job(first)["status"] as? String == "cancelled")

            let second = try #require(try await setup.createJob()["id"] as? String)
            let failing = Scripted { _, _ in throw JobFailure("Missing control images for QwenImageEditPlusModel", detail: "…log tail…") }
            try await WorkerRuntime(client: client, handler: failing).run(maximumJobs: 1)
            let shown = try await setup.job(second)
            #expect(shown["status"] as? String == "failed" && shown["error"] as? String == "Missing control images for QwenImageEditPlusModel")
            #expect((shown["errorDetail"] as? String)?.contains("…log tail…") == true)
        }
    }
}
