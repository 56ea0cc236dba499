import Fluent
import Foundation
import NIOCore
import ObjectStorage
import Testing
import TrainerCore
import VaporTesting

@testable import TrainerServer

/// Retention (GOMODEL_RETENTION_DAYS): outputs and untouched datasets deleted, objects before
/// rows, with the dates shown beforehand; the per-user quota (GOMODEL_STORAGE_QUOTA) at signing.
@Suite struct RetentionTests {
    @Test func oldOutputsAndUntouchedDatasetsGoObjectsFirst() async throws {
        try await JobTests.withSetup(environment: ["GOMODEL_RETENTION_DAYS": "30"]) { setup in
            let id = try #require(try await setup.createJob()["id"] as? String).lowercased()
            try await setup.tick()
            let submitted = try #require(setup.fake.jobs.first)
            let prefix = "outputs/\(id)/"
            let bucket = S3Client(endpoint: setup.store.endpoint, httpClient: setup.store.http)
            for key in ["lora/gm_x.safetensors", "checkpoints/gm_x_000000050.safetensors"] {
                _ = try await bucket.putObject(key: prefix + key, bytes: ByteBuffer(string: key))
            }
            setup.fake.complete(
                submitted.id,
                output: [
                    "steps": 100,
                    "artifacts": [
                        ["kind": "lora", "key": .string(prefix + "lora/gm_x.safetensors"), "bytes": 1000],
                        ["kind": "checkpoint", "key": .string(prefix + "checkpoints/gm_x_000000050.safetensors"), "step": 50, "bytes": 500],
                    ],
                ])
            try await setup.pollAgain()
            let finished = try #require(try await Job.find(UUID(uuidString: id), on: setup.db)?.finishedAt)
            var shown = try await setup.job(id)
            let expires = try #require(shown["outputsExpireAt"] as? String)
            #expect(abs(try Date(expires, strategy: .iso8601).timeIntervalSince(finished) - 30 * 86400) < 1)
            // Time passes for the data, not for the server (its clock must stay near the store
            // clients' for SigV4, and the session valid): the stored times move back instead.
            func age(days: Double) async throws {
                let shift = days * 86400
                for job in try await Job.query(on: setup.db).all() {
                    job.createdAt -= shift
                    job.finishedAt = job.finishedAt.map { $0 - shift }
                    try await job.save(on: setup.db)
                }
                let dataset = try #require(try await Dataset.find(UUID(uuidString: setup.datasetID), on: setup.db))
                dataset.updatedAt -= shift
                try await dataset.save(on: setup.db)
            }
            let usage = try await setup.user.client.send(.GET, "/api/usage").json
            #expect(usage["outputBytes"] as? Int == 1500 && usage["retentionDays"] as? Int == 30 && usage["quotaBytes"] == nil)
            let dataset = try await setup.user.client.send(.GET, "/api/datasets/\(setup.datasetID)").json
            #expect(dataset["expiresAt"] != nil, "the dataset trained: it is kept 30 days from then")
            // The pages say so, as a warning once it is near.
            var page = try await setup.user.client.send(.GET, "/jobs/\(id)").body.string
            #expect(page.contains("id=\"retention-note\"") && !page.contains("retention-warning"))
            try await age(days: 25)
            page = try await setup.user.client.send(.GET, "/jobs/\(id)").body.string
            #expect(page.contains("retention-warning"))
            #expect(try await setup.user.client.send(.GET, "/datasets/\(setup.datasetID)").body.string.contains("retention-warning"))

            // A dataset made now by someone else is not due.
            var other = try await DatasetTests.User(setup.store, email: "eve@example.com")
            let fresh = try await other.createDataset("fresh")
            let retention = try #require(setup.store.app.storage[RetentionKey.self])
            #expect(try await retention.sweep(on: setup.db) == false)
            #expect(try await bucket.listAllObjects(prefix: prefix).count == 2, "not yet: 25 of 30 days")

            try await age(days: 6)
            _ = try await retention.sweep(on: setup.db)
            #expect(try await bucket.listAllObjects(prefix: prefix).isEmpty)
            #expect(try await bucket.listAllObjects(prefix: "datasets/\(setup.datasetID)/").isEmpty)
            shown = try await setup.job(id)
            #expect((shown["artifacts"] as? [Any])?.isEmpty == true && shown["outputsDeletedAt"] != nil && shown["outputsExpireAt"] == nil && shown["result"] == nil)
            let events = try #require(shown["events"] as? [[String: Any]]).compactMap { $0["message"] as? String }
            #expect(events.last == "Its outputs were deleted, 30 days after it ended (GOMODEL_RETENTION_DAYS).")
            #expect(try await setup.user.client.send(.GET, "/api/datasets/\(setup.datasetID)").status == .notFound)
            #expect(try await other.client.send(.GET, "/api/datasets/\(fresh)").status == .ok)
            #expect(try await setup.user.client.send(.GET, "/api/usage").json["usedBytes"] as? Int == 0)
            // Once is enough: the next round finds nothing.
            #expect(try await retention.sweep(on: setup.db) == false)
            let metrics = try await setup.user.client.send(.GET, "/metrics").body.string
            #expect(metrics.contains(#"gomodel_storage_bytes{kind="job_outputs"} 0"#), "\(metrics.split(separator: "\n").filter { $0.contains("storage") })")
        }
    }

    @Test func aQuotaRefusesUploadsThatWouldPassIt() async throws {
        try await withRunningStore(environment: ["GOMODEL_STORAGE_QUOTA": "10000"]) { store in
            var user = try await DatasetTests.User(store, email: "ann@example.com")
            let dataset = try await user.createDataset()
            _ = try await user.upload(dataset, [("control/cat.png", TestImage.png(filler: 2000)), ("target/cat.png", TestImage.png(filler: 2000))])
            let used = try #require(try await user.client.send(.GET, "/api/usage").json["usedBytes"] as? Int)
            #expect(used > 4000 && used < 5000)
            let refused = try await user.sign(dataset, [("control/dog.png", TestImage.png(filler: 3000)), ("target/dog.png", TestImage.png(filler: 3000))])
            #expect(refused.status == .unprocessableEntity && refused.body.string.contains("quota_exceeded"), "\(refused.body.string)")
            #expect(refused.body.string.contains("GOMODEL_STORAGE_QUOTA"))
            // Replacing a file counts only what it adds.
            #expect(try await user.sign(dataset, [("target/cat.png", TestImage.png(filler: 2500))]).status == .ok)
            let zip = try await user.client.send(.POST, "/api/datasets/\(dataset)/imports", body: #"{"fileName": "more.zip", "size": 6000}"#)
            #expect(zip.status == .unprocessableEntity && zip.body.string.contains("quota_exceeded"), "\(zip.body.string)")
            #expect(try await user.client.send(.GET, "/api/usage").json["quotaBytes"] as? Int == 10000)
            // Uploads signed and not yet completed count in every dataset, not only their own.
            let other = try await user.createDataset("other")
            #expect(try await user.sign(dataset, [("control/dog.png", TestImage.png(filler: 2000))]).status == .ok)
            let elsewhere = try await user.sign(other, [("control/owl.png", TestImage.png(filler: 4000))])
            #expect(elsewhere.status == .unprocessableEntity && elsewhere.body.string.contains("quota_exceeded"), "\(elsewhere.body.string)")
        }
    }

    @Test func anEndedJobCanBeDeletedWithItsOutputs() async throws {
        try await JobTests.withSetup { setup in
            let id = try #require(try await setup.createJob()["id"] as? String).lowercased()
            try await setup.tick()
            let bucket = S3Client(endpoint: setup.store.endpoint, httpClient: setup.store.http)
            _ = try await bucket.putObject(key: "outputs/\(id)/lora/gm_x.safetensors", bytes: ByteBuffer(string: "lora"))
            let active = try await setup.user.client.send(.DELETE, "/api/jobs/\(id)")
            #expect(active.status == .conflict && active.body.string.contains("job_active"), "\(active.body.string)")
            var other = try await DatasetTests.User(setup.store, email: "eve@example.com")
            #expect(try await other.client.send(.DELETE, "/api/jobs/\(id)").status == .notFound)
            _ = try await setup.user.client.send(.POST, "/api/jobs/\(id)/cancel")
            try await setup.tick()
            #expect(try await setup.job(id)["status"] as? String == "cancelled")
            #expect(try await setup.user.client.send(.DELETE, "/api/jobs/\(id)").status == .noContent)
            #expect(try await bucket.listAllObjects(prefix: "outputs/\(id)/").isEmpty)
            #expect(try await setup.user.client.send(.GET, "/api/jobs/\(id)").status == .notFound)
            #expect(try await setup.user.client.send(.GET, "/api/jobs/\(id)/record").status == .notFound)
            #expect(try await JobEvent.query(on: setup.db).filter(\.$job.$id == UUID(uuidString: id)!).count() == 0)
            let dataset = try await setup.user.client.send(.GET, "/api/datasets/\(setup.datasetID)").json
            #expect(dataset["lockedByJobId"] == nil, "the dataset is free")
        }
    }
}
