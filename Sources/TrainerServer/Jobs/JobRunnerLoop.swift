import Vapor

struct JobRunnerKey: StorageKey {
    typealias Value = JobRunner
}

/// Runs `JobRunner.tick` once a second while the server runs; a failed round is logged and the
/// next one tries again (leases make every step safe to repeat).
final class JobRunnerLoop: LifecycleHandler, @unchecked Sendable {
    let runner: JobRunner
    private var task: Task<Void, Never>?

    init(runner: JobRunner) { self.runner = runner }

    func didBootAsync(_ application: Application) async throws {
        let runner = runner
        let logger = application.logger
        let db = application.db
        task = Task {
            while !Task.isCancelled {
                do {
                    try await runner.tick(on: db)
                } catch {
                    logger.warning("job runner round failed; retrying", metadata: ["error": "\(error)"])
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
