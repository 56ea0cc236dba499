import Foundation
import Testing
import TrainerCore

/// The full ai-toolkit config of each VRAM profile against a reviewed golden file.
/// After an intended change: `UPDATE_GOLDEN=1 swift test --filter JobConfigTests`, then review the diff.
@Suite struct JobConfigTests {
    static let golden = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Golden")

    static func job(_ parameters: QwenImageEdit.Parameters, preset: QwenImageEdit.Preset = QwenImageEdit.defaultPreset, controls: Int = 2) -> QwenImageEdit.Job {
        QwenImageEdit.Job(
            id: "3F2A9C1E-7B4D-4E21-9A0B-5C6D7E8F9012", datasetID: "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9", preset: preset,
            controlsPerSample: controls, defaultCaption: "make it look like a watercolour",
            samples: [
                .init(stem: "cat", caption: "put [trigger] on the cat\nkeep the background", controls: ["control_1/cat.png", "control_2/cat.jpg"]),
                .init(stem: "dog", caption: "swap the dog -- for a fox ${HOME} [name]", controls: ["control_1/dog.png", "control_2/dog.png"]),
                .init(stem: "owl", caption: "make the owl blue", controls: ["control_1/owl.webp", "control_2/owl.png"]),
            ],
            parameters: parameters
        )
    }

    @Test(arguments: QwenImageEdit.Profile.allCases)
    func eachProfileMatchesItsGoldenFile(profile: QwenImageEdit.Profile) throws {
        var parameters = QwenImageEdit.Parameters()
        parameters.profile = profile
        parameters.triggerWord = "wtrclr"
        let rendered = try QwenImageEdit.buildJobConfig(Self.job(parameters)).rendered()
        let file = Self.golden.appendingPathComponent("qwen-image-edit-2509-\(profile.rawValue).json")
        if ProcessInfo.processInfo.environment["UPDATE_GOLDEN"] == "1" {
            try rendered.write(to: file, atomically: true, encoding: .utf8)
        }
        let expected = try String(contentsOf: file, encoding: .utf8)
        #expect(rendered == expected, "the config differs from \(file.lastPathComponent); if intended, run UPDATE_GOLDEN=1 and review the diff")
        // Valid JSON, and nothing ai-toolkit's loader would expand.
        _ = try JSONSerialization.jsonObject(with: Data(rendered.utf8))
        #expect(!rendered.contains("${"))
        #expect(rendered.components(separatedBy: "[name]").count == 2, "only meta.name may hold [name]")
    }

    /// Every key ai-toolkit's own UI sets when 'Qwen-Image-Edit-2511' is picked, against the 32 GB
    /// config: the `qwen_image_edit_plus:2511` entry of ui/src/app/jobs/new/options.tsx (its
    /// defaults when selected, and its "3 bit with ARA" adapter) at commit 27a03a91, the one the
    /// worker pins. The vendored archive leaves `ui/` out, so the values below were transcribed from
    /// ostris/ai-toolkit's repository at that commit; they are the UI's, not a copy of the preset
    /// table (which the builder reads).
    @Test func the2511ConfigIsWhatAIToolkitsUIWritesForThatModel() throws {
        let preset = try #require(QwenImageEdit.preset("qwen-image-edit-2511"))
        let config = try QwenImageEdit.buildJobConfig(Self.job(QwenImageEdit.Parameters(), preset: preset))
        guard case .array(let processes)? = config["config"]?["process"], let process = processes.first else {
            Issue.record("unexpected shape")
            return
        }
        let ui: [(String, JSONValue?, JSONValue)] = [
            ("model.name_or_path", process["model"]?["name_or_path"], "Qwen/Qwen-Image-Edit-2511"),
            ("model.arch", process["model"]?["arch"], "qwen_image_edit_plus:2511"),
            ("model.quantize", process["model"]?["quantize"], true),
            ("model.quantize_te", process["model"]?["quantize_te"], true),
            ("model.low_vram", process["model"]?["low_vram"], true),
            ("model.qtype", process["model"]?["qtype"], "uint3|ostris/accuracy_recovery_adapters/qwen_image_edit_2511_torchao_uint3.safetensors"),
            ("model.qtype_te", process["model"]?["qtype_te"], "qfloat8"),
            ("model.model_kwargs", process["model"]?["model_kwargs"], ["match_target_res": false]),
            ("train.unload_text_encoder", process["train"]?["unload_text_encoder"], false),
            ("train.noise_scheduler", process["train"]?["noise_scheduler"], "flowmatch"),
            ("train.timestep_type", process["train"]?["timestep_type"], "weighted"),
            ("sample.sampler", process["sample"]?["sampler"], "flowmatch"),
        ]
        for (key, ours, theirs) in ui {
            #expect(ours == theirs, "\(key): ours \(String(describing: ours)), ai-toolkit's UI \(theirs)")
        }
        #expect(config["meta"]?["preset"] == "qwen-image-edit-2511")
    }

    /// 2509 and 2511 share everything but the model's name, arch tag, adapter and the preset's id,
    /// for every profile; 2509's configs are the golden files above, unchanged.
    @Test(arguments: QwenImageEdit.Profile.allCases)
    func thePresetsDifferOnlyInTheirModel(profile: QwenImageEdit.Profile) throws {
        var parameters = QwenImageEdit.Parameters()
        parameters.profile = profile
        let configs = try QwenImageEdit.presets.map { try QwenImageEdit.buildJobConfig(Self.job(parameters, preset: $0)) }
        var differing: [String] = []
        func compare(_ a: JSONValue?, _ b: JSONValue?, _ path: String) {
            switch (a, b) {
            case (.object(let x)?, .object(let y)?) where x.map(\.0) == y.map(\.0):
                for ((key, left), (_, right)) in zip(x, y) { compare(left, right, path.isEmpty ? key : "\(path).\(key)") }
            case (.array(let x)?, .array(let y)?) where x.count == y.count:
                for (index, (left, right)) in zip(x, y).enumerated() { compare(left, right, "\(path)[\(index)]") }
            default:
                if a != b { differing.append(path) }
            }
        }
        compare(configs[0], configs[1], "")
        let quantised = profile != .gb80 && QwenImageEdit.defaultPreset.transformerQuantization[profile]!.hasPrefix("uint3")
        #expect(
            differing
                == ["config.process[0].model.name_or_path", "config.process[0].model.arch"] + (quantised ? ["config.process[0].model.qtype"] : []) + ["meta.preset"])
        #expect(QwenImageEdit.presets.map(\.id) == ["qwen-image-edit-2509", "qwen-image-edit-2511"] && QwenImageEdit.defaultPreset.id == "qwen-image-edit-2509")
    }

    @Test func aHuggingFacePushIsAIToolkitsOwn() throws {
        var parameters = QwenImageEdit.Parameters()
        parameters.hfRepo = "me/watercolour-lora"
        let config = try QwenImageEdit.buildJobConfig(Self.job(parameters))
        guard case .array(let processes)? = config["config"]?["process"], let save = processes.first?["save"] else {
            Issue.record("unexpected shape")
            return
        }
        // SaveConfig's keys (toolkit/config_modules.py); private unless asked otherwise.
        #expect(save["push_to_hub"] == true && save["hf_repo_id"] == "me/watercolour-lora" && save["hf_private"] == true)
        parameters.hfPublic = true
        guard case .array(let public_)? = try QwenImageEdit.buildJobConfig(Self.job(parameters))["config"]?["process"] else { return }
        #expect(public_.first?["save"]?["hf_private"] == false)
        let input = JobInput(
            trainerJobID: "j", attempt: 1, jobConfig: config, dataset: .init(datasetId: "d", bucket: "b", prefix: "datasets/d/"),
            output: .init(bucket: "b", prefix: "outputs/j/"))
        #expect(try WorkerJob(input: input.json).hubRepo == "me/watercolour-lora")
        for bad in ["watercolour", "me/", "/x", "me/x/y", "me/../x", "me/x y", "me/${HOME}"] {
            parameters.hfRepo = bad
            #expect(QwenImageEdit.validate(parameters).map(\.field) == ["hfRepo"], "\(bad)")
        }
    }

    @Test func theProfilesDifferOnlyInQuantisation() throws {
        func model(_ profile: QwenImageEdit.Profile) throws -> JSONValue? {
            var parameters = QwenImageEdit.Parameters()
            parameters.profile = profile
            let config = try QwenImageEdit.buildJobConfig(Self.job(parameters))
            guard case .array(let processes)? = config["config"]?["process"] else { return nil }
            return processes.first?["model"]
        }
        #expect(try model(.gb32)?["qtype"] == "uint3|ostris/accuracy_recovery_adapters/qwen_image_edit_2509_torchao_uint3.safetensors")
        #expect(try model(.gb48)?["qtype"] == "qfloat8" && model(.gb48)?["quantize"] == true)
        #expect(try model(.gb80)?["quantize"] == false && model(.gb80)?["quantize_te"] == false && model(.gb80)?["low_vram"] == false)
    }

    @Test func controlFoldersFollowTheDatasetAndSamplesThePicks() throws {
        var parameters = QwenImageEdit.Parameters()
        parameters.samplePairs = ["owl"]
        let config = try QwenImageEdit.buildJobConfig(Self.job(parameters, controls: 1))
        guard case .array(let processes)? = config["config"]?["process"], let process = processes.first,
            case .array(let datasets)? = process["datasets"], case .array(let samples)? = process["sample"]?["samples"]
        else {
            Issue.record("unexpected shape")
            return
        }
        #expect(datasets.first?["control_path"] == ["/workspace/datasets/0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9/control_1"])
        #expect(samples.count == 1 && samples.first?["prompt"] == "make the owl blue")
        #expect(samples.first?["ctrl_img_1"] == "/workspace/datasets/0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9/control_1/owl.webp")
        #expect(process["train"]?["disable_sampling"] == false)

        parameters.samplePairs = ["zebra"]
        #expect(throws: QwenImageEdit.ParameterError(field: "samplePairs", message: "the dataset has no sample 'zebra'")) {
            try QwenImageEdit.buildJobConfig(Self.job(parameters))
        }
        parameters.samplePairs = nil
        parameters.sampleEvery = 0
        let unsampled = try QwenImageEdit.buildJobConfig(Self.job(parameters))
        guard case .array(let unsampledProcesses)? = unsampled["config"]?["process"] else { return }
        #expect(unsampledProcesses.first?["train"]?["disable_sampling"] == true)
        #expect(unsampledProcesses.first?["sample"]?["sample_every"] == 3000)
    }

    @Test func everyOutOfRangeParameterNamesItsField() {
        var parameters = QwenImageEdit.Parameters()
        parameters.steps = 5
        parameters.learningRate = 0.5
        parameters.rank = 0
        parameters.resolutions = [500, 768, 768]
        parameters.sampleEvery = 3
        parameters.keepCheckpoints = 0
        parameters.seed = -1
        parameters.triggerWord = "${HOME}"
        parameters.samplePairs = ["a", "b", "c", "d", "e"]
        let fields = QwenImageEdit.validate(parameters).map(\.field)
        #expect(fields == ["steps", "learningRate", "rank", "resolutions", "resolutions", "saveEvery", "sampleEvery", "keepCheckpoints", "seed", "triggerWord", "samplePairs"])
        #expect(QwenImageEdit.validate(QwenImageEdit.Parameters()).isEmpty)
    }

    @Test func samplesWhoseFileNamesTheLoaderWouldRewriteAreNotPrompts() throws {
        let samples: [QwenImageEdit.Sample] = [
            .init(stem: "${HOME}", caption: "a", controls: ["control_1/${HOME}.png"]),
            .init(stem: "cat", caption: "b", controls: ["control_1/cat.png"]),
        ]
        var parameters = QwenImageEdit.Parameters()
        let job = {
            QwenImageEdit.Job(id: "3F2A9C1E-7B4D-4E21-9A0B-5C6D7E8F9012", datasetID: "d", controlsPerSample: 1, defaultCaption: nil, samples: samples, parameters: parameters)
        }
        let config = try QwenImageEdit.buildJobConfig(job())
        guard case .array(let processes)? = config["config"]?["process"], case .array(let prompts)? = processes.first?["sample"]?["samples"] else {
            Issue.record("unexpected shape")
            return
        }
        #expect(prompts.map { $0["ctrl_img_1"] } == ["/workspace/datasets/d/control_1/cat.png"])
        parameters.samplePairs = ["${HOME}"]
        #expect(throws: QwenImageEdit.ParameterError.self) { try QwenImageEdit.buildJobConfig(job()) }
    }

    @Test func the32GBProfileTrainsAtMost1024Pixels() {
        var parameters = QwenImageEdit.Parameters()
        parameters.resolutions = [768, 1280]
        #expect(QwenImageEdit.validate(parameters).map(\.message) == ["the 32gb profile trains sizes up to 1024 px; got 1280 (choose a larger profile for larger sizes)"])
        parameters.profile = .gb48
        #expect(QwenImageEdit.validate(parameters).isEmpty)
        #expect(QwenImageEdit.Profile.allCases.allSatisfy { $0.label.contains("up to \($0.maximumResolution) px") })
    }

    @Test func customerTextCannotReachTheLoadersExpansions() {
        #expect(ConfigText.prompt("a --w 512 b ---- c\nd", triggerWord: nil) == "a –w 512 b –– c d")
        #expect(ConfigText.prompt("use [trigger] ${PATH} [name]", triggerWord: "sks") == "use sks $ {PATH} (name)")
        #expect(QwenImageEdit.runName(jobID: "3F2A9C1E-7B4D-4E21-9A0B-5C6D7E8F9012") == "gm_3f2a9c1e7b4d")
    }
}
