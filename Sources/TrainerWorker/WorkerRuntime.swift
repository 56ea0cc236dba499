import Foundation
import Logging
import NIOConcurrencyHelpers
import TrainerCore

/// What a worker does with a job it took.
public protocol JobHandler: Sendable {
    /// Runs the job to its end and returns the result's `output`. Reports progress through
    /// `progress` (as often as it likes: the runtime throttles). Throws `JobFailure` to fail the
    /// job; is cancelled when the job is to stop.
    func run(_ job: WorkerProtocolClient.TakenJob, progress: ProgressReporter) async throws -> JSONValue
}

/// A job that failed: a first line for people, then details (the trainer log's tail).
public struct JobFailure: Error, Sendable, Equatable {
    public let message: String
    public let detail: String?

    public init(_ message: String, detail: String? = nil) {
        self.message = message
        self.detail = detail
    }

    var report: String { detail.map { message + "\n" + $0 } ?? message }
}

/// Progress updates sent one at a time and in order, the newest winning, each at least
/// `interval` after the last one arrived, or `phaseChangeInterval` when the phase changed: a short phase (a sampling
/// round between training steps) is still shown, and a run of training steps is one update
/// (reference/runpod.md §2.6: RunPod's SDK fires them from threads, unordered, and a late one can
/// land after the result). `drain()` waits until none is in flight; the runtime calls it before
/// posting the result.
public actor ProgressReporter {
    let send: @Sendable (JSONValue) async throws -> Void
    let interval: Duration
    let phaseChangeInterval: Duration
    private var pending: JSONValue?
    private var sending: Task<Void, Never>?
    private var lastSent: (at: ContinuousClock.Instant, phase: JSONValue?)?
    private var closed = false
    /// Fields every later update carries (a newer update replaces an unsent one, so what must
    /// arrive is in each).
    private var attached: [(String, JSONValue)] = []

    public init(interval: Duration, phaseChangeInterval: Duration? = nil, send: @escaping @Sendable (JSONValue) async throws -> Void) {
        self.interval = interval
        self.phaseChangeInterval = min(phaseChangeInterval ?? .seconds(1), interval)
        self.send = send
    }

    /// Adds `value` as `key` to this and every later update.
    public func attach(_ key: String, _ value: JSONValue) {
        attached.removeAll { $0.0 == key }
        attached.append((key, value))
    }

    public func report(_ progress: JSONValue) {
        guard !closed else { return }
        if case .object(let fields) = progress, !attached.isEmpty {
            pending = .object(fields.filter { field in !attached.contains { $0.0 == field.0 } } + attached)
        } else {
            pending = progress
        }
        guard sending == nil else { return }
        sending = Task { await self.deliver() }
    }

    private func deliver() async {
        while let next = pending, !closed {
            if let lastSent {
                let due = lastSent.at + (next["phase"] == lastSent.phase ? interval : phaseChangeInterval)
                if ContinuousClock.now < due {
                    // In slices: a phase change arriving meanwhile may be due sooner.
                    try? await Task.sleep(until: min(due, .now + phaseChangeInterval / 4))
                    continue
                }
            }
            pending = nil
            // A lost progress update is not worth failing the job for.
            try? await send(next)
            // Counted from when it arrived: the next one starts at least `interval` after this
            // one did, whatever the hop into `send` took.
            lastSent = (.now, next["phase"])
        }
        sending = nil
    }

    /// No more updates after this; returns once the one in flight (if any) has arrived.
    public func drain() async {
        closed = true
        pending = nil
        await sending?.value
    }
}

/// A job stopped because this worker is shutting down (SIGTERM: RunPod scaling down, a spot
/// machine reclaimed), with what it had done; the runtime reports it so the server resumes the job
/// elsewhere at once (`WorkerResult.preempted`).
public struct JobPreempted: Error, Sendable {
    /// The result so far: `steps`, `artifacts` (the checkpoint to resume from among them).
    public let output: JSONValue

    public init(output: JSONValue) {
        self.output = output
    }
}

/// The worker loop, as runpod-python's (reference/runpod.md §2.3–§2.9, fidelity-audit.md 4–7):
/// a heartbeat for the worker's whole life on a task of its own (training can never starve it),
/// take a job, run it with a job-stop watcher that cancels the handler, then post the result once
/// every progress update has arrived. A result that cannot be posted is logged and the worker goes
/// on taking jobs; a refused key ends the worker.
public struct WorkerRuntime: Sendable {
    let client: WorkerProtocolClient
    let handler: any JobHandler
    let logger: Logger
    var progressInterval: Duration
    var stopPollInterval: Duration
    /// What the loop's waits run on: the heartbeat, the job-stop poll, pauses after a failed or
    /// refused take, the take's grace at shutdown.
    let clock: any Clock<Duration>

    public init(
        client: WorkerProtocolClient, handler: any JobHandler, logger: Logger = Logger(label: "gomodel.worker"),
        progressInterval: Duration = .seconds(3), stopPollInterval: Duration = .seconds(2), clock: any Clock<Duration> = ContinuousClock()
    ) {
        self.client = client
        self.handler = handler
        self.logger = logger
        self.progressInterval = progressInterval
        self.stopPollInterval = stopPollInterval
        self.clock = clock
    }

    /// Takes and runs jobs until cancelled (SIGTERM: a job in hand is stopped, its checkpoints
    /// uploaded and reported as preempted, then this throws `CancellationError`), or until
    /// `maximumJobs` have run. Throws `KeyRefused` when the queue refuses the key.
    public func run(maximumJobs: Int? = nil) async throws {
        let running = NIOLockedValueBox<[String]>([])
        let heartbeat = Task { [client, logger, clock] in
            var failing = false
            while !Task.isCancelled {
                do {
                    try await client.ping(jobIDs: running.withLockedValue { $0 })
                    if failing { logger.info("ping answered again") }
                    failing = false
                } catch {
                    if !failing { logger.warning("ping failed; the job's lease may run out if this lasts", metadata: ["error": "\(error)"]) }
                    failing = true
                }
                try? await clock.sleep(for: client.endpoints.pingInterval)
            }
        }
        defer { heartbeat.cancel() }
        var done = 0
        var takeFailures = 0
        while maximumJobs.map({ done < $0 }) ?? true {
            try Task.checkCancellation()
            let outcome: WorkerProtocolClient.TakeOutcome
            do {
                outcome = try await take()
                takeFailures = 0
            } catch let refused as WorkerProtocolClient.KeyRefused {
                logger.critical("\(refused.description)")
                throw refused
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                takeFailures += 1
                if takeFailures == 1 || takeFailures.isMultiple(of: 60) {
                    logger.warning("job-take failed; asking again every 5 s", metadata: ["error": "\(error)", "failures": "\(takeFailures)"])
                }
                try await clock.sleep(for: .seconds(5))
                continue
            }
            switch outcome {
            case .none: continue
            case .slowDown: try await clock.sleep(for: .seconds(5))
            case .job(let job):
                running.withLockedValue { $0.append(job.id) }
                defer { running.withLockedValue { $0.removeAll { $0 == job.id } } }
                try await handle(job)
                done += 1
            }
        }
    }

    /// How long a shutdown lets a job-take in flight finish: the queue may have handed a job
    /// over already, and that job is then handed back at once instead of waiting out its lease.
    static let takeGrace: Duration = .seconds(2)

    /// A job-take that a shutdown cancels only after `takeGrace` (the long poll would otherwise
    /// hold the shutdown for up to 90 s). A job it brings is then reported as preempted by `handle`.
    func take() async throws -> WorkerProtocolClient.TakeOutcome {
        let (take, clock) = (Task { [client] in try await client.take() }, clock)
        let grace = NIOLockedValueBox<Task<Void, Never>?>(nil)
        defer { grace.withLockedValue { $0?.cancel() } }
        do {
            return try await withTaskCancellationHandler {
                try await take.value
            } onCancel: {
                grace.withLockedValue {
                    $0 = Task {
                        guard (try? await clock.sleep(for: Self.takeGrace)) != nil else { return }
                        take.cancel()
                    }
                }
            }
        } catch  where Task.isCancelled {
            throw CancellationError()  // the grace ran out: a shutdown, not a failed take
        }
    }

    enum Ending: Sendable {
        case finished(JSONValue)
        case failed(JobFailure)
        case preempted(JSONValue)
    }

    /// Runs one job to its report. Throws `CancellationError` after reporting a preemption, and
    /// `KeyRefused` when the key was refused mid-job (the job is stopped, nothing reported).
    public func handle(_ job: WorkerProtocolClient.TakenJob) async throws {
        let client = client
        let logger = logger.with(job: job.id)
        logger.info("job taken")
        // With a progress channel the server hears it all first-hand (it then polls RunPod rarely);
        // RunPod's job-done still gets everything.
        let channel = JobInput.progressChannelURL(in: job.input)
        let reporter = ProgressReporter(interval: progressInterval) { progress in
            if let channel { try? await client.post(channel: channel, ["status": "IN_PROGRESS", "output": progress]) }
            try await client.progress(jobID: job.id, progress)
        }
        let stopRequested = NIOLockedValueBox(false)
        let refusal = NIOLockedValueBox<WorkerProtocolClient.KeyRefused?>(nil)
        let work = Task { () -> Ending in
            do {
                return .finished(try await handler.run(job, progress: reporter))
            } catch let preempted as JobPreempted {
                return .preempted(preempted.output)
            } catch is CancellationError {
                return .preempted([:])
            } catch let failure as JobFailure {
                return .failed(failure)
            } catch {
                return .failed(JobFailure("The worker failed: \(error)"))
            }
        }
        let stopWatch = Task { [stopPollInterval, clock] in
            while !Task.isCancelled {
                do {
                    if try await client.jobsToStop().contains(job.id) {
                        stopRequested.withLockedValue { $0 = true }
                        work.cancel()
                        return
                    }
                } catch let refused as WorkerProtocolClient.KeyRefused {
                    // The key was revoked: nothing this worker sends counts any more, and the job
                    // is already back in the queue. Stop the trainer rather than train for nobody.
                    refusal.withLockedValue { $0 = refused }
                    stopRequested.withLockedValue { $0 = true }
                    work.cancel()
                    return
                } catch {}
                try? await clock.sleep(for: stopPollInterval)
            }
        }
        let ending = await withTaskCancellationHandler {
            await work.value
        } onCancel: {
            work.cancel()
        }
        stopWatch.cancel()
        await reporter.drain()
        let body: (output: JSONValue?, error: String?)
        switch ending {
        case _ where stopRequested.withLockedValue({ $0 }):
            if let refused = refusal.withLockedValue({ $0 }) {
                logger.critical("job stopped: \(refused.description)")
                throw refused
            }
            // The platform ended the job (cancelled, timed out) and expects nothing more: an error
            // posted now could turn CANCELLED into FAILED (runpod-python posts nothing either).
            logger.info("job stopped on request")
            return
        case .finished(let output): body = (output, nil)
        case .failed(let failure): body = (nil, failure.report)
        case .preempted(let output): body = (WorkerResult.preempted(output), nil)
        }
        // On a task of its own: a worker shutting down still reports the job's end.
        if let channel {
            var report: [(String, JSONValue)] = []
            if let output = body.output { report.append(("output", output)) }
            if let error = body.error { report.append(("error", .string(error))) }
            let posted: Void? = await Task { try? await client.post(channel: channel, .object(report)) }.value
            if posted == nil { logger.warning("the job's result could not be posted to its progress channel") }
        }
        do {
            try await Task { try await client.finish(jobID: job.id, output: body.output, error: body.error) }.value
            switch ending {
            case .finished: logger.info("job finished")
            case .failed(let failure): logger.info("job failed", metadata: ["error": "\(failure.message)"])
            case .preempted: logger.info("job preempted; reported for a resume elsewhere")
            }
        } catch {
            // Logged, and the worker goes on: the job's lease runs out and the queue takes it back.
            logger.error("the job's result could not be posted", metadata: ["error": "\(error)"])
        }
        if case .preempted = ending { throw CancellationError() }
    }
}

extension Logger {
    func with(job id: String) -> Logger {
        var logger = self
        logger[metadataKey: "job"] = "\(id)"
        return logger
    }
}
