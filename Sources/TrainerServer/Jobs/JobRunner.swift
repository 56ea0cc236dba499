import Fluent
import Foundation
import NIOConcurrencyHelpers
import NIOCore
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
    /// Where runs write their attempt claims (`AttemptClaim`), read to find a run whose id is lost.
    let store: Bucket
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
    /// Once a job's worker reports through its progress channel, each report puts the next poll
    /// this far off: the worker tells the server itself, RunPod's webhook tells it the end, and
    /// polling is only the safety net for reports that were lost. Workers that do not use the
    /// channel (or not yet) are polled as usual.
    static let pollAfterChannelReport: TimeInterval = 300
    static let submitBatch = 20
    static let pollBatch = 100
    /// This instance's RunPod calls, each a task of its own: a hung call holds up its own job only.
    /// Well inside RunPod's limits (`/run` 1000 and `/status` 2000 per 10 s): each call takes a
    /// round trip, so 64 in flight make at most a few hundred a second.
    var calls = InFlightCalls(limit: 64)

    /// One round: claims the work that is due and starts a RunPod call for each piece. With
    /// `waitForCalls` (tests) it returns when they have ended; the server's loop does not wait, so
    /// the next round starts a second later whatever the calls still in flight. Returns whether
    /// work was left over (the loop then goes again at once).
    @discardableResult
    func tick(on db: any Database, waitForCalls: Bool = true) async throws -> Bool {
        var started: [Task<Void, Never>] = try await resolveLostSubmissions(on: db)
        let (submitted, submitCalls) = try await submitQueued(on: db)
        started += submitCalls
        started += try await cancelRequested(on: db)
        let (polled, pollCalls) = try await pollDue(on: db)
        started += pollCalls
        if waitForCalls { for call in started { await call.value } }
        return (submitted == Self.submitBatch && !submitCalls.isEmpty) || (polled == Self.pollBatch && !pollCalls.isEmpty)
    }

    // MARK: Claims

    /// Takes the job for `leaseSeconds` if no live lease holds it and it still matches `condition`.
    func claim(_ id: UUID, where condition: SQLQueryString, on db: any Database) async throws -> Bool {
        let time = now()
        let sql = try db.sql()
        let claim: SQLQueryString = """
            UPDATE jobs SET lease_owner = \(bind: instanceID), lease_until = \(bind: time.addingTimeInterval(leaseSeconds))
            WHERE id = \(bind: id) AND (lease_until IS NULL OR lease_until < \(bind: time)) AND\u{20}
            """
        let claimed = try await sql.raw(claim + condition + " RETURNING id").all()
        return claimed.count == 1
    }

    func release(_ job: Job, nextPollAt: Date?, on db: any Database) async throws {
        job.leaseOwner = nil
        job.leaseUntil = nil
        job.nextPollAt = nextPollAt
        try await job.save(on: db)
    }

    // MARK: Submitting

    /// Queued jobs to submit: how many were due, and the calls started.
    func submitQueued(on db: any Database) async throws -> (due: Int, calls: [Task<Void, Never>]) {
        let time = now()
        let candidates = try await Job.query(on: db).filter(\.$status == .queued).filter(\.$cancelRequested == false)
            .filter(\.$submitStartedAt == nil).group(.or) { $0.filter(\.$leaseUntil == nil).filter(\.$leaseUntil < time) }
            .sort(\.$createdAt).limit(Self.submitBatch).all()
        let condition: SQLQueryString = "status = \(bind: JobStatus.queued.rawValue) AND submit_started_at IS NULL AND cancel_requested = \(bind: false)"
        let started = candidates.compactMap { candidate in
            calls.start(candidate.id!) {
                // One job's trouble must not hold up or cancel the others' submissions.
                do {
                    guard try await claim(candidate.id!, where: condition, on: db), let job = try await Job.find(candidate.id, on: db) else { return }
                    try await submit(job, on: db)
                } catch {
                    db.logger.warning("submitting a job failed; it is tried again", metadata: ["job": "\(candidate.id!)", "error": "\(error)"])
                }
            }
        }
        return (candidates.count, started)
    }

    private func submit(_ job: Job, on db: any Database) async throws {
        let secret = OpaqueToken.generate(prefix: "wh_")
        let progressSecret = OpaqueToken.generate(prefix: "pc_")
        job.webhookDigest = OpaqueToken.digest(secret)
        job.progressDigest = webhookBase == nil ? nil : OpaqueToken.digest(progressSecret)
        job.submitStartedAt = now()
        try await job.save(on: db)
        let webhook = webhookBase.map { $0.appendingPathComponent("api/runpod/webhook/\(secret)") }
        let channel = webhookBase.map { $0.appendingPathComponent("api/runpod/progress/\(progressSecret)") }
        let input = try jobs.input(for: job, bucket: bucket, progressChannel: channel)
        let policy = try Self.policy(job)
        let runPod = runPod
        do {
            // Not cancelled with this round (a server shutting down): an abandoned /run would
            // leave a paid job behind with its answer lost.
            let submitted = try await Task { try await runPod.run(input: input, webhook: webhook, policy: policy) }.value
            try await recordRun(submitted.id, of: job, on: db)
            if try await !jobs.apply(submitted, to: job, on: db), job.status == .cancelled || job.cancelRequested {
                // Cancelled while it was being submitted: stop it at RunPod too.
                _ = try? await runPod.cancel(submitted.id)
            }
            try await release(job, nextPollAt: now().addingTimeInterval(Self.pollWhileRunning), on: db)
        } catch let error as RunPodError where (400..<500).contains(error.status) && error.status != 429 {
            // Refused for good (wrong endpoint id or key, a body RunPod rejects): say so.
            let event = jobs.transition(job, to: .failed, at: now(), message: "RunPod refused the job: \(error)")
            job.error = "RunPod refused the job (HTTP \(error.status)); check RUNPOD_ENDPOINT_ID and RUNPOD_API_KEY."
            job.errorDetail = error.message
            job.leaseOwner = nil
            job.leaseUntil = nil
            try await jobs.commit(job, from: .queued, events: [event], on: db)
        } catch let error as RunPodError where !error.mayHaveArrived {
            // Throttled or never sent: submit again later, from the start.
            job.submitStartedAt = nil
            job.webhookDigest = nil
            job.leaseOwner = nil
            job.leaseUntil = now().addingTimeInterval(10)
            try await job.save(on: db)
        } catch let error as RunPodError {
            // It may have arrived: never guessed. The run is found by its claim when it starts, or,
            // when none has started by then, the job is submitted again (the claim lets only one
            // run train the attempt, so a second submission is safe).
            try await JobEvent(jobID: job.id!, at: now(), status: job.status.rawValue, message: Self.uncertainMessage(error)).create(on: db)
            try await release(job, nextPollAt: now().addingTimeInterval(Self.resolveLostSubmissionAfter), on: db)
        }
    }

    static func policy(_ job: Job) throws -> RunPodPolicy {
        // Loading a 7B vision model and a few seconds a sample: the training minimum (2 h) is plenty.
        if job.isDraftJob { return .training(expectedSeconds: 0) }
        let parameters = try JSONDecoder().decode(QwenImageEdit.Parameters.self, from: Data(job.parameters.utf8))
        return .training(expectedSeconds: parameters.steps * 8)
    }

    static func uncertainMessage(_ error: RunPodError) -> String {
        "The answer to the submission was lost (\(error)); RunPod may have the job. If it has, its run is found by the claim it writes when it starts; if no run has started in \(Int(resolveLostSubmissionAfter)) s, the job is submitted again (only one run can train an attempt)."
    }

    /// How long a submission whose answer was lost gets to start before the job is submitted again.
    static let resolveLostSubmissionAfter: TimeInterval = 30

    /// Jobs whose submission's answer was lost (an error that may have come after RunPod had it,
    /// or a server killed during `/run`): the run is looked for by its claim in the bucket and
    /// followed when found; otherwise the job is submitted again.
    func resolveLostSubmissions(on db: any Database) async throws -> [Task<Void, Never>] {
        let time = now()
        let lost = try await Job.query(on: db).filter(\.$status == .queued).filter(\.$runPodJobID == nil).filter(\.$submitStartedAt != nil)
            .filter(\.$cancelRequested == false).group(.or) { $0.filter(\.$leaseUntil == nil).filter(\.$leaseUntil < time) }
            .group(.or) { $0.filter(\.$nextPollAt == nil).filter(\.$nextPollAt <= time) }.limit(Self.submitBatch).all()
        let condition: SQLQueryString =
            "status = \(bind: JobStatus.queued.rawValue) AND runpod_job_id IS NULL AND submit_started_at IS NOT NULL AND cancel_requested = \(bind: false)"
        return lost.compactMap { candidate in
            calls.start(candidate.id!) {
                do {
                    guard try await claim(candidate.id!, where: condition, on: db), let job = try await Job.find(candidate.id, on: db) else { return }
                    if let found = try await attemptClaim(of: job) {
                        try await adopt(
                            found.runID, for: job, on: db, message: "Found its run at RunPod (\(found.runID)) by the claim the run wrote when it started; following it.")
                    } else {
                        try await JobEvent(jobID: job.id!, at: now(), status: job.status.rawValue, message: "No run of the lost submission has started; submitting the job again.")
                            .create(on: db)
                        try await submit(job, on: db)
                    }
                } catch {
                    db.logger.warning("resolving a lost submission failed; it is tried again", metadata: ["job": "\(candidate.id!)", "error": "\(error)"])
                }
            }
        }
    }

    /// The claim a run wrote for the job's current attempt, if one has started.
    func attemptClaim(of job: Job) async throws -> AttemptClaim? {
        try await store.fetchPrefix(key: AttemptClaim.key(outputPrefix: job.outputPrefix, attempt: job.attempt), count: 1 << 16)
            .flatMap { AttemptClaim.decode(Data($0.1)) }
    }

    /// The run's id first, on its own, due a poll at once: whatever happens next (this server
    /// killed the next moment), the run can be found, polled and stopped.
    private func recordRun(_ runID: String, of job: Job, on db: any Database) async throws {
        try await db.sql().raw("UPDATE jobs SET runpod_job_id = \(bind: runID), next_poll_at = \(bind: now()) WHERE id = \(bind: job.id!)").run()
        job.runPodJobID = runID
    }

    /// Follows `runID` as the job's run from now on.
    func adopt(_ runID: String, for job: Job, on db: any Database, message: String) async throws {
        try await recordRun(runID, of: job, on: db)
        let previous = job.status
        var events = [JobEvent(jobID: job.id!, at: now(), status: job.status.rawValue, message: message)]
        if previous == .queued { events.append(jobs.transition(job, to: .submitted, at: now(), message: "Submitted to RunPod (\(runID)).")) }
        job.leaseOwner = nil
        job.leaseUntil = nil
        job.nextPollAt = now()
        try await jobs.commit(job, from: previous, events: events, on: db)
    }

    // MARK: Cancelling

    /// Cancels asked for: the calls started.
    func cancelRequested(on db: any Database) async throws -> [Task<Void, Never>] {
        let time = now()
        let candidates = try await Job.query(on: db).filter(\.$cancelRequested == true).filter(\.$status ~~ [.queued, .submitted, .running])
            .group(.or) { $0.filter(\.$leaseUntil == nil).filter(\.$leaseUntil < time) }.limit(Self.submitBatch).all()
        return candidates.compactMap { candidate in
            calls.start(candidate.id!) {
                do {
                    try await cancel(candidate.id!, on: db)
                } catch {
                    db.logger.warning("cancelling a job failed; it is tried again", metadata: ["job": "\(candidate.id!)", "error": "\(error)"])
                }
            }
        }
    }

    private func cancel(_ id: UUID, on db: any Database) async throws {
        let condition: SQLQueryString =
            "cancel_requested = \(bind: true) AND status IN (\(bind: JobStatus.queued.rawValue), \(bind: JobStatus.submitted.rawValue), \(bind: JobStatus.running.rawValue))"
        guard try await claim(id, where: condition, on: db), let job = try await Job.find(id, on: db) else { return }
        guard let runPodID = job.runPodJobID else {
            // A submission may be at RunPod without its id: leave the cancel mark first, then look
            // for the run's claim. A run that claims later reads the mark and stops; one that
            // claimed already is found here and cancelled at RunPod (strong consistency: one of
            // the two sees the other's write).
            var message = "Cancelled before it reached RunPod."
            if job.submitStartedAt != nil {
                try await store.put(
                    key: AttemptClaim.cancelledKey(outputPrefix: job.outputPrefix, attempt: job.attempt), bytes: ByteBuffer(string: "cancelled\n"), contentType: "text/plain")
                if let found = try await attemptClaim(of: job) {
                    try await adopt(found.runID, for: job, on: db, message: "Found its run at RunPod (\(found.runID)) by its claim; cancelling it there.")
                    return try await cancel(id, on: db)
                }
                message = "Cancelled; no run of its submission had started, and one that starts later stops at once."
            }
            let previous = job.status
            let event = jobs.transition(job, to: .cancelled, at: now(), message: message)
            job.leaseOwner = nil
            job.leaseUntil = nil
            try await jobs.commit(job, from: previous, events: [event], condition: "runpod_job_id IS NULL", on: db)
            return
        }
        do {
            let answer = try await runPod.cancel(runPodID)
            try await jobs.apply(answer, to: job, on: db)
            try await release(job, nextPollAt: now(), on: db)
        } catch {
            // Keep the claim a while: RunPod allows 100 cancels per 10 s.
            job.leaseUntil = now().addingTimeInterval(leaseSeconds)
            job.nextPollAt = now().addingTimeInterval(Self.pollWhileRunning)
            try await job.save(on: db)
        }
    }

    // MARK: Polling

    /// Jobs due a poll: how many were due, and the calls started. A queued job with a RunPod id
    /// is one whose server was killed between recording the id and the status: polled like the rest.
    func pollDue(on db: any Database) async throws -> (due: Int, calls: [Task<Void, Never>]) {
        let time = now()
        let due = try await Job.query(on: db).filter(\.$status ~~ [.queued, .submitted, .running]).filter(\.$runPodJobID != nil)
            .filter(\.$nextPollAt <= time).group(.or) { $0.filter(\.$leaseUntil == nil).filter(\.$leaseUntil < time) }
            .sort(\.$nextPollAt).limit(Self.pollBatch).all()
        let started = due.compactMap { candidate in
            calls.start(candidate.id!) {
                do {
                    let condition: SQLQueryString =
                        "status IN (\(bind: JobStatus.queued.rawValue), \(bind: JobStatus.submitted.rawValue), \(bind: JobStatus.running.rawValue)) AND runpod_job_id IS NOT NULL AND next_poll_at <= \(bind: time)"
                    guard try await claim(candidate.id!, where: condition, on: db), let job = try await Job.find(candidate.id, on: db) else { return }
                    try await poll(job, on: db)
                } catch {
                    db.logger.warning("polling a job failed; it is tried again", metadata: ["job": "\(candidate.id!)", "error": "\(error)"])
                }
            }
        }
        return (due.count, started)
    }

    /// Marks a first 404 in `runnerStatus`; only a second one, a minute later, ends the job.
    static let notFound = "NOT_FOUND"

    private func poll(_ job: Job, on db: any Database) async throws {
        do {
            let polled = job.runPodJobID!
            let report = try await runPod.status(polled)
            try await jobs.apply(report, to: job, on: db)
            // A run that ended naming the one that holds the attempt: that one is polled at once.
            let interval = job.runPodJobID != polled ? 0 : job.status == .submitted ? Self.pollWhileQueued : Self.pollWhileRunning
            try await release(job, nextPollAt: job.status.isFinal ? nil : now().addingTimeInterval(interval), on: db)
        } catch let error as RunPodError where error.status == 404 {
            guard job.runnerStatus == Self.notFound else {
                // One 404 may be a glitch: look again in a minute.
                job.runnerStatus = Self.notFound
                try await release(job, nextPollAt: now().addingTimeInterval(60), on: db)
                return
            }
            // RunPod forgot it (TTL passed, or more than 30 minutes after its end went unseen).
            let previous = job.status
            let event = jobs.transition(job, to: .failed, at: now(), message: "RunPod no longer knows the job (its time to live ran out, or its result expired unseen).")
            job.error = "RunPod no longer knows this job; retry it to run again from the last checkpoint."
            job.leaseOwner = nil
            job.leaseUntil = nil
            try await jobs.commit(job, from: previous, events: [event], on: db)
        } catch is RunPodError {
            // Throttled or unreachable even after retries: try again a little later.
            try await release(job, nextPollAt: now().addingTimeInterval(Self.pollWhileRunning * 2), on: db)
        }
    }
}
