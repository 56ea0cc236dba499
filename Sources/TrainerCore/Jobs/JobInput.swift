import Foundation

/// The job contract (DESIGN §5): the `input` of every job a worker receives, from the built-in
/// queue or from RunPod. The server encodes this type and the worker decodes it, so the two sides
/// share one definition of its fields and their names; `contractVersion` changes when they change.
public struct JobInput: Codable, Sendable, Equatable {
    /// The newest version this worker reads. Training inputs are version 1, as they always were;
    /// drafting inputs are version 2, so a worker from before drafting refuses them by their
    /// version (saying to update it) instead of taking them for an ai-toolkit config.
    public static let contractVersion = 2

    public struct Dataset: Codable, Sendable, Equatable {
        public var datasetId: String
        public var bucket: String
        public var prefix: String

        public init(datasetId: String, bucket: String, prefix: String) {
            self.datasetId = datasetId
            self.bucket = bucket
            self.prefix = prefix
        }
    }

    public struct Output: Codable, Sendable, Equatable {
        public var bucket: String
        public var prefix: String

        public init(bucket: String, prefix: String) {
            self.bucket = bucket
            self.prefix = prefix
        }
    }

    /// Where the worker also posts what it posts to job-done (progress, then the result), straight
    /// to the server; valid for this attempt only.
    public struct ProgressChannel: Codable, Sendable, Equatable {
        public var url: String

        public init(url: String) {
            self.url = url
        }
    }

    /// From the built-in queue of a server with the built-in store: a key of that store scoped to
    /// this job (read its dataset, read and write its outputs), for a worker without store settings.
    public struct StoreKey: Codable, Sendable, Equatable {
        public var accessKeyID: String
        public var secretAccessKey: String

        enum CodingKeys: String, CodingKey {
            case accessKeyID = "access_key_id"
            case secretAccessKey = "secret_access_key"
        }

        public init(accessKeyID: String, secretAccessKey: String) {
            self.accessKeyID = accessKeyID
            self.secretAccessKey = secretAccessKey
        }
    }

    /// What the worker does with the job. Absent in inputs means training, so inputs from before
    /// drafting jobs read as they always did.
    public enum Task: String, Codable, Sendable, Equatable {
        /// `jobConfig` is an ai-toolkit job config.
        case train
        /// `jobConfig` is an `InstructionDraft.WorkerRequest`: draft edit instructions for samples.
        case draftInstructions = "draft_instructions"
    }

    public var contractVersion: Int
    public var task: Task
    public var trainerJobID: String
    /// 1 for the first attempt; absent in inputs from before attempts were counted.
    public var attempt: Int
    /// The ai-toolkit job config, with the canonical `/workspace` paths.
    public var jobConfig: JSONValue
    public var dataset: Dataset
    public var output: Output
    public var progressChannel: ProgressChannel?
    public var storeKey: StoreKey?

    enum CodingKeys: String, CodingKey {
        case contractVersion = "contract_version"
        case task
        case trainerJobID = "trainer_job_id"
        case attempt
        case jobConfig = "job_config"
        case dataset = "r2_dataset"
        case output
        case progressChannel = "progress_channel"
        case storeKey = "store_key"
    }

    public init(
        task: Task = .train, trainerJobID: String, attempt: Int, jobConfig: JSONValue, dataset: Dataset, output: Output,
        progressChannel: ProgressChannel? = nil, storeKey: StoreKey? = nil
    ) {
        self.contractVersion = task == .train ? 1 : 2
        self.task = task
        self.trainerJobID = trainerJobID
        self.attempt = attempt
        self.jobConfig = jobConfig
        self.dataset = dataset
        self.output = output
        self.progressChannel = progressChannel
        self.storeKey = storeKey
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        contractVersion = try container.decode(Int.self, forKey: .contractVersion)
        task = try container.decodeIfPresent(Task.self, forKey: .task) ?? .train
        trainerJobID = try container.decode(String.self, forKey: .trainerJobID)
        attempt = try container.decodeIfPresent(Int.self, forKey: .attempt) ?? 1
        jobConfig = try container.decode(JSONValue.self, forKey: .jobConfig)
        dataset = try container.decode(Dataset.self, forKey: .dataset)
        output = try container.decode(Output.self, forKey: .output)
        progressChannel = try container.decodeIfPresent(ProgressChannel.self, forKey: .progressChannel)
        storeKey = try container.decodeIfPresent(StoreKey.self, forKey: .storeKey)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(contractVersion, forKey: .contractVersion)
        // Training inputs stay exactly as they were before there were other tasks.
        if task != .train { try container.encode(task, forKey: .task) }
        try container.encode(trainerJobID, forKey: .trainerJobID)
        try container.encode(attempt, forKey: .attempt)
        try container.encode(jobConfig, forKey: .jobConfig)
        try container.encode(dataset, forKey: .dataset)
        try container.encode(output, forKey: .output)
        try container.encodeIfPresent(progressChannel, forKey: .progressChannel)
        try container.encodeIfPresent(storeKey, forKey: .storeKey)
    }

    /// A problem with an input, said so a person can fix the sender.
    public struct InputError: Error, Sendable, Equatable, CustomStringConvertible {
        public let description: String
    }

    /// Reads an input, saying which field is wrong when it is not this contract.
    public init(json: JSONValue) throws(InputError) {
        guard case .object = json else { throw InputError(description: "input must be a JSON object") }
        guard let version = json[CodingKeys.contractVersion.rawValue]?.numberValue else {
            throw InputError(description: "input.contract_version is missing; this worker speaks contract version \(Self.contractVersion)")
        }
        guard (1...Self.contractVersion).contains(Int(version)) else {
            throw InputError(description: "input.contract_version is \(Int(version)) but this worker speaks 1 to \(Self.contractVersion); update the worker image or the server")
        }
        do {
            self = try JSONDecoder().decode(Self.self, from: Data(json.rendered().utf8))
        } catch let error as DecodingError {
            throw InputError(description: Self.explain(error))
        } catch {
            throw InputError(description: "input could not be read: \(error)")
        }
        for (path, text) in [
            ("trainer_job_id", trainerJobID), ("r2_dataset.datasetId", dataset.datasetId), ("r2_dataset.bucket", dataset.bucket),
            ("r2_dataset.prefix", dataset.prefix), ("output.bucket", output.bucket), ("output.prefix", output.prefix),
        ] where text.isEmpty {
            throw InputError(description: "input.\(path) is empty")
        }
    }

    /// The input as a JSON value (what goes into a job-take answer or a `/run` body).
    public var json: JSONValue {
        // Encoding plain strings, numbers and JSON values cannot fail.
        (try? JSONDecoder().decode(JSONValue.self, from: JSONEncoder().encode(self))) ?? .object([])
    }

    /// The progress channel of a job's input, read without checking the rest (the worker's runtime
    /// serves any handler).
    public static func progressChannelURL(in input: JSONValue) -> String? {
        input[CodingKeys.progressChannel.rawValue]?["url"]?.stringValue
    }

    private static func explain(_ error: DecodingError) -> String {
        func path(_ context: DecodingError.Context, _ key: (any CodingKey)? = nil) -> String {
            (["input"] + (context.codingPath + (key.map { [$0] } ?? [])).map { $0.intValue.map(String.init) ?? $0.stringValue }).joined(separator: ".")
        }
        switch error {
        case .keyNotFound(let key, let context): return "\(path(context, key)) is missing"
        case .typeMismatch(let type, let context): return "\(path(context)) is not \(describe(type))"
        case .valueNotFound(let type, let context): return "\(path(context)) is null, not \(describe(type))"
        case .dataCorrupted(let context): return "\(path(context)) is not valid: \(context.debugDescription)"
        @unknown default: return "input is not valid: \(error)"
        }
    }

    private static func describe(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: "a string"
        case is Int.Type, is Double.Type: "a number"
        default: "an object"
        }
    }
}
