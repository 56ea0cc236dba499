/// The job a worker receives (DESIGN §5), checked before any work starts, and the rules that
/// map it onto the worker's disk and its outputs back into the bucket.
public struct WorkerJob: Sendable, Equatable {
    public static let contractVersion = 1
    /// Optional in the input: `{"url": …}`, where the worker also posts what it posts to job-done
    /// (progress, then the result), straight to the server; valid for this attempt only.
    public static let progressChannelKey = "progress_channel"

    public static func progressChannelURL(in input: JSONValue) -> String? {
        input[progressChannelKey]?["url"]?.stringValue
    }

    /// Optional in the input from the built-in queue of a server with the built-in store:
    /// `{"access_key_id", "secret_access_key"}`, a key of that store scoped to this job (read its
    /// dataset, read and write its outputs), for a worker that has no store settings of its own.
    public static let storeKeyKey = "store_key"

    public static func storeKey(in input: JSONValue) -> (accessKeyID: String, secretAccessKey: String)? {
        guard let id = input[storeKeyKey]?["access_key_id"]?.stringValue, let secret = input[storeKeyKey]?["secret_access_key"]?.stringValue else { return nil }
        return (id, secret)
    }

    /// Where a dataset's files are in the bucket (DESIGN §4).
    public static func datasetPrefix(_ datasetID: String) -> String { "datasets/\(datasetID)/" }

    public let trainerJobID: String
    public let attempt: Int
    public let jobConfig: JSONValue
    public let datasetID: String
    public let datasetBucket: String
    public let datasetPrefix: String
    public let outputBucket: String
    public let outputPrefix: String

    /// A problem with the input, said so a person can fix the sender.
    public struct InputError: Error, Sendable, Equatable, CustomStringConvertible {
        public let description: String
    }

    public init(input: JSONValue) throws(InputError) {
        func string(_ value: JSONValue?, _ path: String) throws(InputError) -> String {
            guard let text = value?.stringValue, !text.isEmpty else { throw InputError(description: "input.\(path) is missing or not a string") }
            return text
        }
        guard case .object = input else { throw InputError(description: "input must be a JSON object") }
        guard let version = input["contract_version"]?.numberValue else {
            throw InputError(description: "input.contract_version is missing; this worker speaks contract version \(Self.contractVersion)")
        }
        guard Int(version) == Self.contractVersion else {
            throw InputError(description: "input.contract_version is \(Int(version)) but this worker speaks \(Self.contractVersion); update the worker image or the server")
        }
        trainerJobID = try string(input["trainer_job_id"], "trainer_job_id")
        attempt = input["attempt"]?.numberValue.map { Int($0) } ?? 1
        guard let config = input["job_config"], case .object = config, config["config"]?["name"]?.stringValue != nil else {
            throw InputError(description: "input.job_config must be an ai-toolkit job config with config.name")
        }
        jobConfig = config
        datasetID = try string(input["r2_dataset"]?["datasetId"], "r2_dataset.datasetId")
        datasetBucket = try string(input["r2_dataset"]?["bucket"], "r2_dataset.bucket")
        datasetPrefix = try string(input["r2_dataset"]?["prefix"], "r2_dataset.prefix")
        outputBucket = try string(input["output"]?["bucket"], "output.bucket")
        outputPrefix = try string(input["output"]?["prefix"], "output.prefix")
        for (path, prefix) in [("r2_dataset.prefix", datasetPrefix), ("output.prefix", outputPrefix)] {
            guard prefix.hasSuffix("/"), !prefix.hasPrefix("/"), !prefix.split(separator: "/").contains("..") else {
                throw InputError(description: "input.\(path) must be a relative key prefix ending in '/', without '..'; got '\(prefix)'")
            }
        }
    }

    /// `config.name`, which names the output folder and files.
    public var runName: String { jobConfig["config"]?["name"]?.stringValue ?? "" }

    /// The config with the canonical `/workspace` paths moved under `workRoot`.
    public func config(workRoot: String) -> JSONValue {
        var root = workRoot
        while root.hasSuffix("/") { root.removeLast() }
        return Self.mapPaths(jobConfig, from: QwenImageEdit2509.workRoot, to: root)
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
        let prefix = outputPrefix + "checkpoints/" + runName + "_", suffix = ".optimizer.pt"
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
           let step = Int(file.dropFirst(name.count + 1).dropLast(".safetensors".count)) {
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
