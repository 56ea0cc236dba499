import Logging
import Vapor

/// Logging for every `gomodel` command: one line per event on standard error (standard output is
/// for command results, such as the token `gomodel tokens create` prints), at the level of
/// `LOG_LEVEL` (or `--log`), with one rule that keeps secrets out of the log.
///
/// Libraries' debug and trace output carries raw request heads and bodies (Authorization headers,
/// cookies, passwords) and SQL with bound values (password hashes), so below `info` only our own
/// modules are heard.
public enum GomodelLogging {
    public static let ownModules: Set<String> = ["gomodel", "TrainerCore", "TrainerServer", "TrainerWorker"]

    public static func bootstrap(from environment: inout Environment) throws {
        try LoggingSystem.bootstrap(from: &environment) { level in
            { label in
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = level
                return OwnModulesBelowInfo(wrapped: handler)
            }
        }
    }

    struct OwnModulesBelowInfo: LogHandler {
        var wrapped: any LogHandler

        var logLevel: Logger.Level {
            get { wrapped.logLevel }
            set { wrapped.logLevel = newValue }
        }

        var metadata: Logger.Metadata {
            get { wrapped.metadata }
            set { wrapped.metadata = newValue }
        }

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { wrapped[metadataKey: key] }
            set { wrapped[metadataKey: key] = newValue }
        }

        func log(event: LogEvent) {
            guard event.level >= .info || GomodelLogging.ownModules.contains(event.source) else { return }
            wrapped.log(event: event)
        }
    }
}
