import Crypto
import Fluent
import Foundation
import NIOCore
import ObjectStorage
import SQLKit
import TrainerCore

/// Datasets and their files: signing uploads, checking completed ones against the bucket,
/// validation, captions and deletion. The rules themselves live in TrainerCore.
struct DatasetService: Sendable {
    let bucket: Bucket
    let limits: DatasetValidation.Limits
    let now: @Sendable () -> Date
    /// `GOMODEL_STORAGE_QUOTA`: what one user may hold, datasets and job outputs together.
    var storageQuota: Int64?

    /// How long presigned upload URLs stay valid.
    static let uploadWindow: TimeInterval = 900
    static let maximumCaptionLength = 4000

    /// What the dataset rules refuse; `description` says what to do (HTTPMapping gives each its status).
    enum Failure: Error, Equatable, CustomStringConvertible {
        case notFound
        case nameTaken(String)
        case invalidName
        case captionTooLong(Int)
        case noSuchSample(String)
        case noSuchImage(stem: String, role: String)
        case inUse(byJob: UUID)
        case tooManyFiles(Int, String)
        case noFiles(String)
        case invalidPaths([UploadPlan.Rejection])
        case tooLarge(bytes: Int64, limit: Int64)
        case importing(fileName: String)
        case quotaExceeded(used: Int64, adding: Int64, quota: Int64)

        var description: String {
            switch self {
            case .notFound: "No dataset with this id; GET /api/datasets lists yours."
            case .nameTaken(let name): "You already have a dataset named '\(name)'; pick another name or use that one."
            case .invalidName: "A dataset name has 1 to \(VisibleName.maximumLength) characters and no invisible ones (control, bidirectional or zero-width characters)."
            case .captionTooLong(let length): "A caption has at most \(DatasetService.maximumCaptionLength) characters; this one has \(length)."
            case .noSuchSample(let stem): "The dataset has no sample '\(stem)'; GET /api/datasets/{id} lists its files."
            case .noSuchImage(let stem, let role): "The dataset has no \(role) image for sample '\(stem)'; GET /api/datasets/{id} lists its files."
            case .inUse(let job):
                "Job \(job.uuidString.lowercased()) is queued or training on this dataset; it cannot change until that job ends. Cancel the job, or make a new dataset."
            case .tooManyFiles(let count, let what): "\(count) \(what) in one request; at most \(UploadPlan.maximumFilesPerBatch) are allowed. Send the rest in further requests."
            case .noFiles(let what): "The request lists no \(what)."
            case .invalidPaths(let rejections):
                "\(rejections.count) of the files cannot be uploaded, nothing was signed: " + DatasetService.list(rejections.map { "'\($0.path)' \($0.reason)" })
            case .importing(let fileName): "'\(fileName)' is being unpacked into this dataset; delete it when the import has ended."
            case .tooLarge(let bytes, let limit):
                "With these files the dataset would hold \(bytes) bytes (counting uploads still under way); at most \(limit) are allowed. Compress the images or leave some samples out."
            case .quotaExceeded(let used, let adding, let quota):
                "Your datasets and job outputs hold \(used) bytes; these \(adding) more would pass your storage quota of \(quota) bytes (GOMODEL_STORAGE_QUOTA). Delete datasets you no longer need or ended jobs (DELETE /api/jobs/{id}, `gomodel jobs rm`), or ask the operator for more."
            }
        }
    }

    // MARK: Datasets

    func create(userID: UUID, name: String, defaultCaption: String?, on db: any Database) async throws -> Dataset {
        let name = try Self.checkedName(name)
        let caption = try Self.checkedCaption(defaultCaption)
        if try await Dataset.query(on: db).filter(\.$user.$id == userID).filter(\.$name == name).first() != nil {
            throw Failure.nameTaken(name)
        }
        let dataset = Dataset(userID: userID, name: name, defaultCaption: caption.flatMap { $0.isEmpty ? nil : $0 }, now: now())
        try await dataset.create(on: db)
        return dataset
    }

    /// The user's dataset; someone else's answers exactly like a missing one.
    func find(_ id: UUID?, userID: UUID, on db: any Database) async throws -> Dataset {
        guard let dataset = try await lookup(id, userID: userID, on: db) else { throw Failure.notFound }
        return dataset
    }

    /// The user's dataset, or nil (for pages that show a job whose dataset may be gone).
    func lookup(_ id: UUID?, userID: UUID, on db: any Database) async throws -> Dataset? {
        guard let id else { return nil }
        return try await Dataset.query(on: db).filter(\.$id == id).filter(\.$user.$id == userID).first()
    }

    func update(_ dataset: Dataset, name: String?, defaultCaption: String??, on db: any Database) async throws {
        if let name {
            let name = try Self.checkedName(name)
            if name != dataset.name, try await Dataset.query(on: db).filter(\.$user.$id == dataset.$user.id).filter(\.$name == name).first() != nil {
                throw Failure.nameTaken(name)
            }
            dataset.name = name
        }
        if let defaultCaption {
            // The default caption is part of what a job trains on.
            try Self.checkUnlocked(dataset)
            dataset.defaultCaption = try Self.checkedCaption(defaultCaption).flatMap { $0.isEmpty ? nil : $0 }
        }
        dataset.updatedAt = now()
        try await dataset.save(on: db)
        if defaultCaption != nil { _ = try await refresh(dataset, on: db) }
    }

    /// Removes the dataset's objects first, then its rows: a failure halfway leaves a dataset that
    /// can be deleted again, never rows pointing at nothing or objects nobody can reach.
    func delete(_ dataset: Dataset, on db: any Database) async throws {
        try Self.checkUnlocked(dataset)
        // Its files would land in a deleted dataset's prefix, for nobody.
        if let unpacking = try await DatasetImporter.unpacking(into: dataset.id!, now: now(), on: db) { throw Failure.importing(fileName: unpacking.fileName) }
        try await bucket.deleteAll(prefix: dataset.prefix)
        try await bucket.deleteAll(prefix: DatasetImport.prefix(of: dataset))
        try await db.transaction { db in
            try await DatasetFile.query(on: db).filter(\.$dataset.$id == dataset.id!).delete()
            try await DatasetImport.query(on: db).filter(\.$dataset.$id == dataset.id!).delete()
            try await CaptionDraft.query(on: db).filter(\.$dataset.$id == dataset.id!).delete()
            try await DraftRun.query(on: db).filter(\.$dataset.$id == dataset.id!).delete()
            try await dataset.delete(on: db)
        }
    }

    // MARK: Quota

    /// What `userID` holds (everyone, without one): their datasets' files and their jobs' outputs.
    func usage(of userID: UUID?, on db: any Database) async throws -> (datasets: Int64, outputs: Int64) {
        struct Sums: Decodable {
            let datasets: Int64
            let outputs: Int64
        }
        let theirDatasets: SQLQueryString = userID.map { "WHERE user_id = \(bind: $0)" } ?? ""
        let theirJobs: SQLQueryString = userID.map { "AND user_id = \(bind: $0)" } ?? ""
        // Cast: PostgreSQL answers NUMERIC for a sum of bigints.
        let sums = try await db.sql().raw(
            """
            SELECT CAST((SELECT COALESCE(SUM(total_bytes), 0) FROM datasets \(theirDatasets)) AS BIGINT) AS datasets,
            CAST((SELECT COALESCE(SUM(output_bytes), 0) FROM jobs WHERE outputs_deleted_at IS NULL \(theirJobs)) AS BIGINT) AS outputs
            """
        ).first(decoding: Sums.self)
        return (sums?.datasets ?? 0, sums?.outputs ?? 0)
    }

    /// What the owner of `dataset` holds elsewhere: their other datasets, with uploads signed
    /// and not yet completed and zips not yet unpacked there (they may still arrive), and their
    /// jobs' outputs.
    private func heldBesides(_ dataset: Dataset, on db: any Database) async throws -> Int64 {
        let usage = try await usage(of: dataset.$user.id, on: db)
        struct Pending: Decodable { let pending: Int64 }
        let recent = now().addingTimeInterval(-Self.uploadWindow)
        let waiting = [DatasetImport.State.awaitingUpload.rawValue, DatasetImport.State.unpacking.rawValue]
        let pending =
            try await db.sql().raw(
                """
                SELECT CAST(
                  (SELECT COALESCE(SUM(f.pending_bytes), 0) FROM dataset_files f JOIN datasets d ON d.id = f.dataset_id
                   WHERE d.user_id = \(bind: dataset.$user.id) AND d.id <> \(bind: dataset.id!) AND f.uploaded_at IS NULL AND f.signed_at > \(bind: recent))
                  + (SELECT COALESCE(SUM(i.size), 0) FROM dataset_imports i JOIN datasets d ON d.id = i.dataset_id
                   WHERE d.user_id = \(bind: dataset.$user.id) AND d.id <> \(bind: dataset.id!) AND i.state IN (\(binds: waiting)))
                AS BIGINT) AS pending
                """
            ).first(decoding: Pending.self)?.pending ?? 0
        return usage.datasets - dataset.totalBytes + usage.outputs + pending
    }

    /// Refuses to let `dataset` hold `newTotal` bytes (its pending uploads counted) if that takes
    /// its owner past the storage quota.
    func checkQuota(_ dataset: Dataset, newTotal: Int64, on db: any Database) async throws {
        guard let quota = storageQuota, newTotal > dataset.totalBytes else { return }
        let besides = try await heldBesides(dataset, on: db)
        if besides + newTotal > quota { throw Failure.quotaExceeded(used: besides + dataset.totalBytes, adding: newTotal - dataset.totalBytes, quota: quota) }
    }

    /// How many more bytes `dataset` may take within its owner's quota (`Int64.max` without one).
    func quotaRoom(_ dataset: Dataset, on db: any Database) async throws -> Int64 {
        guard let quota = storageQuota else { return .max }
        return quota - (try await heldBesides(dataset, on: db)) - dataset.totalBytes
    }

    // MARK: Uploads

    struct SignedUpload {
        let path: String
        let key: String
        let request: PresignedRequest
    }

    func signUploads(_ dataset: Dataset, files: [UploadPlan.File], origin: URL, on db: any Database) async throws -> (uploads: [SignedUpload], skipped: [String]) {
        try Self.checkUnlocked(dataset)
        try Self.checkBatchSize(files.count, what: "files")
        let uploads: [UploadPlan.Upload]
        let skipped: [String]
        switch UploadPlan.plan(files) {
        case .rejected(let rejections):
            throw Failure.invalidPaths(rejections)
        case .planned(let planned, let ignored):
            uploads = planned
            skipped = ignored
        }

        guard !uploads.isEmpty else { return ([], skipped) }
        // Refuse early what would exceed the size limit, before anyone spends time uploading.
        // Uploads signed in the last 15 minutes and not completed count too: otherwise batch after
        // batch could be signed and never completed, filling the bucket without limit.
        let keys = uploads.map(\.placement.relativeKey)
        let sql = try db.sql()
        let time = now()
        // (No plain SQL SUM: PostgreSQL answers NUMERIC for a sum of bigints.)
        let replacedBytes = try await DatasetFile.query(on: db).filter(\.$dataset.$id == dataset.id!).filter(\.$key ~~ keys)
            .all(\.$bytes).reduce(Int64(0)) { $0 + ($1 ?? 0) }
        struct Pending: Decodable { let pending: Int64 }
        let pending =
            try await sql.raw(
                """
                SELECT CAST(COALESCE(SUM(pending_bytes), 0) AS BIGINT) AS pending FROM dataset_files
                WHERE dataset_id = \(bind: dataset.id!) AND uploaded_at IS NULL AND signed_at > \(bind: time.addingTimeInterval(-Self.uploadWindow))
                AND key NOT IN (\(binds: keys))
                """
            ).first(decoding: Pending.self)?.pending ?? 0
        let total = uploads.reduce(dataset.totalBytes - replacedBytes + pending) { $0 + $1.size }
        if total > limits.maximumBytes {
            throw Failure.tooLarge(bytes: total, limit: limits.maximumBytes)
        }
        try await checkQuota(dataset, newTotal: total, on: db)

        // One statement for the whole batch: a pending row per file, new or existing.
        let insert = sql.insert(into: DatasetFile.schema)
            .columns("id", "dataset_id", "key", "role", "stem", "file_extension", "pending_bytes", "pending_sha256", "signed_at")
        for upload in uploads {
            let placement = upload.placement
            let sha256: String? = upload.sha256.map { SigV4Signer.hex($0) }
            insert.values(
                [UUID(), dataset.id!, placement.relativeKey, placement.role.name, placement.stem, placement.fileExtension, upload.size, sha256, time] as [any Encodable & Sendable])
        }
        try await insert.onConflict(with: ["dataset_id", "key"]) {
            $0.set(excludedValueOf: "pending_bytes").set(excludedValueOf: "pending_sha256").set(excludedValueOf: "signed_at")
        }.run()
        let signed = uploads.map { upload in
            let key = dataset.prefix + upload.placement.relativeKey
            return SignedUpload(
                path: upload.path, key: key,
                request: bucket.presignedPut(
                    key: key, contentType: upload.contentType, contentLength: upload.size, sha256: upload.sha256, origin: origin, expires: Int(Self.uploadWindow))
            )
        }
        return (signed, skipped)
    }

    /// A completed path that was not recorded, and why.
    struct PathFailure: Sendable {
        let path: String
        let reason: String
    }

    /// What the bucket holds for one completed path.
    private enum Checked: Sendable {
        case stored(bytes: Int64, sha256: String?, probe: ImageProbe.Result?, caption: String?)
        case failed(String)
    }

    /// Checks each path's object in the bucket (it exists, has the signed size and content) and
    /// records it. Completing a path again is harmless. Paths that fail are reported, the others
    /// are recorded regardless.
    func complete(_ dataset: Dataset, paths: [String], on db: any Database) async throws -> (failures: [PathFailure], report: DatasetValidation.Report) {
        try Self.checkUnlocked(dataset)
        try Self.checkBatchSize(paths.count, what: "paths")
        var failures: [PathFailure] = []
        var keyOfPath: [(path: String, key: String, stem: String)] = []
        for path in paths {
            switch DatasetLayout.place(path) {
            case .placed(let placement): keyOfPath.append((path, placement.relativeKey, placement.stem))
            case .ignored: continue
            case .refused(let reason): failures.append(PathFailure(path: path, reason: reason))
            }
        }
        // The rows of these keys, and of other files of the same stems (which an upload may replace).
        let stems = Array(Set(keyOfPath.map(\.stem)))
        let rows = try await DatasetFile.query(on: db).filter(\.$dataset.$id == dataset.id!).filter(\.$stem ~~ stems).all()
        let rowOfKey = Dictionary(rows.map { ($0.key, $0) }, uniquingKeysWith: { first, _ in first })

        struct Expectation: Sendable {
            let path: String
            let key: String
            let role: String
            let bytes: Int64?
            let sha256: String?
        }
        var expectations: [Expectation] = []
        for (path, key, _) in keyOfPath {
            guard let row = rowOfKey[key] else {
                failures.append(PathFailure(path: path, reason: "was never signed for upload; ask for its URL first (POST /api/datasets/{id}/uploads)."))
                continue
            }
            expectations.append(Expectation(path: path, key: key, role: row.role, bytes: row.pendingBytes, sha256: row.pendingSHA256))
        }

        let prefix = dataset.prefix
        let checked = try await expectations.concurrentMap(limit: 16) { expectation in
            try await check(key: prefix + expectation.key, role: expectation.role, bytes: expectation.bytes, sha256: expectation.sha256)
        }

        let time = now()
        var stored: [DatasetFile] = []
        for (expectation, result) in zip(expectations, checked) {
            guard let row = rowOfKey[expectation.key] else { continue }
            switch result {
            case .failed(let reason):
                failures.append(PathFailure(path: expectation.path, reason: reason))
            case .stored(let bytes, let sha256, let probe, let caption):
                row.bytes = bytes
                row.sha256 = sha256
                row.uploadedAt = time
                row.pendingBytes = nil
                row.pendingSHA256 = nil
                row.caption = caption
                (row.format, row.width, row.height) =
                    switch probe {
                    case .image(let format, let width, let height)?: (format.rawValue, width, height)
                    case .needsMoreBytes(let format)?: (format.rawValue, nil, nil)
                    case .notAnImage?, nil: (nil, nil, nil)
                    }
                stored.append(row)
            }
        }
        // `cat.jpg` uploaded over an earlier `cat.png` of the same role replaces it.
        let replaced = rows.filter { old in
            old.uploadedAt != nil && !stored.contains { $0 === old } && stored.contains { $0.role == old.role && $0.stem == old.stem && $0.key != old.key }
        }
        try await db.transaction { [stored] db in
            for row in stored { try await row.save(on: db) }
            for row in replaced { try await row.delete(on: db) }
            // An uploaded caption supersedes a draft, as a typed one does.
            let captioned = stored.filter { $0.role == "caption" }.map(\.stem)
            if !captioned.isEmpty { try await CaptionDraft.query(on: db).filter(\.$dataset.$id == dataset.id!).filter(\.$stem ~~ captioned).delete() }
        }
        for row in replaced { try? await bucket.delete(key: prefix + row.key) }
        return (failures, try await refresh(dataset, on: db))
    }

    private func check(key: String, role: String, bytes: Int64?, sha256: String?) async throws -> Checked {
        let headerBytes = role == "caption" ? 64 << 10 : ImageProbe.headerBytes
        guard var (info, head) = try await bucket.fetchPrefix(key: key, count: headerBytes) else {
            return .failed("is not in the bucket: its upload did not finish. Upload it again.")
        }
        if let bytes, info.size != bytes {
            return .failed("is \(info.size) bytes in the bucket but was signed as \(bytes); upload it again.")
        }
        if let sha256, info.metadata["sha256"]?.lowercased() != sha256 {
            return .failed("in the bucket is not the file that was signed (its SHA-256 differs); upload it again.")
        }
        let recordedSHA256 = sha256 ?? info.metadata["sha256"]?.lowercased()
        if role == "caption" {
            let text = String(decoding: head, as: UTF8.self)
            return .stored(bytes: info.size, sha256: recordedSHA256, probe: nil, caption: text.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        var probe = ImageProbe.inspect(head)
        if case .needsMoreBytes = probe, info.size > Int64(head.count), let more = try await bucket.fetchPrefix(key: key, count: 1 << 20) {
            // JPEGs with large metadata put their frame header further in.
            (info, head) = more
            probe = ImageProbe.inspect(head)
        }
        return .stored(bytes: info.size, sha256: recordedSHA256, probe: probe, caption: nil)
    }

    // MARK: Captions

    /// Sets a sample's caption (`target/{stem}.txt`); an empty caption removes it, so the
    /// dataset's default caption applies.
    func setCaption(_ dataset: Dataset, stem: String, caption: String, on db: any Database) async throws -> DatasetValidation.Report {
        try Self.checkUnlocked(dataset)
        let text = try Self.checkedCaption(caption) ?? ""
        guard
            try await DatasetFile.query(on: db).filter(\.$dataset.$id == dataset.id!)
                .filter(\.$role == "target").filter(\.$stem == stem).filter(\.$uploadedAt != nil).first() != nil
        else { throw Failure.noSuchSample(stem) }
        let placement = DatasetLayout.Placement(role: .caption, stem: stem, fileExtension: "txt")
        let existing = try await DatasetFile.query(on: db).filter(\.$dataset.$id == dataset.id!).filter(\.$key == placement.relativeKey).first()
        if text.isEmpty {
            try await bucket.delete(key: dataset.prefix + placement.relativeKey)
            try await existing?.delete(on: db)
        } else {
            let bytes = ByteBuffer(string: text)
            try await bucket.put(key: dataset.prefix + placement.relativeKey, bytes: bytes, contentType: UploadPlan.contentType(placement))
            let row = existing ?? DatasetFile(datasetID: dataset.id!, placement: placement)
            row.bytes = Int64(bytes.readableBytes)
            row.sha256 = SigV4Signer.hex(Array(SHA256.hash(data: Data(text.utf8))))
            row.caption = text
            row.uploadedAt = now()
            row.pendingBytes = nil
            row.pendingSHA256 = nil
            try await row.save(on: db)
        }
        // A typed caption supersedes a draft, as an accepted one does (once it is saved).
        try await CaptionDraft.query(on: db).filter(\.$dataset.$id == dataset.id!).filter(\.$stem == stem).delete()
        return try await refresh(dataset, on: db)
    }

    /// Removes a sample: every file of `stem` (its controls, target and caption, uploaded or
    /// pending), objects first, then rows, as `delete` does for a whole dataset.
    func deleteSample(_ dataset: Dataset, stem: String, on db: any Database) async throws -> DatasetValidation.Report {
        try Self.checkUnlocked(dataset)
        let files = try await DatasetFile.query(on: db).filter(\.$dataset.$id == dataset.id!).filter(\.$stem == stem).all()
        guard !files.isEmpty else { throw Failure.noSuchSample(stem) }
        try await files.map { dataset.prefix + $0.key }.concurrentMap(limit: 8) { try await bucket.delete(key: $0) }
        try await DatasetFile.query(on: db).filter(\.$dataset.$id == dataset.id!).filter(\.$stem == stem).delete()
        try await CaptionDraft.query(on: db).filter(\.$dataset.$id == dataset.id!).filter(\.$stem == stem).delete()
        return try await refresh(dataset, on: db)
    }

    /// An uploaded image of a sample (`target`, `control_1`…), for its thumbnail.
    func image(of dataset: Dataset, stem: String, role: String, on db: any Database) async throws -> DatasetFile {
        guard role != "caption",
            let file = try await DatasetFile.query(on: db).filter(\.$dataset.$id == dataset.id!)
                .filter(\.$stem == stem).filter(\.$role == role).filter(\.$uploadedAt != nil).first()
        else { throw Failure.noSuchImage(stem: stem, role: role) }
        return file
    }

    // MARK: Validation

    /// The files that are part of the dataset (completed uploads), by key.
    func files(of dataset: Dataset, on db: any Database) async throws -> [DatasetFile] {
        try await DatasetFile.query(on: db).filter(\.$dataset.$id == dataset.id!).filter(\.$uploadedAt != nil).sort(\.$key).all()
    }

    /// `drafts`: the stems with a drafted instruction waiting for review (`draftStems`).
    func report(_ dataset: Dataset, files: [DatasetFile], drafts: Set<String>) -> DatasetValidation.Report {
        let inputs = files.compactMap { file in
            file.placement.map { DatasetValidation.File(placement: $0, bytes: file.bytes ?? 0, probe: file.probe) }
        }
        return DatasetValidation.validate(inputs, defaultCaption: dataset.defaultCaption, drafts: drafts, limits: limits)
    }

    /// The dataset's files and its validation as they are now.
    func currentReport(_ dataset: Dataset, on db: any Database) async throws -> (files: [DatasetFile], report: DatasetValidation.Report) {
        let files = try await files(of: dataset, on: db)
        return (files, report(dataset, files: files, drafts: try await draftStems(of: dataset, on: db)))
    }

    func draftStems(of dataset: Dataset, on db: any Database) async throws -> Set<String> {
        Set(try await CaptionDraft.query(on: db).filter(\.$dataset.$id == dataset.id!).all(\.$stem))
    }

    /// Validates and stores the summary the listing shows. Requests completing files of one
    /// dataset may run at once: after writing, a cheap fingerprint of the files (count and last
    /// change; every recorded or replaced file moves the latter) is read again, and if they changed meanwhile the summary is made again, so the
    /// last writer always leaves the true one.
    func refresh(_ dataset: Dataset, on db: any Database) async throws -> DatasetValidation.Report {
        // Bounded: under a steady stream of completions, each of them refreshes again anyway.
        var attempts = 0
        while true {
            attempts += 1
            // Another request may have changed the default caption meanwhile.
            if let current = try await Dataset.find(dataset.id, on: db) { dataset.defaultCaption = current.defaultCaption }
            let (files, report) = try await currentReport(dataset, on: db)
            dataset.fileCount = files.count
            dataset.sampleCount = report.samples
            dataset.totalBytes = report.totalBytes
            dataset.controlsPerSample = report.controlsPerSample
            dataset.errorCount = report.findings.count { $0.severity == .error }
            dataset.warningCount = report.findings.count { $0.severity == .warning }
            dataset.updatedAt = now()
            try await dataset.save(on: db)
            let seen = Fingerprint(count: files.count, lastChange: files.compactMap(\.uploadedAt).max())
            if attempts == 5 { return report }
            if try await fingerprint(of: dataset, on: db) == seen { return report }
        }
    }

    private struct Fingerprint: Equatable {
        let count: Int
        let lastChange: Date?
    }

    private func fingerprint(of dataset: Dataset, on db: any Database) async throws -> Fingerprint {
        let uploaded = DatasetFile.query(on: db).filter(\.$dataset.$id == dataset.id!).filter(\.$uploadedAt != nil)
        return Fingerprint(
            count: try await uploaded.copy().count(),
            lastChange: try await uploaded.copy().max(\.$uploadedAt)
        )
    }

    /// A dataset's stored files and the digest of their content (`RunRecord.digestText`): what
    /// its detail shows and a job's reproducibility record keeps.
    static func content(of files: [DatasetFile]) -> (files: [RunRecord.DatasetFile], sha256: String?) {
        let entries = files.compactMap { file in file.bytes.map { RunRecord.DatasetFile(path: file.key, bytes: $0, sha256: file.sha256) } }
            .sorted { $0.path < $1.path }
        return (entries, RunRecord.digestText(of: entries).map { SigV4Signer.hex(Array(SHA256.hash(data: Data($0.utf8)))) })
    }

    // MARK: Rules

    static func checkUnlocked(_ dataset: Dataset) throws {
        if let job = dataset.lockedByJobID {
            throw Failure.inUse(byJob: job)
        }
    }

    static func checkBatchSize(_ count: Int, what: String) throws {
        if count > UploadPlan.maximumFilesPerBatch {
            throw Failure.tooManyFiles(count, what)
        }
        if count == 0 { throw Failure.noFiles(what) }
    }

    static func checkedName(_ raw: String) throws -> String {
        guard let name = VisibleName.checked(raw) else {
            throw Failure.invalidName
        }
        return name
    }

    /// Counted as sent, in Unicode scalars (as the OpenAPI document's maxLength counts), kept trimmed.
    static func checkedCaption(_ raw: String?) throws -> String? {
        guard let raw else { return nil }
        guard raw.unicodeScalars.count <= maximumCaptionLength else {
            throw Failure.captionTooLong(raw.unicodeScalars.count)
        }
        return raw.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The first items of a list of problems, with a count of the rest.
    static func list(_ items: [String], limit: Int = 20) -> String {
        items.prefix(limit).joined(separator: "; ") + (items.count > limit ? "; and \(items.count - limit) more." : "")
    }
}
