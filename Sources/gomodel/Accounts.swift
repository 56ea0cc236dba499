import ArgumentParser
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import TrainerServer
import Vapor

struct Users: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Manage accounts.", subcommands: [Create.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create an account (for headless setups and GOMODEL_SIGNUP=closed).")

        @ArgumentParser.Option(help: "E-mail address of the account.") var email: String
        @ArgumentParser.Option(help: "Password (at least 10 characters). Omit it to read it from standard input, which keeps it out of the process list.")
        var password: String?
        @ArgumentParser.Flag(help: "Make the account an administrator (the first account always is).") var admin = false
        @OptionGroup var options: ServerOptions

        func run() async throws {
            let configuration = try Startup.configuration(options: options)
            let password = try password ?? readSecretLine(prompt: "Password: ")
            try await Startup.withApplication(configuration) { app in
                try await app.autoMigrate()
                let isAdmin = try await Administration(app: app).createUser(email: email, password: password, admin: admin ? true : nil)
                print("Created \(email)\(isAdmin ? " (administrator)" : "").")
            }
        }
    }
}

struct Tokens: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Manage API tokens.", subcommands: [Create.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create an API token for an account and print it (shown only once).")

        @ArgumentParser.Option(help: "E-mail address of the account.") var email: String
        @ArgumentParser.Option(help: "A name that tells the token apart.") var name = "cli"
        @OptionGroup var options: ServerOptions

        func run() async throws {
            let configuration = try Startup.configuration(options: options)
            try await Startup.withApplication(configuration) { app in
                try await app.autoMigrate()
                print(try await Administration(app: app).createToken(email: email, name: name))
            }
        }
    }
}

struct Workers: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Manage GPU workers of the built-in queue.", subcommands: [CreateKey.self])

    struct CreateKey: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "create-key",
            abstract: "Create a key for `gomodel worker --server URL --key KEY` and print it (shown only once)."
        )

        @ArgumentParser.Option(help: "A name that tells the worker apart (shown in job events).") var name = "worker"
        @OptionGroup var options: ServerOptions

        func run() async throws {
            let configuration = try Startup.configuration(options: options)
            try await Startup.withApplication(configuration) { app in
                try await app.autoMigrate()
                print(try await Administration(app: app).createWorkerKey(name: name))
            }
        }
    }
}

/// Reads a password from standard input, without echo when it is a terminal.
private func readSecretLine(prompt: String) throws -> String {
    do {
        return try readLineFromInput(prompt: prompt)
    } catch {
        throw ValidationError("No password given: pass --password or type it on standard input.")
    }
}
