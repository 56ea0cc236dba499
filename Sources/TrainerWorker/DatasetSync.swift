import Foundation
import ObjectStorage
import TrainerCore

/// Makes a folder a copy of a bucket prefix: listed once, downloaded `concurrency` at a time and
/// streamed to disk (memory stays flat whatever the sizes), each download's size checked against
/// the listing. A file already there is kept only if its size and the object's ETag match what
/// the last sync recorded (`.gomodel-sync.json`): a caption edited to the same length is fetched
/// again. Files the prefix no longer has (a removed sample) are deleted: ai-toolkit trains every
/// image in a folder. When anything changed, ai-toolkit's caches (`_latent_cache`, `_t_e_cache`,
/// `.aitk_size.json`) are deleted too: it keys them by file name and by the control images' paths,
/// not by content, so a warm worker would train on the old pictures and captions.
public struct DatasetSync: Sendable {
    let bucket: S3Client
    var concurrency = 8
    static let manifestName = ".gomodel-sync.json"

    public init(bucket: S3Client, concurrency: Int = 8) {
        self.bucket = bucket
        self.concurrency = concurrency
    }

    public struct Summary: Sendable, Equatable {
        public var downloaded = 0
        public var skipped = 0
        public var removed = 0
        public var bytes: Int64 = 0
    }

    public func sync(prefix: String, into folder: String) async throws -> Summary {
        let objects = try await bucket.listAllObjects(prefix: prefix)
        guard !objects.isEmpty else { throw JobFailure("The dataset \(prefix) is empty in the bucket.") }
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let manifestPath = folder + "/" + Self.manifestName
        let recorded = (FileManager.default.contents(atPath: manifestPath)).flatMap { try? JSONDecoder().decode([String: String].self, from: $0) } ?? [:]
        let bucket = bucket
        let fetched = try await objects.concurrentMap(limit: concurrency) { object -> (relative: String, etag: String, bytes: Int64?)? in
            let relative = String(object.key.dropFirst(prefix.count))
            guard !relative.isEmpty, !relative.split(separator: "/").contains(where: { $0 == ".." || $0.hasPrefix(".") }) else { return nil }
            let path = folder + "/" + relative
            if recorded[relative] == object.etag, let size = FileManager.default.sizeOfFile(atPath: path), size == object.size {
                return (relative, object.etag, nil)
            }
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            let info = try await bucket.getObject(key: object.key, to: path)
            guard info.size == object.size else { throw JobFailure("\(object.key) changed while it was downloaded; retry the job.") }
            return (relative, object.etag, info.size)
        }.compactMap { $0 }

        var summary = Summary()
        for file in fetched {
            if let bytes = file.bytes {
                summary.downloaded += 1
                summary.bytes += bytes
            } else {
                summary.skipped += 1
            }
        }
        let wanted = Set(fetched.map(\.relative))
        if let walker = FileManager.default.enumerator(atPath: folder) {
            while let relative = walker.nextObject() as? String {
                let pieces = relative.split(separator: "/")
                if pieces.contains(where: { $0.hasPrefix("_") || $0.hasPrefix(".") }) { continue }
                var isFolder: ObjCBool = false
                guard FileManager.default.fileExists(atPath: folder + "/" + relative, isDirectory: &isFolder), !isFolder.boolValue, !wanted.contains(relative) else { continue }
                try FileManager.default.removeItem(atPath: folder + "/" + relative)
                summary.removed += 1
            }
        }
        if summary.downloaded > 0 || summary.removed > 0 { try Self.removeTrainerCaches(in: folder) }
        let manifest = Dictionary(fetched.map { ($0.relative, $0.etag) }, uniquingKeysWith: { _, last in last })
        try JSONEncoder().encode(manifest).write(to: URL(fileURLWithPath: manifestPath), options: .atomic)
        return summary
    }

    /// ai-toolkit's caches in the dataset's folders: `_…` folders and `.aitk_size.json`. The text
    /// embeddings of this model encode the control images, so a change anywhere clears them all.
    static func removeTrainerCaches(in folder: String) throws {
        let files = FileManager.default
        for role in (try? files.contentsOfDirectory(atPath: folder)) ?? [] {
            let roleFolder = folder + "/" + role
            guard !role.hasPrefix("."), let entries = try? files.contentsOfDirectory(atPath: roleFolder) else { continue }
            for entry in entries where entry.hasPrefix("_") || entry == ".aitk_size.json" {
                try files.removeItem(atPath: roleFolder + "/" + entry)
            }
        }
    }
}

extension FileManager {
    /// The size of the file at `path`, nil when there is none.
    func sizeOfFile(atPath path: String) -> Int64? {
        (try? attributesOfItem(atPath: path))?[.size] as? Int64
    }
}
