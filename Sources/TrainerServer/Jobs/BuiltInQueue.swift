import Fluent
import Foundation
import ObjectStorage
import RunPod
import SQLKit
import TrainerCore

/// The job queue `gomodel serve` runs itself when no RunPod endpoint is configured: jobs wait in
/// the database and GPU workers take them over RunPod's own worker protocol
/// (reference/runpod.md §2), so one worker binary serves both.
///
/// A worker holds a job by lease, renewed by its pings; a worker that goes quiet loses the job,
/// which goes back to the queue as a new attempt (same output prefix: it resumes from the last
/// checkpoint), at most `maximumAttempts` times. Each attempt has its own runner id
/// (`{jobId}-a{attempt}`), so reports from a lost worker's attempt are ignored.
struct BuiltInQueue: Sendable {
    let jobs: JobService
    let bucket: String
    /// The built-in store's admin pair, when the server runs it: each job then brings store keys
    /// scoped to it, so a worker needs no store settings and never holds this pair.
    let storeCredentials: S3Credentials?
    let now: @Sendable () -> Date
    /// How long a job's store key lasts (each take makes a new one).
    static let storeKeyLifetime: TimeInterval = 7 * 86_400
    /// A worker that has not pinged for this long has lost its job (RunPod's default ping is 10 s).
    var leaseSeconds: TimeInterval = 60
    static let maximumAttempts = 3
    /// A taken job's first ping must come this soon (workers ping at once, then every 10 s). A
    /// job-take long poll whose worker died meanwhile hands the job back when its answer cannot be
    /// written (`handBack`); when the write seems to succeed all the same, this bounds how long
    /// such a job waits to be queued again.
    static let firstPingWithin: TimeInterval = 20

    static func runnerID(_ job: Job) -> String { "\(job.id!.uuidString.lowercased())-a\(job.attempt)" }

    /// Hands the oldest queued job to `worker`, or nil when there is none.
    func take(worker: WorkerKeyService.Worker, on db: any Database) async throws -> (id: String, input: JSONValue)? {
        let time = now()
        let candidates = try await Job.query(on: db).filter(\.$status == .queued).filter(\.$cancelRequested == false)
            .group(.or) { $0.filter(\.$leaseUntil == nil).filter(\.$leaseUntil < time) }.sort(\.$createdAt).limit(5).all()
        for candidate in candidates {
            let sql = try db.sql()
            let claimed = try await sql.raw(
                """
                UPDATE jobs SET lease_owner = \(bind: worker.leaseOwner), lease_until = \(bind: time.addingTimeInterval(Self.firstPingWithin))
                WHERE id = \(bind: candidate.id!) AND status = \(bind: JobStatus.queued.rawValue) AND cancel_requested = \(bind: false)
                AND (lease_until IS NULL OR lease_until < \(bind: time))
                RETURNING id
                """
            ).all()
            guard claimed.count == 1, let job = try await Job.find(candidate.id, on: db) else { continue }
            let runnerID = Self.runnerID(job)
            job.runPodJobID = runnerID
            job.runnerStatus = RunPodStatus.inProgress.rawValue
            let taken = jobs.transition(job, to: .running, at: time, message: "Worker \(worker.label) took it (attempt \(job.attempt)).")
            guard try await jobs.commit(job, from: .queued, events: [taken], condition: "lease_owner = \(bind: worker.leaseOwner)", on: db) else { continue }
            var input = try jobs.input(for: job, bucket: bucket)
            if let storeCredentials {
                let scope = StoreScope(
                    readPrefixes: [input.dataset.prefix], writePrefixes: [input.output.prefix],
                    expires: time.addingTimeInterval(Self.storeKeyLifetime), holder: worker.keyID.uuidString.lowercased())
                let key = ScopedStoreKey.make(scope, admin: storeCredentials)
                input.storeKey = .init(accessKeyID: key.accessKeyID, secretAccessKey: key.secretAccessKey.value)
            }
            return (runnerID, input.json)
        }
        return nil
    }

    /// The answer to a take could not reach its worker (its connection was closed): the job goes
    /// back to the queue as the same attempt, since nobody started it.
    /// A cancel asked for meanwhile ends it instead (nothing else would: no worker holds it).
    func handBack(runnerID: String, worker: WorkerKeyService.Worker, on db: any Database) async throws {
        guard let job = try await held(runnerID, by: worker, on: db), job.status == .running else { return }
        let time = now()
        // The take stamped the start only when no earlier attempt had (both at its own time).
        let stampedByTheTake = job.startedAt == job.updatedAt
        let gone = "Worker \(worker.label) was gone before the job reached it"
        let event =
            job.cancelRequested
            ? jobs.transition(job, to: .cancelled, at: time, message: "\(gone); cancelled, as asked.")
            : jobs.transition(job, to: .queued, at: time, message: "\(gone); back in the queue.")
        job.runnerStatus = job.status == .cancelled ? RunPodStatus.cancelled.rawValue : nil
        job.runPodJobID = job.status == .cancelled ? job.runPodJobID : nil
        if stampedByTheTake { job.startedAt = nil }
        job.leaseOwner = nil
        job.leaseUntil = nil
        try await jobs.commit(job, from: .running, events: [event], condition: "runpod_job_id = \(bind: runnerID) AND lease_owner = \(bind: worker.leaseOwner)", on: db)
    }

    /// A worker's job-done post: progress (`status: IN_PROGRESS`), a result (`output`) or an
    /// error. Anything about another attempt, another worker's job or a finished job is ignored.
    func done(worker: WorkerKeyService.Worker, runnerID: String, body: JSONValue, on db: any Database) async throws {
        guard let job = try await held(runnerID, by: worker, on: db) else { return }
        try await jobs.apply(JobService.workerReport(body, runnerID: runnerID, cancelRequested: job.cancelRequested), to: job, on: db)
        if job.status.isFinal || job.status == .queued {
            job.leaseOwner = nil
            job.leaseUntil = nil
        } else {
            job.leaseUntil = now().addingTimeInterval(leaseSeconds)
        }
        try await job.save(on: db)
    }

    /// Renews the leases of the jobs a worker says it runs.
    func ping(worker: WorkerKeyService.Worker, runnerIDs: [String], on db: any Database) async throws {
        for runnerID in runnerIDs {
            guard let job = try await held(runnerID, by: worker, on: db), !job.status.isFinal else { continue }
            job.leaseUntil = now().addingTimeInterval(leaseSeconds)
            try await job.save(on: db)
        }
    }

    /// Runner ids of this worker's jobs whose cancellation was asked for. Telling the worker ends
    /// them, as at RunPod (a job is CANCELLED when asked, and runpod-python posts nothing after a
    /// stop). The stop is told again until the lease runs out, in case an answer was lost.
    func jobsToStop(worker: WorkerKeyService.Worker, on db: any Database) async throws -> [String] {
        let time = now()
        let stopping = try await Job.query(on: db).filter(\.$leaseOwner == worker.leaseOwner).filter(\.$cancelRequested == true)
            .filter(\.$leaseUntil >= time).filter(\.$status ~~ [.running, .cancelled]).all()
        for job in stopping where job.status == .running {
            let event = jobs.transition(job, to: .cancelled, at: time, message: "Cancelled; its worker was told to stop.")
            job.runnerStatus = RunPodStatus.cancelled.rawValue
            try await jobs.commit(job, from: .running, events: [event], on: db)
        }
        return stopping.compactMap(\.runPodJobID)
    }

    /// Jobs whose worker went quiet, or whose worker key was revoked: back to the queue as a new
    /// attempt, or failed after the last one; a cancelled one simply ends. A revoked key's job is
    /// not at fault and goes back whatever its attempts, like a preempted one.
    func reclaimLost(on db: any Database) async throws {
        let time = now()
        let lost = try await Job.query(on: db).filter(\.$status == .running).filter(\.$leaseUntil < time).all()
        for job in lost {
            let owner = job.leaseOwner ?? ""
            var key: WorkerKey?
            if let keyID = WorkerKeyService.Worker.keyID(inLeaseOwner: owner) { key = try await WorkerKey.find(keyID, on: db) }
            let worker =
                key.map { key in
                    let id = String(owner.dropFirst(WorkerKeyService.Worker.leaseOwnerPrefix(keyID: key.id!).count))
                    return "Worker " + WorkerKeyService.Worker(keyID: key.id!, keyName: key.name, id: id).label
                } ?? "Its worker"
            let revoked = key?.revokedAt != nil
            let attempt = job.attempt
            let event: JobEvent
            if job.cancelRequested {
                event = jobs.transition(job, to: .cancelled, at: time, message: "Cancelled; its worker stopped answering.")
            } else if !revoked && job.attempt - job.preemptions >= Self.maximumAttempts {
                event = jobs.transition(job, to: .failed, at: time, message: "Its worker stopped answering, for the \(job.attempt). time; not tried again.")
                job.error = "Workers stopped answering \(job.attempt) times (out of memory, preemption or a crash); retry it to try once more."
            } else {
                JobService.prepareNextAttempt(job, at: time)
                if revoked { job.preemptions += 1 }
                let why = revoked ? "'s key was revoked" : " stopped answering"
                event = JobEvent(
                    jobID: job.id!, at: time, status: JobStatus.queued.rawValue,
                    message: "\(worker)\(why); back in the queue as attempt \(job.attempt), resuming from the last checkpoint.")
            }
            job.leaseOwner = nil
            job.leaseUntil = nil
            // Only if nothing changed since it was read (a result, a ping, another instance).
            try await jobs.commit(job, from: .running, events: [event], condition: "lease_until < \(bind: time) AND attempt = \(bind: attempt)", on: db)
        }
    }

    private func held(_ runnerID: String, by worker: WorkerKeyService.Worker, on db: any Database) async throws -> Job? {
        guard let job = try await Job.query(on: db).filter(\.$runPodJobID == runnerID).first(), job.leaseOwner == worker.leaseOwner else { return nil }
        return job
    }
}
