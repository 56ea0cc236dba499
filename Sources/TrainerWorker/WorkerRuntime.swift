import Foundation
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

/// Progress updates sent one at a time and in order, the newest winning, at most one per
/// `interval`, or per `phaseChangeInterval` when the phase changed: a short phase (a sampling
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

    public init(interval: Duration, phaseChangeInterval: Duration? = nil, send: @escaping @Sendable (JSONValue) async throws -> Void) {
        self.interval = interval
        self.phaseChangeInterval = min(phaseChangeInterval ?? .seconds(1), interval)
        self.send = send
    }

    public func report(_ progress: JSONValue) {
        guard !closed else { return }
        pending = progress
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
            lastSent = (.now, next["phase"])
            // A lost progress update is not worth failing the job for.
            try? await send(next)
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

/// The worker loop (reference/runpod.md §2.3–§2.9): take a job, run it with a heartbeat on its own
/// task (training can never starve it) and a job-stop watcher that cancels the handler, then post
/// the result once every progress update has arrived.
public struct WorkerRuntime: Sendable {
    let client: WorkerProtocolClient
    let handler: any JobHandler
    var progressInterval: Duration
    var stopPollInterval: Duration

    public init(client: WorkerProtocolClient, handler: any JobHandler, progressInterval: Duration = .seconds(3), stopPollInterval: Duration = .seconds(2)) {
        self.client = client
        self.handler = handler
        self.progressInterval = progressInterval
        self.stopPollInterval = stopPollInterval
    }

    /// Takes and runs jobs until cancelled (SIGTERM: the job in hand is finished first by the
    /// caller's choice of when to cancel), or until `maximumJobs` have run.
    public func run(maximumJobs: Int? = nil) async throws {
        var done = 0
        while !Task.isCancelled, maximumJobs.map({ done < $0 }) ?? true {
            let outcome: WorkerProtocolClient.TakeOutcome
            do {
                outcome = try await client.take()
            } catch is CancellationError {
                return
            } catch {
                try await Task.sleep(for: .seconds(5))
                continue
            }
            switch outcome {
            case .none: continue
            case .slowDown: try await Task.sleep(for: .seconds(5))
            case .job(let job):
                try await handle(job)
                done += 1
            }
        }
    }

    enum Ending: Sendable {
        case finished(JSONValue)
        case failed(JobFailure)
        case stopped
    }

    public func handle(_ job: WorkerProtocolClient.TakenJob) async throws {
        let client = client
        let reporter = ProgressReporter(interval: progressInterval) { try await client.progress(jobID: job.id, $0) }
        // Stopped by the server (job-stop) is reported; stopped because this worker is shutting
        // down (SIGTERM, preemption) is not: the job's lease runs out and it resumes elsewhere.
        let stopRequested = NIOLockedValueBox(false)
        let work = Task { () -> Ending in
            do {
                return .finished(try await handler.run(job, progress: reporter))
            } catch is CancellationError {
                return .stopped
            } catch let failure as JobFailure {
                return .failed(failure)
            } catch {
                return .failed(JobFailure("The worker failed: \(error)"))
            }
        }
        let heartbeat = Task {
            while !Task.isCancelled {
                try? await client.ping(jobIDs: [job.id])
                try? await Task.sleep(for: client.endpoints.pingInterval)
            }
        }
        let stopWatch = Task { [stopPollInterval] in
            while !Task.isCancelled {
                if let ids = try? await client.jobsToStop(), ids.contains(job.id) {
                    stopRequested.withLockedValue { $0 = true }
                    work.cancel()
                    return
                }
                try? await Task.sleep(for: stopPollInterval)
            }
        }
        let ending = await withTaskCancellationHandler { await work.value } onCancel: { work.cancel() }
        stopWatch.cancel()
        await reporter.drain()
        defer { heartbeat.cancel() }
        switch ending {
        case .finished(let output): try await client.finish(jobID: job.id, output: output)
        case .failed(let failure): try await client.finish(jobID: job.id, error: failure.report)
        case .stopped where stopRequested.withLockedValue({ $0 }):
            try await client.finish(jobID: job.id, error: "Stopped on request.")
        case .stopped:
            throw CancellationError()
        }
    }
}
