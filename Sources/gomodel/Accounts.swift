import ArgumentParser
import Fluent
import Foundation
import TrainerCore
import TrainerServer
import Vapor

#if canImport(Glibc)
    import Glibc
#endif

struct Users: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Manage accounts.", subcommands: [Create.self, Unlock.self])

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

extension Users {
    struct Unlock: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Lift the sign-in locks that failed passwords put on an account, from every address.")

        @ArgumentParser.Option(help: "E-mail address of the account.") var email: String
        @OptionGroup var options: ServerOptions

        func run() async throws {
            try await Startup.administering(options) { app in
                try await Administration(app: app).unlock(email: email)
                print("Sign-in locks on \(email) lifted.")
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
            try await Startup.administering(options) { app in
                print(try await Administration(app: app).createToken(email: email, name: name))
            }
        }
    }
}

struct Workers: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Manage GPU workers of the built-in queue.", subcommands: [CreateKey.self, List.self, Revoke.self])

    struct CreateKey: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "create-key",
            abstract: "Create a key for `gomodel worker --server URL --key KEY` and print it (shown only once)."
        )

        @ArgumentParser.Option(help: "A name that tells the worker apart (shown in job events; unique among keys not revoked).") var name = "worker"
        @OptionGroup var options: ServerOptions

        func run() async throws {
            try await Startup.administering(options) { app in
                print(try await Administration(app: app).createWorkerKey(name: name))
            }
        }
    }
}

extension Workers {
    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the worker keys: when each was last used, how many jobs its workers hold, and whether it is revoked.")

        @OptionGroup var options: ServerOptions

        func run() async throws {
            try await Startup.administering(options) { app in
                let rows = try await Administration(app: app).workerKeys()
                guard !rows.isEmpty else { return print("No worker keys yet: create one with `gomodel workers create-key --name NAME`.") }
                let date = { (date: Date?) in date.map { $0.formatted(.iso8601) } ?? "never" }
                let table =
                    [["NAME", "ID", "CREATED", "LAST USED", "JOBS", "STATE"]]
                    + rows.map {
                        [
                            $0.name, $0.id.uuidString.lowercased(), date($0.createdAt), date($0.lastUsedAt), String($0.runningJobs),
                            $0.revokedAt.map { "revoked \(date($0))" } ?? "active",
                        ]
                    }
                let widths = (0..<6).map { column in table.map { $0[column].count }.max()! }
                for row in table {
                    print(zip(row, widths).map { $0.0.padding(toLength: $0.1, withPad: " ", startingAt: 0) }.joined(separator: "  ").trimmingCharacters(in: .whitespaces))
                }
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Revoke a worker key: its workers are refused from their next call, and the jobs they run go back to the queue."
        )

        @ArgumentParser.Argument(help: "The key's name or id (`gomodel workers list`).") var key: String
        @OptionGroup var options: ServerOptions

        func run() async throws {
            try await Startup.administering(options) { app in
                let revoked = try await Administration(app: app).revokeWorkerKey(key)
                let jobs =
                    switch revoked.runningJobs {
                    case 0: ""
                    case 1: " The job its workers were running goes back to the queue."
                    case let count: " The \(count) jobs its workers were running go back to the queue."
                    }
                print("Revoked the worker key '\(revoked.name)'.\(jobs)")
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
