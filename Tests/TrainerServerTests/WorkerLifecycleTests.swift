import AsyncHTTPClient
import Foundation
import Logging
import NIOConcurrencyHelpers
import ObjectStorage
import Testing
import TrainerCore
import VaporTesting

@testable import TrainerServer
@testable import TrainerWorker

/// The worker's life beyond one job, where runpod-python is the reference (fidelity-audit.md
/// items 4–7): it pings from start to exit, survives a result that cannot be posted, ends on a
/// refused key, and a shutdown mid-job (SIGTERM) hands the job back for an immediate resume.
/// Serialized: real workers and trainers, whose timing a busy machine would bend.
@Suite(.serialized) struct WorkerLifecycleTests {
    /// The worker's log lines, for tests that check what it says.
    final class CapturedLog: LogHandler, @unchecked Sendable {
        let lines = NIOLockedValueBox<[String]>([])
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .debug
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            let fields = (metadata.merging(event.metadata ?? [:]) { $1 }).map { "\($0.key)=\($0.value)" }.sorted().joined(separator: " ")
            lines.withLockedValue { $0.append("\(event.level) \(event.message) \(fields)") }
        }

        var logger: Logger { Logger(label: "test") { _ in self } }
        func contains(_ text: String) -> Bool { lines.withLockedValue { $0.contains { $0.contains(text) } } }
    }

    typealias Scripted = WorkerRuntimeTests.Scripted

    @Test func theWorkerPingsWhileIdleAndGoesOnWhenAResultCannotBePosted() async throws {
        try await JobTests.withSetup { setup in
            var environment = setup.fake.workerEnvironment(podID: "pod-9")
            environment["RUNPOD_PING_INTERVAL"] = "1000"
            let client = WorkerProtocolClient(endpoints: try .fromRunPod(environment: environment), http: setup.store.http)
            let log = CapturedLog()
            let fake = setup.fake
            // Each job ends once a ping has named it (the heartbeat carries the running job's id).
            let handler = Scripted { job, _ in
                let deadline = ContinuousClock.now + .seconds(10)
                while !fake.pings.contains(where: { $0.contains("job_id=\(job.id)") }) {
                    guard ContinuousClock.now < deadline else { throw JobFailure("no ping named the job within 10 s") }
                    try await Task.sleep(for: .milliseconds(20))
                }
                return ["steps": 100, "artifacts": []]
            }
            let worker = Task { try await WorkerRuntime(client: client, handler: handler, logger: log.logger).run(maximumJobs: 2) }
            defer { worker.cancel() }

            // Idle: pings without a job id, with the protocol version, as the SDK's heartbeat.
            try await JobRestartTests.waitFor("an idle ping") {
                setup.fake.pings.contains { $0.contains("runpod_version=\(WorkerProtocolClient.followedSDKVersion)") && !$0.contains("job_id=") }
            }

            // The first job's result: a 5xx (tried again), then a 404 (given up, as the SDK does).
            setup.fake.inject(.status(500), .status(404), into: "job-done")
            let first = try #require(try await setup.createJob()["id"] as? String)
            try await setup.tick()
            try await JobRestartTests.waitFor("the failed post to be logged") { log.contains("the job's result could not be posted") }
            #expect(setup.fake.calls("job-done") == 2, "no post after the 404")
            #expect(setup.fake.jobs.first?.status == "IN_PROGRESS")

            // The worker is still there: the next job completes.
            let second = try #require(try await setup.createJob()["id"] as? String)
            let shown = try await RunPodWorkerTests.track(&setup, second) { $0["status"] as? String == "completed" }
            #expect(shown["status"] as? String == "completed")
            try await worker.value
            let firstShown = try await setup.job(first)
            #expect(firstShown["status"] as? String == "completed", "its result reached the server through the progress channel although RunPod refused it: \(firstShown)")
        }
    }

    /// With a public URL each attempt's input carries a progress channel: the server learns the
    /// job's progress and end from the worker itself, and stops polling RunPod for it.
    @Test func progressAndTheResultComeThroughTheChannelWithoutPollingRunPod() async throws {
        try await JobTests.withSetup { setup in
            let client = WorkerProtocolClient(endpoints: try .fromRunPod(environment: setup.fake.workerEnvironment(podID: "pod-4")), http: setup.store.http)
            let release = NIOLockedValueBox(false)
            let handler = Scripted { _, progress in
                await progress.report(["phase": "training", "step": 5, "total_steps": 100, "loss": 0.25])
                while !release.withLockedValue({ $0 }) { try await Task.sleep(for: .milliseconds(20)) }
                return ["steps": 100, "final_loss": 0.125, "artifacts": []]
            }
            let id = try #require(try await setup.createJob()["id"] as? String)
            try await setup.tick()  // submits it
            let channel = try #require(setup.fake.jobs.first.flatMap { JobInput.progressChannelURL(in: $0.input) })
            #expect(channel.hasPrefix(setup.store.baseURL.absoluteString + "/api/runpod/progress/pc_"))
            let worker = Task { try await WorkerRuntime(client: client, handler: handler, progressInterval: .milliseconds(20)).run(maximumJobs: 1) }

            try await JobRestartTests.waitFor("progress through the channel") {
                (try await setup.job(id)["progress"] as? [String: Any])?["step"] as? Int == 5
            }
            let polls = setup.fake.calls("status")
            setup.store.clock.advance(by: 60)
            try await setup.tick()
            #expect(setup.fake.calls("status") == polls, "no poll while the channel reports")
            release.withLockedValue { $0 = true }
            try await worker.value
            let shown = try await setup.job(id)
            #expect(shown["status"] as? String == "completed" && (shown["progress"] as? [String: Any])?["loss"] as? Double == 0.125, "\(shown)")
            #expect(setup.fake.calls("status") == polls, "the end came through the channel too")

            // The channel belongs to one attempt while it runs: afterwards, and for anyone
            // without its secret, it changes nothing.
            let late = try await setup.user.client.send(
                .POST, String(channel.dropFirst(setup.store.baseURL.absoluteString.count)),
                body: #"{"error": "late"}"#)
            let afterLate = try await setup.job(id)["status"] as? String
            #expect(late.status == .noContent && afterLate == "completed")
            let unknown = try await setup.user.client.send(.POST, "/api/runpod/progress/pc_unknown", body: #"{"status": "IN_PROGRESS", "output": {}}"#)
            #expect(unknown.status == .notFound)
        }
    }

    @Test(.timeLimit(.minutes(1))) func aRefusedKeyEndsTheWorkerSayingWhy() async throws {
        try await WorkerRuntimeTests.withWorker { setup, _ in
            let wrong = WorkerProtocolClient(endpoints: .builtInQueue(server: setup.store.baseURL, key: "gmw_revoked", workerID: "box"), http: setup.store.http)
            let log = CapturedLog()
            let refused = await #expect(throws: WorkerProtocolClient.KeyRefused.self) {
                try await WorkerRuntime(client: wrong, handler: Scripted { _, _ in [:] }, logger: log.logger).run()
            }
            #expect(refused?.status == 401 && refused?.reason?.hasPrefix("A worker key is required") == true)
            #expect(log.contains("critical The queue refused this worker's key (HTTP 401: A worker key is required"), "\(log.lines.withLockedValue { $0 })")
        }
    }

    /// A worker whose key is revoked mid-job stops its trainer within seconds (its job is already
    /// back in the queue) and ends saying why, instead of training on for nobody.
    @Test(.timeLimit(.minutes(1))) func aWorkerWhoseKeyIsRevokedMidJobStopsItsTrainer() async throws {
        try await WorkerRuntimeTests.withWorker { setup, client in
            var setup = setup
            let id = try #require(try await setup.createJob()["id"] as? String)
            let trainerStopped = NIOLockedValueBox(false)
            let trainer = Scripted { _, _ in
                do {
                    try await Task.sleep(for: .seconds(50))
                } catch {
                    trainerStopped.withLockedValue { $0 = true }
                    throw error
                }
                return [:]
            }
            let log = CapturedLog()
            let running = Task { try await WorkerRuntime(client: client, handler: trainer, logger: log.logger, stopPollInterval: .milliseconds(100)).run() }
            try await JobRestartTests.waitFor("the take") { try await setup.job(id)["status"] as? String == "running" }
            let keys = try await setup.user.client.send(.GET, "/api/worker-keys").json["workerKeys"] as? [[String: Any]]
            let keyID = try #require(keys?.first?["id"] as? String)
            #expect(try await setup.user.client.send(.POST, "/api/worker-keys/\(keyID)/revoke").status == .ok)

            let refused = await #expect(throws: WorkerProtocolClient.KeyRefused.self) { try await running.value }
            #expect(refused?.reason?.contains("was revoked") == true, "\(String(describing: refused))")
            #expect(trainerStopped.withLockedValue { $0 }, "the trainer was stopped")
            #expect(log.contains("critical job stopped: The queue refused this worker's key (HTTP 401: This worker key ('box') was revoked"), "\(log.lines.withLockedValue { $0 })")
        }
    }

    /// A shutdown that lands while a job-take is in flight: the queue may already have handed the
    /// job over, so the take is let finish and the job goes straight back as preempted, instead of
    /// waiting out its lease for a worker that is gone.
    @Test func aJobHandedOverAsTheWorkerShutsDownIsHandedBack() async throws {
        let takeArrived = AsyncStream<Void>.makeStream()
        let answerTake = AsyncStream<Void>.makeStream()
        let reports = NIOLockedValueBox<[JSONValue]>([])
        try await withLoopbackServer({ app in
            app.get("v2", "local", "job-take", ":worker") { _ async -> Response in
                takeArrived.continuation.yield()
                for await _ in answerTake.stream { break }
                return Response(status: .ok, body: .init(string: #"{"id": "job-1", "input": {}}"#))
            }
            app.post("v2", "local", "job-done", ":worker", ":job") { request -> HTTPStatus in
                let body = try JSONDecoder().decode(JSONValue.self, from: Data(request.body.string?.utf8 ?? "".utf8))
                reports.withLockedValue { $0.append(body) }
                return .ok
            }
            app.get("v2", "local", "ping", ":worker") { _ in HTTPStatus.ok }
            app.get("v2", "local", "job-stop", ":worker") { _ in HTTPStatus.ok }
        }) { server in
            let http = HTTPClient(eventLoopGroupProvider: .singleton)
            let client = WorkerProtocolClient(endpoints: .builtInQueue(server: server, key: "key", workerID: "pod-1"), http: http)
            let trainer = Scripted { _, _ in
                try await Task.sleep(for: .seconds(60))
                return [:]
            }
            let worker = Task { try await WorkerRuntime(client: client, handler: trainer).run() }
            for await _ in takeArrived.stream { break }
            worker.cancel()  // SIGTERM while the queue is handing the job over
            answerTake.continuation.yield()
            await #expect(throws: CancellationError.self) { try await worker.value }
            let sent = reports.withLockedValue { $0 }
            #expect(sent.count == 1 && WorkerResult.isPreempted(sent.first?["output"]), "\(sent)")
            try await http.shutdown()
        }
    }

    /// The worker's waits run on its clock: the heartbeat pings at once and then every interval
    /// while the worker waits for a job, and a shutdown gives the take in flight its grace and no
    /// more. The clock is advanced by hand: nothing here waits 10 real seconds.
    @Test(.timeLimit(.minutes(1))) func theHeartbeatAndTheShutdownGraceRunOnTheWorkersClock() async throws {
        let clock = ManualClock()
        let pings = NIOLockedValueBox(0)
        let pinged = AsyncStream<Int>.makeStream()
        let takeArrived = AsyncStream<Void>.makeStream()
        let answerTakes = AsyncStream<Void>.makeStream()
        try await withLoopbackServer({ app in
            app.get("v2", "local", "job-take", ":worker") { _ async -> HTTPStatus in
                takeArrived.continuation.yield()
                for await _ in answerTakes.stream {}
                return .noContent
            }
            app.get("v2", "local", "ping", ":worker") { _ -> HTTPStatus in
                pinged.continuation.yield(
                    pings.withLockedValue {
                        $0 += 1
                        return $0
                    })
                return .ok
            }
        }) { server in
            let http = HTTPClient(eventLoopGroupProvider: .singleton)
            let client = WorkerProtocolClient(endpoints: .builtInQueue(server: server, key: "key", workerID: "pod-1"), http: http)
            let worker = Task { try await WorkerRuntime(client: client, handler: Scripted { _, _ in [:] }, clock: clock).run() }
            var counts = pinged.stream.makeAsyncIterator()
            #expect(await counts.next() == 1, "a ping at once")
            for await _ in takeArrived.stream { break }
            for expected in 2...3 {
                await clock.waitUntilSleeping()  // the heartbeat's wait
                clock.advance(by: client.endpoints.pingInterval)
                #expect(await counts.next() == expected)
            }

            worker.cancel()  // SIGTERM while the take waits for a job
            await clock.waitUntilSleeping(2)  // the heartbeat's wait and the take's grace
            clock.advance(by: WorkerRuntime.takeGrace)
            await #expect(throws: CancellationError.self) { try await worker.value }
            answerTakes.continuation.finish()
            try await http.shutdown()
        }
    }

    /// Built-in queue: a worker shut down mid-job reports what it saved; the job is queued again
    /// at once (not after its lease runs out) and does not count as a failed attempt.
    @Test func aWorkerShutDownMidJobHandsItBackForAnImmediateResume() async throws {
        try await WorkerRuntimeTests.withWorker { setup, client in
            var setup = setup
            let id = try #require(try await setup.createJob()["id"] as? String)
            let prefix = "outputs/\(id.lowercased())/"
            let checkpoint: JSONValue = ["kind": "checkpoint", "key": .string(prefix + "checkpoints/run_000000030.safetensors"), "step": 30]
            let started = NIOLockedValueBox(0)
            let shutDown = Scripted { _, progress in
                started.withLockedValue { $0 += 1 }
                await progress.report(["phase": "training", "step": 35, "total_steps": 100])
                do {
                    try await Task.sleep(for: .seconds(60))
                } catch {
                    throw JobPreempted(output: ["steps": 35, "artifacts": [checkpoint]])
                }
                return [:]
            }
            for round in 1...BuiltInQueue.maximumAttempts {
                let worker = Task { try await WorkerRuntime(client: client, handler: shutDown, progressInterval: .milliseconds(10)).run() }
                defer { worker.cancel() }
                try await JobRestartTests.waitFor("attempt \(round) training") { started.withLockedValue { $0 } == round }
                #expect(try await setup.job(id)["attempt"] as? Int == round)
                worker.cancel()  // what SIGTERM does in `gomodel worker`
                await #expect(throws: CancellationError.self) { try await worker.value }
                let shown = try await setup.job(id)
                #expect(shown["status"] as? String == "queued" && shown["attempt"] as? Int == round + 1, "\(shown)")
                let said = (shown["events"] as? [[String: Any]] ?? []).compactMap { $0["message"] as? String }
                #expect(said.last == "Its worker was shut down (preempted); back in the queue as attempt \(round + 1), resuming from step 30.", "\(said)")
            }
            // More shutdowns than attempts for lost workers, and the next worker still completes it.
            try await WorkerRuntime(client: client, handler: Scripted { _, _ in ["steps": 100, "artifacts": []] }).run(maximumJobs: 1)
            let shown = try await setup.job(id)
            #expect(shown["status"] as? String == "completed" && shown["attempt"] as? Int == BuiltInQueue.maximumAttempts + 1)
        }
    }

    /// RunPod mode with the real handler and the stand-in trainer: SIGTERM stops the trainer, the
    /// newest checkpoint goes to the bucket, RunPod's job completes as preempted, the server submits
    /// the next attempt at once, and it resumes from that checkpoint.
    @Test func aPreemptedRunPodJobIsSubmittedAgainAndResumesFromItsNewestCheckpoint() async throws {
        try await JobTests.withSetup { setup in
            let client = WorkerProtocolClient(endpoints: try .fromRunPod(environment: setup.fake.workerEnvironment(podID: "pod-3")), http: setup.store.http)
            let work = WorkerFailureTests.work()
            defer { try? FileManager.default.removeItem(atPath: work) }
            var slow = TrainingHandlerTests.handler(setup.store, work: work, extra: ["STAND_IN_STEP_SECONDS": "0.05"])
            slow.stopGrace = .seconds(5)
            let id = try #require(try await setup.createJob(#"{"steps": 60, "saveEvery": 10, "sampleEvery": 50}"#)["id"] as? String)
            let worker = Task { try await WorkerRuntime(client: client, handler: slow, progressInterval: .milliseconds(50), stopPollInterval: .milliseconds(100)).run() }
            _ = try await RunPodWorkerTests.track(&setup, id) { (($0["progress"] as? [String: Any])?["step"] as? Int ?? 0) >= 25 }
            worker.cancel()
            await #expect(throws: CancellationError.self) { try await worker.value }
            let first = try #require(setup.fake.jobs.first)
            #expect(first.status == "COMPLETED" && WorkerResult.isPreempted(first.output), "\(first)")

            let requeued = try await RunPodWorkerTests.track(&setup, id) { $0["attempt"] as? Int == 2 && $0["status"] as? String == "submitted" }
            let said = (requeued["events"] as? [[String: Any]] ?? []).compactMap { $0["message"] as? String }
            #expect(said.contains { $0.hasPrefix("Its worker was shut down (preempted); back in the queue as attempt 2, resuming from step ") }, "\(said)")
            #expect(setup.fake.jobs.count == 2, "a second RunPod job for the second attempt")

            try await WorkerRuntime(client: client, handler: TrainingHandlerTests.handler(setup.store, work: work), progressInterval: .milliseconds(50)).run(maximumJobs: 1)
            let shown = try await RunPodWorkerTests.track(&setup, id) { $0["status"] as? String == "completed" }
            #expect((shown["progress"] as? [String: Any])?["step"] as? Int == 60)
            let log = String(buffer: try await setup.store.client().getObjectBytes(key: "outputs/\(id.lowercased())/log.txt"))
            #expect(log.hasPrefix("gomodel worker: Resuming from step "), "\(log.prefix(200))")
        }
    }
}
