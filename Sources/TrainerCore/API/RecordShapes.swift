import Foundation

extension API {
    /// `GET /api/jobs/{id}/record`: how a job was made, enough to make it again
    /// (`gomodel train --from-record`) and to tell whether a rerun used the same inputs.
    public struct JobRecord: Codable, Sendable {
        public struct Training: Codable, Sendable {
            public let id: UUID
            public let createdAt: Date
            public let status: String
            public let preset: String
            public let baseModel: String?
            /// Every parameter as the job trained with it, defaults filled in (the seed too).
            public let parameters: JobParameters
            /// The checkpoint step made the result, if one was.
            public let promotedStep: Int?

            public init(id: UUID, createdAt: Date, status: String, preset: String, baseModel: String?, parameters: JobParameters, promotedStep: Int?) {
                self.id = id
                self.createdAt = createdAt
                self.status = status
                self.preset = preset
                self.baseModel = baseModel
                self.parameters = parameters
                self.promotedStep = promotedStep
            }
        }

        public struct DatasetContent: Codable, Sendable {
            public let id: UUID
            public let name: String?
            /// SHA-256 of `RunRecord.digestText(of: files)`: one line `{sha256}  {path}` per file.
            public let sha256: String?
            public let files: [RunRecord.DatasetFile]

            public init(id: UUID, name: String?, sha256: String?, files: [RunRecord.DatasetFile]) {
                self.id = id
                self.name = name
                self.sha256 = sha256
                self.files = files
            }
        }

        public struct Attempt: Codable, Sendable {
            public let attempt: Int
            public let status: String
            public let runnerId: String?
            public let startedAt: Date?
            public let endedAt: Date?
            /// The worker's own report: worker_version, gpu_name, trainer_commit, python, packages.
            public let environment: JSONValue?
            public let checkpoints: [Int]
            public let resumedFromStep: Int?
            public let stepsTrained: Int?
            public let secondsPerStep: Double?
            public let datasetSha256: String?

            public init(
                attempt: Int, status: String, runnerId: String?, startedAt: Date?, endedAt: Date?, environment: JSONValue?, checkpoints: [Int], resumedFromStep: Int?,
                stepsTrained: Int?, secondsPerStep: Double?, datasetSha256: String?
            ) {
                self.attempt = attempt
                self.status = status
                self.runnerId = runnerId
                self.startedAt = startedAt
                self.endedAt = endedAt
                self.environment = environment
                self.checkpoints = checkpoints
                self.resumedFromStep = resumedFromStep
                self.stepsTrained = stepsTrained
                self.secondsPerStep = secondsPerStep
                self.datasetSha256 = datasetSha256
            }
        }

        public let recordVersion: Int
        public let serverVersion: String
        public let job: Training
        /// The ai-toolkit config sent to the worker (its paths are the worker's to fill in).
        public let config: JSONValue
        public let dataset: DatasetContent
        public let attempts: [Attempt]
        /// The files the job produced, with their SHA-256.
        public let artifacts: [Job.Artifact]

        public init(
            recordVersion: Int, serverVersion: String, job: Training, config: JSONValue, dataset: DatasetContent, attempts: [Attempt], artifacts: [Job.Artifact]
        ) {
            self.recordVersion = recordVersion
            self.serverVersion = serverVersion
            self.job = job
            self.config = config
            self.dataset = dataset
            self.attempts = attempts
            self.artifacts = artifacts
        }
    }
}
