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
        guard let window else { return nil }
        return max(dataset.updatedAt, lastTrained ?? .distantPast).addingTimeInterval(window)
    }

    /// The newest job made from the dataset.
    static func lastTrained(_ datasetID: UUID, on db: any Database) async throws -> Date? {
        try await Job.query(on: db).filter(\.$datasetID == datasetID).sort(\.$createdAt, .descending).first()?.createdAt
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
        try await measure(on: db)
        return more
    }

    private func sweepOutputs(before cutoff: Date, on db: any Database) async throws -> Bool {
        let final = [JobStatus.completed, .failed, .cancelled, .timedOut]
        let jobs = try await Job.query(on: db).filter(\.$status ~~ final).filter(\.$finishedAt < cutoff).filter(\.$outputsDeletedAt == nil).limit(Self.batch).all()
        for job in jobs {
            try await bucket.deleteAll(prefix: job.outputPrefix)
            let time = now()
            try await db.transaction { db in
                // Only if it is still the job that ended then (a retry since gives it new outputs).
                let marked = try await db.sql().raw(
                    """
                    UPDATE jobs SET outputs_deleted_at = \(bind: time), artifacts = NULL, output_bytes = 0, promoted_step = NULL
                    WHERE id = \(bind: job.id!) AND outputs_deleted_at IS NULL AND finished_at < \(bind: cutoff)
                    RETURNING id
                    """
                ).all()
                guard !marked.isEmpty else { return }
                try await JobEvent(
                    jobID: job.id!, at: time, status: job.status.rawValue,
                    message: "Its outputs were deleted, \(days!) days after it ended (GOMODEL_RETENTION_DAYS)."
                ).create(on: db)
            }
        }
        return jobs.count == Self.batch
    }

    private func sweepDatasets(before cutoff: Date, on db: any Database) async throws -> Bool {
        let stale = try await Dataset.query(on: db).filter(\.$updatedAt < cutoff).filter(\.$lockedByJobID == nil).sort(\.$updatedAt).limit(Self.batch).all()
        var deleted = 0
        for dataset in stale {
            if let trained = try await Self.lastTrained(dataset.id!, on: db), trained >= cutoff { continue }
            do {
                try await datasets.delete(dataset, on: db)
                deleted += 1
            } catch is DatasetService.Failure {
                // In use again since it was read, or an import is unpacking: kept for now.
            }
        }
        return deleted == Self.batch
    }

    /// Sets the gauges to the bytes every dataset and every job's outputs hold.
    func measure(on db: any Database) async throws {
        let held = try await Dataset.query(on: db).all(\.$totalBytes).reduce(0, +)
        let outputs = try await Job.query(on: db).filter(\.$outputsDeletedAt == nil).all(\.$outputBytes).reduce(0) { $0 + ($1 ?? 0) }
        datasetBytes.set(Double(held))
        outputBytes.set(Double(outputs))
    }
}

struct RetentionKey: StorageKey {
    typealias Value = Retention
}
