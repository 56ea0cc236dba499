import Fluent
import Foundation
import RunPod
import SQLKit
import TrainerCore

/// Submits queued jobs to RunPod and tracks them to the end, from any number of server
/// instances sharing one database (DESIGN §5, §6).
///
/// Every piece of work on a job is claimed first with a lease: one atomic UPDATE that succeeds
/// for exactly one instance (`lease_owner`, `lease_until`). A crashed instance's leases simply
/// expire and another instance, or the same one restarted, picks the work up. `tick()` does one
/// round; `serve` calls it every second, tests call it by hand.
///
/// **A crash between `/run` and recording its id.** `submit_started_at` is written before `/run`
/// is sent. A job found later with that mark, no RunPod id and an expired lease may or may not
/// exist at RunPod, and there is no way to ask (RunPod cannot list jobs). Submitting again could
/// start a second paid run on the same output prefix, so it is never done automatically: the job
/// waits, visibly, for RunPod's webhook (its URL carries the job's secret, and RunPod calls it when
/// the job ends, with the id), and the user may cancel or retry it meanwhile.
struct JobRunner: Sendable {
    let jobs: JobService
    let runPod: RunPodClient
    /// Where RunPod can reach `POST /api/runpod/webhook/{secret}`; nil: no webhooks, polling only.
    let webhookBase: URL?
    let bucket: String
    /// Tells this instance's leases apart from other instances'.
    let instanceID: String
    let now: @Sendable () -> Date
    /// A claim lasts this long. Submission cannot be claimed twice anyway (`submit_started_at`);
    /// a poll that outlives its lease at worst makes another instance poll too, which is harmless.
    var leaseSeconds: TimeInterval = 30

    /// Poll intervals: often while a job runs, less while it waits for a GPU (a start is then
    /// shown at most ~10 s late). With 200 running jobs that is 40 `/status` calls a second,
    /// well inside RunPod's 2000 per 10 s (bench/jobs-runpod.sh measures it).
    static let pollWhileRunning: TimeInterval = 5
    static let pollWhileQueued: TimeInterval = 10
    static let submitBatch = 20
    static let pollBatch = 100

    /// One round; returns whether work was left over (the loop then goes again at once).
    @discardableResult
    func tick(on db: any Database) async throws -> Bool {
        let submitted = try await submitQueued(on: db)
        try await cancelRequested(on: db)
        let polled = try await pollDue(on: db)
        return submitted == Self.submitBatch || polled == Self.pollBatch
    }

    // MARK: Claims

    /// Takes the job for `leaseSeconds` if no live lease holds it and it still matches `condition`.
    func claim(_ id: UUID, where condition: String, on db: any Database) async throws -> Bool {
        let time = now()
        let sql = db as! any SQLDatabase
        let claimed = try await sql.raw("""
            UPDATE jobs SET lease_owner = \(bind: instanceID), lease_until = \(bind: time.addingTimeInterval(leaseSeconds))
            WHERE id = \(bind: id) AND (lease_until IS NULL OR lease_until < \(bind: time)) AND \(unsafeRaw: condition)
            RETURNING id
            """).all()
        return claimed.count == 1
    }

    func release(_ job: Job, nextPollAt: Date?, on db: any Database) async throws {
        job.leaseOwner = nil
        job.leaseUntil = nil
        job.nextPollAt = nextPollAt
        try await job.save(on: db)
    }

    // MARK: Submitting

    @discardableResult
    func submitQueued(on db: any Database) async throws -> Int {
        let time = now()
        let candidates = try await Job.query(on: db).filter(\.$status == .queued).filter(\.$cancelRequested == false)
            .filter(\.$submitStartedAt == nil).group(.or) { $0.filter(\.$leaseUntil == nil).filter(\.$leaseUntil < time) }
            .sort(\.$createdAt).limit(Self.submitBatch).all()
        let condition = "status = 'queued' AND submit_started_at IS NULL AND cancel_requested = \(Self.falseLiteral(db))"
        try await candidates.concurrentMap(limit: 8) { candidate in
            guard try await claim(candidate.id!, where: condition, on: db), let job = try await Job.find(candidate.id, on: db) else { return }
            try await submit(job, on: db)
        }
        return candidates.count
    }

    private func submit(_ job: Job, on db: any Database) async throws {
        let secret = OpaqueToken.generate(prefix: "wh_")
        job.webhookDigest = OpaqueToken.digest(secret)
        job.submitStartedAt = now()
        try await job.save(on: db)
        let webhook = webhookBase.map { $0.appendingPathComponent("api/runpod/webhook/\(secret)") }
        do {
            let parameters = try JSONDecoder().decode(QwenImageEdit2509.Parameters.self, from: Data(job.parameters.utf8))
            let submitted = try await runPod.run(input: try jobs.input(for: job, bucket: bucket), webhook: webhook, policy: .training(expectedSeconds: parameters.steps * 8))
            job.runPodJobID = submitted.id
            try await jobs.apply(submitted, to: job, on: db)
            try await release(job, nextPollAt: now().addingTimeInterval(Self.pollWhileRunning), on: db)
        } catch let error as RunPodError where !error.mayHaveArrived {
            // RunPod refused it or never saw it: submit again later, from the start.
            job.submitStartedAt = nil
            job.webhookDigest = nil
            job.leaseOwner = nil
            job.leaseUntil = now().addingTimeInterval(10)
            try await job.save(on: db)
        } catch let error as RunPodError {
            try await JobEvent(jobID: job.id!, at: now(), status: job.status.rawValue, message: Self.uncertainMessage(error)).create(on: db)
            try await release(job, nextPollAt: nil, on: db)
        }
    }

    static func uncertainMessage(_ error: RunPodError) -> String {
        "The answer to the submission was lost (\(error)); RunPod may have the job. It is not sent again (that could start a second paid run): its result arrives through RunPod's webhook. Cancel or retry it if nothing happens."
    }

    // MARK: Cancelling

    func cancelRequested(on db: any Database) async throws {
        let time = now()
        let candidates = try await Job.query(on: db).filter(\.$cancelRequested == true).filter(\.$status ~~ [.queued, .submitted, .running])
            .group(.or) { $0.filter(\.$leaseUntil == nil).filter(\.$leaseUntil < time) }.limit(Self.submitBatch).all()
        for candidate in candidates {
            guard try await claim(candidate.id!, where: "cancel_requested = \(Self.trueLiteral(db))", on: db), let job = try await Job.find(candidate.id, on: db) else { continue }
            guard let runPodID = job.runPodJobID else {
                // Never reached RunPod as far as we know (or its id was lost): end it here.
                let event = jobs.transition(job, to: .cancelled, at: now(), message: "Cancelled; RunPod's id for it is unknown, so RunPod was not told.")
                job.leaseOwner = nil
                job.leaseUntil = nil
                try await db.transaction { db in
                    try await job.save(on: db)
                    try await event.create(on: db)
                }
                try await jobs.releaseDataset(job.datasetID, on: db)
                continue
            }
            do {
                let answer = try await runPod.cancel(runPodID)
                try await jobs.apply(answer, to: job, on: db)
                try await release(job, nextPollAt: now(), on: db)
            } catch {
                try await release(job, nextPollAt: now().addingTimeInterval(Self.pollWhileRunning), on: db)
            }
        }
    }

    // MARK: Polling

    @discardableResult
    func pollDue(on db: any Database) async throws -> Int {
        let time = now()
        let due = try await Job.query(on: db).filter(\.$status ~~ [.submitted, .running]).filter(\.$runPodJobID != nil)
            .filter(\.$nextPollAt <= time).group(.or) { $0.filter(\.$leaseUntil == nil).filter(\.$leaseUntil < time) }
            .sort(\.$nextPollAt).limit(Self.pollBatch).all()
        try await due.concurrentMap(limit: 8) { candidate in
            guard try await claim(candidate.id!, where: "status IN ('submitted', 'running')", on: db), let job = try await Job.find(candidate.id, on: db) else { return }
            try await poll(job, on: db)
        }
        return due.count
    }

    private func poll(_ job: Job, on db: any Database) async throws {
        do {
            let report = try await runPod.status(job.runPodJobID!)
            try await jobs.apply(report, to: job, on: db)
            let interval = job.status == .submitted ? Self.pollWhileQueued : Self.pollWhileRunning
            try await release(job, nextPollAt: job.status.isFinal ? nil : now().addingTimeInterval(interval), on: db)
        } catch let error as RunPodError where error.status == 404 {
            // RunPod forgot it (TTL passed, or more than 30 minutes after its end went unseen).
            let event = jobs.transition(job, to: .failed, at: now(), message: "RunPod no longer knows the job (its time to live ran out, or its result expired unseen).")
            job.error = "RunPod no longer knows this job; retry it to run again from the last checkpoint."
            job.leaseOwner = nil
            job.leaseUntil = nil
            try await db.transaction { db in
                try await job.save(on: db)
                try await event.create(on: db)
            }
            try await jobs.releaseDataset(job.datasetID, on: db)
        } catch is RunPodError {
            // Throttled or unreachable even after retries: try again a little later.
            try await release(job, nextPollAt: now().addingTimeInterval(Self.pollWhileRunning * 2), on: db)
        }
    }

    static func trueLiteral(_ db: any Database) -> String { (db as? any SQLDatabase)?.dialect.name == "sqlite" ? "1" : "true" }
    static func falseLiteral(_ db: any Database) -> String { (db as? any SQLDatabase)?.dialect.name == "sqlite" ? "0" : "false" }
}
