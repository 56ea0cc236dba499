import Foundation

/// Qwen-Image-Edit LoRA training (2509 and 2511, ai-toolkit's `qwen_image_edit_plus`): the
/// presets, their parameters and ranges, and the complete ai-toolkit job config built from them
/// (reference/ai-toolkit.md §1, §7).
///
/// Every key ai-toolkit reads is set explicitly: its class defaults are poor (`lr` 1e-6, `ddpm`,
/// fp32) and misspelled keys are silently ignored, so nothing is left to them.
public enum QwenImageEdit {
    /// The canonical work root of the job contract (DESIGN §5); workers map it onto their own.
    public static let workRoot = "/workspace"

    /// A model people can train. The releases share ai-toolkit's model class, config and limits;
    /// what differs is this row, written as ai-toolkit's own UI writes that model
    /// (`ui/src/app/jobs/new/options.tsx` of ostris/ai-toolkit at the pinned commit 27a03a91).
    public struct Preset: Sendable, Equatable, Identifiable {
        public let id: String
        public let label: String
        public let baseModel: String
        /// `model.arch` as the UI writes it; ai-toolkit drops the `:tag` (config_modules.py).
        public let arch: String
        /// `model.qtype` of the quantised profiles; the 32 GB one is 3-bit with the release's own
        /// accuracy-recovery adapter (the UI's "3 bit with ARA").
        public let transformerQuantization: [Profile: String]
        /// The parameters an unset field takes. The ranges (`Limits`) are the family's.
        public let defaults: Parameters
    }

    public static let presets: [Preset] = [
        Preset(
            id: "qwen-image-edit-2509", label: "Qwen Image Edit 2509", baseModel: "Qwen/Qwen-Image-Edit-2509", arch: "qwen_image_edit_plus",
            transformerQuantization: [.gb32: "uint3|ostris/accuracy_recovery_adapters/qwen_image_edit_2509_torchao_uint3.safetensors", .gb48: "qfloat8"],
            defaults: Parameters()),
        Preset(
            id: "qwen-image-edit-2511", label: "Qwen Image Edit 2511", baseModel: "Qwen/Qwen-Image-Edit-2511", arch: "qwen_image_edit_plus:2511",
            transformerQuantization: [.gb32: "uint3|ostris/accuracy_recovery_adapters/qwen_image_edit_2511_torchao_uint3.safetensors", .gb48: "qfloat8"],
            defaults: Parameters()),
    ]
    /// What the "Train Qwen Image Edit 2509" button and an unnamed preset mean.
    public static let defaultPreset = presets[0]

    public static func preset(_ id: String) -> Preset? { presets.first { $0.id == id } }

    /// Says which presets exist, for an unknown id.
    public static func unknownPreset(_ id: String) -> ParameterError {
        ParameterError(field: "preset", message: "must be one of \(presets.map(\.id).joined(separator: ", ")); got '\(id)'")
    }

    /// How much GPU memory the run may use; decides quantisation (reference §1.3).
    public enum Profile: String, Sendable, CaseIterable, Codable {
        /// 3-bit transformer with the accuracy-recovery adapter, 8-bit text encoder (RTX 5090 class).
        case gb32 = "32gb"
        /// 8-bit transformer and text encoder (A6000 / L40S class).
        case gb48 = "48gb"
        /// No quantisation (A100 / H100 80 GB).
        case gb80 = "80gb"

        /// The largest training size that fits: ai-toolkit's only 32 GB example for this model
        /// (config/examples/train_lora_qwen_image_edit_2509_32gb.yaml) trains up to 1024 px.
        public var maximumResolution: Int {
            switch self {
            case .gb32: 1024
            case .gb48, .gb80: 1536
            }
        }

        /// For people choosing one (the web form, the API's schema), limits included.
        public var label: String {
            switch self {
            case .gb32: "32 GB (RTX 5090 class; 3-bit model; sizes up to 1024 px)"
            case .gb48: "48 GB (A6000 / L40S class; 8-bit model; sizes up to 1536 px)"
            case .gb80: "80 GB (A100 / H100; full precision; sizes up to 1536 px)"
            }
        }
    }

    public struct Parameters: Sendable, Equatable, Codable {
        public var steps = 3000
        public var learningRate = 1e-4
        public var rank = 16
        public var resolutions = [512, 768, 1024]
        public var saveEvery = 250
        /// 0 turns sampling off.
        public var sampleEvery = 250
        public var keepCheckpoints = 4
        public var seed = 42
        public var profile = Profile.gb32
        /// Stored in the dataset config, so it is cached with the text embeddings; replaces
        /// `[trigger]` in captions.
        public var triggerWord: String?
        /// Stems of the samples whose controls and captions make the sample prompts; nil: the
        /// first two samples of the dataset.
        public var samplePairs: [String]?
        /// A Hugging Face model repo (`user/name`) ai-toolkit pushes the LoRA folder to at the end,
        /// with the worker's `HF_TOKEN`; nil: no push.
        public var hfRepo: String?
        /// Whether a repo it creates is public (nil: private).
        public var hfPublic: Bool?

        public init() {}
    }

    /// The parameters' ranges: what `validate` checks and the OpenAPI document states.
    public enum Limits {
        public static let steps = 10...30_000
        public static let learningRate = 1e-6...1e-2
        public static let rank = 1...128
        public static let resolution = 256...1536
        public static let resolutionMultiple = 32
        public static let resolutionCount = 1...4
        /// The shortest interval between saves or samples (sampling may also be 0: off).
        public static let minimumInterval = 10
        public static let keepCheckpoints = 1...50
        public static let seed = 0...Int(Int32.max)
        public static let triggerWordLength = 1...50
        /// ASCII letters, digits, `_` and `-`: one token the text encoder reads the same way every
        /// time, and nothing a config or caption could read as syntax.
        public static let triggerWordPattern = "^[A-Za-z0-9_-]{1,50}$"
        public static let samplePairs = 4
        /// Hugging Face's rule for a repo id: owner/name of letters, digits, `-`, `_` and `.`, no
        /// `..`, not ending in `.`. The check and the OpenAPI document both use this one pattern.
        public static let hfRepoPattern = #"^(?!.*\.\.)(?!.*\.$)[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$"#
    }

    /// A parameter out of range, naming the field as the API spells it.
    public struct ParameterError: Error, Sendable, Equatable, CustomStringConvertible {
        public let field: String
        public let message: String
        public var description: String { "\(field): \(message)" }

        public init(field: String, message: String) {
            self.field = field
            self.message = message
        }
    }

    /// Every problem at once, each naming its field.
    public static func validate(_ parameters: Parameters) -> [ParameterError] {
        var problems: [ParameterError] = []
        func check(_ ok: Bool, _ field: String, _ message: String) {
            if !ok { problems.append(ParameterError(field: field, message: message)) }
        }
        check(Limits.steps.contains(parameters.steps), "steps", "must be from 10 to 30000 (500–4000 suits most edit LoRAs); got \(parameters.steps)")
        check(Limits.learningRate.contains(parameters.learningRate), "learningRate", "must be from 0.000001 to 0.01 (0.0001 is the usual choice); got \(parameters.learningRate)")
        check(Limits.rank.contains(parameters.rank), "rank", "must be from 1 to 128 (16 or 32 are usual); got \(parameters.rank)")
        check(Limits.resolutionCount.contains(parameters.resolutions.count), "resolutions", "must list 1 to 4 sizes, e.g. [512, 768, 1024]")
        for resolution in parameters.resolutions where !Limits.resolution.contains(resolution) || resolution % Limits.resolutionMultiple != 0 {
            check(false, "resolutions", "each size must be a multiple of 32 from 256 to 1536; got \(resolution)")
        }
        check(Set(parameters.resolutions).count == parameters.resolutions.count, "resolutions", "must not repeat a size")
        let largest = parameters.profile.maximumResolution
        if let tooLarge = parameters.resolutions.first(where: { $0 > largest }), Limits.resolution.contains(tooLarge) {
            check(false, "resolutions", "the \(parameters.profile.rawValue) profile trains sizes up to \(largest) px; got \(tooLarge) (choose a larger profile for larger sizes)")
        }
        let intervals = Limits.minimumInterval...max(Limits.minimumInterval, parameters.steps)
        check(intervals.contains(parameters.saveEvery), "saveEvery", "must be from 10 to the number of steps (\(parameters.steps)); got \(parameters.saveEvery)")
        check(
            parameters.sampleEvery == 0 || intervals.contains(parameters.sampleEvery), "sampleEvery",
            "must be 0 (no samples) or from 10 to the number of steps (\(parameters.steps)); got \(parameters.sampleEvery)")
        check(Limits.keepCheckpoints.contains(parameters.keepCheckpoints), "keepCheckpoints", "must be from 1 to 50; got \(parameters.keepCheckpoints)")
        check(Limits.seed.contains(parameters.seed), "seed", "must be from 0 to 2147483647; got \(parameters.seed)")
        if let word = parameters.triggerWord {
            check(
                Limits.triggerWordLength.contains(word.unicodeScalars.count) && word.unicodeScalars.allSatisfy(Self.isTriggerScalar), "triggerWord",
                "must be 1 to 50 ASCII letters, digits, '_' or '-' (no spaces, '$', '[' or '{'); got '\(word)'")
        }
        if let pairs = parameters.samplePairs {
            check(pairs.count <= Limits.samplePairs, "samplePairs", "may pick at most 4 samples; got \(pairs.count)")
        }
        if let repo = parameters.hfRepo {
            check(
                isHubRepo(repo), "hfRepo",
                "must be a Hugging Face repo id such as 'me/watercolour-lora' (letters, digits, '-', '_', '.'); got '\(repo)'")
        }
        return problems
    }

    /// One sample the dataset holds, as the builder needs it.
    public struct Sample: Sendable, Equatable {
        public let stem: String
        /// The caption (or the dataset's default caption).
        public let caption: String
        /// Dataset-relative keys of its controls in order, e.g. `["control_1/cat.png"]`.
        public let controls: [String]

        public init(stem: String, caption: String, controls: [String]) {
            self.stem = stem
            self.caption = caption
            self.controls = controls
        }
    }

    public struct Job: Sendable {
        public let id: String
        public let datasetID: String
        public let preset: Preset
        /// 1–3: the most controls a sample has (samples may have fewer; validation guarantees each
        /// has controls 1…n without gaps).
        public let controlsPerSample: Int
        public let defaultCaption: String?
        /// The dataset's samples in a stable order; used for sample prompts.
        public let samples: [Sample]
        public let parameters: Parameters

        public init(
            id: String, datasetID: String, preset: Preset = QwenImageEdit.defaultPreset, controlsPerSample: Int, defaultCaption: String?, samples: [Sample], parameters: Parameters
        ) {
            self.id = id
            self.datasetID = datasetID
            self.preset = preset
            self.controlsPerSample = controlsPerSample
            self.defaultCaption = defaultCaption
            self.samples = samples
            self.parameters = parameters
        }
    }

    /// `config.name`: names the output folder and every file in it, so it is a plain slug.
    public static func runName(jobID: String) -> String {
        "gm_" + String(jobID.lowercased().filter { $0.isHexDigit || $0.isLetter || $0.isNumber }.prefix(12))
    }

    /// The complete ai-toolkit job config (DESIGN §5 `job_config`), with the canonical paths.
    public static func buildJobConfig(_ job: Job) throws(ParameterError) -> JSONValue {
        let parameters = job.parameters
        if let problem = validate(parameters).first { throw problem }
        guard (1...DatasetLayout.maximumControls).contains(job.controlsPerSample) else {
            throw ParameterError(field: "datasetId", message: "the dataset must have 1 to 3 control images per sample")
        }
        let datasetRoot = "\(workRoot)/datasets/\(job.datasetID)"
        let samples = try samplePrompts(job)

        var dataset: [(String, JSONValue)] = [
            ("folder_path", .string("\(datasetRoot)/target")),
            ("control_path", .array((1...job.controlsPerSample).map { .string("\(datasetRoot)/control_\($0)") })),
            ("caption_ext", "txt"),
            ("default_caption", .string(ConfigText.safe(job.defaultCaption ?? ""))),
            ("caption_dropout_rate", 0.05),
            ("resolution", .array(parameters.resolutions.map { .int($0) })),
            ("cache_latents_to_disk", true),
            ("is_reg", false),
            ("network_weight", 1),
            ("num_repeats", 1),
            ("flip_x", false),
            ("flip_y", false),
        ]
        if let word = parameters.triggerWord { dataset.append(("trigger_word", .string(word))) }

        // Unquantised (80 GB) keeps the UI's qtype for the unselected switch.
        let qtype = job.preset.transformerQuantization[parameters.profile]
        let quantize = qtype != nil

        var save: [(String, JSONValue)] = [
            ("dtype", "bf16"), ("save_every", .int(parameters.saveEvery)), ("max_step_saves_to_keep", .int(parameters.keepCheckpoints)),
            ("save_format", "safetensors"), ("push_to_hub", .bool(parameters.hfRepo != nil)),
        ]
        // ai-toolkit's own push at the end (SaveConfig: hf_repo_id, hf_private), with HF_TOKEN.
        if let repo = parameters.hfRepo { save += [("hf_repo_id", .string(repo)), ("hf_private", .bool(!(parameters.hfPublic ?? false)))] }
        let process: JSONValue = [
            "type": "diffusion_trainer",
            "training_folder": .string("\(workRoot)/output"),
            "device": "cuda",
            "network": ["type": "lora", "linear": .int(parameters.rank), "linear_alpha": .int(parameters.rank)],
            "save": .object(save),
            "logging": ["log_every": 1, "use_ui_logger": true],
            "datasets": [.object(dataset)],
            "train": [
                "batch_size": 1,
                "steps": .int(parameters.steps),
                "gradient_accumulation": 1,
                "train_unet": true,
                "train_text_encoder": false,
                "gradient_checkpointing": true,
                "noise_scheduler": "flowmatch",
                "timestep_type": "weighted",
                "content_or_style": "balanced",
                "optimizer": "adamw8bit",
                "optimizer_params": ["weight_decay": 0.0001],
                "lr": .double(parameters.learningRate),
                "lr_scheduler": "constant",
                "max_grad_norm": 1.0,
                "loss_type": "mse",
                "dtype": "bf16",
                "cache_text_embeddings": true,
                "unload_text_encoder": false,
                "ema_config": ["use_ema": false, "ema_decay": 0.99],
                "skip_first_sample": false,
                "disable_sampling": .bool(samples.isEmpty || parameters.sampleEvery == 0),
            ],
            "model": [
                "name_or_path": .string(job.preset.baseModel),
                "arch": .string(job.preset.arch),
                "quantize": .bool(quantize),
                "qtype": .string(qtype ?? "qfloat8"),
                "quantize_te": .bool(quantize),
                "qtype_te": "qfloat8",
                "low_vram": .bool(quantize),
                "model_kwargs": ["match_target_res": false],
            ],
            "sample": [
                "sampler": "flowmatch",
                // Never 0 (ai-toolkit divides by it); sampling is off through disable_sampling.
                "sample_every": .int(parameters.sampleEvery == 0 ? parameters.steps : parameters.sampleEvery),
                "sample_start_step": 0,
                "width": 1024,
                "height": 1024,
                "samples": .array(samples),
                "neg": "",
                "seed": .int(parameters.seed),
                "walk_seed": true,
                "guidance_scale": 3,
                "sample_steps": 25,
                "format": "jpg",
            ],
        ]
        return [
            "job": "extension",
            "config": ["name": .string(runName(jobID: job.id)), "process": [process]],
            "meta": ["name": "[name]", "version": "1.0", "trainer_job_id": .string(job.id), "preset": .string(job.preset.id)],
        ]
    }

    /// Sample prompts from the picked samples (default: the first two), each with its controls.
    static func samplePrompts(_ job: Job) throws(ParameterError) -> [JSONValue] {
        let picked: [Sample]
        if let stems = job.parameters.samplePairs {
            var found: [Sample] = []
            for stem in stems {
                guard let sample = job.samples.first(where: { $0.stem == stem }) else {
                    throw ParameterError(field: "samplePairs", message: "the dataset has no sample '\(stem)'")
                }
                found.append(sample)
            }
            if let unsafe = found.first(where: { !isSafeInConfig($0) }) {
                throw ParameterError(
                    field: "samplePairs",
                    message: "sample '\(unsafe.stem)' has $ { } [ ] in a file name, which ai-toolkit's config loader would rewrite; pick another sample or rename its files")
            }
            picked = found
        } else {
            // Datasets from before such names were refused may hold them: not as sample prompts.
            picked = Array(job.samples.filter(isSafeInConfig).prefix(2))
        }
        let datasetRoot = "\(workRoot)/datasets/\(job.datasetID)"
        return picked.map { sample in
            var entry: [(String, JSONValue)] = [("prompt", .string(ConfigText.prompt(sample.caption, triggerWord: job.parameters.triggerWord)))]
            for (index, control) in sample.controls.prefix(DatasetLayout.maximumControls).enumerated() {
                entry.append(("ctrl_img_\(index + 1)", .string("\(datasetRoot)/\(control)")))
            }
            return .object(entry)
        }
    }

    static func isSafeInConfig(_ sample: Sample) -> Bool {
        !sample.controls.joined().contains(where: DatasetLayout.trainerReservedCharacters.contains)
    }

    private static func isHubRepo(_ text: String) -> Bool {
        guard let regex = try? Regex(Limits.hfRepoPattern), let match = try? regex.wholeMatch(in: text) else { return false }
        return match != nil
    }

    private static func isTriggerScalar(_ scalar: Unicode.Scalar) -> Bool {
        ("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar) || ("0"..."9").contains(scalar) || scalar == "_" || scalar == "-"
    }
}

/// Text from customers made safe for ai-toolkit's config loader (reference §1.4): it replaces
/// `${VAR}` in the raw file with environment variables (and fails when unset), replaces `[name]`
/// everywhere, and splits sample prompts at `--` into flags.
public enum ConfigText {
    /// For any string in the config.
    public static func safe(_ text: String) -> String {
        text.replacingAll("${", with: "$ {").replacingAll("[name]", with: "(name)")
    }

    /// A sample prompt: also no `--` flags, one line, and the trigger word as ai-toolkit puts it
    /// into training captions (`inject_trigger_into_prompt`): `[trigger]` replaced, else prepended.
    /// (A dataset-level trigger word never reaches sample prompts by itself.)
    public static func prompt(_ caption: String, triggerWord: String?) -> String {
        var text = caption.split(whereSeparator: \.isNewline).joined(separator: " ")
        if let triggerWord {
            text = text.replacingAll("[trigger]", with: triggerWord)
            if !text.contains(triggerWord) { text = triggerWord + " " + text }
        }
        while text.contains("--") { text = text.replacingAll("--", with: "–") }
        return safe(text)
    }
}

extension String {
    func replacingAll(_ target: String, with replacement: String) -> String {
        guard !target.isEmpty else { return self }
        var result = ""
        var rest = self[...]
        while let range = rest.range(of: target) {
            result += rest[..<range.lowerBound] + replacement
            rest = rest[range.upperBound...]
        }
        return result + rest
    }
}

extension Int {
    func clamped(min lower: Int) -> Int { Swift.max(self, lower) }
}
