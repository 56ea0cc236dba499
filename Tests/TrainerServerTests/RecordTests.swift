import Crypto
import Fluent
import Foundation
import ObjectStorage
import Testing
import TrainerCore
import VaporTesting

@testable import TrainerServer

/// A job's reproducibility record (its dataset's content, parameters, config, and each attempt's
/// worker report) and the estimates learned from completed attempts.
@Suite struct RecordTests {
    static let environment: JSONValue = [
        "worker_version": "0.18.0", "gpu_name": "NVIDIA H100 80GB HBM3", "trainer_commit": "27a03a91e0c6fd3e8ea6a7b7e35f4b3b3ac4ec31", "python": "3.11.9",
        "packages": ["torch": "2.7.0", "diffusers": "0.35.0.dev0"],
    ]

    @Test func aRecordStatesTheInputsAndEachAttemptAndEstimatesLearnFromIt() async throws {
        try await JobTests.withSetup { setup in
            func estimate(_ steps: Int) async throws -> [String: Any] {
                let response = try await setup.user.client.send(.GET, "/api/estimate?steps=\(steps)&profile=80gb")
                #expect(response.status == .ok, "\(response.body.string)")
                return try response.json
            }
            let assumed = try await estimate(1000)
            #expect(assumed["source"] as? String == "assumed" && assumed["seconds"] as? Double == TrainingEstimate.overheadSeconds + 1000 * 2.5)
            #expect(assumed["cost"] as? Double == ((TrainingEstimate.overheadSeconds + 2500) * 0.001 * 100).rounded() / 100)
            for query in ["", "?steps=5", "?steps=1000&profile=12gb", "?steps=1000&preset=qwen-image-edit-2600"] {
                #expect(try await setup.user.client.send(.GET, "/api/estimate\(query)").status == .badRequest, "\(query)")
            }

            let id = try #require(try await setup.createJob(#"{"steps": 100, "saveEvery": 50, "sampleEvery": 50, "profile": "80gb"}"#)["id"] as? String).lowercased()
            var record = try await setup.user.client.send(.GET, "/api/jobs/\(id)/record").json
            let dataset = try await setup.user.client.send(.GET, "/api/datasets/\(setup.datasetID)").json
            let recorded = try #require(record["dataset"] as? [String: Any])
            #expect(recorded["sha256"] as? String == dataset["contentSha256"] as? String && (recorded["sha256"] as? String)?.count == 64)
            let files = try #require(recorded["files"] as? [[String: Any]])
            #expect(files.map { $0["path"] as? String } == ["control_1/cat.png", "control_1/dog.png", "target/cat.png", "target/cat.txt", "target/dog.png", "target/dog.txt"])
            #expect(files.allSatisfy { ($0["sha256"] as? String)?.count == 64 })
            // The digest is sha256sum's form of the files, which anyone can recompute.
            let text = files.map { "\($0["sha256"] as! String)  \($0["path"] as! String)\n" }.joined()
            #expect(recorded["sha256"] as? String == SigV4Signer.hex(SHA256.hash(data: Data(text.utf8))))
            let parameters = try #require((record["job"] as? [String: Any])?["parameters"] as? [String: Any])
            #expect(parameters["seed"] as? Int == 42 && parameters["steps"] as? Int == 100 && parameters["profile"] as? String == "80gb")
            let job = try #require(try await Job.find(UUID(uuidString: id), on: setup.db))
            #expect((record["config"] as? [String: Any])?.keys.sorted() == (try JSONSerialization.jsonObject(with: Data(job.jobConfig.utf8)) as? [String: Any])?.keys.sorted())
            #expect((record["attempts"] as? [Any])?.isEmpty == true, "nothing ran yet")

            // Attempt 1 fails after a checkpoint; attempt 2 resumes and completes on an H100.
            let first = try await setup.submitAndStart()
            let prefix = "outputs/\(id)/"
            func checkpoint(_ step: Int) -> JSONValue { ["kind": "checkpoint", "key": .string(prefix + "checkpoints/gm_x_\(step).safetensors"), "step": .int(step)] }
            setup.fake.progress(first.id, ["step": 55, "total_steps": 100, "it_per_sec": 0.5, "artifacts": [checkpoint(50)]])
            try await setup.pollAgain()
            setup.fake.fail(first.id, error: "CUDA out of memory")
            try await setup.pollAgain()
            #expect(try await setup.user.client.send(.POST, "/api/jobs/\(id)/retry").status == .ok)
            let second = try await setup.submitAndStart()
            setup.fake.progress(second.id, ["step": 90, "total_steps": 100, "it_per_sec": 0.5, "resumed_from_step": 50, "artifacts": [checkpoint(50)]])
            try await setup.pollAgain()
            setup.fake.complete(
                second.id,
                output: [
                    "steps": 100, "resumed_from_step": 50, "duration_seconds": 400, "environment": Self.environment,
                    "artifacts": [["kind": "lora", "key": .string(prefix + "lora/gm_x.safetensors")], checkpoint(50), checkpoint(100)],
                ])
            try await setup.pollAgain()

            record = try await setup.user.client.send(.GET, "/api/jobs/\(id)/record").json
            let attempts = try #require(record["attempts"] as? [[String: Any]])
            #expect(attempts.map { $0["status"] as? String } == ["failed", "completed"])
            #expect(attempts.map { $0["checkpoints"] as? [Int] } == [[50], [100]], "each attempt's own saves, not those it resumed with")
            #expect(attempts[0]["runnerId"] as? String == first.id && attempts[1]["runnerId"] as? String == second.id)
            let environment = try #require(attempts[1]["environment"] as? [String: Any])
            #expect(environment["gpu_name"] as? String == "NVIDIA H100 80GB HBM3" && (environment["packages"] as? [String: String])?["torch"] == "2.7.0")
            #expect(attempts[1]["resumedFromStep"] as? Int == 50 && attempts[1]["stepsTrained"] as? Int == 50 && attempts[1]["secondsPerStep"] as? Double == 2)
            #expect(attempts.allSatisfy { $0["datasetSha256"] as? String == recorded["sha256"] as? String })

            // 2 s a step measured (0.5 it/s), and 400 − 50 × 2 = 300 s of the rest.
            let learned = try await estimate(1000)
            #expect(learned["source"] as? String == "learned" && learned["gpuName"] as? String == "NVIDIA H100 80GB HBM3" && learned["runs"] as? Int == 1)
            #expect(learned["seconds"] as? Double == 300 + 1000 * 2 && (learned["basis"] as? String)?.contains("1 completed run on NVIDIA H100") == true)
            #expect(try await estimate(1000)["source"] as? String == "learned")
            #expect(
                try await setup.user.client.send(.GET, "/api/estimate?steps=1000&profile=32gb").json["source"] as? String == "assumed",
                "another profile learns on its own")

            var other = try await DatasetTests.User(setup.store, email: "eve@example.com")
            #expect(try await other.client.send(.GET, "/api/jobs/\(id)/record").status == .notFound)
        }
    }
}
