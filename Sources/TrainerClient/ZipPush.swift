import AsyncHTTPClient
import Foundation
import NIOFileSystem
import ObjectStorage
import TrainerCore

/// `gomodel datasets push x.zip --name NAME`: uploads the zip as one object with a presigned URL,
/// then has the server unpack it into the dataset (checking every entry before the dataset
/// changes) and follows its progress.
public struct ZipPush: Sendable {
    public enum Stage: Sendable, Equatable {
        case uploading(bytesDone: Int64, bytesTotal: Int64)
        case unpacking(filesDone: Int, filesTotal: Int)
        /// Every entry checked; the files go into the dataset.
        case writing(bytesDone: Int64, bytesTotal: Int64)
    }

    public struct Result: Sendable {
        public let dataset: API.Dataset
        public let created: Bool
        public let `import`: API.DatasetImport
    }

    let api: ServerAPI
    let http: HTTPClient
    /// Between looks at the import while the server unpacks.
    var pollInterval: Duration = .milliseconds(250)

    public init(api: ServerAPI, http: HTTPClient) {
        self.api = api
        self.http = http
    }

    public func run(zip path: String, name: String, progress: @escaping @Sendable (Stage) -> Void = { _ in }) async throws -> Result {
        guard let info = try await FileSystem.shared.info(forFileAt: FilePath(path)), info.type == .regular else {
            throw PushError("\(path) is not a file; give a .zip file or a folder.")
        }
        var created = false
        let dataset: API.Dataset
        if let existing = try await api.datasets().first(where: { $0.name == name }) {
            dataset = existing
        } else {
            dataset = try await api.createDataset(name: name)
            created = true
        }
        if let job = dataset.lockedByJobId {
            throw PushError("Dataset '\(name)' is in use by job \(job.uuidString.lowercased()) and cannot change until it ends; push to a new name instead.")
        }
        do {
            return try await importZip(path, size: info.size, into: dataset, created: created, progress: progress)
        } catch {
            // A dataset made for this zip alone is not left behind empty (nor on Ctrl-C).
            if created { try? await Task { try await api.deleteDataset(dataset.id) }.value }
            throw error
        }
    }

    private func importZip(_ path: String, size: Int64, into dataset: API.Dataset, created: Bool, progress: @escaping @Sendable (Stage) -> Void) async throws -> Result {
        let started = try await api.createImport(dataset.id, fileName: URL(fileURLWithPath: path).lastPathComponent, size: size)
        let request = PresignedRequest(method: started.upload.method, url: started.upload.url, headers: started.upload.headers)
        progress(.uploading(bytesDone: 0, bytesTotal: size))
        try await DatasetPush.uploadRetries.run(retryable: S3Client.isRetryable, retryAfter: { ($0 as? S3Error)?.retryAfter }) {
            try await PresignedTransfer.put(file: path, to: request, http: http) { sent in progress(.uploading(bytesDone: sent, bytesTotal: size)) }
        }
        var current = try await api.unpackImport(dataset.id, importID: started.import.id)
        while current.state == "unpacking" {
            progress(Self.stage(of: current))
            try await Task.sleep(for: pollInterval)
            current = try await api.datasetImport(dataset.id, importID: current.id)
        }
        guard current.state == "done" else {
            throw PushError("The server refused \(URL(fileURLWithPath: path).lastPathComponent): \(current.error?.message ?? current.state) (\(current.error?.code ?? "failed"))")
        }
        progress(.writing(bytesDone: current.bytesWritten, bytesTotal: current.bytesTotal))
        return Result(dataset: try await api.dataset(dataset.id), created: created, import: current)
    }

    static func stage(of unpacking: API.DatasetImport) -> Stage {
        unpacking.entriesTotal > 0 && unpacking.entriesDone == unpacking.entriesTotal
            ? .writing(bytesDone: unpacking.bytesWritten, bytesTotal: unpacking.bytesTotal)
            : .unpacking(filesDone: unpacking.entriesDone, filesTotal: unpacking.entriesTotal)
    }
}
