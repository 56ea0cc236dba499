import AsyncHTTPClient
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOFileSystem
import ObjectStorage
import TrainerCore

/// `gomodel datasets push DIR --name NAME`: uploads a folder of pairs straight to the bucket with
/// presigned URLs, several files at a time. A second run uploads only what is missing or changed
/// (compared by size and SHA-256 with what the server recorded), so an interrupted push resumes.
public struct DatasetPush: Sendable {
    /// Each file's PUT: four tries on throttling, server errors and dropped connections.
    static let uploadRetries = RetryPolicy(maxAttempts: 4)

    public struct Options: Sendable {
        public var directory: String
        public var name: String
        public var concurrency: Int
        /// Files signed per request, and recorded with the server per request (or every 2 s).
        public var batchSize: Int

        public init(directory: String, name: String, concurrency: Int = 8, batchSize: Int = 100) {
            self.directory = directory
            // The server trims names; so must the lookup.
            self.name = name.trimmingCharacters(in: .whitespacesAndNewlines)
            self.concurrency = max(1, concurrency)
            self.batchSize = min(max(1, batchSize), UploadPlan.maximumFilesPerBatch)
        }
    }

    public struct Progress: Sendable {
        public var filesDone: Int
        public var filesTotal: Int
        public var bytesDone: Int64
        public var bytesTotal: Int64

        public init(filesDone: Int, filesTotal: Int, bytesDone: Int64, bytesTotal: Int64) {
            self.filesDone = filesDone
            self.filesTotal = filesTotal
            self.bytesDone = bytesDone
            self.bytesTotal = bytesTotal
        }
    }

    public struct Result: Sendable {
        public let dataset: API.Dataset
        public let created: Bool
        public let uploadedFiles: Int
        public let uploadedBytes: Int64
        /// Already on the server with the same size and SHA-256.
        public let unchangedFiles: Int
        /// System files (`.DS_Store`…), never uploaded.
        public let ignored: [String]
        /// Files whose name or kind does not fit a dataset, left out, with the reason.
        public let leftOut: [API.Item]
        /// Uploads that failed; running the push again retries them.
        public let failures: [API.Item]
    }

    let api: ServerAPI
    let http: HTTPClient
    /// Called after each file, for tests that interrupt a push (throwing stops it).
    let afterEachFile: @Sendable (Int) throws -> Void

    public init(api: ServerAPI, http: HTTPClient, afterEachFile: @escaping @Sendable (Int) throws -> Void = { _ in }) {
        self.api = api
        self.http = http
        self.afterEachFile = afterEachFile
    }

    struct LocalFile: Sendable {
        let path: String
        let absolutePath: String
        let size: Int64
        let placement: DatasetLayout.Placement
        var sha256: String = ""
    }

    public func run(_ options: Options, progress: @escaping @Sendable (Progress) -> Void = { _ in }) async throws -> Result {
        let scan = try Self.scan(options.directory)
        var ignored: [String] = []
        var leftOut: [API.Item] = []
        var files: [LocalFile] = []
        for (path, absolutePath, size) in scan {
            switch DatasetLayout.place(path) {
            case .ignored: ignored.append(path)
            case .refused(let reason): leftOut.append(.init(path: path, reason: reason))
            case .placed(let placement): files.append(LocalFile(path: path, absolutePath: absolutePath, size: size, placement: placement))
            }
        }
        if files.isEmpty {
            throw PushError(
                "\(options.directory) has no images or captions to upload"
                    + (leftOut.isEmpty ? "." : ": " + leftOut.prefix(5).map { "'\($0.path)' \($0.reason)" }.joined(separator: "; ")))
        }
        // Two files landing on the same key, or a file too large: ambiguous, so nothing is sent.
        if case .rejected(let rejections) = UploadPlan.plan(files.map { UploadPlan.File(path: $0.path, size: $0.size) }) {
            throw PushError("Nothing was uploaded; fix these first:\n" + rejections.map { "  \($0.path): \($0.reason)" }.joined(separator: "\n"))
        }

        var created = false
        var dataset: API.Dataset
        if let existing = try await api.datasets().first(where: { $0.name == options.name }) {
            dataset = try await api.dataset(existing.id)
        } else {
            dataset = try await api.createDataset(name: options.name)
            created = true
        }
        if let job = dataset.lockedByJobId {
            throw PushError("Dataset '\(options.name)' is in use by job \(job.uuidString.lowercased()) and cannot change until it ends; push to a new name instead.")
        }

        files = try await Self.hash(files, concurrency: ProcessInfo.processInfo.activeProcessorCount)
        let remote = Dictionary((dataset.files ?? []).map { ($0.key, $0) }, uniquingKeysWith: { first, _ in first })
        let changed = files.filter { file in
            guard let recorded = remote[file.placement.relativeKey] else { return true }
            return recorded.bytes != file.size || recorded.sha256 != file.sha256
        }

        let counter = NIOLockedValueBox(Progress(filesDone: 0, filesTotal: changed.count, bytesDone: 0, bytesTotal: changed.reduce(0) { $0 + $1.size }))
        progress(counter.withLockedValue { $0 })
        let queue = UploadQueue(api: api, datasetID: dataset.id, files: changed, batchSize: options.batchSize)
        do {
            try await uploadAll(queue: queue, concurrency: options.concurrency, count: changed.count, counter: counter, progress: progress)
        } catch {
            // Interrupted (Ctrl-C, a lost server): record what did arrive, so the next run skips
            // it. In a task of its own, since this one may be cancelled.
            await Task { await queue.flush() }.value
            // A dataset this run made and nothing reached (a quota, a size limit) is not left behind empty.
            if created, counter.withLockedValue({ $0.filesDone }) == 0, let now = try? await api.dataset(dataset.id), now.fileCount == 0 {
                try? await Task { try await api.deleteDataset(dataset.id) }.value
            }
            throw error
        }
        await queue.flush()

        let final = try await api.dataset(dataset.id)
        let failures = await queue.failures
        let uploaded = changed.count - failures.count
        let uploadedBytes = counter.withLockedValue { $0.bytesDone }
        return Result(
            dataset: final, created: created, uploadedFiles: uploaded, uploadedBytes: uploadedBytes,
            unchangedFiles: files.count - changed.count, ignored: ignored, leftOut: leftOut, failures: failures
        )
    }

    private func uploadAll(
        queue: UploadQueue, concurrency: Int, count: Int, counter: NIOLockedValueBox<Progress>, progress: @escaping @Sendable (Progress) -> Void
    ) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<min(concurrency, max(count, 1)) {
                group.addTask {
                    // A failed or cancelled sibling stops every worker before its next file.
                    while !Task.isCancelled, let (file, signedUpload) = try await queue.next() {
                        // Bytes of this file counted so far; a retry starts again from 0.
                        let sent = NIOLockedValueBox<Int64>(0)
                        let succeeded = try await self.upload(file, signedUpload, queue: queue) { bytes in
                            let delta = sent.withLockedValue { previous in
                                defer { previous = bytes }
                                return bytes - previous
                            }
                            progress(
                                counter.withLockedValue {
                                    $0.bytesDone += delta
                                    return $0
                                })
                        }
                        let done = counter.withLockedValue { value -> Progress in
                            value.filesDone += 1
                            if !succeeded { value.bytesDone -= sent.withLockedValue { $0 } }
                            return value
                        }
                        progress(done)
                        await queue.finished(file, succeeded: succeeded)
                        try afterEachFile(done.filesDone)
                    }
                }
            }
            // The first error ends the group at once (leaving it cancels the other workers).
            while try await group.next() != nil {}
        }
    }

    /// One file's PUT, retried on throttling, server errors and dropped connections, and signed
    /// anew once if its URL expired. Returns whether it arrived; throws only when cancelled.
    private func upload(_ file: LocalFile, _ signed: API.SignedUploads.Upload, queue: UploadQueue, sent: @escaping @Sendable (Int64) -> Void) async throws -> Bool {
        var signed = signed
        var resigned = false
        while true {
            do {
                let request = PresignedRequest(method: signed.method, url: signed.url, headers: signed.headers)
                try await Self.uploadRetries.run(retryable: S3Client.isRetryable, retryAfter: { ($0 as? S3Error)?.retryAfter }) {
                    sent(0)  // a retry counts this file's bytes from 0 again
                    try await PresignedTransfer.put(file: file.absolutePath, to: request, http: http, progress: sent)
                }
                return true
            } catch let error as S3Error where error.status == 403 && !resigned {
                // A URL signed before a long stall may have expired: sign this one file again.
                resigned = true
                do { signed = try await queue.resign(file) } catch {
                    await queue.record(failure: file, reason: "could not be signed again: \(error)")
                    return false
                }
            } catch {
                try Task.checkCancellation()
                await queue.record(failure: file, reason: "upload failed: \(error)")
                return false
            }
        }
    }

    // MARK: Local files

    /// Regular files below `directory` (symbolic links followed), as relative `/` paths.
    static func scan(_ directory: String) throws -> [(String, String, Int64)] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw PushError("\(directory) is not a folder; give the folder that holds the dataset's images.")
        }
        let root = URL(fileURLWithPath: directory).standardizedFileURL.resolvingSymlinksInPath()
        let keys: [URLResourceKey] = [.isRegularFileKey, .fileSizeKey]
        guard let walker = FileManager.default.enumerator(at: root, includingPropertiesForKeys: keys) else {
            throw PushError("\(directory) cannot be read.")
        }
        var found: [(String, String, Int64)] = []
        let rootPath = root.path.hasSuffix("/") ? root.path : root.path + "/"
        for case let url as URL in walker {
            let resolved = url.resolvingSymlinksInPath()
            guard let values = try? resolved.resourceValues(forKeys: Set(keys)), values.isRegularFile == true else { continue }
            let absolute = url.standardizedFileURL.path
            guard absolute.hasPrefix(rootPath) else { continue }
            found.append((String(absolute.dropFirst(rootPath.count)), resolved.path, Int64(values.fileSize ?? 0)))
        }
        return found.sorted { $0.0 < $1.0 }
    }

    static func hash(_ files: [LocalFile], concurrency: Int) async throws -> [LocalFile] {
        try await files.concurrentMap(limit: concurrency) { file in
            var hashed = file
            hashed.sha256 = try await FileDigest.sha256(ofFile: file.absolutePath)
            return hashed
        }
    }
}

/// Hands out signed uploads to the workers, signing the next batch only when it is needed (URLs
/// stay fresh), and records finished files with the server in groups.
actor UploadQueue {
    let api: ServerAPI
    let datasetID: UUID
    let batchSize: Int
    private var unsigned: ArraySlice<DatasetPush.LocalFile>
    private var signed: [(DatasetPush.LocalFile, API.SignedUploads.Upload)] = []
    private var signing: Task<[(DatasetPush.LocalFile, API.SignedUploads.Upload)], any Error>?
    private var finishedPaths: [String] = []
    private var flushing: Task<Void, Never>?
    private var lastFlush = ContinuousClock.now
    private(set) var failures: [API.Item] = []

    init(api: ServerAPI, datasetID: UUID, files: [DatasetPush.LocalFile], batchSize: Int) {
        self.api = api
        self.datasetID = datasetID
        self.batchSize = batchSize
        unsigned = files[...]
    }

    func next() async throws -> (DatasetPush.LocalFile, API.SignedUploads.Upload)? {
        while signed.isEmpty {
            if let signing {
                // Every waiting worker awaits the same request; the first back takes its result.
                // A cancelled push cancels the request too.
                let batch = try await withTaskCancellationHandler {
                    try await signing.value
                } onCancel: {
                    signing.cancel()
                }
                if self.signing == signing {
                    self.signing = nil
                    signed += batch
                }
                continue
            }
            guard !unsigned.isEmpty else { return nil }
            let batch = Array(unsigned.prefix(batchSize))
            unsigned = unsigned.dropFirst(batch.count)
            let api = api
            let datasetID = datasetID
            signing = Task { try await Self.sign(batch, api: api, datasetID: datasetID) }
        }
        return signed.removeFirst()
    }

    func resign(_ file: DatasetPush.LocalFile) async throws -> API.SignedUploads.Upload {
        guard let upload = try await Self.sign([file], api: api, datasetID: datasetID).first?.1 else {
            throw PushError("the server did not sign \(file.path)")
        }
        return upload
    }

    static func sign(_ files: [DatasetPush.LocalFile], api: ServerAPI, datasetID: UUID) async throws -> [(DatasetPush.LocalFile, API.SignedUploads.Upload)] {
        let requests = files.map { API.UploadRequest.File(path: $0.path, size: $0.size, contentType: UploadPlan.contentType($0.placement), sha256: $0.sha256) }
        let response = try await api.signUploads(datasetID, files: requests)
        let byPath = Dictionary(response.uploads.map { ($0.path, $0) }, uniquingKeysWith: { first, _ in first })
        return files.compactMap { file in byPath[file.path].map { (file, $0) } }
    }

    /// Records finished files with the server in the background, every `batchSize` files or
    /// 2 seconds, so the workers never wait for it.
    func finished(_ file: DatasetPush.LocalFile, succeeded: Bool) {
        guard succeeded else { return }
        finishedPaths.append(file.path)
        if finishedPaths.count >= batchSize || ContinuousClock.now - lastFlush >= .seconds(2) { startFlush() }
    }

    func record(failure file: DatasetPush.LocalFile, reason: String) {
        failures.append(.init(path: file.path, reason: reason))
    }

    /// Records everything finished so far and waits until the server has it all.
    func flush() async {
        startFlush()
        await flushing?.value
    }

    /// One completion at a time, in order; not cancelled with the push, so what arrived is
    /// recorded even when the push is interrupted.
    private func startFlush() {
        guard !finishedPaths.isEmpty else { return }
        let paths = finishedPaths
        finishedPaths = []
        lastFlush = .now
        let previous = flushing
        flushing = Task {
            await previous?.value
            await complete(paths)
        }
    }

    private func complete(_ paths: [String]) async {
        do {
            failures += try await api.completeUploads(datasetID, paths: paths).failures ?? []
        } catch {
            failures += paths.map { .init(path: $0, reason: "arrived but could not be recorded (\(error)); push again") }
        }
    }
}

public struct PushError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
