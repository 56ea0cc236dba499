import Foundation

extension API {
    public struct Dataset: Codable, Sendable {
        public let id: UUID
        public let name: String
        public let defaultCaption: String?
        public let fileCount: Int
        public let sampleCount: Int
        public let totalBytes: Int64
        public let controlsPerSample: Int?
        public let errorCount: Int
        public let warningCount: Int
        /// Ready to train on: no validation errors and at least one sample.
        public let sound: Bool
        public let lockedByJobId: UUID?
        public let createdAt: Date
        public let updatedAt: Date
        public var validation: Validation?
        public var files: [DatasetFile]?
        /// With `files`: the digest of their content, as a job's reproducibility record states it.
        public var contentSha256: String?
        /// With `files`: when retention (GOMODEL_RETENTION_DAYS) deletes it unless it changes or trains before.
        public var expiresAt: Date?
        /// Paths of a completion that could not be recorded, and why.
        public var failures: [Item]?

        public init(
            id: UUID, name: String, defaultCaption: String?, fileCount: Int, sampleCount: Int, totalBytes: Int64, controlsPerSample: Int?,
            errorCount: Int, warningCount: Int, lockedByJobId: UUID?, createdAt: Date, updatedAt: Date
        ) {
            self.id = id
            self.name = name
            self.defaultCaption = defaultCaption
            self.fileCount = fileCount
            self.sampleCount = sampleCount
            self.totalBytes = totalBytes
            self.controlsPerSample = controlsPerSample
            self.errorCount = errorCount
            self.warningCount = warningCount
            self.sound = errorCount == 0 && sampleCount > 0
            self.lockedByJobId = lockedByJobId
            self.createdAt = createdAt
            self.updatedAt = updatedAt
        }
    }

    public struct DatasetList: Codable, Sendable {
        public let datasets: [Dataset]

        public init(datasets: [Dataset]) { self.datasets = datasets }
    }

    public struct Validation: Codable, Sendable {
        public struct Finding: Codable, Sendable {
            public let severity: String
            public let code: String
            /// Dataset-relative key, or empty for the whole dataset.
            public let file: String
            public let message: String
        }

        /// How many samples have this many control images.
        public struct ControlCount: Codable, Sendable, Equatable {
            public let controls: Int
            public let samples: Int
        }

        public let sound: Bool
        public let samples: Int
        /// The most control images a sample has; samples may have fewer (see controlMix).
        public let controlsPerSample: Int?
        public let controlMix: [ControlCount]
        public let totalBytes: Int64
        public let findings: [Finding]

        /// "4 samples with 1 control image, 2 with 3", for people.
        public var controlSummary: String? {
            guard !controlMix.isEmpty else { return nil }
            return controlMix.enumerated().map { index, count in
                "\(count.samples) \(index == 0 ? (count.samples == 1 ? "sample " : "samples ") : "")with \(count.controls) control image\(count.controls == 1 ? "" : "s")"
            }.joined(separator: ", ")
        }

        public init(_ report: DatasetValidation.Report) {
            sound = report.isSound
            samples = report.samples
            controlsPerSample = report.controlsPerSample
            controlMix = report.controlMix.keys.sorted().map { ControlCount(controls: $0, samples: report.controlMix[$0]!) }
            totalBytes = report.totalBytes
            findings = report.findings.map { Finding(severity: $0.severity.rawValue, code: $0.code, file: $0.file, message: $0.message) }
        }
    }

    public struct DatasetFile: Codable, Sendable {
        public let key: String
        public let role: String
        public let stem: String
        public let bytes: Int64
        public let sha256: String?
        public let format: String?
        public let width: Int?
        public let height: Int?
        public let caption: String?

        public init(key: String, role: String, stem: String, bytes: Int64, sha256: String?, format: String?, width: Int?, height: Int?, caption: String?) {
            self.key = key
            self.role = role
            self.stem = stem
            self.bytes = bytes
            self.sha256 = sha256
            self.format = format
            self.width = width
            self.height = height
            self.caption = caption
        }
    }

    /// `POST /api/datasets`.
    public struct DatasetCreate: Codable, Sendable {
        public let name: String
        public let defaultCaption: String?

        public init(name: String, defaultCaption: String?) {
            self.name = name
            self.defaultCaption = defaultCaption
        }
    }

    /// `POST /api/datasets/{id}/uploads`: the files to sign, by dataset-relative path.
    public struct UploadRequest: Codable, Sendable {
        public struct File: Codable, Sendable {
            public let path: String
            public let size: Int64
            /// Accepted for the contract's sake; the type is decided by the extension.
            public let contentType: String?
            public let sha256: String?

            public init(path: String, size: Int64, contentType: String?, sha256: String?) {
                self.path = path
                self.size = size
                self.contentType = contentType
                self.sha256 = sha256
            }
        }

        public let files: [File]

        public init(files: [File]) { self.files = files }
    }

    /// The presigned PUTs for an `UploadRequest`.
    public struct SignedUploads: Codable, Sendable {
        public struct Upload: Codable, Sendable {
            public let path: String
            public let key: String
            /// Encoded as a string, as JSONEncoder does with URLs.
            public let url: URL
            public let method: String
            public let headers: [String: String]

            public init(path: String, key: String, url: URL, method: String, headers: [String: String]) {
                self.path = path
                self.key = key
                self.url = url
                self.method = method
                self.headers = headers
            }
        }

        public let uploads: [Upload]
        /// System files (`.DS_Store`…) that need no upload.
        public let skipped: [String]
        public let expiresAt: Date

        public init(uploads: [Upload], skipped: [String], expiresAt: Date) {
            self.uploads = uploads
            self.skipped = skipped
            self.expiresAt = expiresAt
        }
    }

    /// `POST /api/datasets/{id}/uploads/complete`.
    public struct CompleteRequest: Codable, Sendable {
        public let paths: [String]

        public init(paths: [String]) { self.paths = paths }
    }
}

extension API {
    /// `PATCH /api/datasets/{id}`.
    public struct DatasetUpdate: Codable, Sendable {
        public let name: String?
        /// Absent: unchanged; null or "": removed.
        public let defaultCaption: String??

        public init(name: String?, defaultCaption: String??) {
            self.name = name
            self.defaultCaption = defaultCaption
        }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            name = try container.decodeIfPresent(String.self, forKey: .name)
            defaultCaption = container.contains(.defaultCaption) ? .some(try container.decodeIfPresent(String.self, forKey: .defaultCaption)) : .none
        }

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encodeIfPresent(name, forKey: .name)
            if let defaultCaption { try container.encode(defaultCaption, forKey: .defaultCaption) }
        }

        enum CodingKeys: String, CodingKey { case name, defaultCaption }
    }

    /// `PATCH /api/datasets/{id}/samples/{stem}`: an empty caption removes it.
    public struct CaptionUpdate: Codable, Sendable {
        public let caption: String

        public init(caption: String) { self.caption = caption }
    }
}

extension API {
    /// A zip import (`/api/datasets/{id}/imports/{importId}`).
    public struct DatasetImport: Codable, Sendable {
        public struct Failure: Codable, Sendable {
            public let code: String
            public let message: String

            public init(code: String, message: String) {
                self.code = code
                self.message = message
            }
        }

        public let id: UUID
        public let datasetId: UUID
        public let fileName: String
        public let size: Int64
        /// `awaiting_upload`, `unpacking`, `done` or `failed`.
        public let state: String
        public let entriesTotal: Int
        public let entriesDone: Int
        /// What the checked files add up to, and how much of it is in the dataset so far.
        public let bytesTotal: Int64
        public let bytesWritten: Int64
        public let placed: Int
        public let ignored: Int
        public let error: Failure?
        public let createdAt: Date
        public let updatedAt: Date

        public init(
            id: UUID, datasetId: UUID, fileName: String, size: Int64, state: String, entriesTotal: Int, entriesDone: Int, bytesTotal: Int64, bytesWritten: Int64, placed: Int,
            ignored: Int, error: Failure?, createdAt: Date, updatedAt: Date
        ) {
            self.id = id
            self.datasetId = datasetId
            self.fileName = fileName
            self.size = size
            self.state = state
            self.entriesTotal = entriesTotal
            self.entriesDone = entriesDone
            self.bytesTotal = bytesTotal
            self.bytesWritten = bytesWritten
            self.placed = placed
            self.ignored = ignored
            self.error = error
            self.createdAt = createdAt
            self.updatedAt = updatedAt
        }
    }

    /// `POST /api/datasets/{id}/imports`.
    public struct ImportCreate: Codable, Sendable {
        public let fileName: String
        public let size: Int64

        public init(fileName: String, size: Int64) {
            self.fileName = fileName
            self.size = size
        }
    }

    /// The import and where to PUT the zip.
    public struct CreatedImport: Codable, Sendable {
        public let `import`: DatasetImport
        public let upload: SignedUploads.Upload
        public let expiresAt: Date

        public init(import: DatasetImport, upload: SignedUploads.Upload, expiresAt: Date) {
            self.import = `import`
            self.upload = upload
            self.expiresAt = expiresAt
        }
    }
}

extension API {
    /// A "draft instructions" run (`/api/datasets/{id}/drafts`).
    public struct DraftRun: Codable, Sendable {
        public let id: UUID
        /// `worker` (a job of the queue, `jobId`) or `endpoint` (GOMODEL_CAPTION_URL).
        public let mode: String
        public let jobId: UUID?
        /// `running`, `done` or `failed`.
        public let state: String
        public let samplesTotal: Int
        public let samplesDone: Int
        public let drafted: Int
        public let error: String?
        public let createdAt: Date
        public let updatedAt: Date

        public init(
            id: UUID, mode: String, jobId: UUID?, state: String, samplesTotal: Int, samplesDone: Int, drafted: Int, error: String?, createdAt: Date, updatedAt: Date
        ) {
            self.id = id
            self.mode = mode
            self.jobId = jobId
            self.state = state
            self.samplesTotal = samplesTotal
            self.samplesDone = samplesDone
            self.drafted = drafted
            self.error = error
            self.createdAt = createdAt
            self.updatedAt = updatedAt
        }
    }

    /// A drafted instruction waiting for review.
    public struct Draft: Codable, Sendable {
        public let stem: String
        public let text: String
        /// Which model wrote it.
        public let source: String
        public let createdAt: Date

        public init(stem: String, text: String, source: String, createdAt: Date) {
            self.stem = stem
            self.text = text
            self.source = source
            self.createdAt = createdAt
        }
    }

    /// `GET /api/datasets/{id}/drafts`.
    public struct Drafts: Codable, Sendable {
        public let run: DraftRun?
        public let drafts: [Draft]

        public init(run: DraftRun?, drafts: [Draft]) {
            self.run = run
            self.drafts = drafts
        }
    }

    /// `POST /api/datasets/{id}/drafts`.
    public struct DraftStart: Codable, Sendable {
        /// nil: every sample without an instruction or a draft.
        public let stems: [String]?

        public init(stems: [String]?) { self.stems = stems }
    }

    /// `POST /api/datasets/{id}/drafts/{stem}/accept`; `caption`: the person's edit of the draft.
    public struct DraftAccept: Codable, Sendable {
        public let caption: String?

        public init(caption: String?) { self.caption = caption }
    }
}

extension API {
    /// `GET /api/usage`: what you hold, your quota (GOMODEL_STORAGE_QUOTA) and the server's retention.
    public struct Usage: Codable, Sendable {
        public let datasetBytes: Int64
        public let outputBytes: Int64
        public let usedBytes: Int64
        public let quotaBytes: Int64?
        public let retentionDays: Int?

        public init(datasetBytes: Int64, outputBytes: Int64, usedBytes: Int64, quotaBytes: Int64?, retentionDays: Int?) {
            self.datasetBytes = datasetBytes
            self.outputBytes = outputBytes
            self.usedBytes = usedBytes
            self.quotaBytes = quotaBytes
            self.retentionDays = retentionDays
        }
    }
}
