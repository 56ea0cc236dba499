import Crypto
import Fluent
import Foundation
import NIOPosix
import ObjectStorage
import SQLKit
import TrainerCore
import ZIPFoundation

/// Zip imports: a zip goes to the bucket as one object through a presigned URL, then the server
/// unpacks it into the dataset's layout. Every entry is checked before anything is written to
/// the dataset (`ZipImport.plan` on the central directory, then each entry's real bytes, CRC and
/// image header on local disk), so a refused zip leaves the dataset as it was.
struct DatasetImporter: Sendable {
    let datasets: DatasetService
    /// Unpacking reads and inflates synchronously (ZIPFoundation): kept off the event loops.
    let threadPool: NIOThreadPool
    /// Where zips are unpacked: `{GOMODEL_DATA_DIR}/imports`, one folder per import, removed after.
    let workDirectory: String
    var limits = ZipImport.Limits()
    /// Unpackings at once on this server: each may need twice its zip's size on local disk.
    let slots = Slots(2)

    var bucket: Bucket { datasets.bucket }
    var now: @Sendable () -> Date { datasets.now }

    /// An import whose progress has not moved for this long was cut off (the server stopped)
    /// and may be unpacked again.
    static let staleAfter: TimeInterval = 300

    enum Failure: Error, Equatable, CustomStringConvertible {
        case notFound
        case notAZip(String)
        case invalidSize(Int64, limit: Int64)
        case alreadyStarted(DatasetImport.State)
        case notUploaded
        case sizeDiffers(uploaded: Int64, declared: Int64)

        var description: String {
            switch self {
            case .notFound: "No such import of this dataset; POST /api/datasets/{id}/imports starts one."
            case .notAZip(let name): "'\(name)' is not a .zip file name; import a .zip (a name of 1–100 characters, no invisible ones), or upload a folder."
            case .invalidSize(let size, let limit): "A zip of \(size) bytes cannot be imported; it must have 1 to \(limit) bytes (the dataset's size limit)."
            case .alreadyStarted(let state):
                state == .unpacking ? "The zip is being unpacked; follow GET …/imports/{importId}." : "This import has ended (\(state.rawValue)); start a new one to import again."
            case .notUploaded: "The zip is not in the bucket yet; PUT it to the import's upload URL first, then ask to unpack it."
            case .sizeDiffers(let uploaded, let declared): "The uploaded zip has \(uploaded) bytes but the import declared \(declared); start a new import with the right size."
            }
        }
    }

    // MARK: Requests

    func create(_ dataset: Dataset, fileName: String, size: Int64, origin: URL, on db: any Database) async throws -> (DatasetImport, PresignedRequest) {
        try DatasetService.checkUnlocked(dataset)
        // As sent (the schema's pattern and lengths judge the raw name): something, then `.zip`.
        guard fileName.unicodeScalars.count > 4, fileName.lowercased().hasSuffix(".zip"), let name = VisibleName.checked(fileName) else { throw Failure.notAZip(fileName) }
        guard size > 0, size <= datasets.limits.maximumBytes else { throw Failure.invalidSize(size, limit: datasets.limits.maximumBytes) }
        // The zip itself is held until it is unpacked; it unpacks to at least its size.
        try await datasets.checkQuota(dataset, newTotal: dataset.totalBytes + size, on: db)
        // Imports never unpacked, whose upload URL has expired, go (zip and row): nothing piles up.
        let expired = try await DatasetImport.query(on: db).filter(\.$dataset.$id == dataset.id!).filter(\.$state == .awaitingUpload)
            .filter(\.$createdAt < now().addingTimeInterval(-DatasetService.uploadWindow)).all()
        for old in expired {
            try await bucket.delete(key: old.objectKey)
            try await old.delete(on: db)
        }
        let record = DatasetImport(datasetID: dataset.id!, fileName: name, size: size, now: now())
        try await record.create(on: db)
        let upload = bucket.presignedPut(
            key: record.objectKey, contentType: "application/zip", contentLength: size, sha256: nil, origin: origin, expires: Int(DatasetService.uploadWindow))
        return (record, upload)
    }

    func find(_ id: UUID?, of dataset: Dataset, on db: any Database) async throws -> DatasetImport {
        guard let id, let record = try await DatasetImport.query(on: db).filter(\.$id == id).filter(\.$dataset.$id == dataset.id!).first() else {
            throw Failure.notFound
        }
        return record
    }

    /// Checks the upload, claims the import (one unpacking at a time, whoever asks twice) and
    /// unpacks it in the background.
    func startUnpacking(_ record: DatasetImport, of dataset: Dataset, on db: any Database) async throws {
        try DatasetService.checkUnlocked(dataset)
        let cutoff = now().addingTimeInterval(-Self.staleAfter)
        guard record.state == .awaitingUpload || (record.state == .unpacking && record.updatedAt < cutoff) else { throw Failure.alreadyStarted(record.state) }
        guard let info = try await bucket.head(key: record.objectKey) else { throw Failure.notUploaded }
        guard info.size == record.size else { throw Failure.sizeDiffers(uploaded: info.size, declared: record.size) }
        // One claim wins, however many requests ask at once.
        let time = now()
        let claimed = try await db.sql().raw(
            """
            UPDATE dataset_imports SET state = \(bind: DatasetImport.State.unpacking.rawValue), updated_at = \(bind: time)
            WHERE id = \(bind: record.id!) AND (state = \(bind: DatasetImport.State.awaitingUpload.rawValue)
                OR (state = \(bind: DatasetImport.State.unpacking.rawValue) AND updated_at < \(bind: cutoff)))
            RETURNING id
            """
        ).all()
        guard !claimed.isEmpty else { throw Failure.alreadyStarted(.unpacking) }
        record.state = .unpacking
        record.updatedAt = time
        // The unpacking works on its own copies: the request answers with `record` meanwhile.
        let importID = record.id!
        let datasetID = dataset.id!
        Task {
            guard let own = try? await DatasetImport.find(importID, on: db), let target = try? await Dataset.find(datasetID, on: db) else { return }
            await unpack(own, into: target, on: db)
        }
    }

    /// Whether an import is unpacking now (not one its server left when it stopped).
    static func isUnpacking(_ record: DatasetImport, now: Date) -> Bool {
        record.state == .unpacking && record.updatedAt >= now.addingTimeInterval(-staleAfter)
    }

    /// The dataset's import that is unpacking now, if any: its files are about to change.
    static func unpacking(into datasetID: UUID, now: Date, on db: any Database) async throws -> DatasetImport? {
        try await DatasetImport.query(on: db).filter(\.$dataset.$id == datasetID).filter(\.$state == .unpacking)
            .filter(\.$updatedAt >= now.addingTimeInterval(-staleAfter)).first()
    }

    // MARK: Unpacking

    /// One checked entry on local disk, ready to go into the bucket.
    private struct Unpacked: Sendable {
        let file: ZipImport.PlannedFile
        let path: String
        let bytes: Int64
        let sha256: String
        let probe: ImageProbe.Result?
        let caption: String?
    }

    /// Never throws: whatever happens ends the import `done` or `failed`, the zip is deleted from
    /// the bucket and the local folder removed.
    func unpack(_ record: DatasetImport, into dataset: Dataset, on db: any Database) async {
        let folder = workDirectory + "/" + record.id!.uuidString.lowercased()
        // Whatever an interrupted earlier unpacking counted starts again.
        (record.entriesTotal, record.entriesDone, record.bytesTotal, record.bytesWritten, record.placed, record.ignored) = (0, 0, 0, 0, 0, 0)
        // A heartbeat while a long download or upload reports nothing, so the import does not look
        // abandoned (and claimable) while it still runs.
        let importID = record.id!
        let heartbeat = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(60))
                _ = try? await db.sql().raw("UPDATE dataset_imports SET updated_at = \(bind: now()) WHERE id = \(bind: importID) AND state = 'unpacking'").run()
            }
        }
        defer { heartbeat.cancel() }
        await slots.acquire()
        do {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            let unpacked = try await checkedEntries(of: record, in: folder, dataset: dataset, on: db)
            try await write(unpacked, of: record, into: dataset, on: db)
            record.state = .done
        } catch let refusal as ZipImport.Refusal {
            record.state = .failed
            record.errorCode = refusal.code.rawValue
            record.errorMessage = refusal.message
        } catch {
            record.state = .failed
            record.errorCode = "storage"
            record.errorMessage = "The zip could not be written into the dataset (\(error)); what it added was removed. Start the import again."
        }
        record.updatedAt = now()
        try? await record.save(on: db)
        try? await bucket.delete(key: record.objectKey)
        try? FileManager.default.removeItem(atPath: folder)
        await slots.release()
    }

    /// Reads the zip's directory, applies the rules, and unpacks every planned entry to `folder`,
    /// checking its size, CRC and header. Nothing reaches the dataset here.
    private func checkedEntries(of record: DatasetImport, in folder: String, dataset: Dataset, on db: any Database) async throws -> [Unpacked] {
        let zipPath = folder + "/upload.zip"
        guard try await bucket.download(key: record.objectKey, to: zipPath) != nil else {
            throw ZipImport.Refusal(.unreadableZip, "The zip is no longer in the bucket; start a new import and upload it again.")
        }
        let archive: Archive
        do {
            archive = try Archive(url: URL(fileURLWithPath: zipPath), accessMode: .read)
        } catch {
            throw ZipImport.Refusal(
                .unreadableZip, "'\(record.fileName)' is not a readable zip (damaged or cut short: its directory is missing); zip the folder again and upload it again.")
        }
        let zip = OpenZip(archive: archive)
        var entries: [ZipImport.Entry] = []
        for entry in archive {
            // Counted while reading, so a directory of millions of entries is never held.
            guard entries.count < limits.maximumEntries else { throw ZipImport.tooManyEntries(limits) }
            let kind: ZipImport.Entry.Kind =
                switch entry.type {
                case .file: .file
                case .directory: .directory
                case .symlink: .symlink
                }
            entries.append(ZipImport.Entry(path: entry.path, kind: kind, compressedSize: entry.compressedSize, uncompressedSize: entry.uncompressedSize))
            zip.entries[entry.path] = entry
        }
        // Room: the dataset's limit less what it holds, counting back the files the zip replaces.
        let planned = try ZipImport.plan(entries, room: Int64.max, limits: limits).get()
        let keys = planned.files.map(\.placement.relativeKey)
        let replaced = try await DatasetFile.query(on: db).filter(\.$dataset.$id == dataset.id!).filter(\.$key ~~ keys).all(\.$bytes).reduce(Int64(0)) { $0 + ($1 ?? 0) }
        // The owner's storage quota bounds it too.
        let limitRoom = datasets.limits.maximumBytes - dataset.totalBytes
        let quotaRoom = try await datasets.quotaRoom(dataset, on: db)
        let plan = try ZipImport.plan(entries, room: min(limitRoom, quotaRoom) + replaced, roomIsQuota: quotaRoom < limitRoom, limits: limits).get()
        record.entriesTotal = plan.files.count
        record.ignored = plan.ignored
        record.updatedAt = now()
        try await record.save(on: db)

        var unpacked: [Unpacked] = []
        var lastSaved = now()
        for (index, file) in plan.files.enumerated() {
            let path = folder + "/\(index)"
            let (bytes, sha256, head) = try await threadPool.runIfActive { try Self.extract(file, from: zip, to: path) }
            var probe: ImageProbe.Result?
            var caption: String?
            if file.placement.role == .caption {
                guard let text = String(validating: head, as: UTF8.self), text.unicodeScalars.count <= DatasetService.maximumCaptionLength else {
                    throw ZipImport.Refusal(
                        .layout, "'\(file.entryPath)' is not a caption of UTF-8 text up to \(DatasetService.maximumCaptionLength) characters; fix it and zip again.")
                }
                caption = text.trimmingCharacters(in: .whitespacesAndNewlines)
            } else {
                probe = ImageProbe.inspect(head)
                if case .notAnImage? = probe { throw ZipImport.notAnImage(file) }
            }
            unpacked.append(Unpacked(file: file, path: path, bytes: bytes, sha256: sha256, probe: probe, caption: caption))
            record.entriesDone = index + 1
            record.bytesTotal += bytes
            if now().timeIntervalSince(lastSaved) >= 0.5 || index + 1 == plan.files.count {
                record.updatedAt = now()
                try await record.save(on: db)
                lastSaved = record.updatedAt
            }
        }
        return unpacked
    }

    /// Inflates one entry into a file, stopping at once when it runs past its declared size.
    /// Returns its size, SHA-256 and first bytes (enough for an image header or a caption).
    private static func extract(_ file: ZipImport.PlannedFile, from zip: OpenZip, to path: String) throws -> (Int64, String, [UInt8]) {
        let entry = zip.entries[file.entryPath]!
        guard FileManager.default.createFile(atPath: path, contents: nil), let output = FileHandle(forWritingAtPath: path) else {
            throw CocoaError(.fileWriteUnknown)
        }
        defer { try? output.close() }
        let headLength = file.placement.role == .caption ? DatasetService.maximumCaptionLength * 4 + 1 : ImageProbe.headerBytes
        var written: UInt64 = 0
        var hash = SHA256()
        var head: [UInt8] = []
        let checksum: CRC32
        do {
            checksum = try zip.archive.extract(entry, bufferSize: 1 << 16) { chunk in
                written += UInt64(chunk.count)
                if let refusal = ZipImport.checkUnpacked(written, of: file) { throw refusal }
                hash.update(data: chunk)
                if head.count < headLength { head += chunk.prefix(headLength - head.count) }
                try output.write(contentsOf: chunk)
            }
        } catch let refusal as ZipImport.Refusal {
            throw refusal
        } catch {
            throw ZipImport.Refusal(.unreadableZip, "'\(file.entryPath)' cannot be read from the zip (\(error)); the zip is damaged or cut short. Zip the folder again.")
        }
        // ZIPFoundation returns the CRC-32 of what it inflated; comparing is the caller's part.
        if checksum != entry.checksum {
            throw ZipImport.Refusal(.unreadableZip, "'\(file.entryPath)' is damaged in the zip (its checksum does not match); zip the folder again and upload it again.")
        }
        if written != file.bytes {
            throw ZipImport.Refusal(.unreadableZip, "'\(file.entryPath)' unpacks to \(written) bytes, not the \(file.bytes) the zip declares; the zip is damaged.")
        }
        return (Int64(written), SigV4Signer.hex(Array(hash.finalize())), head)
    }

    /// Uploads the checked files into the dataset and records them in one transaction. If an
    /// upload or the recording fails, the objects it created are deleted again (the ones that
    /// replaced an existing file are recorded: the bucket and the rows always agree).
    private func write(_ unpacked: [Unpacked], of record: DatasetImport, into dataset: Dataset, on db: any Database) async throws {
        guard let current = try await Dataset.find(dataset.id, on: db) else { throw DatasetService.Failure.notFound }
        try DatasetService.checkUnlocked(current)
        let keys = unpacked.map(\.file.placement.relativeKey)
        let stems = Array(Set(unpacked.map(\.file.placement.stem)))
        let existing = try await DatasetFile.query(on: db).filter(\.$dataset.$id == dataset.id!).filter(\.$stem ~~ stems).all()
        let rowOfKey = Dictionary(existing.map { ($0.key, $0) }, uniquingKeysWith: { first, _ in first })

        let uploaded = UploadedKeys()
        let importID = record.id!
        // `cat.jpg` in the zip replaces an earlier `cat.png` of the same role, as an upload does.
        let replaced = existing.filter { old in !keys.contains(old.key) && unpacked.contains { $0.file.placement.role.name == old.role && $0.file.placement.stem == old.stem } }
        do {
            try await unpacked.concurrentMap(limit: 8) { item in
                let placement = item.file.placement
                try await bucket.upload(file: item.path, key: dataset.prefix + placement.relativeKey, contentType: UploadPlan.contentType(placement))
                // Progress of this phase too, at most twice a second (one UPDATE, not the row).
                if let written = uploaded.add(placement.relativeKey, bytes: item.bytes, now: now()) {
                    try await db.sql().raw(
                        "UPDATE dataset_imports SET bytes_written = \(bind: written), updated_at = \(bind: now()) WHERE id = \(bind: importID)"
                    ).run()
                }
            }
            try await store(unpacked, rows: rowOfKey, in: dataset, replacing: replaced, on: db)
        } catch {
            let created = uploaded.keys.filter { rowOfKey[$0]?.uploadedAt == nil }
            _ = try? await created.concurrentMap(limit: 8) { try await bucket.delete(key: dataset.prefix + $0) }
            try? await store(
                unpacked.filter { uploaded.keys.contains($0.file.placement.relativeKey) && rowOfKey[$0.file.placement.relativeKey]?.uploadedAt != nil }, rows: rowOfKey,
                in: dataset, replacing: [], on: db)
            throw error
        }
        for row in replaced { try? await bucket.delete(key: dataset.prefix + row.key) }
        record.placed = unpacked.count
        record.bytesWritten = record.bytesTotal
        _ = try await datasets.refresh(dataset, on: db)
    }

    private func store(_ unpacked: [Unpacked], rows: [String: DatasetFile], in dataset: Dataset, replacing replaced: [DatasetFile], on db: any Database) async throws {
        let time = now()
        try await db.transaction { db in
            for item in unpacked {
                let row = rows[item.file.placement.relativeKey] ?? DatasetFile(datasetID: dataset.id!, placement: item.file.placement)
                row.bytes = item.bytes
                row.sha256 = item.sha256
                row.caption = item.caption
                row.uploadedAt = time
                row.signedAt = nil
                row.pendingBytes = nil
                row.pendingSHA256 = nil
                (row.format, row.width, row.height) =
                    switch item.probe {
                    case .image(let format, let width, let height)?: (format.rawValue, width, height)
                    case .needsMoreBytes(let format)?: (format.rawValue, nil, nil)
                    case .notAnImage?, nil: (nil, nil, nil)
                    }
                try await row.save(on: db)
            }
            for row in replaced { try await row.delete(on: db) }
            // A caption that comes with the zip supersedes a draft, as a typed one does.
            let captioned = unpacked.filter { $0.file.placement.role == .caption }.map(\.file.placement.stem)
            if !captioned.isEmpty {
                try await CaptionDraft.query(on: db).filter(\.$dataset.$id == dataset.id!).filter(\.$stem ~~ captioned).delete()
            }
        }
    }
}

/// An open zip and its entries by path. ZIPFoundation's types are not Sendable; an import's zip
/// is read by one entry's extraction at a time, each on the thread pool.
private final class OpenZip: @unchecked Sendable {
    let archive: Archive
    var entries: [String: Entry] = [:]

    init(archive: Archive) { self.archive = archive }
}

/// The keys uploaded so far, from concurrent uploads, and their bytes.
private final class UploadedKeys: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [String] = []
    private var bytes: Int64 = 0
    private var reported = Date.distantPast

    /// Returns the bytes written so far when it is time to report them (twice a second).
    func add(_ key: String, bytes added: Int64, now: Date) -> Int64? {
        lock.withLock {
            stored.append(key)
            bytes += added
            guard now.timeIntervalSince(reported) >= 0.5 else { return nil }
            reported = now
            return bytes
        }
    }

    var keys: [String] { lock.withLock { stored } }
}

/// A counting semaphore for async work: `acquire` waits while all slots are taken.
actor Slots {
    private var free: Int
    private var waiting: [CheckedContinuation<Void, Never>] = []

    init(_ count: Int) { free = count }

    func acquire() async {
        if free > 0 {
            free -= 1
            return
        }
        await withCheckedContinuation { waiting.append($0) }
    }

    func release() {
        if waiting.isEmpty {
            free += 1
        } else {
            waiting.removeFirst().resume()
        }
    }
}
