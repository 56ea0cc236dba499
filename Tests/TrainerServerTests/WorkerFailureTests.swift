import AsyncHTTPClient
import Foundation
import NIOConcurrencyHelpers
import ObjectStorage
import Testing
import TrainerCore
import VaporTesting

@testable import TrainerServer
@testable import TrainerWorker

/// The worker when things go wrong: bad input, an empty dataset, a trainer stuck after its last
/// step, a bucket that refuses uploads, a ping endpoint that is down. Real server, store and
/// stand-in trainer; only the failing part is replaced by a server that fails on purpose.
/// Serialized: time runs fast here while real training goes on, so a busy machine can starve it.
@Suite(.serialized) struct WorkerFailureTests {
    /// A fresh work root for a worker (tests remove it).
    static func work() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("gomodel-worker-\(UUID().uuidString)").path
    }

    @Test func badInputFailsTheJobSayingWhichField() async throws {
        try await withRunningStore { store in
            let handler = TrainingHandlerTests.handler(store, work: Self.work())
            let reporter = ProgressReporter(interval: .milliseconds(10)) { _ in }
            let inputs: [(JSONValue, String)] = [
                (["trainer_job_id": "x"], "contract_version is missing"),
                (["contract_version": 3], "is 3 but this worker speaks 1 to 2"),
                ("not an object", "The job's input is not valid"),
            ]
            for (input, expected) in inputs {
                do {
                    _ = try await handler.run(.init(id: "j", input: input), progress: reporter)
                    Issue.record("\(input) must be refused")
                } catch let failure as JobFailure {
                    #expect(failure.message.contains(expected), "\(failure.message)")
                }
            }
        }
    }

    @Test func anEmptyDatasetPrefixFailsTheJobClearly() async throws {
        try await WorkerRuntimeTests.withWorker { setup, client in
            var setup = setup
            let id = try #require(try await setup.createJob()["id"] as? String)
            // The dataset's files vanish from the bucket after the job was accepted.
            let bucket = setup.store.client()
            for object in try await bucket.listAllObjects(prefix: "datasets/") { try await bucket.deleteObject(key: object.key) }
            let work = Self.work()
            defer { try? FileManager.default.removeItem(atPath: work) }
            try await WorkerRuntime(client: client, handler: TrainingHandlerTests.handler(setup.store, work: work)).run(maximumJobs: 1)
            let shown = try await setup.job(id)
            #expect(shown["status"] as? String == "failed")
            #expect((shown["error"] as? String)?.contains("is empty in the bucket") == true, "\(shown)")
        }
    }

    @Test(.timeLimit(.minutes(1))) func aTrainerStuckAfterItsFinalLoRAIsStoppedAndTheJobCompletes() async throws {
        try await WorkerRuntimeTests.withWorker { setup, client in
            var setup = setup
            let id = try #require(try await setup.createJob(#"{"steps": 20, "saveEvery": 10, "sampleEvery": 10}"#)["id"] as? String)
            let work = Self.work()
            defer { try? FileManager.default.removeItem(atPath: work) }
            var handler = TrainingHandlerTests.handler(setup.store, work: work, extra: ["STAND_IN_HANG_AFTER_FINISH": "1"])
            handler.quietAfterFinalLoRA = .seconds(1)
            handler.stopGrace = .milliseconds(300)
            let started = ContinuousClock.now
            try await WorkerRuntime(client: client, handler: handler, progressInterval: .milliseconds(50)).run(maximumJobs: 1)
            #expect(ContinuousClock.now - started < .seconds(30))
            let shown = try await setup.job(id)
            #expect(shown["status"] as? String == "completed", "\(shown)")
            let kinds = Set((shown["artifacts"] as? [[String: Any]] ?? []).compactMap { $0["kind"] as? String })
            #expect(kinds.isSuperset(of: ["lora", "log"]), "\(kinds)")
            let log = String(buffer: try await setup.store.client().getObjectBytes(key: "outputs/\(id.lowercased())/log.txt"))
            #expect(log.contains("printed nothing for 1 s without exiting; it was stopped"), "\(log.suffix(300))")
        }
    }

    @Test func aBucketThatRefusesUploadsIsRetriedThenFailsTheJobClearly() async throws {
        try await WorkerRuntimeTests.withWorker { setup, client in
            var setup = setup
            let id = try #require(try await setup.createJob(#"{"steps": 20, "saveEvery": 10, "sampleEvery": 10}"#)["id"] as? String)
            try await withRefusingProxy(to: setup.store.endpoint.url, http: setup.store.http) { proxy, refusals in
                var endpoint = setup.store.endpoint
                endpoint.url = proxy
                let bucket = S3Client(
                    endpoint: endpoint, httpClient: setup.store.http, retry: RetryPolicy(maxAttempts: 3, baseDelay: .milliseconds(1), maxDelay: .milliseconds(10)))
                let work = Self.work()
                defer { try? FileManager.default.removeItem(atPath: work) }
                var handler = TrainingHandler(
                    bucket: .configured(bucket), workRoot: work, trainerCommand: ["python3", TrainingHandlerTests.standIn], trainerDirectory: nil,
                    trainerEnvironment: ["STAND_IN_STEP_SECONDS": "0.01"])
                handler.uploadScanInterval = .milliseconds(100)
                try await WorkerRuntime(client: client, handler: handler, progressInterval: .milliseconds(50)).run(maximumJobs: 1)
                let shown = try await setup.job(id)
                #expect(shown["status"] as? String == "failed", "\(shown)")
                let error = shown["error"] as? String ?? ""
                #expect(error.contains("The bucket refused outputs/") && error.contains("after 3 tries") && error.contains("Please reduce your request rate"), "\(error)")
                let tries = refusals.withLockedValue { $0 }
                #expect(tries.values.contains(3), "each refused upload was tried 3 times: \(tries)")
            }
        }
    }

    @Test func trainingGoesOnWhileThePingEndpointIsDown() async throws {
        try await WorkerRuntimeTests.withWorker { setup, client in
            var setup = setup
            let id = try #require(try await setup.createJob(#"{"steps": 60, "saveEvery": 20, "sampleEvery": 20}"#)["id"] as? String)
            let pings = NIOLockedValueBox(0)
            try await withLoopbackServer({ down in
                down.get("**") { _ -> Response in
                    pings.withLockedValue { $0 += 1 }
                    return Response(status: .serviceUnavailable)
                }
            }) { down in
                let real = client.endpoints
                let endpoints = WorkerEndpoints(
                    jobTake: real.jobTake, jobDoneTemplate: real.jobDoneTemplate, jobStop: real.jobStop,
                    ping: down.absoluteString + "/ping?", authorization: real.authorization, workerID: real.workerID, pingInterval: .milliseconds(100))
                let work = Self.work()
                defer { try? FileManager.default.removeItem(atPath: work) }
                // Time runs fast meanwhile (20 s every 200 ms, the lease being 60 s) and lost jobs are
                // reclaimed: only the progress posts can keep this job's lease.
                let queue = try #require(setup.store.app.storage[BuiltInQueueKey.self])
                let (store, db) = (setup.store, setup.db)
                let reclaimer = Task {
                    while !Task.isCancelled {
                        try? await Task.sleep(for: .milliseconds(200))
                        store.clock.advance(by: 20)
                        try? await queue.reclaimLost(on: db)
                    }
                }
                defer { reclaimer.cancel() }
                var handler = TrainingHandlerTests.handler(setup.store, work: work)
                handler.uploadScanInterval = .milliseconds(100)
                try await WorkerRuntime(client: WorkerProtocolClient(endpoints: endpoints, http: setup.store.http), handler: handler, progressInterval: .milliseconds(50)).run(
                    maximumJobs: 1)
                reclaimer.cancel()
            }
            let shown = try await setup.job(id)
            #expect(shown["status"] as? String == "completed", "\(shown)")
            #expect(pings.withLockedValue { $0 } >= 3, "the worker kept pinging the endpoint that was down")
            let events = (shown["events"] as? [[String: Any]] ?? []).compactMap { $0["message"] as? String }
            #expect(!events.contains { $0.contains("stopped answering") }, "progress kept the lease: \(events)")
        }
    }

    /// An S3 endpoint in front of `target` that passes reads through and refuses every upload
    /// with 503 SlowDown, counting the tries per key.
    func withRefusingProxy(to target: URL, http: HTTPClient, _ test: (URL, NIOLockedValueBox<[String: Int]>) async throws -> Void) async throws {
        let refusals = NIOLockedValueBox<[String: Int]>([:])
        let origin = "\(target.scheme!)://\(target.host!):\(target.port!)"
        let forward: @Sendable (Request) async throws -> Response = { request in
            if request.method == .PUT || request.method == .POST {
                refusals.withLockedValue { $0[request.url.path, default: 0] += 1 }
                return Response(
                    status: .serviceUnavailable, headers: ["Retry-After": "0"],
                    body: .init(string: "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"))
            }
            var outgoing = HTTPClientRequest(url: origin + request.url.string)
            outgoing.method = request.method
            // The client signed for the proxy's host; the store checks the signature against it.
            outgoing.headers = request.headers
            let answer = try await http.execute(outgoing, timeout: .seconds(30))
            var headers = answer.headers
            headers.remove(name: .transferEncoding)
            headers.remove(name: .contentLength)
            return Response(status: answer.status, headers: headers, body: .init(buffer: try await answer.body.collect(upTo: 64 << 20)))
        }
        try await withLoopbackServer({ app in
            for method in [HTTPMethod.GET, .HEAD, .PUT, .POST] {
                app.on(method, "**", body: .collect(maxSize: "64mb"), use: forward)
            }
        }) { proxy in
            try await test(URL(string: proxy.absoluteString + target.path)!, refusals)
        }
    }
}

/// The worker's dataset copy on a warm worker: what changed in the bucket is fetched again,
/// what was removed is removed, and then the trainer's caches go (they are keyed by name, not
/// content); an unchanged dataset keeps them.
@Suite struct DatasetSyncTests {
    @Test func aSecondSyncFollowsTheBucket() async throws {
        try await withRunningStore { store in
            let bucket = store.client()
            let folder = WorkerFailureTests.work()
            defer { try? FileManager.default.removeItem(atPath: folder) }
            for (key, text) in [("target/cat.txt", "make it blue"), ("target/dog.txt", "make it red!"), ("control/cat.png", "png")] {
                _ = try await bucket.putObject(key: "datasets/d1/" + key, bytes: ByteBuffer(string: text))
            }
            let sync = DatasetSync(bucket: bucket)
            #expect(try await sync.sync(prefix: "datasets/d1/", into: folder) == .init(downloaded: 3, skipped: 0, removed: 0, bytes: 27))
            // ai-toolkit's caches, as it leaves them in the dataset's folders.
            let caches = ["/target/_latent_cache/cat.safetensors", "/target/_t_e_cache/cat.safetensors", "/target/.aitk_size.json", "/control/_latent_cache/cat.safetensors"]
            func makeCaches() {
                for cache in caches {
                    try? FileManager.default.createDirectory(atPath: folder + (cache as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                    FileManager.default.createFile(atPath: folder + cache, contents: Data("cache".utf8))
                }
            }
            makeCaches()
            #expect(try await sync.sync(prefix: "datasets/d1/", into: folder) == .init(downloaded: 0, skipped: 3, removed: 0, bytes: 0))
            #expect(caches.allSatisfy { FileManager.default.fileExists(atPath: folder + $0) }, "an unchanged dataset keeps its caches")

            // A caption edited to the same length: every cache goes (the text embeddings encode
            // the control images too, so a change in any folder clears them all).
            _ = try await bucket.putObject(key: "datasets/d1/target/cat.txt", bytes: ByteBuffer(string: "make it gold"))
            #expect(try await sync.sync(prefix: "datasets/d1/", into: folder) == .init(downloaded: 1, skipped: 2, removed: 0, bytes: 12))
            #expect(try String(contentsOfFile: folder + "/target/cat.txt", encoding: .utf8) == "make it gold")
            #expect(caches.allSatisfy { !FileManager.default.fileExists(atPath: folder + $0) }, "stale caches kept")

            // A sample removed: its file goes, and the caches again.
            makeCaches()
            try await bucket.deleteObject(key: "datasets/d1/target/dog.txt")
            #expect(try await sync.sync(prefix: "datasets/d1/", into: folder) == .init(downloaded: 0, skipped: 2, removed: 1, bytes: 0))
            #expect(!FileManager.default.fileExists(atPath: folder + "/target/dog.txt"))
            #expect(caches.allSatisfy { !FileManager.default.fileExists(atPath: folder + $0) }, "stale caches kept")

            // An empty prefix is an error that says so.
            await #expect(throws: JobFailure.self) { try await sync.sync(prefix: "datasets/none/", into: folder) }
        }
    }
}
