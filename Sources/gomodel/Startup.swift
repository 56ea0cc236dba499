import ArgumentParser
import Fluent
import Foundation
import TrainerCore
import TrainerServer
import Vapor

/// Options every server-side command shares.
struct ServerOptions: ParsableArguments {
    @ArgumentParser.Option(name: .customLong("data-dir"), help: "Folder for the SQLite database, the built-in store and generated secrets (default: $GOMODEL_DATA_DIR or ./data).")
    var dataDirectory: String?
}

enum Startup {
    /// Reads the configuration from the environment and `./.env` (the environment wins).
    /// An invalid configuration ends the process with exit code 2 and every problem listed.
    /// `ignoring` names settings that mean nothing to the command (the worker ignores the
    /// server's RunPod client settings, which RunPod's own workers may carry).
    static func configuration(options: ServerOptions, ignoring: Set<String> = []) throws -> Configuration {
        do {
            var environment = ProcessInfo.processInfo.environment
            if let text = try? String(contentsOfFile: ".env", encoding: .utf8) {
                environment = try DotEnv.parse(text).merging(environment) { _, process in process }
            }
            environment = environment.filter { !ignoring.contains($0.key) }
            var configuration = try Configuration(environment: environment)
            if let dataDirectory = options.dataDirectory { configuration.dataDirectory = dataDirectory }
            return configuration
        } catch let error as DotEnv.ParseError {
            return try fail("gomodel: \(error)")
        } catch let error as ConfigurationError {
            return try fail("gomodel: \(error)")
        }
    }

    /// Runs `body` with a configured application and shuts it down afterwards, also on errors.
    static func withApplication<T>(
        _ configuration: Configuration, arguments: [String] = ["gomodel"], _ body: (Application) async throws -> T
    ) async throws -> T {
        var environment = Environment(name: "production", arguments: arguments)
        try GomodelLogging.bootstrap(from: &environment)
        let app = try await Application.make(environment)
        do {
            try configure(app, configuration: configuration)
            for warning in configuration.warnings { app.logger.warning("\(warning)") }
            let result = try await body(app)
            try await app.asyncShutdown()
            return result
        } catch let error as ConfigurationError {
            try? await app.asyncShutdown()
            return try fail("gomodel: \(error)")
        } catch {
            try? await app.asyncShutdown()
            throw error
        }
    }

    /// For the administration commands: the configuration from `options`, the database brought
    /// up to date, then `body`.
    static func administering(_ options: ServerOptions, _ body: (Application) async throws -> Void) async throws {
        try await withApplication(configuration(options: options)) { app in
            try await app.autoMigrate()
            try await body(app)
        }
    }

    private static func fail<T>(_ message: String) throws -> T {
        FileHandle.standardError.write(Data((message + "\n").utf8))
        throw ExitCode(2)
    }
}
