import Foundation

/// The job a worker receives (DESIGN §5), checked before any work starts, and the rules that
/// map it onto the worker's disk and its outputs back into the bucket.
public struct WorkerJob: Sendable, Equatable {
    /// The input as received (its store key and progress channel, when it has them).
    public let input: JobInput
    public let trainerJobID: String
    public let attempt: Int
    public let jobConfig: JSONValue
    public let datasetID: String
    public let datasetBucket: String
    public let datasetPrefix: String
    public let outputBucket: String
    public let outputPrefix: String

    public typealias InputError = JobInput.InputError

    public init(input json: JSONValue) throws(InputError) {
        let input = try JobInput(json: json)
        guard case .object = input.jobConfig, input.jobConfig["config"]?["name"]?.stringValue != nil else {
            throw InputError(description: "input.job_config must be an ai-toolkit job config with config.name")
        }
        for (path, prefix) in [("r2_dataset.prefix", input.dataset.prefix), ("output.prefix", input.output.prefix)] {
            guard prefix.hasSuffix("/"), !prefix.hasPrefix("/"), !prefix.split(separator: "/").contains("..") else {
                throw InputError(description: "input.\(path) must be a relative key prefix ending in '/', without '..'; got '\(prefix)'")
            }
        }
        self.input = input
        trainerJobID = input.trainerJobID
        attempt = input.attempt
        jobConfig = input.jobConfig
        datasetID = input.dataset.datasetId
        datasetBucket = input.dataset.bucket
        datasetPrefix = input.dataset.prefix
        outputBucket = input.output.bucket
        outputPrefix = input.output.prefix
    }

    /// The Hugging Face repo ai-toolkit pushes to at the end, when the config asks for a push.
    public var hubRepo: String? {
        guard case .array(let processes)? = jobConfig["config"]?["process"], let save = processes.first?["save"], save["push_to_hub"] == true else { return nil }
        return save["hf_repo_id"]?.stringValue ?? ""
    }

    /// `config.name`, which names the output folder and files.
    public var runName: String { jobConfig["config"]?["name"]?.stringValue ?? "" }

    /// The config with the canonical `/workspace` paths moved under `workRoot`.
    public func config(workRoot: String) -> JSONValue {
        var root = workRoot
        while root.hasSuffix("/") { root.removeLast() }
        return Self.mapPaths(jobConfig, from: QwenImageEdit.workRoot, to: root)
    }

    static func mapPaths(_ value: JSONValue, from canonical: String, to root: String) -> JSONValue {
        switch value {
        case .string(let text) where text == canonical || text.hasPrefix(canonical + "/"):
            return .string(root + text.dropFirst(canonical.count))
        case .array(let values):
            return .array(values.map { mapPaths($0, from: canonical, to: root) })
        case .object(let pairs):
            return .object(pairs.map { ($0.0, mapPaths($0.1, from: canonical, to: root)) })
        default:
            return value
        }
    }

    /// The optimizer state saved with the checkpoint of `step`, kept beside it so a resumed
    /// attempt restores the pair (ai-toolkit loads `optimizer.pt` with whatever checkpoint it resumes).
    public func optimizerState(step: Int) -> JobArtifact {
        JobArtifact(kind: .optimizer, key: outputPrefix + "checkpoints/" + runName + "_" + Self.stepDigits(step) + ".optimizer.pt", step: step)
    }

    /// The step of an optimizer state's key (`optimizerState(step:)`), nil for other keys.
    public func optimizerStep(key: String) -> Int? {
        let prefix = outputPrefix + "checkpoints/" + runName + "_"
        let suffix = ".optimizer.pt"
        guard key.hasPrefix(prefix), key.hasSuffix(suffix) else { return nil }
        let digits = key.dropFirst(prefix.count).dropLast(suffix.count)
        return digits.count == 9 && digits.allSatisfy(\.isASCII) ? Int(digits) : nil
    }

    /// ai-toolkit's `{step:09}`.
    static func stepDigits(_ step: Int) -> String {
        let digits = String(step)
        return String(repeating: "0", count: max(0, 9 - digits.count)) + digits
    }

    /// Where a file the trainer wrote goes in the bucket (DESIGN §4), and what it is; nil for files
    /// that stay on the worker (temporary files, thumbnails, caches).
    public func artifact(forOutputFile relativePath: String) -> JobArtifact? {
        let name = runName
        let parts = relativePath.split(separator: "/").map(String.init)
        guard let file = parts.last, !parts.contains(where: { $0.hasPrefix(".") }) else { return nil }
        if parts.count == 1, file == name + ".safetensors" {
            return JobArtifact(kind: .lora, key: outputPrefix + "lora/" + file)
        }
        if parts.count == 1, file.hasPrefix(name + "_"), file.hasSuffix(".safetensors"),
            let step = Int(file.dropFirst(name.count + 1).dropLast(".safetensors".count))
        {
            return JobArtifact(kind: .checkpoint, key: outputPrefix + "checkpoints/" + file, step: step)
        }
        // optimizer.pt is not one: ai-toolkit rewrites it at every save, so the worker keeps a copy
        // per checkpoint (`optimizerState(step:)`).
        // samples/<ms>__<step:09>_<index>.jpg
        if parts.count == 2, parts[0] == "samples", let separator = file.range(of: "__") {
            let step = Int(file[separator.upperBound...].prefix { $0.isNumber })
            return JobArtifact(kind: .sample, key: outputPrefix + "samples/" + file, step: step)
        }
        return nil
    }
}
