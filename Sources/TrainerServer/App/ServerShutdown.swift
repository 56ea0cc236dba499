import NIOConcurrencyHelpers
import Vapor

/// Stops the HTTP server first when the app shuts down, after ending the answers that wait.
///
/// Vapor shuts the lifecycle handlers down (Fluent's closes the databases) before the HTTP server
/// (the serve command, kept in the app's storage): a request still running then, such as a worker's
/// job-take long poll, used a closed database, and `request.db` ended the process. Registered last,
/// this handler's shutdown runs first: the answers that wait (job-take, a job's event stream) see
/// `isStopping` at their next step and end, and the HTTP server lets the requests in flight finish,
/// for up to its shutdown timeout (10 s), before the rest shuts down.
final class ServerShutdown: LifecycleHandler, Sendable {
    struct Key: StorageKey {
        typealias Value = ServerShutdown
    }

    private let stopping = NIOLockedValueBox(false)

    var isStopping: Bool { stopping.withLockedValue { $0 } }

    func shutdownAsync(_ application: Application) async {
        stopping.withLockedValue { $0 = true }
        await application.http.server.shared.shutdown()
    }

    func shutdown(_ application: Application) {
        stopping.withLockedValue { $0 = true }
        application.http.server.shared.shutdown()
    }
}
