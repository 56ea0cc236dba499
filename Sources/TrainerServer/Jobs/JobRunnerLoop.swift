import Fluent
import Vapor

struct JobRunnerKey: StorageKey {
    typealias Value = JobRunner
}

struct BuiltInQueueKey: StorageKey {
    typealias Value = BuiltInQueue
}

/// Runs `round` once a second while the server runs; a failed round is logged and the next one
/// tries again (leases make every step safe to repeat).
final class BackgroundLoop: LifecycleHandler, @unchecked Sendable {
    let name: String
    let round: @Sendable (any Database) async throws -> Void
    private var task: Task<Void, Never>?

    init(name: String, round: @escaping @Sendable (any Database) async throws -> Void) {
        self.name = name
        self.round = round
    }

    func didBootAsync(_ application: Application) async throws {
        let round = round
        let name = name
        let logger = application.logger
        let db = application.db
        task = Task {
            while !Task.isCancelled {
                do {
                    try await round(db)
                } catch {
                    logger.warning("\(name) round failed; retrying", metadata: ["error": "\(error)"])
                }
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    func shutdownAsync(_ application: Application) async {
        task?.cancel()
        await task?.value
    }
}
