import Fluent
import NIOConcurrencyHelpers
import Vapor

struct JobRunnerKey: StorageKey {
    typealias Value = JobRunner
}

struct BuiltInQueueKey: StorageKey {
    typealias Value = BuiltInQueue
}

/// Wakes a `BackgroundLoop` before its second is up (a job was just created on this instance).
final class Wakeup: Sendable {
    private let pending = NIOLockedValueBox(false)
    func signal() { pending.withLockedValue { $0 = true } }
    func take() -> Bool {
        pending.withLockedValue { value in
            defer { value = false }
            return value
        }
    }
}

/// Runs `round` every `interval` (a second unless given) while the server runs, at once again
/// when it reports work left over or `wakeup` is signalled; a failed round is logged and the next one tries again (leases
/// make every step safe to repeat).
final class BackgroundLoop: LifecycleHandler, @unchecked Sendable {
    let name: String
    let wakeup: Wakeup
    let round: @Sendable (any Database) async throws -> Bool
    /// Waits for work a round started and did not wait for, at shutdown.
    let drain: @Sendable () async -> Void
    let clock: any Clock<Duration>
    let interval: Duration
    private var task: Task<Void, Never>?

    init(
        name: String, wakeup: Wakeup, clock: any Clock<Duration>, interval: Duration = .seconds(1), drain: @escaping @Sendable () async -> Void = {},
        round: @escaping @Sendable (any Database) async throws -> Bool
    ) {
        self.name = name
        self.wakeup = wakeup
        self.clock = clock
        self.interval = interval
        self.drain = drain
        self.round = round
    }

    func didBootAsync(_ application: Application) async throws {
        let round = round
        let name = name
        let wakeup = wakeup
        let clock = clock
        let ticks = Int(interval / .milliseconds(50))
        let logger = application.logger
        let db = application.db
        task = Task {
            while !Task.isCancelled {
                var more = false
                do {
                    more = try await round(db)
                } catch {
                    logger.warning("\(name) round failed; retrying", metadata: ["error": "\(error)"])
                }
                var waited = 0
                while !more, waited < ticks, !wakeup.take(), !Task.isCancelled {
                    try? await clock.sleep(for: .milliseconds(50))
                    waited += 1
                }
            }
        }
    }

    func shutdownAsync(_ application: Application) async {
        task?.cancel()
        await task?.value
        await drain()
    }
}

/// Calls an instance has in flight, one task each, at most `limit` at once and one per key: a
/// call that hangs (an answer lost, a slow network, a slow webhook receiver) delays only its own
/// piece of work, never the others. Shared by every copy of its owner.
final class InFlightCalls: Sendable {
    let limit: Int
    private let running = NIOLockedValueBox<[UUID: Task<Void, Never>]>([:])

    init(limit: Int) {
        self.limit = limit
    }

    /// Starts `work` for `key`, unless a call for it is in flight or `limit` are; returns its task.
    func start(_ key: UUID, _ work: @escaping @Sendable () async -> Void) -> Task<Void, Never>? {
        running.withLockedValue { running in
            guard running[key] == nil, running.count < limit else { return nil }
            // The task removes itself under the same lock, so only after it was added.
            let task = Task {
                await work()
                _ = self.running.withLockedValue { $0.removeValue(forKey: key) }
            }
            running[key] = task
            return task
        }
    }

    var inFlight: Int { running.withLockedValue { $0.count } }

    /// The keys with a call in flight.
    var busy: [UUID] { running.withLockedValue { Array($0.keys) } }

    /// Waits for the calls in flight (a server shutting down).
    func drain() async {
        for task in running.withLockedValue({ Array($0.values) }) { await task.value }
    }
}
