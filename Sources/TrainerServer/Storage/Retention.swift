import Fluent
import Foundation
import Prometheus
import SQLKit
import TrainerCore
import Vapor

/// `GOMODEL_RETENTION_DAYS`: a finished job's outputs, and a dataset neither changed nor trained
/// on, go that many days later; the objects first, then the rows, so nothing is left in the bucket
/// that no row knows. Also keeps the gauges of the bytes held current.
struct Retention: Sendable {
    let days: Int?
    let datasets: DatasetService
    let bucket: Bucket
    let now: @Sendable () -> Date
    /// `gomodel_storage_bytes{kind="datasets"|"job_outputs"}`.
    let datasetBytes: Gauge
    let outputBytes: Gauge

    static let batch = 20
    /// How long before a deletion the pages warn of it.
    static let warning: TimeInterval = 7 * 86400

    init(days: Int?, datasets: DatasetService, bucket: Bucket, registry: PrometheusCollectorRegistry, now: @escaping @Sendable () -> Date) {
        self.days = days
        self.datasets = datasets
        self.bucket = bucket
        self.now = now
        let descriptor = MetricNameDescriptor(namespace: "gomodel", metricName: "storage", unitName: "bytes", helpText: "Bytes held in the bucket, by kind.")
        datasetBytes = registry.makeGauge(descriptor: descriptor, labels: [("kind", "datasets")])
        outputBytes = registry.makeGauge(descriptor: descriptor, labels: [("kind", "job_outputs")])
    }

    var window: TimeInterval? { days.map { Double($0) * 86400 } }

    /// When a finished job's outputs go (nil: kept, not finished, or gone already).
    func outputsExpire(_ job: Job) -> Date? {
        guard let window, job.status.isFinal, job.outputsDeletedAt == nil, let finished = job.finishedAt else { return nil }
        return finished.addingTimeInterval(window)
    }

    /// When a dataset goes unless it changes or trains before (nil: kept).
    func datasetExpires(_ dataset: Dataset, lastTrained: Date?) -> Date? {
        // A job uses it now: kept while it does.
        guard let window, dataset.lockedByJobID == nil else { return nil }
        return max(dataset.updatedAt, lastTrained ?? .distantPast).addingTimeInterval(window)
    }

    /// When a job last used the dataset: the newest one made, or ended (a retried job ends later).
    static func lastTrained(_ datasetID: UUID, on db: any Database) async throws -> Date? {
        let jobs = try await Job.query(on: db).filter(\.$datasetID == datasetID).all()
        return jobs.flatMap { [$0.createdAt, $0.finishedAt].compactMap { $0 } }.max()
    }

    /// One round: what outlived retention goes, a batch at a time; then the gauges. Returns
    /// whether more is due.
    func sweep(on db: any Database) async throws -> Bool {
        var more = false
        if let window {
            let cutoff = now().addingTimeInterval(-window)
            let moreOutputs = try await sweepOutputs(before: cutoff, on: db)
            let moreDatasets = try await sweepDatasets(before: cutoff, on: db)
            more = moreOutputs || moreDatasets
        }
        try await pruneDeliveries(on: db)
        try await measure(on: db)
        return more
    }

    private func sweepOutputs(before cutoff: Date, on db: any Database) async throws -> Bool {
        let final = [JobStatus.completed, .failed, .cancelled, .timedOut]
        let jobs = try await Job.query(on: db).filter(\.$status ~~ final).filter(\.$finishedAt < cutoff).filter(\.$outputsDeletedAt == nil).limit(Self.batch).all()
        for job in jobs {
            let time = now()
            // Claimed first, only if it is still the job that ended then: a retry refuses a job
            // whose outputs are claimed, so no new ones start while these go.
            let sql = try db.sql()
            let claimed = try await sql.raw(
                """
                UPDATE jobs SET outputs_deleted_at = \(bind: time)
                WHERE id = \(bind: job.id!) AND outputs_deleted_at IS NULL AND finished_at < \(bind: cutoff)
                AND status IN (\(binds: final.map(\.rawValue))) RETURNING id
                """
            ).all()
            guard claimed.count == 1 else { continue }
            do {
                try await bucket.deleteAll(prefix: job.outputPrefix)
            } catch {
                // Unclaimed again: the next round tries once more.
                try await sql.raw("UPDATE jobs SET outputs_deleted_at = NULL WHERE id = \(bind: job.id!)").run()
                throw error
            }
            try await db.transaction { db in
                try await db.sql().raw("UPDATE jobs SET artifacts = NULL, output_bytes = 0, promoted_step = NULL WHERE id = \(bind: job.id!)").run()
                try await JobEvent(
                    jobID: job.id!, at: time, status: job.status.rawValue,
                    message: "Its outputs were deleted, \(days!) days after it ended (GOMODEL_RETENTION_DAYS)."
                ).create(on: db)
            }
        }
        return jobs.count == Self.batch
    }

    /// Datasets neither changed nor used since `cutoff`: no job made, running or ended since, no
    /// upload signed and no zip import begun within the upload window, not locked.
    private func sweepDatasets(before cutoff: Date, on db: any Database) async throws -> Bool {
        let recent = now().addingTimeInterval(-DatasetService.uploadWindow)
        struct Row: Decodable { let id: UUID }
        let stale = try await db.sql().raw(
            """
            SELECT id FROM datasets d WHERE d.updated_at < \(bind: cutoff) AND d.locked_by_job_id IS NULL
            AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.dataset_id = d.id
                AND (j.created_at >= \(bind: cutoff) OR j.finished_at IS NULL OR j.finished_at >= \(bind: cutoff)))
            AND NOT EXISTS (SELECT 1 FROM dataset_files f WHERE f.dataset_id = d.id AND f.pending_bytes IS NOT NULL AND f.signed_at > \(bind: recent))
            AND NOT EXISTS (SELECT 1 FROM dataset_imports i WHERE i.dataset_id = d.id AND i.updated_at > \(bind: recent))
            ORDER BY d.updated_at LIMIT \(unsafeRaw: String(Self.batch))
            """
        ).all(decoding: Row.self)
        for row in stale {
            // Read again just before: a job or an upload may have begun since the query.
            guard let dataset = try await Dataset.find(row.id, on: db), dataset.lockedByJobID == nil else { continue }
            do {
                try await datasets.delete(dataset, on: db)
            } catch {
                // In use again since it was read, or the bucket failed: the others go on.
                continue
            }
        }
        return stale.count == Self.batch
    }

    /// Delivered and failed webhook deliveries are kept this long for their log.
    static let deliveryLogDays = 30

    private func pruneDeliveries(on db: any Database) async throws {
        try await WebhookDelivery.query(on: db).filter(\.$state != .pending)
            .filter(\.$createdAt < now().addingTimeInterval(-Double(Self.deliveryLogDays) * 86400)).delete()
    }

    /// Sets the gauges to the bytes every dataset and every job's outputs hold.
    func measure(on db: any Database) async throws {
        let held = try await datasets.usage(of: nil, on: db)
        datasetBytes.set(Double(held.datasets))
        outputBytes.set(Double(held.outputs))
    }
}

struct RetentionKey: StorageKey {
    typealias Value = Retention
}
