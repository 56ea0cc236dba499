import Foundation
import ObjectStorage
import TrainerCore

/// Copies a bucket prefix into a folder: listed once, downloaded `concurrency` at a time and
/// streamed to disk (memory stays flat whatever the sizes), files already there with the
/// object's size skipped, each download's size checked against the listing.
public struct DatasetSync: Sendable {
    let bucket: S3Client
    var concurrency = 8

    public init(bucket: S3Client, concurrency: Int = 8) {
        self.bucket = bucket
        self.concurrency = concurrency
    }

    public struct Summary: Sendable, Equatable {
        public var downloaded = 0
        public var skipped = 0
        public var bytes: Int64 = 0
    }

    public func sync(prefix: String, into folder: String) async throws -> Summary {
        let objects = try await bucket.listAllObjects(prefix: prefix)
        guard !objects.isEmpty else { throw JobFailure("The dataset \(prefix) is empty in the bucket.") }
        let bucket = bucket
        let copied = try await objects.concurrentMap(limit: concurrency) { object -> Int64? in
            let relative = String(object.key.dropFirst(prefix.count))
            guard !relative.isEmpty, !relative.split(separator: "/").contains("..") else { return nil }
            let path = folder + "/" + relative
            if let size = (try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int64, size == object.size { return nil }
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            let info = try await bucket.getObject(key: object.key, to: path)
            guard info.size == object.size else { throw JobFailure("\(object.key) changed while it was downloaded; retry the job.") }
            return info.size
        }
        var summary = Summary()
        for size in copied {
            if let size { summary.downloaded += 1; summary.bytes += size } else { summary.skipped += 1 }
        }
        return summary
    }
}
