import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import TrainerClient
import TrainerCore

#if canImport(Glibc)
    import Glibc
#endif

struct Login: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Save the server address and an API token for the client commands (in your config folder, mode 0600)."
    )

    @ArgumentParser.Option(help: "The server's address, e.g. https://trainer.example.com or http://127.0.0.1:8080.") var server: String
    @ArgumentParser.Option(
        help: "An API token (account page, or `gomodel tokens create`). Omit it or give '-' to read it from standard input, which keeps it out of the shell history.")
    var token: String?

    func run() async throws {
        guard var url = URL(string: server), let scheme = url.scheme?.lowercased(), ["http", "https"].contains(scheme), url.host != nil else {
            throw ValidationError("--server must be an http:// or https:// address, e.g. http://127.0.0.1:8080")
        }
        while url.absoluteString.hasSuffix("/") { url = URL(string: String(url.absoluteString.dropLast()))! }
        let token = try ((token == nil || token == "-") ? readLineFromInput(prompt: "Token: ") : token!).trimmingCharacters(in: .whitespaces)
        let me = try await withClient(ClientLogin(server: url, token: token)) { api, _ in try await api.me() }
        let path = ClientLogin.defaultPath()
        try ClientLogin(server: url, token: token).save(to: path)
        print("Logged in to \(url.absoluteString) as \(me.user.email); saved to \(path).")
    }
}

struct Datasets: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Upload and manage datasets (after `gomodel login`).",
        subcommands: [Push.self, List.self, Show.self, Draft.self, Remove.self]
    )

    struct Push: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Upload a folder (or a .zip) of pairs; run it again to upload only what is missing or changed.",
            discussion: """
                Layouts: control/ (input/, start/, control_2/…) and target/ (output/, end/) folders with captions as \
                target/X.txt, or fal's flat naming X_start.png, X_start2.png, X_end.png, X.txt. Files go straight \
                to the bucket; the server checks each one and reports what the dataset still needs. A .zip in either \
                layout is uploaded as one file and unpacked by the server, which checks every entry first: a refused \
                zip changes nothing.
                """
        )

        @Argument(help: "The folder, or .zip file, to upload.") var directory: String
        @ArgumentParser.Option(help: "The dataset's name; it is created if you have none of that name.") var name: String
        @ArgumentParser.Option(help: "Files uploaded at the same time.") var concurrency = 8

        func run() async throws {
            if directory.lowercased().hasSuffix(".zip") { return try await pushZip() }
            try await withClient(try ClientLogin.load()) { api, http in
                let terminal = isatty(STDERR_FILENO) == 1
                let started = Date()
                let lastDrawn = NIOLockedValueBox(Date.distantPast)
                let push = DatasetPush(api: api, http: http)
                let options = DatasetPush.Options(directory: directory, name: name, concurrency: concurrency)
                let pushing = Task {
                    try await push.run(options) { progress in
                        let now = Date()
                        let finished = progress.filesDone == progress.filesTotal
                        // Redrawn at most 10 times a second on a terminal; a line every 5 s in logs.
                        let due = lastDrawn.withLockedValue { last in
                            guard finished || now.timeIntervalSince(last) >= (terminal ? 0.1 : 5) else { return false }
                            last = now
                            return true
                        }
                        guard due, progress.filesTotal > 0 else { return }
                        let line = ProgressLine.render(progress, elapsed: now.timeIntervalSince(started))
                        FileHandle.standardError.write(Data((terminal ? "\r\u{1B}[K" + line : line + "\n").utf8))
                    }
                }
                // Ctrl-C stops the uploads, records what arrived, and leaves the rest for the next
                // run; a second Ctrl-C leaves at once.
                let interrupts = NIOLockedValueBox(0)
                let interrupt = onInterrupt {
                    if interrupts.withLockedValue({
                        $0 += 1
                        return $0
                    }) > 1 {
                        Glibc.exit(130)
                    }
                    FileHandle.standardError.write(Data("\nStopping; recording what arrived (Ctrl-C again to quit at once)…\n".utf8))
                    pushing.cancel()
                }
                defer { interrupt.cancel() }
                let result: DatasetPush.Result
                do {
                    result = try await pushing.value
                } catch  where pushing.isCancelled {
                    FileHandle.standardError.write(Data("\nInterrupted. Files that arrived are recorded; run the same command again to upload the rest.\n".utf8))
                    throw ExitCode(130)
                }
                if terminal, result.uploadedFiles + result.failures.count > 0 { FileHandle.standardError.write(Data("\n".utf8)) }
                report(result, elapsed: Date().timeIntervalSince(started))
                if !result.failures.isEmpty {
                    throw ExitCode(1)
                }
            }
        }

        /// The zip goes up as one file; the server unpacks it, and its progress is shown.
        private func pushZip() async throws {
            try await withClient(try ClientLogin.load()) { api, http in
                let terminal = isatty(STDERR_FILENO) == 1
                let started = Date()
                let lastDrawn = NIOLockedValueBox((Date.distantPast, ZipPush.Stage.uploading(bytesDone: -1, bytesTotal: 0)))
                let result = try await ZipPush(api: api, http: http).run(zip: directory, name: name) { stage in
                    let now = Date()
                    let due = lastDrawn.withLockedValue { last in
                        guard stage != last.1, now.timeIntervalSince(last.0) >= (terminal ? 0.1 : 2) || Self.isLast(stage) else { return false }
                        last = (now, stage)
                        return true
                    }
                    guard due else { return }
                    let line =
                        switch stage {
                        case .uploading(let done, let total):
                            "Uploading the zip: "
                                + ProgressLine.render(
                                    .init(filesDone: done == total ? 1 : 0, filesTotal: 1, bytesDone: done, bytesTotal: total), elapsed: now.timeIntervalSince(started))
                        case .unpacking(_, 0): "Unpacking on the server: reading the zip's directory…"
                        case .unpacking(let done, let total): "Unpacking on the server: \(done)/\(total) files checked"
                        case .writing(let done, let total):
                            "Writing into the dataset: "
                                + ProgressLine.render(.init(filesDone: 0, filesTotal: 0, bytesDone: done, bytesTotal: total), elapsed: now.timeIntervalSince(started))
                        }
                    FileHandle.standardError.write(Data((terminal ? "\r\u{1B}[K" + line : line + "\n").utf8))
                }
                if terminal { FileHandle.standardError.write(Data("\n".utf8)) }
                let dataset = result.dataset
                print("\(result.created ? "Created" : "Updated") dataset '\(dataset.name)' (\(dataset.id.uuidString.lowercased())).")
                print(
                    "Imported \(result.import.placed) file\(result.import.placed == 1 ? "" : "s") from \(result.import.fileName) (\(ProgressLine.bytes(result.import.size))) in \(ProgressLine.duration(Date().timeIntervalSince(started)))"
                        + (result.import.ignored > 0 ? "; skipped \(result.import.ignored) folder or system entries." : "."))
                printValidation(dataset)
            }
        }

        private static func isLast(_ stage: ZipPush.Stage) -> Bool {
            switch stage {
            case .uploading(let done, let total): done == total
            case .unpacking: false
            case .writing(let done, let total): done == total
            }
        }

        private func report(_ result: DatasetPush.Result, elapsed: TimeInterval) {
            let dataset = result.dataset
            print("\(result.created ? "Created" : "Updated") dataset '\(dataset.name)' (\(dataset.id.uuidString.lowercased())).")
            print(
                "Uploaded \(result.uploadedFiles) file\(result.uploadedFiles == 1 ? "" : "s") (\(ProgressLine.bytes(result.uploadedBytes))) in \(ProgressLine.duration(elapsed)); \(result.unchangedFiles) already there and unchanged."
            )
            if !result.ignored.isEmpty { print("Skipped \(result.ignored.count) system file(s) such as \(result.ignored[0]).") }
            for item in result.leftOut { print("Left out \(item.path): \(item.reason)") }
            for item in result.failures { print("FAILED \(item.path): \(item.reason)") }
            if !result.failures.isEmpty { print("Run the same command again to retry the failed files; the others are not sent again.") }
            printValidation(dataset)
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List your datasets.")

        func run() async throws {
            try await withClient(try ClientLogin.load()) { api, _ in
                let datasets = try await api.datasets()
                if datasets.isEmpty { print("No datasets yet; upload one with `gomodel datasets push DIR --name NAME`.") }
                for dataset in datasets {
                    let state = dataset.sound ? "ready" : (dataset.sampleCount == 0 ? "empty" : "\(dataset.errorCount) problem(s)")
                    print("\(dataset.id.uuidString.lowercased())  \(dataset.name)  \(dataset.sampleCount) samples  \(ProgressLine.bytes(dataset.totalBytes))  \(state)")
                }
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a dataset and its validation report.")

        @Argument(help: "The dataset's id or name.") var dataset: String

        func run() async throws {
            try await withClient(try ClientLogin.load()) { api, _ in
                let found = try await api.findDataset(dataset)
                print("\(found.name) (\(found.id.uuidString.lowercased()))")
                print(
                    "\(found.sampleCount) samples, \(found.fileCount) files, \(ProgressLine.bytes(found.totalBytes))"
                        + (found.controlsPerSample.map { ", up to \($0) control image(s) per sample" } ?? ""))
                if let caption = found.defaultCaption { print("Default caption: \(caption)") }
                printValidation(found)
            }
        }
    }

    struct Draft: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Draft edit instructions with a vision model for the samples that have none, and show the drafts.",
            discussion: """
                The server's vision model (a GPU worker's Qwen2.5-VL, or GOMODEL_CAPTION_URL's endpoint) looks at each \
                sample's controls and target. Drafts train nothing until accepted: review them on the dataset page \
                (accept, edit or reject), or with --accept-all.
                """)

        @Argument(help: "The dataset's id or name.") var dataset: String
        @ArgumentParser.Option(parsing: .upToNextOption, help: "Only these samples (stems); default: every sample without an instruction.") var stems: [String] = []
        @ArgumentParser.Flag(help: "Accept this run's drafts as written.") var acceptAll = false

        func run() async throws {
            try await withClient(try ClientLogin.load()) { api, _ in
                let found = try await api.findDataset(dataset)
                // Drafts waiting from earlier runs, to tell this run's apart.
                let earlier = Set(try await api.drafts(found.id).drafts.map(\.stem)).subtracting(stems)
                var run = try await api.startDrafts(found.id, stems: stems.isEmpty ? nil : stems)
                FileHandle.standardError.write(Data("Drafting \(run.samplesTotal) instruction(s)\(run.mode == "worker" ? " on a GPU worker" : "")…\n".utf8))
                var drafts: API.Drafts
                repeat {
                    try await Task.sleep(for: .seconds(1))
                    drafts = try await api.drafts(found.id)
                    run = drafts.run ?? run
                } while run.state == "running"
                // This run's drafts (earlier ones wait for review as they were).
                let drafted = drafts.drafts.filter { !earlier.contains($0.stem) }
                for draft in drafted { print("\(draft.stem): \(draft.text)") }
                if let error = run.error { FileHandle.standardError.write(Data("\(error)\n".utf8)) }
                guard run.state == "done" else { throw ExitCode.failure }
                if acceptAll {
                    for draft in drafted { _ = try await api.acceptDraft(found.id, stem: draft.stem) }
                    print("Accepted \(drafted.count) draft(s).")
                } else {
                    print("\(drafted.count) draft(s) to review on the dataset page (they train nothing until accepted), or run again with --accept-all.")
                }
            }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "rm", abstract: "Delete a dataset and all its files in the bucket.")

        @Argument(help: "The dataset's id or name.") var dataset: String
        @ArgumentParser.Flag(name: .shortAndLong, help: "Do not ask for confirmation.") var yes = false

        func run() async throws {
            try await withClient(try ClientLogin.load()) { api, _ in
                let found = try await api.findDataset(dataset)
                if !yes {
                    guard isatty(STDIN_FILENO) == 1 else {
                        throw ValidationError("Add --yes to delete '\(found.name)' without a terminal to confirm on.")
                    }
                    print("Delete '\(found.name)' with its \(found.fileCount) files? Type the name to confirm: ", terminator: "")
                    guard readLine(strippingNewline: true) == found.name else {
                        print("Not deleted.")
                        return
                    }
                }
                try await api.deleteDataset(found.id)
                print("Deleted '\(found.name)'.")
            }
        }
    }
}

private func printValidation(_ dataset: API.Dataset) {
    guard let validation = dataset.validation else { return }
    let errors = validation.findings.filter { $0.severity == "error" }
    let warnings = validation.findings.filter { $0.severity == "warning" }
    if validation.sound && validation.samples > 0 {
        print(
            "Ready to train: \(validation.samples) samples" + (validation.controlSummary.map { " (\($0))" } ?? "")
                + (warnings.isEmpty ? "." : ", \(warnings.count) warning(s):"))
    } else {
        print("Not ready to train: \(errors.count) problem(s) to fix" + (warnings.isEmpty ? ":" : " and \(warnings.count) warning(s):"))
    }
    for finding in errors + warnings { print("  \(finding.severity == "error" ? "error" : "warning"): \(finding.message)") }
}

/// Calls `handler` on SIGINT instead of ending the process at once.
private func onInterrupt(_ handler: @escaping @Sendable () -> Void) -> any DispatchSourceSignal {
    signal(SIGINT, SIG_IGN)
    let source = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
    source.setEventHandler(handler: handler)
    source.resume()
    return source
}

/// A command that cannot do what was asked, for a reason its message gives (printed without the
/// usage text, which a `ValidationError` of the arguments gets).
struct CommandFailure: Error, CustomStringConvertible {
    let description: String

    init(_ description: String) { self.description = description }
}

/// Runs `body` with an API client for the login, shutting the HTTP client down afterwards.
func withClient<T>(_ login: ClientLogin, _ body: (ServerAPI, HTTPClient) async throws -> T) async throws -> T {
    var configuration = HTTPClient.Configuration()
    configuration.timeout.connect = .seconds(10)
    // Downloads read the server's redirect themselves: the API token must not follow it to the bucket.
    configuration.redirectConfiguration = .disallow
    let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    do {
        let result = try await body(ServerAPI(baseURL: login.server, token: login.token, http: http), http)
        try await http.shutdown()
        return result
    } catch {
        try? await http.shutdown()
        throw error
    }
}

/// Reads one line from standard input, without echo when it is a terminal.
func readLineFromInput(prompt: String) throws -> String {
    let line: String?
    if isatty(STDIN_FILENO) == 1, let typed = getpass(prompt) {
        line = String(cString: typed)
    } else {
        line = readLine(strippingNewline: true)
    }
    guard let line, !line.isEmpty else {
        throw ValidationError("Nothing was given on standard input.")
    }
    return line
}

struct Usage: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "What your datasets and job outputs hold, your storage quota, and how long the server keeps data.")

    func run() async throws {
        try await withClient(try ClientLogin.load()) { api, _ in
            let usage = try await api.usage()
            var line = "Using \(ProgressLine.bytes(usage.usedBytes))"
            if let quota = usage.quotaBytes { line += " of your \(ProgressLine.bytes(quota)) quota" }
            print(line + ": datasets \(ProgressLine.bytes(usage.datasetBytes)), job outputs \(ProgressLine.bytes(usage.outputBytes)).")
            if let quota = usage.quotaBytes, usage.usedBytes >= quota {
                print("You are at your quota: uploads are refused until you delete datasets (`gomodel datasets rm`) or ended jobs (`gomodel jobs rm`).")
            }
            if let days = usage.retentionDays {
                print("Job outputs are deleted \(days) days after the job ends, and datasets \(days) days after they last changed or trained.")
            }
        }
    }
}
