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

        public let sound: Bool
        public let samples: Int
        public let controlsPerSample: Int?
        public let totalBytes: Int64
        public let findings: [Finding]

        public init(_ report: DatasetValidation.Report) {
            sound = report.isSound
            samples = report.samples
            controlsPerSample = report.controlsPerSample
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
