import Fluent
import Foundation
import Testing
import TrainerCore
import VaporTesting

@testable import TrainerServer

/// Drafted instructions through the API: listed apart from captions, blocking training until
/// reviewed, accepted as drafted or edited, rejected; a drafting job for the workers. (The endpoint
/// and the GPU worker's captioner are exercised with the real binaries in
/// Tests/Clients/drafts_e2e.py.)
@Suite struct DraftTests {
    static let unCaptioned: [(String, [UInt8])] = [
        ("control/dog.png", TestImage.png()), ("target/dog.png", TestImage.png()), ("control/owl.png", TestImage.png()), ("target/owl.png", TestImage.png()),
    ]

    @Test func aDraftTrainsNothingUntilAcceptedAsDraftedOrEdited() async throws {
        try await withRunningStore { store in
            var user = try await DatasetTests.User(store, email: "drafts@example.com")
            let datasetID = try await user.createDataset(defaultCaption: "make it look painted")
            try await user.upload(datasetID, DatasetTests.pair + Self.unCaptioned)
            let id = try #require(UUID(uuidString: datasetID))
            for (stem, text) in [("dog", "Make the dog blue."), ("owl", "Turn the owl into a statue.")] {
                try await DraftService.store(text, for: stem, source: "endpoint:test", in: id, at: Date(), on: store.app.db)
            }
            let listed = try await user.client.send(.GET, "/api/datasets/\(datasetID)/drafts").json
            #expect((listed["drafts"] as? [[String: Any]])?.map { $0["stem"] as? String } == ["dog", "owl"])

            // The default caption does not stand in for a sample whose draft waits for review.
            let refused = try await user.client.send(.POST, "/api/jobs", body: #"{"datasetId": "\#(datasetID)"}"#)
            #expect(refused.status == .unprocessableEntity && refused.body.string.contains("waiting for review"), "\(refused.body.string)")

            let edited = try await user.client.send(.POST, "/api/datasets/\(datasetID)/drafts/dog/accept", body: #"{"caption": "Make the dog bright blue."}"#)
            #expect(edited.status == .ok, "\(edited.body.string)")
            let rejected = try await user.client.send(.DELETE, "/api/datasets/\(datasetID)/drafts/owl")
            #expect(rejected.status == .ok)
            #expect(try await user.client.send(.POST, "/api/datasets/\(datasetID)/drafts/owl/accept").status == .notFound)

            let dataset = try await user.client.send(.GET, "/api/datasets/\(datasetID)").json
            let captions = (dataset["files"] as? [[String: Any]])?.filter { $0["role"] as? String == "caption" }.compactMap { $0["caption"] as? String }
            #expect(captions?.sorted() == ["Make the dog bright blue.", "make the cat blue"])
            #expect((try await user.client.send(.GET, "/api/datasets/\(datasetID)/drafts").json["drafts"] as? [Any])?.isEmpty == true)
            // owl, rejected, trains on the default caption again.
            let created = try await user.client.send(.POST, "/api/jobs", body: #"{"datasetId": "\#(datasetID)"}"#)
            #expect(created.status == .created, "\(created.body.string)")
        }
    }

    @Test func withoutAnEndpointDraftingIsAJobForTheWorkers() async throws {
        try await withRunningStore { store in
            var user = try await DatasetTests.User(store, email: "drafts@example.com")
            let datasetID = try await user.createDataset()
            try await user.upload(datasetID, DatasetTests.pair + Self.unCaptioned + [("control_2/owl.png", TestImage.png())])
            #expect(try await user.client.send(.POST, "/api/datasets/\(datasetID)/drafts", body: #"{"stems": ["zebra"]}"#).status == .notFound)
            let started = try await user.client.send(.POST, "/api/datasets/\(datasetID)/drafts")
            #expect(started.status == .accepted, "\(started.body.string)")
            let run = try started.json
            #expect(run["mode"] as? String == "worker" && run["samplesTotal"] as? Int == 2 && run["state"] as? String == "running")
            let jobID = try #require(run["jobId"] as? String)
            let job = try #require(try await Job.find(UUID(uuidString: jobID), on: store.app.db))
            #expect(job.preset == InstructionDraft.jobPreset)
            // Only the samples without an instruction, each with its controls and then its target.
            let request = try JSONDecoder().decode(InstructionDraft.WorkerRequest.self, from: Data(job.jobConfig.utf8))
            #expect(request.model == InstructionDraft.defaultWorkerModel)
            #expect(request.items.map(\.images) == [["control_1/dog.png", "target/dog.png"], ["control_1/owl.png", "control_2/owl.png", "target/owl.png"]])
            // It does not lock the dataset; a second run waits for the first.
            #expect((try await user.client.send(.GET, "/api/datasets/\(datasetID)").json)["lockedByJobId"] == nil)
            #expect(try await user.client.send(.POST, "/api/datasets/\(datasetID)/drafts").status == .conflict)
        }
    }

    @Test func anUploadedCaptionSupersedesADraftAndARetryChecksTheDataset() async throws {
        try await withRunningStore { store in
            var user = try await DatasetTests.User(store, email: "drafts@example.com")
            let datasetID = try await user.createDataset(defaultCaption: "make it look painted")
            try await user.upload(datasetID, DatasetTests.pair + Self.unCaptioned)
            let id = try #require(UUID(uuidString: datasetID))
            // A training job that failed, then a draft appears for owl.
            let created = try await user.client.send(.POST, "/api/jobs", body: #"{"datasetId": "\#(datasetID)"}"#)
            let jobID = try #require(try created.json["id"] as? String)
            let job = try #require(try await Job.find(UUID(uuidString: jobID), on: store.app.db))
            job.status = .failed
            try await job.save(on: store.app.db)
            let dataset = try #require(try await Dataset.find(id, on: store.app.db))
            dataset.lockedByJobID = nil
            try await dataset.save(on: store.app.db)
            try await DraftService.store("Make the owl gold.", for: "owl", source: "endpoint:test", in: id, at: Date(), on: store.app.db)
            let retried = try await user.client.send(.POST, "/api/jobs/\(job.id!.uuidString)/retry")
            #expect(retried.status == .unprocessableEntity && retried.body.string.contains("waiting for review"), "\(retried.body.string)")

            // Uploading owl's caption ends its draft; the retry goes ahead.
            try await user.upload(datasetID, [("target/owl.txt", Array("make the owl silver".utf8))])
            #expect((try await user.client.send(.GET, "/api/datasets/\(datasetID)/drafts").json["drafts"] as? [Any])?.isEmpty == true)
            #expect(try await user.client.send(.POST, "/api/jobs/\(job.id!.uuidString)/retry").status == .ok)
        }
    }
}
