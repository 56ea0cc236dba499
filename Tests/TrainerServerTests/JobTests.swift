import AsyncHTTPClient
import Fluent
import Foundation
import NIOCore
import NIOFoundationCompat
import ObjectStorage
import RunPod
import SQLKit
import Testing
import TrainerCore
import VaporTesting

@testable import TrainerServer

/// Jobs through RunPod: the API, `JobRunner` rounds against the suite's fake RunPod (faults
/// included), the webhook, cancel and retry.
/// Serialized: some tests bound how long a hung RunPod call may hold others up.
@Suite(.serialized) struct JobTests {
    struct Setup {
        var user: DatasetTests.User
        let store: RunningStore
        let fake: FakeRunPod
        let datasetID: String
        var runner: JobRunner { store.app.storage[JobRunnerKey.self]! }
        var db: any Database { store.app.db }

        mutating func createJob(_ params: String = #"{"steps": 100, "saveEvery": 50, "sampleEvery": 50}"#) async throws -> [String: Any] {
            let response = try await user.client.send(.POST, "/api/jobs", body: #"{"datasetId": "\#(datasetID)", "preset": "qwen-image-edit-2509", "params": \#(params)}"#)
            #expect(response.status == .created, "\(response.body.string)")
            return try response.json
        }

        mutating func job(_ id: String) async throws -> [String: Any] {
            try await user.client.send(.GET, "/api/jobs/\(id)").json
        }

        func tick() async throws { try await runner.tick(on: db) }

        /// Runs a round (the queued job goes to the fake RunPod) and starts the fake's newest job,
        /// as a worker taking it would.
        @discardableResult func submitAndStart() async throws -> FakeRunPod.Job {
            try await tick()
            let submitted = try #require(fake.jobs.last, "nothing was submitted to RunPod")
            fake.start(submitted.id)
            return submitted
        }

        /// Moves the server's clock past the poll interval and runs a round, so what the fake
        /// RunPod now says is seen.
        func pollAgain() async throws {
            store.clock.advance(by: 6)
            try await tick()
        }
    }

    static func withSetup(environment: [String: String] = [:], waits: any Clock<Duration> = ContinuousClock(), _ test: (inout Setup) async throws -> Void) async throws {
        let fake = FakeRunPod()
        try await fake.start()
        do {
            try await withRunningStore(
                environment: [
                    "RUNPOD_ENDPOINT_ID": FakeRunPod.endpointID, "RUNPOD_API_KEY": FakeRunPod.apiKey, "RUNPOD_BASE_URL": fake.baseURL.absoluteString,
                    "GOMODEL_GPU_PRICE_PER_SECOND": "0.001",
                ].merging(environment) { _, given in given }, publicURL: true, waits: waits
            ) { store in
                var user = try await DatasetTests.User(store, email: "ann@example.com")
                let datasetID = try await user.createDataset()
                try await user.upload(
                    datasetID,
                    DatasetTests.pair + [
                        ("control/dog.png", TestImage.png()), ("target/dog.png", TestImage.png()), ("target/dog.txt", Array("make the dog blue".utf8)),
                    ])
                var setup = Setup(user: user, store: store, fake: fake, datasetID: datasetID)
                try await test(&setup)
            }
        } catch {
            try await fake.stop()
            throw error
        }
        try await fake.stop()
    }

    @Test func aJobTrainsThePresetItNamesWithEachSamplesOwnControls() async throws {
        try await Self.withSetup { setup in
            let presets = try #require(try await setup.user.client.send(.GET, "/api/presets").json["presets"] as? [[String: Any]])
            #expect(presets.map { $0["id"] as? String } == ["qwen-image-edit-2509", "qwen-image-edit-2511"])
            #expect(presets.map { $0["isDefault"] as? Bool } == [true, false] && presets[1]["baseModel"] as? String == "Qwen/Qwen-Image-Edit-2511")

            // dog gets a second control; cat keeps one: a mixed dataset.
            _ = try await setup.user.upload(setup.datasetID, [("control_2/dog.png", TestImage.png())])
            let validation = try await setup.user.client.send(.GET, "/api/datasets/\(setup.datasetID)/validation").json
            #expect(validation["sound"] as? Bool == true && validation["controlsPerSample"] as? Int == 2)
            #expect((validation["controlMix"] as? [[String: Int]]) == [["controls": 1, "samples": 1], ["controls": 2, "samples": 1]])

            let unknown = try await setup.user.client.send(.POST, "/api/jobs", body: #"{"datasetId": "\#(setup.datasetID)", "preset": "qwen-image-edit-2600"}"#)
            #expect(unknown.status == .badRequest && unknown.body.string.contains("qwen-image-edit-2509, qwen-image-edit-2511"), "\(unknown.body.string)")
            #expect((try unknown.json["error"] as? [String: Any])?["details"].flatMap { $0 as? [[String: Any]] }?.first?["path"] as? String == "preset")

            let response = try await setup.user.client.send(
                .POST, "/api/jobs", body: #"{"datasetId": "\#(setup.datasetID)", "preset": "qwen-image-edit-2511", "params": {"steps": 100}}"#)
            #expect(response.status == .created, "\(response.body.string)")
            #expect(try response.json["preset"] as? String == "qwen-image-edit-2511")
            try await setup.tick()
            let config = try #require(setup.fake.jobs.first?.input["job_config"])
            guard case .array(let processes)? = config["config"]?["process"], let process = processes.first, case .array(let datasets)? = process["datasets"],
                case .array(let samples)? = process["sample"]?["samples"]
            else {
                Issue.record("unexpected config \(config)")
                return
            }
            #expect(process["model"]?["name_or_path"] == "Qwen/Qwen-Image-Edit-2511" && process["model"]?["arch"] == "qwen_image_edit_plus:2511")
            let root = "/workspace/datasets/\(setup.datasetID)"
            #expect(datasets.first?["control_path"] == .array([.string("\(root)/control_1"), .string("\(root)/control_2")]))
            // Each sample prompt carries that sample's own controls.
            #expect(samples.map { $0["ctrl_img_1"] } == [.string("\(root)/control_1/cat.png"), .string("\(root)/control_1/dog.png")])
            #expect(samples.map { $0["ctrl_img_2"] } == [nil, .string("\(root)/control_2/dog.png")])
        }
    }

    @Test func aJobIsSubmittedTrackedAndCompleted() async throws {
        try await Self.withSetup { setup in
            let created = try await setup.createJob()
            let id = try #require(created["id"] as? String)
            #expect(created["status"] as? String == "queued" && created["attempt"] as? Int == 1)
            // The dataset is locked while the job may read it.
            let locked = try await setup.user.sign(setup.datasetID, [("target/x.png", [1])])
            #expect(locked.status == .conflict)

            try await setup.tick()
            let submitted = try #require(setup.fake.jobs.first)
            #expect(setup.fake.jobs.count == 1)
            #expect(submitted.input["contract_version"] == 1 && submitted.input["trainer_job_id"]?.stringValue == id.lowercased())
            #expect(submitted.input["r2_dataset"]?["prefix"]?.stringValue == "datasets/\(setup.datasetID)/")
            #expect(submitted.input["output"]?["prefix"]?.stringValue == "outputs/\(id.lowercased())/")
            #expect(submitted.input["job_config"]?["job"] == "extension")
            #expect(submitted.webhook?.hasPrefix(setup.store.baseURL.absoluteString + "/api/runpod/webhook/wh_") == true)
            var shown = try await setup.job(id)
            #expect(shown["status"] as? String == "submitted" && shown["runpodJobId"] as? String == submitted.id)

            setup.fake.start(submitted.id)
            setup.fake.progress(submitted.id, ["phase": "training", "step": 40, "total_steps": 100, "loss": 0.12, "it_per_sec": 0.5, "eta_seconds": 120])
            try await setup.pollAgain()
            shown = try await setup.job(id)
            let progress = try #require(shown["progress"] as? [String: Any])
            #expect(shown["status"] as? String == "running" && progress["step"] as? Int == 40 && progress["totalSteps"] as? Int == 100)
            #expect(progress["loss"] as? Double == 0.12 && progress["etaSeconds"] as? Double == 120)

            let prefix = "outputs/\(id.lowercased())/"
            setup.fake.complete(
                submitted.id,
                output: [
                    "steps": 100, "final_loss": 0.05, "duration_seconds": 300,
                    "artifacts": [
                        ["kind": "lora", "key": .string(prefix + "lora/gm_x.safetensors"), "bytes": 1234, "sha256": "ab"],
                        ["kind": "checkpoint", "key": .string(prefix + "checkpoints/gm_x_000000050.safetensors"), "step": 50],
                        ["kind": "lora", "key": "outputs/someone-else/lora/x.safetensors"],
                    ],
                ])
            try await setup.pollAgain()
            shown = try await setup.job(id)
            #expect(shown["status"] as? String == "completed" && shown["finishedAt"] != nil)
            // 6 s on the GPU at 0.001 a second.
            #expect(shown["executionSeconds"] as? Double == 6 && shown["cost"] as? Double == 0.006)
            let artifacts = try #require(shown["artifacts"] as? [[String: Any]])
            #expect(artifacts.map { $0["kind"] as? String } == ["lora", "checkpoint"], "a key outside the job's prefix is dropped")
            #expect((shown["progress"] as? [String: Any])?["loss"] as? Double == 0.05)
            let events = try #require(shown["events"] as? [[String: Any]]).map { $0["status"] as? String }
            #expect(events == ["queued", "submitted", "running", "completed"])
            // The dataset may change again; the LoRA downloads through a presigned URL.
            #expect(try await setup.user.sign(setup.datasetID, [("target/x.png", [1])]).status == .ok)
            let artifactID = try #require(artifacts.first?["id"] as? String)
            let download = try await setup.user.client.send(.GET, "/api/jobs/\(id)/artifacts/\(artifactID)")
            #expect(download.status == .seeOther && download.headers.first(name: .location)?.contains("gm_x.safetensors") == true)
            #expect(try await setup.user.client.send(.GET, "/api/jobs/\(id)/artifacts/nope").status == .notFound)

            // Nothing more is asked of RunPod about a finished job.
            let polls = setup.fake.calls("status")
            setup.store.clock.advance(by: 60)
            try await setup.tick()
            #expect(setup.fake.calls("status") == polls)
        }
    }

    @Test func aCheckpointOfAnEndedJobCanBeItsResult() async throws {
        try await Self.withSetup { setup in
            let id = try #require(try await setup.createJob()["id"] as? String).lowercased()
            #expect(try await setup.user.client.send(.POST, "/api/jobs/\(id)/promote", body: #"{"step": 50}"#).status == .conflict, "a queued job has no result")
            try await setup.tick()
            let submitted = try #require(setup.fake.jobs.first)
            let prefix = "outputs/\(id)/"
            // The LoRA and step 50's checkpoint are in the bucket; step 100's was removed since.
            let bucket = S3Client(endpoint: setup.store.endpoint, httpClient: setup.store.http)
            for key in ["lora/gm_x.safetensors", "checkpoints/gm_x_000000050.safetensors"] {
                try await bucket.putObject(key: prefix + key, bytes: ByteBuffer(string: key))
            }
            setup.fake.complete(
                submitted.id,
                output: [
                    "steps": 100,
                    "artifacts": [
                        ["kind": "lora", "key": .string(prefix + "lora/gm_x.safetensors")],
                        ["kind": "checkpoint", "key": .string(prefix + "checkpoints/gm_x_000000050.safetensors"), "step": 50],
                        ["kind": "checkpoint", "key": .string(prefix + "checkpoints/gm_x_000000100.safetensors"), "step": 100],
                    ],
                ])
            try await setup.pollAgain()
            var shown = try await setup.job(id)
            #expect((shown["result"] as? [String: Any])?["kind"] as? String == "lora" && (shown["result"] as? [String: Any])?["promoted"] as? Bool == false)

            let promoted = try await setup.user.client.send(.POST, "/api/jobs/\(id)/promote", body: #"{"step": 50}"#)
            #expect(promoted.status == .ok, "\(promoted.body.string)")
            let result = try #require(try promoted.json["result"] as? [String: Any])
            #expect(result["step"] as? Int == 50 && result["promoted"] as? Bool == true && result["kind"] as? String == "checkpoint")
            // The default download follows.
            let download = try await setup.user.client.send(.GET, "/api/jobs/\(id)/result")
            #expect(download.status == .seeOther && download.headers.first(name: .location)?.contains("gm_x_000000050.safetensors") == true)

            let gone = try await setup.user.client.send(.POST, "/api/jobs/\(id)/promote", body: #"{"step": 100}"#)
            #expect(gone.status == .gone && gone.body.string.contains("no longer in the bucket"), "\(gone.body.string)")
            let unknown = try await setup.user.client.send(.POST, "/api/jobs/\(id)/promote", body: #"{"step": 70}"#)
            #expect(unknown.status == .notFound && unknown.body.string.contains("no checkpoint at step 70"))
            #expect(try await setup.user.client.send(.POST, "/api/jobs/\(id)/promote", body: "{}").status == .badRequest, "step is required (null: the final LoRA)")
            var other = try await DatasetTests.User(setup.store, email: "eve@example.com")
            #expect(try await other.client.send(.POST, "/api/jobs/\(id)/promote", body: #"{"step": 50}"#).status == .notFound)
            #expect(try await other.client.send(.GET, "/api/jobs/\(id)/result").status == .notFound)

            #expect(try await setup.user.client.send(.POST, "/api/jobs/\(id)/promote", body: #"{"step": null}"#).status == .ok)
            shown = try await setup.job(id)
            #expect((shown["result"] as? [String: Any])?["promoted"] as? Bool == false)
            let events = try #require(shown["events"] as? [[String: Any]]).compactMap { $0["message"] as? String }
            #expect(events.contains("The checkpoint of step 50 is now the result.") && events.last == "The final LoRA is the result again.")
        }
    }

    @Test func aPlainClientGetsTheJobOnceFromTheEventStream() async throws {
        try await Self.withSetup { setup in
            let id = try #require(try await setup.createJob()["id"] as? String)
            // Without Accept: text/event-stream the answer is the job now, as one event, and ends
            // (a stream would stay open while the job is queued).
            let once = try await setup.user.client.send(.GET, "/api/jobs/\(id)/events", headers: ["Accept": "*/*"])
            #expect(once.status == .ok && once.headers.contentType?.description.hasPrefix("text/event-stream") == true)
            let events = once.body.string.components(separatedBy: "\n\n").filter { !$0.isEmpty }
            #expect(events.count == 1 && events[0].hasPrefix("event: job\ndata: {"), "\(once.body.string)")
        }
    }

    /// A stream whose job does not change says so every 15 s of the server's clock (a comment
    /// line), so proxies keep it open, and it ends with the job. The clock is advanced by hand:
    /// nothing here waits 15 real seconds.
    @Test(.timeLimit(.minutes(1))) func anIdleEventStreamKeepsItsConnectionAliveAndEndsWithTheJob() async throws {
        let clock = ManualClock()
        try await Self.withSetup(waits: clock) { setup in
            let id = try #require(try await setup.createJob()["id"] as? String)
            var request = HTTPClientRequest(url: setup.store.baseURL.absoluteString + "/api/jobs/\(id)/events")
            request.headers.add(name: "Accept", value: "text/event-stream")
            request.headers.add(name: "Cookie", value: "\(SessionCookie.name)=\(try #require(setup.user.client.sessionCookie))")
            let response = try await setup.store.http.execute(request, timeout: .seconds(30))
            var chunks = response.body.makeAsyncIterator()
            var received = ""
            while !received.contains("\n\n"), let chunk = try await chunks.next() { received += String(buffer: chunk) }
            #expect(received.hasPrefix("event: job\ndata: {"), "\(received)")

            func advance(seconds: Int) async throws {
                for _ in 0..<seconds {
                    await clock.waitUntilSleeping()
                    clock.advance(by: .seconds(1))
                }
            }
            try await advance(seconds: 15)
            while !received.contains(": still here\n\n"), let chunk = try await chunks.next() { received += String(buffer: chunk) }
            #expect(received.hasSuffix("\n\n: still here\n\n") && received.components(separatedBy: ": still here").count == 2, "\(received)")

            // The job ends: its last state comes, and the stream with it.
            setup.store.clock.advance(by: 16)  // the time of day moved on as well
            #expect(try await setup.user.client.send(.POST, "/api/jobs/\(id)/cancel").status == .ok)
            try await advance(seconds: 1)
            while let chunk = try await chunks.next() { received += String(buffer: chunk) }
            #expect(received.components(separatedBy: "event: job\n").count == 3 && received.contains(#""status":"cancelled""#), "\(received)")
        }
    }

    /// A job whose change lost to another is refreshed with every stored field, not a list of
    /// them: a column added later cannot be left stale.
    @Test func aRefreshedJobTakesEveryStoredField() async throws {
        try await Self.withSetup { setup in
            let text = try #require(try await setup.createJob()["id"] as? String)
            let id = try #require(UUID(uuidString: text))
            let stored = try #require(try await Job.find(id, on: setup.db))
            let time = Date(timeIntervalSince1970: 1_800_000_123)
            (stored.runnerStatus, stored.runPodJobID, stored.webhookDigest, stored.progressDigest) = ("IN_PROGRESS", "run-1", "w", "p")
            (stored.progress, stored.artifacts, stored.error, stored.errorDetail) = ("{}", "[]", "an error", "its detail")
            (stored.submittedAt, stored.startedAt, stored.finishedAt, stored.submitStartedAt, stored.leaseUntil, stored.nextPollAt) = (time, time, time, time, time, time)
            (stored.leaseOwner, stored.cancelRequested, stored.attempt, stored.preemptions, stored.status) = ("worker:x/1", true, 3, 2, .running)
            try await stored.save(on: setup.db)
            let fresh = try #require(try await Job.find(id, on: setup.db))

            let stale = Job()
            try JobService.copy(fresh, into: stale)
            #expect(try API.encoder.encode(stale) == API.encoder.encode(fresh))

            // A RunPod id only the stale copy learned is kept: it is the only handle on a paid run.
            fresh.runPodJobID = nil
            let learned = Job()
            learned.runPodJobID = "run-2"
            try JobService.copy(fresh, into: learned)
            #expect(learned.runPodJobID == "run-2" && learned.attempt == 3)
        }
    }

    @Test func badRequestsSayWhatIsWrong() async throws {
        try await Self.withSetup { setup in
            func post(_ body: String) async throws -> TestingHTTPResponse { try await setup.user.client.send(.POST, "/api/jobs", body: body) }
            let outOfRange = try await post(#"{"datasetId": "\#(setup.datasetID)", "params": {"steps": 5, "rank": 500}}"#)
            #expect(outOfRange.status == .badRequest && outOfRange.errorMessage?.contains("params.steps") == true && outOfRange.errorMessage?.contains("params.rank") == true)
            let misspelled = try await post(#"{"datasetId": "\#(setup.datasetID)", "params": {"learning_rate": 0.001}}"#)
            #expect(misspelled.status == .badRequest && misspelled.errorMessage?.contains("params.learning_rate is not a parameter") == true)
            let profile = try await post(#"{"datasetId": "\#(setup.datasetID)", "params": {"profile": "24gb"}}"#)
            #expect(profile.status == .badRequest && profile.errorMessage?.contains("32gb, 48gb, 80gb") == true)
            let preset = try await post(#"{"datasetId": "\#(setup.datasetID)", "preset": "flux"}"#)
            #expect(preset.status == .badRequest)
            let unknown = try await post(#"{"datasetId": "\#(UUID().uuidString)"}"#)
            #expect(unknown.status == .notFound)
            // Unset save and sample intervals follow a short run's length.
            let short = try await post(#"{"datasetId": "\#(setup.datasetID)", "params": {"steps": 200}}"#)
            #expect(try short.status == .created && (short.json["params"] as? [String: Any])?["saveEvery"] as? Int == 50)
            _ = try await setup.user.client.send(.POST, "/api/jobs/\(try #require(short.json["id"] as? String))/cancel")
            let pairs = try await post(#"{"datasetId": "\#(setup.datasetID)", "params": {"samplePairs": ["zebra"]}}"#)
            #expect(pairs.status == .unprocessableEntity && pairs.errorMessage?.contains("no sample 'zebra'") == true, "the dataset's state, not the request's shape")
            // An interval longer than the run means at its end; a trigger word is ASCII; a profile is spelled exactly.
            let long = try await post(#"{"datasetId": "\#(setup.datasetID)", "params": {"steps": 100, "saveEvery": 500, "sampleEvery": 500}}"#)
            #expect(
                try long.status == .created && (long.json["params"] as? [String: Any])?["saveEvery"] as? Int == 100
                    && (long.json["params"] as? [String: Any])?["sampleEvery"] as? Int == 100)
            _ = try await setup.user.client.send(.POST, "/api/jobs/\(try #require(long.json["id"] as? String))/cancel")
            #expect(try await post(#"{"datasetId": "\#(setup.datasetID)", "params": {"triggerWord": "wätercolour"}}"#).status == .badRequest)
            #expect(try await post(#"{"datasetId": "\#(setup.datasetID)", "params": {"profile": "80GB"}}"#).status == .badRequest)

            // Someone else's dataset is not found; an unsound one is 422 with the report.
            var bob = try await DatasetTests.User(setup.store, email: "bob@example.com")
            let foreign = try await bob.client.send(.POST, "/api/jobs", body: #"{"datasetId": "\#(setup.datasetID)"}"#)
            #expect(foreign.status == .notFound)
            let bobs = try await bob.createDataset()
            try await bob.upload(bobs, [("target/cat.png", TestImage.png())])
            let unsound = try await bob.client.send(.POST, "/api/jobs", body: #"{"datasetId": "\#(bobs)"}"#)
            #expect(unsound.status == .unprocessableEntity && unsound.errorCode == "dataset_not_ready")
            let details = try #require((try unsound.json["error"] as? [String: Any])?["details"] as? [[String: String]])
            #expect(details.contains { $0["reason"]?.contains("no control images") == true })
            #expect(setup.fake.jobs.isEmpty)
        }
    }

    @Test func throttlingIsRetriedAndALostAnswerIsResolvedByTheRunsClaim() async throws {
        try await Self.withSetup { setup in
            let id = try #require(try await setup.createJob()["id"] as? String)
            // 429s: RunPod refused, so the client sends it again.
            setup.fake.inject(.status(429), .status(429), into: "run")
            try await setup.tick()
            let afterThrottling = try await setup.job(id)
            #expect(setup.fake.jobs.count == 1 && afterThrottling["status"] as? String == "submitted")

            // A second job whose submission answer is lost after RunPod created it.
            _ = try await setup.user.client.send(.POST, "/api/jobs/\(id)/cancel")
            try await setup.tick()
            let second = try #require(try await setup.createJob()["id"] as? String)
            setup.fake.inject(.dropAfterHandling, into: "run")
            try await setup.tick()
            #expect(setup.fake.jobs.count == 2)
            var shown = try await setup.job(second)
            #expect(shown["status"] as? String == "queued" && shown["runpodJobId"] == nil)
            // Its run starts and claims the attempt, as a worker does: the server finds it by the
            // claim and follows it, without submitting again.
            let lost = try #require(setup.fake.jobs.last)
            try await Self.claim(setup, job: second, run: lost.id)
            setup.store.clock.advance(by: JobRunner.resolveLostSubmissionAfter + 1)
            try await setup.tick()
            try await setup.tick()
            #expect(setup.fake.jobs.count == 2 && setup.fake.calls("run") == 4, "not submitted again: its run was found")
            shown = try await setup.job(second)
            #expect(shown["runpodJobId"] as? String == lost.id && shown["status"] as? String == "submitted")
            let messages = (shown["events"] as? [[String: Any]])?.compactMap { $0["message"] as? String } ?? []
            #expect(messages.contains { $0.contains("Found its run at RunPod (\(lost.id)) by the claim") }, "\(messages)")

            // RunPod's webhook brings the result.
            let path = try #require(lost.webhook.flatMap { URL(string: $0)?.path })
            let body = #"{"id": "\#(lost.id)", "status": "FAILED", "error": "CUDA out of memory\ntraceback…", "delayTime": 10}"#
            #expect(try await setup.user.client.send(.POST, path, body: body).status == .ok)
            shown = try await setup.job(second)
            #expect(shown["status"] as? String == "failed" && shown["runpodJobId"] as? String == lost.id && shown["error"] as? String == "CUDA out of memory")
        }
    }

    /// Writes the claim a worker's run writes when it starts an attempt.
    static func claim(_ setup: Setup, job: String, run: String, attempt: Int = 1) async throws {
        let key = AttemptClaim.key(outputPrefix: StorageKeys.outputPrefix(job), attempt: attempt)
        try await setup.store.client().putObject(key: key, bytes: ByteBuffer(data: AttemptClaim(runID: run, claimedAt: Date()).encoded()), onlyIfAbsent: true)
    }

    /// A lost answer from a RunPod that never had the job: no run starts, so the job is submitted
    /// again; if both runs start, the one without the claim ends untrained and the job follows
    /// the holder. Never failed, never trained twice (issue 14: 7 jobs failed that RunPod never had).
    @Test func aLostSubmissionIsSubmittedAgainAndOnlyTheClaimingRunTrains() async throws {
        try await Self.withSetup { setup in
            let id = try #require(try await setup.createJob()["id"] as? String)
            setup.fake.inject(.status(502), into: "run")
            try await setup.tick()
            let waiting = try await setup.job(id)
            #expect(setup.fake.jobs.isEmpty && waiting["status"] as? String == "queued")
            // Within the grace period nothing happens; after it, with no claim, it goes again.
            try await setup.tick()
            #expect(setup.fake.calls("run") == 1)
            setup.store.clock.advance(by: JobRunner.resolveLostSubmissionAfter + 1)
            try await setup.tick()
            #expect(setup.fake.calls("run") == 2 && setup.fake.jobs.count == 1)
            let second = try #require(setup.fake.jobs.last)
            #expect(try await setup.job(id)["runpodJobId"] as? String == second.id)

            // A lost answer after RunPod had it, and no GPU for a while: the job goes again, so two
            // runs exist. The first to start claims the attempt and trains; the other ends without
            // training, naming it, and the job follows the one that trains.
            let other = try #require(try await setup.createJob()["id"] as? String)
            setup.fake.inject(.dropAfterHandling, into: "run")
            try await setup.tick()
            let first = try #require(setup.fake.jobs.last)
            setup.store.clock.advance(by: JobRunner.resolveLostSubmissionAfter + 1)
            try await setup.tick()
            let again = try #require(setup.fake.jobs.last)
            let followed = try await setup.job(other)
            #expect(again.id != first.id && followed["runpodJobId"] as? String == again.id)
            try await Self.claim(setup, job: other, run: first.id)
            setup.fake.start(first.id)
            setup.fake.start(again.id)
            setup.fake.complete(again.id, output: WorkerResult.duplicate(of: first.id))
            try await setup.pollAgain()
            var shown = try await setup.job(other)
            #expect(shown["runpodJobId"] as? String == first.id && shown["status"] as? String != "completed", "\(shown)")
            let messages = (shown["events"] as? [[String: Any]])?.compactMap { $0["message"] as? String } ?? []
            #expect(messages.contains { $0.contains("ended without training; following \(first.id)") }, "\(messages)")
            setup.fake.complete(first.id, output: ["steps": 100, "final_loss": 0.02, "artifacts": []])
            try await setup.pollAgain()
            shown = try await setup.job(other)
            #expect(shown["status"] as? String == "completed" && shown["runpodJobId"] as? String == first.id, "\(shown)")
        }
    }

    /// A server killed right after `/run` answered and it recorded the id, before the status: the
    /// job is queued with a RunPod id. It is polled like the rest, not left queued forever (the
    /// chaos test found one such job).
    @Test func aJobWhoseServerDiedAfterRecordingTheRunIDIsPolled() async throws {
        try await Self.withSetup { setup in
            let id = try #require(try await setup.createJob()["id"] as? String)
            try await setup.tick()
            let run = try #require(setup.fake.jobs.first)
            // Back to the state the killed server left: queued, with the id, its lease run out.
            let sql = try setup.db.sql()
            try await sql.raw("UPDATE jobs SET status = 'queued' WHERE id = \(bind: UUID(uuidString: id)!)").run()
            setup.fake.start(run.id)
            setup.store.clock.advance(by: 31)
            try await setup.tick()
            let shown = try await setup.job(id)
            #expect(shown["status"] as? String == "running" && shown["runpodJobId"] as? String == run.id, "\(shown)")
            #expect(setup.fake.calls("run") == 1)
        }
    }

    /// Cancelling a job whose run's id was lost: the cancel mark stops a run that starts later,
    /// and a run that already claimed is found and cancelled at RunPod.
    @Test func aCancelReachesARunWhoseIdWasLost() async throws {
        try await Self.withSetup { setup in
            let id = try #require(try await setup.createJob()["id"] as? String)
            setup.fake.inject(.dropAfterHandling, into: "run")
            try await setup.tick()
            let lost = try #require(setup.fake.jobs.last)
            try await Self.claim(setup, job: id, run: lost.id)
            _ = try await setup.user.client.send(.POST, "/api/jobs/\(id)/cancel")
            try await setup.tick()
            #expect(setup.fake.jobs.last?.status == "CANCELLED", "the claimed run was cancelled at RunPod")
            #expect(try await setup.job(id)["status"] as? String == "cancelled")

            // No run had started: the job ends cancelled and leaves the mark a later run reads.
            let other = try #require(try await setup.createJob()["id"] as? String)
            setup.fake.inject(.dropAfterHandling, into: "run")
            try await setup.tick()
            _ = try await setup.user.client.send(.POST, "/api/jobs/\(other)/cancel")
            try await setup.tick()
            #expect(try await setup.job(other)["status"] as? String == "cancelled")
            let mark = AttemptClaim.cancelledKey(outputPrefix: StorageKeys.outputPrefix(other), attempt: 1)
            #expect(try await setup.store.client().listAllObjects(prefix: mark).count == 1)
        }
    }

    @Test func theWebhookRefusesStrangersAndNonsense() async throws {
        try await Self.withSetup { setup in
            let id = try #require(try await setup.createJob()["id"] as? String)
            try await setup.tick()
            let submitted = try #require(setup.fake.jobs.first)
            let path = try #require(submitted.webhook.flatMap { URL(string: $0)?.path })
            #expect(try await setup.user.client.send(.POST, "/api/runpod/webhook/wh_wrong", body: #"{"id": "x", "status": "COMPLETED"}"#).status == .notFound)
            #expect(try await setup.user.client.send(.POST, path, body: "not json").status == .badRequest)
            #expect(try await setup.user.client.send(.POST, path, body: #"{"status": "COMPLETED"}"#).status == .badRequest)
            // A report about another attempt's RunPod job is acknowledged and ignored.
            #expect(try await setup.user.client.send(.POST, path, body: #"{"id": "other", "status": "COMPLETED"}"#).status == .ok)
            #expect(try await setup.job(id)["status"] as? String == "submitted")
            let done = #"{"id": "\#(submitted.id)", "status": "COMPLETED", "output": {"steps": 100, "artifacts": []}}"#
            #expect(try await setup.user.client.send(.POST, path, body: done).status == .ok)
            #expect(try await setup.job(id)["status"] as? String == "completed")
            // Late progress after the end changes nothing.
            let late = #"{"id": "\#(submitted.id)", "status": "IN_PROGRESS", "output": {"step": 3}}"#
            #expect(try await setup.user.client.send(.POST, path, body: late).status == .ok)
            #expect(try await setup.job(id)["status"] as? String == "completed")
        }
    }

    @Test func cancelAndRetry() async throws {
        try await Self.withSetup { setup in
            // Cancelled before submission: at once, RunPod never hears of it.
            let first = try #require(try await setup.createJob()["id"] as? String)
            let cancelled = try await setup.user.client.send(.POST, "/api/jobs/\(first)/cancel")
            #expect(try cancelled.json["status"] as? String == "cancelled")
            try await setup.tick()
            #expect(setup.fake.jobs.isEmpty)
            #expect(try await setup.user.client.send(.POST, "/api/jobs/\(first)/cancel").status == .conflict)

            // Cancelled while running: RunPod is told.
            let second = try #require(try await setup.createJob()["id"] as? String)
            try await setup.submitAndStart()
            _ = try await setup.user.client.send(.POST, "/api/jobs/\(second)/cancel")
            try await setup.tick()
            #expect(setup.fake.jobs.first?.status == "CANCELLED")
            #expect(try await setup.job(second)["status"] as? String == "cancelled")

            // Retry: a new attempt with the same output prefix.
            let retried = try await setup.user.client.send(.POST, "/api/jobs/\(second)/retry")
            #expect(try retried.json["status"] as? String == "queued" && retried.json["attempt"] as? Int == 2)
            try await setup.tick()
            #expect(setup.fake.jobs.count == 2)
            let attempt2 = try #require(setup.fake.jobs.last)
            #expect(attempt2.input["attempt"] == 2 && attempt2.input["output"]?["prefix"]?.stringValue == "outputs/\(second.lowercased())/")
            setup.fake.start(attempt2.id)
            setup.fake.complete(attempt2.id, output: ["steps": 100])
            try await setup.pollAgain()
            let completed = try await setup.user.client.send(.POST, "/api/jobs/\(second)/retry")
            #expect(completed.status == .conflict && completed.errorCode == "job_not_retryable")
        }
    }

    @Test func unknownStatusesAndForgottenJobs() async throws {
        try await Self.withSetup { setup in
            let id = try #require(try await setup.createJob()["id"] as? String)
            try await setup.tick()
            let runPodID = try #require(setup.fake.jobs.first?.id)
            setup.fake.setRawStatus(runPodID, "RUNNING")
            setup.store.clock.advance(by: 30)
            try await setup.tick()
            var shown = try await setup.job(id)
            #expect(shown["status"] as? String == "submitted" && shown["runnerStatus"] as? String == "RUNNING")

            // RunPod answers 404 (its TTL ran out while it ran): the job fails with a reason.
            setup.fake.start(runPodID)
            setup.fake.forget(runPodID)
            setup.store.clock.advance(by: 30)
            try await setup.tick()
            // One 404 may be a glitch: a second look a minute later decides.
            #expect(try await setup.job(id)["status"] as? String == "submitted")
            setup.store.clock.advance(by: 61)
            try await setup.tick()
            shown = try await setup.job(id)
            #expect(shown["status"] as? String == "failed" && (shown["error"] as? String)?.contains("no longer knows") == true)
        }
    }

    @Test func aRefusedSubmissionFailsWithTheReasonAndPendingUploadsHoldJobsBack() async throws {
        try await Self.withSetup { setup in
            let id = try #require(try await setup.createJob()["id"] as? String)
            setup.fake.inject(.status(401), into: "run")
            try await setup.tick()
            let shown = try await setup.job(id)
            #expect(shown["status"] as? String == "failed" && (shown["error"] as? String)?.contains("RUNPOD_API_KEY") == true)
            #expect(setup.fake.calls("run") == 1)
            // Upload URLs still valid could change the files under a job.
            #expect(try await setup.user.sign(setup.datasetID, [("target/late.png", TestImage.png())]).status == .ok)
            let held = try await setup.user.client.send(.POST, "/api/jobs", body: #"{"datasetId": "\#(setup.datasetID)"}"#)
            #expect(held.status == .conflict && held.errorCode == "upload_in_progress")
        }
    }

    @Test func aRetryIgnoresTheOldAttemptsWebhook() async throws {
        try await Self.withSetup { setup in
            let id = try #require(try await setup.createJob()["id"] as? String)
            setup.fake.inject(.dropAfterHandling, into: "run")
            try await setup.tick()
            let lost = try #require(setup.fake.jobs.first)
            _ = try await setup.user.client.send(.POST, "/api/jobs/\(id)/cancel")
            try await setup.tick()
            #expect(try await setup.job(id)["status"] as? String == "cancelled")
            _ = try await setup.user.client.send(.POST, "/api/jobs/\(id)/retry")
            // The first attempt's webhook arrives late: unknown now, nothing changes.
            let path = try #require(lost.webhook.flatMap { URL(string: $0)?.path })
            let late = try await setup.user.client.send(.POST, path, body: #"{"id": "\#(lost.id)", "status": "COMPLETED", "output": {"steps": 3}}"#)
            #expect(late.status == .notFound)
            let shown = try await setup.job(id)
            #expect(shown["status"] as? String == "queued" && shown["runpodJobId"] == nil && shown["attempt"] as? Int == 2)
        }
    }

    /// One RunPod call that hangs delays only its own job: the server's rounds go on meanwhile,
    /// submitting and polling the others (issue 14: a hung `/status` held up everything for 30 s).
    @Test func aHungCallHoldsUpOnlyItsOwnJob() async throws {
        try await Self.withSetup { setup in
            let first = try #require(try await setup.createJob()["id"] as? String)
            try await setup.tick()
            #expect(try await setup.job(first)["status"] as? String == "submitted")
            setup.fake.inject(.delay(4), into: "status")
            setup.store.clock.advance(by: 25)
            try await setup.runner.tick(on: setup.db, waitForCalls: false)
            #expect(setup.runner.calls.inFlight == 1, "the first job's poll hangs")

            let second = try #require(try await setup.createJob()["id"] as? String)
            let started = ContinuousClock.now
            while setup.fake.jobs.count < 2, ContinuousClock.now - started < .seconds(3) {
                try await setup.runner.tick(on: setup.db, waitForCalls: false)
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(setup.fake.jobs.count == 2 && ContinuousClock.now - started < .seconds(3), "the second job was submitted while the first one's call hung")
            await setup.runner.calls.drain()
            #expect(try await setup.job(second)["status"] as? String == "submitted")
            #expect(setup.runner.calls.inFlight == 0)
        }
    }

    @Test func twoInstancesNeverSubmitOrPollTwice() async throws {
        try await Self.withSetup { setup in
            var ids: [String] = []
            for _ in 0..<6 { ids.append(try #require(try await setup.createJob()["id"] as? String)) }
            let other = JobRunner(
                jobs: setup.runner.jobs, runPod: setup.runner.runPod, webhookBase: setup.runner.webhookBase, bucket: setup.runner.bucket, store: setup.runner.store,
                instanceID: "other-instance", now: setup.runner.now
            )
            let db = setup.db
            let first = setup.runner
            // Slow answers keep both rounds in flight at once.
            setup.fake.inject(.delay(0.2), .delay(0.2), .delay(0.2), into: "run")
            async let a = first.tick(on: db)
            async let b = other.tick(on: db)
            _ = try await (a, b)
            try await first.tick(on: db)
            try await other.tick(on: db)
            #expect(setup.fake.jobs.count == 6, "each job submitted once")
            #expect(Set(setup.fake.jobs.compactMap { $0.input["trainer_job_id"]?.stringValue }).count == 6)
            for id in ids { #expect(try await setup.job(id)["status"] as? String == "submitted") }
            let polls = setup.fake.calls("status")
            setup.store.clock.advance(by: 25)
            async let c = first.tick(on: db)
            async let d = other.tick(on: db)
            _ = try await (c, d)
            #expect(setup.fake.calls("status") == polls + 6, "each job polled once per round")
        }
    }
}
