import AsyncHTTPClient
import Fluent
import FluentSQL
import Foundation
import NIOCore
import ObjectStorage
import Testing
import TrainerCore
import TrainerWorker
import VaporTesting

@testable import TrainerServer

/// The built-in queue over RunPod's worker protocol, driven like a worker would.
@Suite struct BuiltInQueueTests {
    struct Worker {
        let app: Application
        let key: String
        let name: String

        func send(_ method: HTTPMethod, _ path: String, body: String? = nil, key: String? = nil) async throws -> TestingHTTPResponse {
            var headers: HTTPHeaders = ["Authorization": key ?? self.key]
            // RunPod's SDK labels its JSON like a form.
            if body != nil { headers.add(name: .contentType, value: "application/x-www-form-urlencoded") }
            return try await app.testing().sendRequest(method, path, headers: headers, body: body.map { ByteBuffer(string: $0) })
        }

        func take() async throws -> (id: String, input: [String: Any])? {
            let response = try await send(.GET, "/v2/local/job-take/\(name)?gpu=H100&job_in_progress=0")
            guard response.status == .ok else {
                #expect(response.status == .noContent)
                return nil
            }
            let json = try response.json
            return (try #require(json["id"] as? String), try #require(json["input"] as? [String: Any]))
        }

        func done(_ id: String, _ body: String) async throws {
            #expect(try await send(.POST, "/v2/local/job-done/\(name)/\(id)?isStream=false", body: body).status == .ok)
        }
    }

    static func withQueue(
        jobTakeWait: Duration = .milliseconds(300), waits: any Clock<Duration> = ContinuousClock(), _ test: (inout JobTests.Setup, Worker, BuiltInQueue) async throws -> Void
    ) async throws {
        try await withRunningStore(jobTakeWait: jobTakeWait, waits: waits) { store in
            var user = try await DatasetTests.User(store, email: "ann@example.com")
            let datasetID = try await user.createDataset()
            try await user.upload(datasetID, DatasetTests.pair)
            let key = try await Administration(app: store.app).createWorkerKey(name: "gpu-box")
            var setup = JobTests.Setup(user: user, store: store, fake: FakeRunPod(), datasetID: datasetID)
            let queue = try #require(store.app.storage[BuiltInQueueKey.self])
            try await test(&setup, Worker(app: store.app, key: key, name: "pod-1"), queue)
        }
    }

    @Test func aWorkerTakesReportsAndCompletesAJob() async throws {
        try await Self.withQueue { setup, worker, _ in
            #expect(try await worker.take() == nil)
            let id = try #require(try await setup.createJob()["id"] as? String)
            let (runnerID, input) = try #require(try await worker.take())
            #expect(runnerID == id.lowercased() + "-a1" && input["contract_version"] as? Int == 1)
            #expect((input["output"] as? [String: Any])?["prefix"] as? String == "outputs/\(id.lowercased())/")
            #expect(try await worker.take() == nil, "a job goes to one worker")
            #expect(try await setup.job(id)["status"] as? String == "running")

            try await worker.done(runnerID, #"{"status": "IN_PROGRESS", "output": {"phase": "training", "step": 30, "total_steps": 100, "loss": 0.2}}"#)
            #expect((try await setup.job(id)["progress"] as? [String: Any])?["step"] as? Int == 30)
            let ping = try await worker.send(.GET, "/v2/local/ping/pod-1?job_id=\(runnerID)&runpod_version=1.12.0")
            #expect(ping.status == .ok)
            let prefix = "outputs/\(id.lowercased())/"
            try await worker.done(
                runnerID, #"{"output": {"steps": 100, "final_loss": 0.04, "artifacts": [{"kind": "lora", "key": "\#(prefix)lora/gm.safetensors", "bytes": 10}]}}"#)
            var shown = try await setup.job(id)
            #expect(shown["status"] as? String == "completed" && (shown["artifacts"] as? [Any])?.count == 1)
            // Progress racing the result (runpod-python#250) changes nothing.
            try await worker.done(runnerID, #"{"status": "IN_PROGRESS", "output": {"step": 99}}"#)
            shown = try await setup.job(id)
            #expect(shown["status"] as? String == "completed" && (shown["progress"] as? [String: Any])?["step"] as? Int == 100)
        }
    }

    /// A job-take waits `jobTakeWait` of the server's clock: with nothing queued it answers 204
    /// once that has passed, and a job queued meanwhile goes out at the next check. The clock is
    /// advanced by hand: no real time passes.
    @Test(.timeLimit(.minutes(1))) func aJobTakeWaitsOnTheServersClock() async throws {
        let clock = ManualClock()
        try await Self.withQueue(jobTakeWait: .seconds(20), waits: clock) { setup, worker, _ in
            let empty = Task { try await worker.take()?.id }
            for _ in 0..<20 {
                await clock.waitUntilSleeping()
                clock.advance(by: .seconds(1))
            }
            #expect(try await empty.value == nil)

            let waiting = Task { try await worker.take()?.id }
            await clock.waitUntilSleeping()
            let id = try #require(try await setup.createJob()["id"] as? String)
            clock.advance(by: .seconds(1))
            #expect(try await waiting.value == id.lowercased() + "-a1")
        }
    }

    /// A worker killed while its job-take waited: the server cannot see that until it answers,
    /// and a job it hands out then would wait for its lost worker. The answer cannot be written to
    /// the closed connection, so the job goes straight back to the queue, as the same attempt.
    @Test func aJobTakenByAWorkerThatIsGoneGoesBackAtOnce() async throws {
        try await Self.withQueue(jobTakeWait: .seconds(30)) { setup, worker, _ in
            let app = setup.store.app
            func waiting() async throws -> Int? {
                let metrics = try await app.testing().sendRequest(.GET, "/metrics").body.string
                return metrics.split(separator: "\n").first { $0.hasPrefix("gomodel_job_takes_waiting ") }.flatMap { Double($0.split(separator: " ")[1]) }.map { Int($0) }
            }
            let gone = HTTPClient(eventLoopGroupProvider: .singleton)
            let client = WorkerProtocolClient(endpoints: .builtInQueue(server: setup.store.baseURL, key: worker.key, workerID: "pod-9"), http: gone)
            let take = Task { try await client.take() }
            try await JobRestartTests.waitFor("the take to wait") { try await waiting() == 1 }
            take.cancel()  // closes its connection, as a killed worker's kernel does
            _ = try? await take.value
            try await gone.shutdown()

            let id = try #require(try await setup.createJob()["id"] as? String)
            try await JobRestartTests.waitFor("the job handed back") {
                let said = (try await setup.job(id)["events"] as? [[String: Any]] ?? []).compactMap { $0["message"] as? String }
                return said.last == "Worker gpu-box/pod-9 was gone before the job reached it; back in the queue."
            }
            #expect(try await waiting() == 0)
            let shown = try await setup.job(id)
            #expect(shown["status"] as? String == "queued" && shown["attempt"] as? Int == 1 && shown["startedAt"] == nil, "\(shown)")
            let (runnerID, _) = try #require(try await worker.take())
            #expect(runnerID == id.lowercased() + "-a1")
        }
    }

    /// A cancel asked for between a take and its failed answer ends the job: no worker holds it
    /// to be told, and the queue does not hand out cancelled jobs.
    @Test func aJobHandedBackAfterACancelRequestEndsCancelled() async throws {
        try await Self.withQueue { setup, worker, queue in
            let id = try #require(try await setup.createJob()["id"] as? String)
            let (runnerID, _) = try #require(try await worker.take())
            #expect(try await setup.user.client.send(.POST, "/api/jobs/\(id)/cancel").status == .ok)
            #expect(try await setup.job(id)["status"] as? String == "running", "the cancel waits for the worker")
            let clock = setup.store.clock
            let taker = try await WorkerKeyService(now: { clock.now }).authenticate(secret: worker.key, workerID: worker.name, on: setup.db)
            try await queue.handBack(runnerID: runnerID, worker: taker, on: setup.db)
            let shown = try await setup.job(id)
            let said = (shown["events"] as? [[String: Any]] ?? []).compactMap { $0["message"] as? String }
            #expect(shown["status"] as? String == "cancelled" && said.last == "Worker gpu-box/pod-1 was gone before the job reached it; cancelled, as asked.", "\(said)")
            #expect(try await setup.user.client.send(.DELETE, "/api/datasets/\(setup.datasetID)").status == .noContent, "its dataset is free again")
        }
    }

    @Test func errorsFailTheJobAndKeysAreChecked() async throws {
        try await Self.withQueue { setup, worker, _ in
            #expect(try await worker.send(.GET, "/v2/local/job-take/pod-1", key: "gmw_wrong").status == .unauthorized)
            #expect(try await worker.send(.GET, "/v2/local/job-take/pod-1", key: "").status == .unauthorized)
            let id = try #require(try await setup.createJob()["id"] as? String)
            let (runnerID, _) = try #require(try await worker.take())
            #expect(try await worker.send(.POST, "/v2/local/job-done/pod-1/\(runnerID)", body: "[1, 2]").status == .badRequest)
            // Another worker cannot report on this job.
            let other = Worker(app: worker.app, key: worker.key, name: "pod-2")
            try await other.done(runnerID, #"{"output": {"steps": 1}}"#)
            #expect(try await setup.job(id)["status"] as? String == "running")
            try await worker.done(runnerID, #"{"error": "Missing control images for QwenImageEditPlusModel\nTraceback…"}"#)
            let shown = try await setup.job(id)
            #expect(shown["status"] as? String == "failed" && shown["error"] as? String == "Missing control images for QwenImageEditPlusModel")
        }
    }

    @Test func cancellingARunningJobReachesItsWorker() async throws {
        try await Self.withQueue { setup, worker, _ in
            let id = try #require(try await setup.createJob()["id"] as? String)
            let (runnerID, _) = try #require(try await worker.take())
            #expect(try await worker.send(.GET, "/v2/local/job-stop/pod-1").status == .noContent)
            _ = try await setup.user.client.send(.POST, "/api/jobs/\(id)/cancel")
            let stop = try await worker.send(.GET, "/v2/local/job-stop/pod-1")
            #expect(try stop.status == .ok && stop.json["jobsToStop"] as? [String] == [runnerID])
            try await worker.done(runnerID, #"{"error": "stopped"}"#)
            #expect(try await setup.job(id)["status"] as? String == "cancelled")
        }
    }

    @Test func aQuietWorkerLosesTheJobWhichResumesElsewhereAtMostThreeTimes() async throws {
        try await Self.withQueue { setup, worker, queue in
            let id = try #require(try await setup.createJob()["id"] as? String)
            let (first, _) = try #require(try await worker.take())
            // Pings keep it.
            setup.store.clock.advance(by: 40)
            _ = try await worker.send(.GET, "/v2/local/ping/pod-1?job_id=\(first)")
            setup.store.clock.advance(by: 40)
            try await queue.reclaimLost(on: setup.db)
            #expect(try await setup.job(id)["status"] as? String == "running")
            // Silence does not.
            setup.store.clock.advance(by: 61)
            try await queue.reclaimLost(on: setup.db)
            var shown = try await setup.job(id)
            #expect(shown["status"] as? String == "queued" && shown["attempt"] as? Int == 2)
            let second = Worker(app: worker.app, key: worker.key, name: "pod-2")
            let (secondID, input) = try #require(try await second.take())
            #expect(secondID == id.lowercased() + "-a2" && input["attempt"] as? Int == 2)
            // The lost worker's late result is ignored.
            try await worker.done(first, #"{"output": {"steps": 5}}"#)
            #expect(try await setup.job(id)["status"] as? String == "running")

            setup.store.clock.advance(by: 61)
            try await queue.reclaimLost(on: setup.db)
            _ = try #require(try await second.take())
            setup.store.clock.advance(by: 61)
            try await queue.reclaimLost(on: setup.db)
            shown = try await setup.job(id)
            #expect(shown["status"] as? String == "failed" && shown["attempt"] as? Int == 3)
            #expect((shown["error"] as? String)?.contains("stopped answering 3 times") == true)
        }
    }

    @Test func workerKeyNamesAreUniqueAndAWorkerActsOnlyForItsOwnKeysJobs() async throws {
        try await Self.withQueue { setup, worker, _ in
            let administration = Administration(app: setup.store.app)
            // Two keys with one name made their workers one worker for the queue (issue 15).
            await #expect(throws: WorkerKeyService.Failure.nameTaken("gpu-box")) { try await administration.createWorkerKey(name: "gpu-box") }
            await #expect(throws: WorkerKeyService.Failure.nameTaken("gpu-box")) { try await administration.createWorkerKey(name: " gpu-box ") }
            let other = Worker(app: worker.app, key: try await administration.createWorkerKey(name: "gpu-box-2"), name: worker.name)

            let id = try #require(try await setup.createJob()["id"] as? String)
            let (runnerID, _) = try #require(try await worker.take())
            try await worker.done(runnerID, #"{"status": "IN_PROGRESS", "output": {"phase": "training", "step": 30, "total_steps": 100}}"#)
            // The same worker id under another key reaches nothing of the job.
            try await other.done(runnerID, #"{"status": "IN_PROGRESS", "output": {"phase": "training", "step": 99, "total_steps": 100}}"#)
            try await other.done(runnerID, #"{"output": {"steps": 100}}"#)
            let shown = try await setup.job(id)
            #expect(shown["status"] as? String == "running" && (shown["progress"] as? [String: Any])?["step"] as? Int == 30)
        }
    }

    @Test func aRevokedKeysWorkerIsRefusedAndItsJobGoesBackToTheQueue() async throws {
        try await Self.withQueue { setup, worker, queue in
            let id = try #require(try await setup.createJob(#"{"steps": 100, "saveEvery": 50, "sampleEvery": 50}"#)["id"] as? String)
            let (runnerID, input) = try #require(try await worker.take())
            let storeKey = try #require(input["store_key"] as? [String: String])

            let keys = try await setup.user.client.send(.GET, "/api/worker-keys")
            let listed = try #require((try keys.json["workerKeys"] as? [[String: Any]])?.first)
            #expect(listed["name"] as? String == "gpu-box" && listed["runningJobs"] as? Int == 1 && listed["revokedAt"] == nil && listed["key"] == nil)
            let keyID = try #require(listed["id"] as? String)
            let revoked = try await setup.user.client.send(.POST, "/api/worker-keys/\(keyID)/revoke")
            #expect(try revoked.status == .ok && (try revoked.json["revokedAt"] as? String) != nil, "\(revoked.body.string)")

            // Refused at its next call, saying why.
            let ping = try await worker.send(.GET, "/v2/local/ping/pod-1?job_id=\(runnerID)")
            #expect(ping.status == .unauthorized && ping.body.string.contains("revoked"), "\(ping.body.string)")
            #expect(try await worker.send(.GET, "/v2/local/job-take/pod-1").status == .unauthorized)
            // The store key handed out with its job is refused too, before it expires.
            var endpoint = setup.store.endpoint
            endpoint.credentials = S3Credentials(accessKeyID: try #require(storeKey["access_key_id"]), secretAccessKey: Secret(try #require(storeKey["secret_access_key"])))
            do {
                _ = try await S3Client(endpoint: endpoint, httpClient: setup.store.http).putObject(
                    key: "outputs/\(id.lowercased())/checkpoints/x.safetensors", bytes: ByteBuffer(string: "x"))
                Issue.record("a revoked worker's store key could still write")
            } catch let error as S3Error {
                #expect(error.code == .accessDenied, "\(error)")
            }

            // Its job goes back at the queue's next round, without waiting out the lease and
            // without counting as a failed attempt; a worker of another key takes it.
            setup.store.clock.advance(by: 1)
            try await queue.reclaimLost(on: setup.db)
            let requeued = try await setup.job(id)
            let said = (requeued["events"] as? [[String: Any]] ?? []).compactMap { $0["message"] as? String }
            #expect(requeued["status"] as? String == "queued" && requeued["attempt"] as? Int == 2)
            #expect(said.contains { $0.contains("Worker gpu-box/pod-1's key was revoked") }, "\(said)")
            let other = Worker(app: worker.app, key: try await Administration(app: setup.store.app).createWorkerKey(name: "gpu-box"), name: "pod-1")
            #expect(try await other.take()?.id == id.lowercased() + "-a2", "the revoked key's name is free again")

            // A second revoke changes nothing; the list shows the revocation.
            #expect(try await setup.user.client.send(.POST, "/api/worker-keys/\(keyID)/revoke").status == .ok)
            let after = try await setup.user.client.send(.GET, "/api/worker-keys").json["workerKeys"] as? [[String: Any]] ?? []
            #expect(after.count == 2 && after.filter { $0["revokedAt"] != nil }.count == 1)
        }
    }

    @Test func onlyAdministratorsManageWorkerKeys() async throws {
        try await Self.withQueue { setup, _, _ in
            var member = try await DatasetTests.User(setup.store, email: "bob@example.com")
            for (method, path, body) in [
                (HTTPMethod.GET, "/api/worker-keys", nil), (.POST, "/api/worker-keys", #"{"name": "mine"}"#),
                (.POST, "/api/worker-keys/\(UUID())/revoke", nil),
            ] as [(HTTPMethod, String, String?)] {
                let response = try await member.client.send(method, path, body: body)
                #expect(response.status == .forbidden, "\(method) \(path): \(response.status)")
            }
            var admin = setup.user
            let made = try await admin.client.send(.POST, "/api/worker-keys", body: #"{"name": "box-9"}"#)
            #expect(try made.status == .created && (try made.json["key"] as? String)?.hasPrefix("gmw_") == true)
            #expect(try await admin.client.send(.POST, "/api/worker-keys", body: #"{"name": "box-9"}"#).status == .conflict)
            #expect(try await admin.client.send(.POST, "/api/worker-keys", body: #"{"name": "box\u202e9"}"#).status == .badRequest)
            #expect(try await admin.client.send(.POST, "/api/worker-keys/\(UUID())/revoke").status == .notFound)
        }
    }

    @Test func theMigrationRenamesSharedKeyNamesAndKeepsTheLeasesItCanTellApart() async throws {
        try await Self.withQueue { setup, worker, _ in
            let id = try #require(try await setup.createJob()["id"] as? String)
            let (runnerID, _) = try #require(try await worker.take())
            // Back to the schema before 0012: leases named the key, and two keys shared a name. On one
            // connection, as migrations run: SQLite checks an ALTER against the schema its connection
            // read last, so another pooled connection would still see the dropped column.
            try await setup.db.withConnection { db in
                let migration = M0012WorkerKeyNamesAndRevocation()
                try await migration.revert(on: db)
                let sql = try #require(db as? any SQLDatabase)
                try await sql.update("jobs").set("lease_owner", to: "worker:gpu-box/pod-1").where("id", .equal, UUID(uuidString: id)!).run()
                for (name, age) in [("twin", 20.0), ("twin", 10.0)] {
                    try await sql.insert(into: "worker_keys").columns("id", "name", "key_hash", "created_at")
                        .values(SQLBind(UUID()), SQLBind(name), SQLBind(UUID().uuidString), SQLBind(Date().addingTimeInterval(-age))).run()
                }
                try await migration.prepare(on: db)
            }

            let names = try await WorkerKey.query(on: setup.db).sort(\.$createdAt).all().map(\.name)
            #expect(names == ["twin", "twin (2)", "gpu-box"])
            // The worker of the key whose name was its own keeps its job.
            try await worker.done(runnerID, #"{"status": "IN_PROGRESS", "output": {"phase": "training", "step": 40, "total_steps": 100}}"#)
            #expect((try await setup.job(id)["progress"] as? [String: Any])?["step"] as? Int == 40)
        }
    }
}
