import Testing
import TrainerCore

@Suite struct WorkerJobTests {
    static let input: JSONValue = [
        "contract_version": 1, "trainer_job_id": "3f2a", "attempt": 2,
        "job_config": [
            "job": "extension",
            "config": [
                "name": "gm_3f2a",
                "process": [
                    [
                        "training_folder": "/workspace/output",
                        "datasets": [["folder_path": "/workspace/datasets/d1/target", "control_path": ["/workspace/datasets/d1/control_1"]]],
                        "sample": ["samples": [["prompt": "keep /workspace in text", "ctrl_img_1": "/workspace/datasets/d1/control_1/a.png"]]],
                    ]
                ],
            ],
        ],
        "r2_dataset": ["datasetId": "d1", "bucket": "b", "prefix": "datasets/d1/"],
        "output": ["bucket": "b", "prefix": "outputs/3f2a/"],
    ]

    @Test func aGoodInputIsReadAndItsPathsMapped() throws {
        let job = try WorkerJob(input: Self.input)
        #expect(job.attempt == 2 && job.runName == "gm_3f2a" && job.outputPrefix == "outputs/3f2a/")
        let config = job.config(workRoot: "/tmp/work/")
        guard case .array(let processes)? = config["config"]?["process"], let process = processes.first,
            case .array(let datasets)? = process["datasets"], case .array(let samples)? = process["sample"]?["samples"]
        else {
            Issue.record("shape")
            return
        }
        #expect(process["training_folder"] == "/tmp/work/output")
        #expect(datasets.first?["control_path"] == ["/tmp/work/datasets/d1/control_1"])
        #expect(samples.first?["ctrl_img_1"] == "/tmp/work/datasets/d1/control_1/a.png")
        #expect(samples.first?["prompt"] == "keep /workspace in text", "only whole paths move")
    }

    @Test func badInputsSayWhatIsWrong() {
        func problem(_ change: (inout [(String, JSONValue)]) -> Void) -> String? {
            guard case .object(var pairs) = Self.input else { return nil }
            change(&pairs)
            do {
                _ = try WorkerJob(input: .object(pairs))
                return nil
            } catch {
                return error.description
            }
        }
        #expect(problem { $0.removeAll { $0.0 == "contract_version" } }?.contains("contract_version is missing") == true)
        #expect(problem { $0[0].1 = 3 }?.contains("is 3 but this worker speaks 1 to 2") == true)
        #expect(problem { $0.removeAll { $0.0 == "output" } } == "input.output is missing")
        #expect(problem { $0[$0.firstIndex { $0.0 == "output" }!].1 = ["bucket": 7, "prefix": "outputs/x/"] } == "input.output.bucket is not a string")
        #expect(problem { $0[$0.firstIndex { $0.0 == "output" }!].1 = ["bucket": "", "prefix": "outputs/x/"] } == "input.output.bucket is empty")
        #expect(problem { $0[$0.firstIndex { $0.0 == "output" }!].1 = ["bucket": "b", "prefix": "../x/"] }?.contains("without '..'") == true)
        #expect(problem { $0[$0.firstIndex { $0.0 == "job_config" }!].1 = ["job": "extension"] }?.contains("config.name") == true)
        #expect((try? WorkerJob(input: "text")) == nil)
    }

    /// The server encodes the contract with the same type the worker decodes: what one writes,
    /// the other reads back unchanged, under the documented keys.
    @Test func theContractRoundTripsUnderItsDocumentedKeys() throws {
        let input = JobInput(
            trainerJobID: "3f2a", attempt: 2, jobConfig: ["config": ["name": "gm_3f2a"]],
            dataset: .init(datasetId: "d1", bucket: "b", prefix: StorageKeys.datasetPrefix("D1")),
            output: .init(bucket: "b", prefix: StorageKeys.outputPrefix("3F2A")),
            progressChannel: .init(url: "https://x/api/runpod/progress/pc_1"), storeKey: .init(accessKeyID: "GMSx", secretAccessKey: "s"))
        let json = input.json
        #expect(json["contract_version"] == 1 && json["trainer_job_id"] == "3f2a" && json["r2_dataset"]?["prefix"] == "datasets/d1/")
        #expect(json["output"]?["prefix"] == "outputs/3f2a/" && json["store_key"]?["access_key_id"] == "GMSx")
        #expect(JobInput.progressChannelURL(in: json) == "https://x/api/runpod/progress/pc_1")
        #expect(try JobInput(json: json) == input)
        let job = try WorkerJob(input: json)
        #expect(job.input == input && job.outputPrefix == "outputs/3f2a/")
    }

    @Test func outputFilesMapToArtifacts() throws {
        let job = try WorkerJob(input: Self.input)
        #expect(job.artifact(forOutputFile: "gm_3f2a.safetensors") == JobArtifact(kind: .lora, key: "outputs/3f2a/lora/gm_3f2a.safetensors"))
        #expect(
            job.artifact(forOutputFile: "gm_3f2a_000000250.safetensors") == JobArtifact(kind: .checkpoint, key: "outputs/3f2a/checkpoints/gm_3f2a_000000250.safetensors", step: 250)
        )
        #expect(
            job.artifact(forOutputFile: "samples/1763563000704__000004000_0.jpg")
                == JobArtifact(kind: .sample, key: "outputs/3f2a/samples/1763563000704__000004000_0.jpg", step: 4000))
        // Rewritten in place at every save: the worker copies it per checkpoint instead.
        #expect(job.artifact(forOutputFile: "optimizer.pt") == nil)
        let state = job.optimizerState(step: 250)
        #expect(state == JobArtifact(kind: .optimizer, key: "outputs/3f2a/checkpoints/gm_3f2a_000000250.optimizer.pt", step: 250))
        #expect(job.optimizerStep(key: state.key) == 250)
        #expect(job.optimizerStep(key: "outputs/3f2a/checkpoints/gm_3f2a_000000250.safetensors") == nil)
        // What a save line names decides whether its optimizer state is kept: only steps' checkpoints.
        #expect(job.artifact(forOutputFile: "gm_3f2a_refiner.safetensors") == nil)
        for ignored in ["samples/.tmp/x.jpg", "samples/.thumbs/x.jpg", "loss_log.db-wal", ".job_config.json", "gm_3f2a_x.safetensors", ".optimizer-states/250.pt"] {
            #expect(job.artifact(forOutputFile: ignored) == nil, "\(ignored)")
        }
        // What the worker writes is what the server reads back.
        let written = [
            JobArtifact(kind: .checkpoint, key: "outputs/3f2a/checkpoints/a.safetensors", bytes: 12, sha256: "ab", step: 250), JobArtifact(kind: .log, key: "outputs/3f2a/log.txt"),
        ]
        #expect(JobArtifact.list(in: ["artifacts": .array(written.map(\.contractJSON))], prefix: "outputs/3f2a/") == written)
    }

    /// runpod-python reports a handler's exception as JSON text (recorded from the SDK 1.12.0).
    @Test func anSDKErrorReadsAsItsExceptionAndTraceback() {
        let sdk =
            #"{"error_type": "<class 'ValueError'>", "error_message": "bad pair", "error_traceback": "Traceback (most recent call last):\n  File \"h.py\", line 3\nValueError: bad pair\n", "hostname": "unknown", "worker_id": "pod-1", "runpod_version": "1.12.0"}"#
        let readable = JobError.readable(sdk)
        #expect(JobError.headline(readable) == "ValueError: bad pair")
        #expect(readable.contains("File \"h.py\", line 3"))
        #expect(JobError.readable("The trainer exited with status 1.\nlog tail") == "The trainer exited with status 1.\nlog tail")
        #expect(JobError.readable("{not json") == "{not json")
    }

    @Test func aPreemptedResultSaysSoWhateverElseItHolds() {
        let output = WorkerResult.preempted(["steps": 35, "preempted": false])
        #expect(WorkerResult.isPreempted(output) && output["steps"] == 35)
        #expect(WorkerResult.isPreempted(WorkerResult.preempted(.null)))
        #expect(!WorkerResult.isPreempted(["steps": 35]) && !WorkerResult.isPreempted(nil))
    }
}
