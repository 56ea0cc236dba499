import Foundation

/// The one typed configuration of `gomodel`, read once from the environment (DESIGN §3).
///
/// `Configuration(environment:)` checks every rule and reports all problems at once, each naming the
/// variable and the fix; no other code reads the environment.
public struct Configuration: Sendable {
    public var runPod: RunPodSettings?
    public var objectStore: ObjectStoreSettings
    public var database: DatabaseSettings
    /// SQLite file, built-in store and generated secrets (`GOMODEL_DATA_DIR`, default `./data`).
    public var dataDirectory: String
    /// External base URL without a trailing slash (`GOMODEL_PUBLIC_URL`).
    public var publicURL: URL?
    public var signupPolicy: SignupPolicy
    /// Whether the client address is taken from `X-Forwarded-For` (`GOMODEL_TRUST_PROXY`).
    public var trustProxy: Bool
    public var worker: WorkerSettings
    /// What a GPU second costs (`GOMODEL_GPU_PRICE_PER_SECOND`, in the account's currency), for
    /// the cost of each job; nil: not shown.
    public var gpuPricePerSecond: Double?
    /// Dataset size limits (`GOMODEL_DATASET_MAX_SAMPLES`, `GOMODEL_DATASET_MAX_BYTES`).
    public var datasetLimits: DatasetValidation.Limits
    /// Who drafts edit instructions: an OpenAI-compatible endpoint, or GPU workers.
    public var captions: CaptionSettings
    /// `GOMODEL_WEBHOOKS_ALLOW_PRIVATE`: outgoing webhooks may go to loopback and private
    /// addresses (an intranet receiver; the tests). Off: public addresses only.
    public var webhooksAllowPrivate: Bool
    /// `GOMODEL_RETENTION_DAYS`: a finished job's outputs, and a dataset neither changed nor
    /// trained on, are deleted this many days later (nil: kept).
    public var retentionDays: Int?
    /// `GOMODEL_STORAGE_QUOTA`: the bytes each user may hold (datasets and job outputs), checked
    /// when uploads are signed (nil: no quota).
    public var storageQuota: Int64?
    /// Variables that look like ours but are not known (likely typos); logged at start.
    public var warnings: [String]

    /// Session cookies get `Secure` when the public URL is https.
    public var usesSecureCookies: Bool { publicURL?.scheme == "https" }

    public init(environment: [String: String]) throws(ConfigurationError) {
        var reader = EnvironmentReader(environment)

        // RunPod: both or neither.
        let endpointID = reader.string("RUNPOD_ENDPOINT_ID")
        let apiKey = reader.string("RUNPOD_API_KEY")
        let runPodBaseURL = reader.url("RUNPOD_BASE_URL", default: "https://api.runpod.ai/v2")
        switch (endpointID, apiKey) {
        case (let endpointID?, let apiKey?):
            if endpointID.contains(where: { !($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }) {
                reader.problem("RUNPOD_ENDPOINT_ID", "must be the endpoint id only (letters, digits, - and _), e.g. 'abc123xyz', not a URL")
            }
            runPod = runPodBaseURL.map { RunPodSettings(endpointID: endpointID, apiKey: Secret(apiKey), baseURL: $0) }
        case (nil, nil):
            runPod = nil
        case (nil, _?):
            reader.problem("RUNPOD_ENDPOINT_ID", "is missing while RUNPOD_API_KEY is set; set both to use RunPod Serverless, or unset RUNPOD_API_KEY to use the built-in queue")
            runPod = nil
        case (_?, nil):
            reader.problem(
                "RUNPOD_API_KEY",
                "is missing while RUNPOD_ENDPOINT_ID is set; create a key at runpod.io → Settings → API Keys, or unset RUNPOD_ENDPOINT_ID to use the built-in queue")
            runPod = nil
        }

        objectStore = Self.readObjectStore(&reader)

        if let url = reader.string("DATABASE_URL") {
            if let components = URLComponents(string: url), ["postgres", "postgresql"].contains(components.scheme?.lowercased() ?? ""),
                let host = components.host, !host.isEmpty
            {
                database = .postgres(url: Secret(url))
            } else {
                // Never echo the value: it usually carries a password.
                reader.problem("DATABASE_URL", "must be a PostgreSQL URL such as postgres://user:password@host:5432/dbname; unset it to use SQLite in the data folder")
                database = .sqlite
            }
        } else {
            database = .sqlite
        }

        dataDirectory = reader.string("GOMODEL_DATA_DIR") ?? "./data"
        publicURL = reader.url("GOMODEL_PUBLIC_URL").map { url in
            var text = url.absoluteString
            while text.hasSuffix("/") { text.removeLast() }
            return URL(string: text) ?? url
        }
        signupPolicy = reader.choice("GOMODEL_SIGNUP", default: .open)
        trustProxy = reader.bool("GOMODEL_TRUST_PROXY", default: false)

        let workDirectory = reader.string("GOMODEL_WORKDIR") ?? "/workspace"
        if !workDirectory.hasPrefix("/") {
            reader.problem("GOMODEL_WORKDIR", "must be an absolute path, e.g. /workspace")
        }
        func command(_ name: String) -> [String]? {
            guard let command = reader.string(name) else { return nil }
            switch ShellWords.split(command) {
            case .success(let words): return words
            case .failure(let error):
                reader.problem(name, "\(error.reason); quote arguments with ' or \"")
                return nil
            }
        }
        worker = WorkerSettings(
            aiToolkitDirectory: reader.string("AI_TOOLKIT_DIR"),
            trainerCommand: command("GOMODEL_TRAINER_COMMAND"),
            captionCommand: command("GOMODEL_CAPTION_COMMAND"),
            workDirectory: workDirectory,
            huggingFaceToken: reader.string("HF_TOKEN").map(Secret.init)
        )

        gpuPricePerSecond = reader.string("GOMODEL_GPU_PRICE_PER_SECOND").flatMap { text in
            guard let price = Double(text), price >= 0, price < 1 else {
                reader.problem("GOMODEL_GPU_PRICE_PER_SECOND", "must be the price of one GPU second, e.g. 0.00076 for $2.74 an hour; got '\(text)'")
                return nil
            }
            return price
        }
        datasetLimits = DatasetValidation.Limits()
        if let samples = reader.integer("GOMODEL_DATASET_MAX_SAMPLES", in: 1...1_000_000) { datasetLimits.maximumSamples = samples }
        if let bytes = reader.byteSize("GOMODEL_DATASET_MAX_BYTES") { datasetLimits.maximumBytes = bytes }

        let captionURL = reader.url("GOMODEL_CAPTION_URL")
        let captionKey = reader.string("GOMODEL_CAPTION_API_KEY").map(Secret.init)
        let captionModel = reader.string("GOMODEL_CAPTION_MODEL")
        if captionURL != nil, captionModel == nil {
            reader.problem("GOMODEL_CAPTION_MODEL", "is needed with GOMODEL_CAPTION_URL: the endpoint's vision model, e.g. gpt-4o-mini or Qwen/Qwen2.5-VL-7B-Instruct")
        }
        if captionKey != nil, captionURL == nil {
            reader.problem("GOMODEL_CAPTION_API_KEY", "is set without GOMODEL_CAPTION_URL; set the endpoint's base URL too (e.g. https://api.openai.com/v1), or unset the key")
        }
        captions = CaptionSettings(
            endpoint: captionURL.map { CaptionSettings.Endpoint(baseURL: $0, apiKey: captionKey, model: captionModel ?? "") },
            workerModel: captionURL == nil ? captionModel ?? InstructionDraft.defaultWorkerModel : InstructionDraft.defaultWorkerModel)

        webhooksAllowPrivate = reader.bool("GOMODEL_WEBHOOKS_ALLOW_PRIVATE", default: false)
        retentionDays = reader.integer("GOMODEL_RETENTION_DAYS", in: 1...3650)
        storageQuota = reader.byteSize("GOMODEL_STORAGE_QUOTA")

        if runPod != nil, case .builtIn = objectStore, publicURL == nil {
            reader.problem(
                "R2_BUCKET",
                "is needed with RUNPOD_ENDPOINT_ID: RunPod workers run in RunPod's cloud and cannot reach the built-in store on this machine; set R2_BUCKET, R2_ENDPOINT, R2_ACCESS_KEY_ID and R2_SECRET_ACCESS_KEY, or set GOMODEL_PUBLIC_URL to an address the workers can reach"
            )
        }

        warnings = reader.unknownVariables().map { "\($0) is not a setting gomodel knows; check its spelling (see the configuration table in README.md)" }
        if !reader.problems.isEmpty { throw ConfigurationError(problems: reader.problems) }
    }

    private static func readObjectStore(_ reader: inout EnvironmentReader) -> ObjectStoreSettings {
        let names = ["R2_BUCKET", "R2_ENDPOINT", "R2_ACCESS_KEY_ID", "R2_SECRET_ACCESS_KEY"]
        let present = names.filter { reader.string($0) != nil }
        let region = reader.string("R2_REGION")
        let storeBucket = reader.string("GOMODEL_STORE_BUCKET") ?? "gomodel"
        if !BucketName.isValid(storeBucket) {
            reader.problem(
                "GOMODEL_STORE_BUCKET", "'\(storeBucket)' is not a valid bucket name: use 3–63 lower-case letters, digits, '.' and '-', starting and ending with a letter or digit")
        }
        if present.isEmpty {
            if region != nil {
                reader.problem(
                    "R2_REGION",
                    "is set but R2_BUCKET, R2_ENDPOINT, R2_ACCESS_KEY_ID and R2_SECRET_ACCESS_KEY are not; set them all to use R2/S3, or unset R2_REGION to use the built-in store")
            }
            return .builtIn(bucket: storeBucket)
        }
        for missing in names where !present.contains(missing) {
            reader.problem(
                missing,
                "is missing; R2_BUCKET, R2_ENDPOINT, R2_ACCESS_KEY_ID and R2_SECRET_ACCESS_KEY come together (set \(present.joined(separator: ", "))); set all four to use R2/S3, or none to use the built-in store"
            )
        }
        guard present.count == names.count, let bucket = reader.string("R2_BUCKET"),
            let endpoint = reader.url("R2_ENDPOINT"), let accessKeyID = reader.string("R2_ACCESS_KEY_ID"),
            let secret = reader.string("R2_SECRET_ACCESS_KEY")
        else { return .builtIn(bucket: "gomodel") }

        if !BucketName.isValid(bucket) {
            reader.problem("R2_BUCKET", "'\(bucket)' is not a valid bucket name: use 3–63 lower-case letters, digits, '.' and '-', starting and ending with a letter or digit")
        }
        let isR2 = endpoint.host?.lowercased().hasSuffix(".r2.cloudflarestorage.com") ?? false
        if isR2, accessKeyID.count != 32 {
            reader.problem(
                "R2_ACCESS_KEY_ID",
                "is \(accessKeyID.count) characters long, but Cloudflare R2 access key ids are exactly 32; copy the 'Access Key ID' of an R2 API token (not the token value, not the account id)"
            )
        }
        if isR2, endpoint.path.count > 1 {
            reader.problem("R2_ENDPOINT", "must be the account endpoint https://<account-id>.r2.cloudflarestorage.com without the bucket in the path; put the bucket in R2_BUCKET")
        }
        return .s3(
            S3Settings(
                bucket: bucket,
                endpoint: endpoint,
                accessKeyID: accessKeyID,
                secretAccessKey: Secret(secret),
                region: region ?? (isR2 ? "auto" : "us-east-1")
            ))
    }
}

public struct RunPodSettings: Sendable {
    public var endpointID: String
    public var apiKey: Secret
    public var baseURL: URL
}

public enum ObjectStoreSettings: Sendable {
    /// The S3-compatible store served by `gomodel serve` under `/s3`.
    case builtIn(bucket: String)
    case s3(S3Settings)
}

public struct S3Settings: Sendable {
    public var bucket: String
    public var endpoint: URL
    public var accessKeyID: String
    public var secretAccessKey: Secret
    public var region: String
}

public enum DatabaseSettings: Sendable {
    /// `gomodel.sqlite` in the data folder.
    case sqlite
    case postgres(url: Secret)
}

/// Instruction drafts: through an OpenAI-compatible chat-completions endpoint when
/// `GOMODEL_CAPTION_URL` is set (`GOMODEL_CAPTION_API_KEY`, `GOMODEL_CAPTION_MODEL`), else as jobs
/// for GPU workers running `workerModel` (`GOMODEL_CAPTION_MODEL`, default Qwen2.5-VL-7B-Instruct).
public struct CaptionSettings: Sendable {
    public struct Endpoint: Sendable {
        /// E.g. `https://api.openai.com/v1`; `/chat/completions` is appended.
        public var baseURL: URL
        public var apiKey: Secret?
        public var model: String
    }

    public var endpoint: Endpoint?
    public var workerModel: String
}

public struct WorkerSettings: Sendable {
    public var aiToolkitDirectory: String?
    /// The trainer command's words; the config file's path is appended as the last argument.
    public var trainerCommand: [String]?
    /// The captioner's words (`GOMODEL_CAPTION_COMMAND`); `--model M --request R` is appended.
    /// Default: `python` with the `caption.py` shipped beside the binary.
    public var captionCommand: [String]?
    public var workDirectory: String
    public var huggingFaceToken: Secret?
}

public enum SignupPolicy: String, Sendable, CaseIterable {
    /// Anyone may create an account.
    case open
    /// Sign-up needs an invite code made by an admin.
    case invite
    /// Accounts are made by `gomodel users create` only.
    case closed
}

/// Every problem found in the configuration, each naming its variable and the fix.
public struct ConfigurationError: Error, Sendable, CustomStringConvertible {
    public struct Problem: Sendable, Equatable {
        public let variable: String
        public let message: String

        public init(variable: String, message: String) {
            self.variable = variable
            self.message = message
        }
    }

    public let problems: [Problem]

    public init(problems: [Problem]) { self.problems = problems }

    public var description: String {
        (["invalid configuration:"] + problems.map { "  \($0.variable) \($0.message)" }).joined(separator: "\n")
    }
}

enum BucketName {
    static func isValid(_ name: String) -> Bool {
        guard (3...63).contains(name.count), let first = name.first, let last = name.last,
            first.isASCII && (first.isLetter || first.isNumber), last.isASCII && (last.isLetter || last.isNumber),
            !name.contains("..")
        else { return false }
        return name.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "." || $0 == "-" }
    }
}

/// Reads variables, collects problems, and remembers which names were read (to spot typos).
struct EnvironmentReader {
    private let environment: [String: String]
    private(set) var problems: [ConfigurationError.Problem] = []
    private var known: Set<String> = [
        // The worker side of RunPod's protocol (TrainerWorker reads these itself).
        "RUNPOD_WEBHOOK_GET_JOB", "RUNPOD_WEBHOOK_POST_OUTPUT", "RUNPOD_WEBHOOK_PING", "RUNPOD_AI_API_KEY",
        "RUNPOD_POD_ID", "RUNPOD_PING_INTERVAL", "RUNPOD_POD_HOSTNAME", "RUNPOD_ENDPOINT_SECRET",
    ]

    init(_ environment: [String: String]) { self.environment = environment }

    /// The trimmed value; empty counts as unset.
    mutating func string(_ name: String) -> String? {
        known.insert(name)
        guard let value = environment[name]?.trimmingWhitespace(), !value.isEmpty else { return nil }
        return value
    }

    mutating func url(_ name: String, default defaultValue: String? = nil) -> URL? {
        guard let text = string(name) ?? defaultValue else { return nil }
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased(),
            ["http", "https"].contains(scheme), let host = components.host, !host.isEmpty,
            components.query == nil, components.fragment == nil, components.user == nil, let url = components.url
        else {
            problem(name, "must be an http:// or https:// URL with a host and no query, e.g. https://example.com")
            return nil
        }
        return url
    }

    mutating func bool(_ name: String, default defaultValue: Bool) -> Bool {
        guard let text = string(name) else { return defaultValue }
        switch text.lowercased() {
        case "1", "true", "yes", "on": return true
        case "0", "false", "no", "off": return false
        default:
            problem(name, "must be true or false, not '\(text)'")
            return defaultValue
        }
    }

    mutating func integer(_ name: String, in range: ClosedRange<Int>) -> Int? {
        guard let text = string(name) else { return nil }
        guard let value = Int(text), range.contains(value) else {
            problem(name, "must be a whole number from \(range.lowerBound) to \(range.upperBound), not '\(text)'")
            return nil
        }
        return value
    }

    /// Bytes, with an optional binary suffix: `5368709120`, `512MiB`, `5GiB` (`K`, `M`, `G`, `T` alike).
    mutating func byteSize(_ name: String) -> Int64? {
        guard let text = string(name) else { return nil }
        let digits = text.prefix { $0.isNumber }
        let unit = String(text.dropFirst(digits.count)).trimmingWhitespace().lowercased()
        let shifts: [String: Int64] = ["": 0, "b": 0, "k": 10, "kb": 10, "kib": 10, "m": 20, "mb": 20, "mib": 20, "g": 30, "gb": 30, "gib": 30, "t": 40, "tb": 40, "tib": 40]
        guard let number = Int64(digits), number > 0, let shift = shifts[unit], number <= Int64.max >> shift else {
            problem(name, "must be a size in bytes such as 5368709120, 512MiB or 5GiB, not '\(text)'")
            return nil
        }
        return number << shift
    }

    mutating func choice<T: RawRepresentable & CaseIterable>(_ name: String, default defaultValue: T) -> T where T.RawValue == String {
        guard let text = string(name) else { return defaultValue }
        guard let value = T(rawValue: text.lowercased()) else {
            problem(name, "must be one of \(T.allCases.map(\.rawValue).joined(separator: ", ")), not '\(text)'")
            return defaultValue
        }
        return value
    }

    mutating func problem(_ variable: String, _ message: String) {
        problems.append(.init(variable: variable, message: message))
    }

    func unknownVariables() -> [String] {
        environment.keys
            .filter { ($0.hasPrefix("GOMODEL_") || $0.hasPrefix("R2_") || $0.hasPrefix("RUNPOD_")) && !known.contains($0) }
            .sorted()
    }
}
