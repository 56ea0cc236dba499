import ArgumentParser
import Fluent
import TrainerCore
import TrainerServer
import Vapor

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the web app, the API and the background services (migrates the database first).")

    @ArgumentParser.Option(help: "Address to listen on.") var host = "127.0.0.1"
    @ArgumentParser.Option(help: "Port to listen on; 0 lets the system choose one (the log's \"gomodel serving\" line says which).") var port = 8080
    @OptionGroup var options: ServerOptions

    func run() async throws {
        let configuration = try Startup.configuration(options: options)
        try await Startup.withApplication(configuration, arguments: ["gomodel", "serve", "--hostname", host, "--port", String(port)]) { app in
            try await app.autoMigrate()
            // Said once the server listens: only then is the port known when the system chose it.
            let server = app.http.server.shared  // the one `execute` starts, made here before it runs
            let announcement = Task { [host] in
                while !Task.isCancelled {
                    if let bound = server.localAddress?.port {
                        Self.announce(app, configuration: configuration, host: host, port: bound)
                        return
                    }
                    try? await Task.sleep(for: .milliseconds(10))
                }
            }
            defer { announcement.cancel() }
            try await app.execute()
        }
    }
}

extension Serve {
    /// Logs where the server answers, and records it for `gomodel storage credentials` (a
    /// wildcard address is reached through the loopback one).
    static func announce(_ app: Application, configuration: Configuration, host: String, port: Int) {
        let reachable = ["0.0.0.0", "::", "[::]"].contains(host) ? "127.0.0.1" : host
        try? "http://\(reachable):\(port)\n".write(toFile: Storage.Credentials.addressFile(dataDirectory: configuration.dataDirectory), atomically: true, encoding: .utf8)
        app.logger.notice(
            "gomodel serving",
            metadata: [
                "address": "http://\(host):\(port)",
                "database": "\(configuration.database.summary(dataDirectory: configuration.dataDirectory))",
                "signup": "\(configuration.signupPolicy.rawValue)",
            ])
    }
}

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Bring the database schema up to date (serve does this on start too).")

    @OptionGroup var options: ServerOptions

    func run() async throws {
        let configuration = try Startup.configuration(options: options)
        try await Startup.withApplication(configuration) { app in
            try await app.autoMigrate()
            print("The database is up to date (\(configuration.database.summary(dataDirectory: configuration.dataDirectory))).")
        }
    }
}

extension DatabaseSettings {
    /// Where the data lives, without credentials.
    func summary(dataDirectory: String) -> String {
        switch self {
        case .sqlite: "SQLite at \(dataDirectory)/gomodel.sqlite"
        case .postgres: "PostgreSQL from DATABASE_URL"
        }
    }
}
