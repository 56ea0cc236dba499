import Foundation

extension API {
    public struct Job: Codable, Sendable {
        public struct Artifact: Codable, Sendable {
            /// Short and stable: the first 16 hex digits of the key's SHA-256.
            public let id: String
            public let kind: String
            public let key: String
            public let bytes: Int64?
            public let step: Int?
            public let sha256: String?

            public init(id: String, kind: String, key: String, bytes: Int64?, step: Int?, sha256: String?) {
                self.id = id
                self.kind = kind
                self.key = key
                self.bytes = bytes
                self.step = step
                self.sha256 = sha256
            }
        }

        public struct Event: Codable, Sendable {
            public let at: Date
            public let status: String
            public let message: String

            public init(at: Date, status: String, message: String) {
                self.at = at
                self.status = status
                self.message = message
            }
        }

        public let id: UUID
        public let datasetId: UUID
        public let preset: String
        public let params: JSONValue?
        public let status: String
        /// The runner's own status string (RunPod's), unknown ones included.
        public let runnerStatus: String?
        public let attempt: Int
        public let progress: JobProgress?
        public let runpodJobId: String?
        public let artifacts: [Artifact]
        public let error: String?
        public let errorDetail: String?
        public let cancelRequested: Bool
        public let createdAt: Date
        public let submittedAt: Date?
        public let startedAt: Date?
        public let finishedAt: Date?
        /// Seconds from creation until a GPU took it (or until now, while it waits).
        public let queueSeconds: Double?
        /// Seconds on the GPU so far, or in total.
        public let executionSeconds: Double?
        /// GPU time so far (or in total) times GOMODEL_GPU_PRICE_PER_SECOND, when it is set.
        public var cost: Double?
        /// Only in `GET /api/jobs/{id}`.
        public var events: [Event]?
        /// What "download the LoRA" gives: a promoted checkpoint, else the final LoRA.
        public var result: Result?
        /// When retention (GOMODEL_RETENTION_DAYS) deletes its outputs, and when it did.
        public var outputsExpireAt: Date?
        public var outputsDeletedAt: Date?

        public struct Result: Codable, Sendable, Equatable {
            public let artifactId: String
            /// `lora` (the final one) or `checkpoint` (promoted).
            public let kind: String
            public let step: Int?
            public let promoted: Bool

            public init(artifactId: String, kind: String, step: Int?, promoted: Bool) {
                self.artifactId = artifactId
                self.kind = kind
                self.step = step
                self.promoted = promoted
            }
        }

        public init(
            id: UUID, datasetId: UUID, preset: String, params: JSONValue?, status: String, runnerStatus: String?, attempt: Int, progress: JobProgress?,
            runpodJobId: String?, artifacts: [Artifact], error: String?, errorDetail: String?, cancelRequested: Bool, createdAt: Date,
            submittedAt: Date?, startedAt: Date?, finishedAt: Date?, queueSeconds: Double?, executionSeconds: Double?, cost: Double?
        ) {
            self.id = id
            self.datasetId = datasetId
            self.preset = preset
            self.params = params
            self.status = status
            self.runnerStatus = runnerStatus
            self.attempt = attempt
            self.progress = progress
            self.runpodJobId = runpodJobId
            self.artifacts = artifacts
            self.error = error
            self.errorDetail = errorDetail
            self.cancelRequested = cancelRequested
            self.createdAt = createdAt
            self.submittedAt = submittedAt
            self.startedAt = startedAt
            self.finishedAt = finishedAt
            self.queueSeconds = queueSeconds
            self.executionSeconds = executionSeconds
            self.cost = cost
        }

        /// Whether the job has ended (a status this version does not know counts as running).
        public var isFinal: Bool { JobStatus(rawValue: status)?.isFinal ?? false }
    }

    public struct JobList: Codable, Sendable {
        public let jobs: [Job]

        public init(jobs: [Job]) { self.jobs = jobs }
    }

    /// The training parameters of `POST /api/jobs`, all optional: the preset's defaults fill the
    /// rest. The server refuses names not listed in `keys` rather than ignore a misspelling.
    public struct JobParameters: Codable, Sendable, Equatable {
        public var steps: Int?
        public var learningRate: Double?
        public var rank: Int?
        public var profile: String?
        public var resolutions: [Int]?
        public var saveEvery: Int?
        public var sampleEvery: Int?
        public var keepCheckpoints: Int?
        public var seed: Int?
        public var triggerWord: String?
        public var samplePairs: [String]?
        public var hfRepo: String?
        public var hfPublic: Bool?

        public static let keys: Set<String> = [
            "steps", "learningRate", "rank", "profile", "resolutions", "saveEvery", "sampleEvery", "keepCheckpoints", "seed", "triggerWord", "samplePairs",
            "hfRepo", "hfPublic",
        ]

        public init() {}
    }

    /// `GET /api/presets`: the models people can train, with their profiles and defaults.
    public struct PresetList: Codable, Sendable {
        public let presets: [Preset]

        public init(presets: [Preset]) { self.presets = presets }
    }

    public struct Preset: Codable, Sendable {
        public struct Profile: Codable, Sendable {
            public let id: String
            public let label: String
            public let maximumResolution: Int
            public let secondsPerStep: Double

            public init(id: String, label: String, maximumResolution: Int, secondsPerStep: Double) {
                self.id = id
                self.label = label
                self.maximumResolution = maximumResolution
                self.secondsPerStep = secondsPerStep
            }
        }

        public let id: String
        public let label: String
        public let baseModel: String
        public let isDefault: Bool
        public let profiles: [Profile]
        public let defaults: JobParameters

        public init(id: String, label: String, baseModel: String, isDefault: Bool, profiles: [Profile], defaults: JobParameters) {
            self.id = id
            self.label = label
            self.baseModel = baseModel
            self.isDefault = isDefault
            self.profiles = profiles
            self.defaults = defaults
        }
    }

    /// `POST /api/jobs/{id}/promote`: a checkpoint's step, or nil for the final LoRA.
    public struct Promotion: Codable, Sendable {
        public let step: Int?

        enum CodingKeys: String, CodingKey { case step }

        public init(step: Int?) { self.step = step }

        /// `step` must be there, as `null` when it is the final LoRA (the schema requires it).
        public init(from decoder: any Decoder) throws {
            step = try decoder.container(keyedBy: CodingKeys.self).decode(Int?.self, forKey: .step)
        }

        public func encode(to encoder: any Encoder) throws {
            // `step: null` is the request for the final LoRA: written out, not left away.
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(step, forKey: .step)
        }
    }

    /// `POST /api/jobs`.
    public struct JobCreate: Codable, Sendable {
        public let datasetId: UUID
        public let preset: String?
        public let params: JobParameters?

        public init(datasetId: UUID, preset: String?, params: JobParameters?) {
            self.datasetId = datasetId
            self.preset = preset
            self.params = params
        }
    }
}

extension API {
    /// `GET /api/estimate`: a run's GPU time, and where the figures come from.
    public struct Estimate: Codable, Sendable {
        public let preset: String
        public let profile: String
        public let steps: Int
        public let seconds: Double
        public let secondsPerStep: Double
        public let overheadSeconds: Double
        /// `learned` (from completed runs) or `assumed`.
        public let source: String
        /// The source for people: "the median of the last 3 completed runs on NVIDIA H100 80GB HBM3".
        public let basis: String
        public let gpuName: String?
        public let runs: Int?
        /// With GOMODEL_GPU_PRICE_PER_SECOND.
        public let cost: Double?

        public init(
            preset: String, profile: String, steps: Int, seconds: Double, secondsPerStep: Double, overheadSeconds: Double, source: String, basis: String,
            gpuName: String?, runs: Int?, cost: Double?
        ) {
            self.preset = preset
            self.profile = profile
            self.steps = steps
            self.seconds = seconds
            self.secondsPerStep = secondsPerStep
            self.overheadSeconds = overheadSeconds
            self.source = source
            self.basis = basis
            self.gpuName = gpuName
            self.runs = runs
            self.cost = cost
        }
    }
}
