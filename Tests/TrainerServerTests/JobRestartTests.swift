import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import Testing
import TrainerClient
import TrainerCore
import TrainerWorker

/// The real `gomodel serve` binary, killed with SIGKILL while it tracks a job at the fake RunPod,
/// then started again: it picks the job up where it was and records its result.
@Suite struct JobRestartTests {
    static let binary = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent(".build/debug/gomodel").path

    /// `gomodel serve`, its output appended to `log`.
    struct Server {
        let pid: pid_t
        let exit: ChildProcess.Exit

        init(environment: [String: String], port: Int, log: URL) throws {
            (pid, exit) = try JobRestartTests.spawn(["serve", "--port", String(port)], environment: environment, outputPath: log.path, append: true)
        }

        func kill() async {
            Glibc.kill(pid, SIGKILL)
            _ = await exit.status
        }
    }

    /// Starts the binary with its standard output and error both into the file at `outputPath`
    /// (a file, not a pipe: what it shows can be read while it runs). Through `ChildProcess`, so it
    /// holds no other child's pipe, and waited for without blocking a thread the tests share.
    static func spawn(_ arguments: [String], environment: [String: String], outputPath: String, append: Bool = false) throws -> (pid_t, ChildProcess.Exit) {
        let output = open(outputPath, O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : O_TRUNC), 0o644)
        guard output >= 0 else { throw POSIXError(.EIO) }
        defer { close(output) }
        let pid = try ChildProcess.spawn([binary] + arguments, environment: environment, output: output, errors: output)
        return (pid, ChildProcess.Exit(of: pid))
    }

    static func run(_ arguments: [String], environment: [String: String]) async throws -> String {
        try await runWithStatus(arguments, environment: environment).output
    }

    /// The CLI running in the background, its output (standard output and error together) readable
    /// as it comes, for tests that wait for what it shows. Killed if still running when the test
    /// lets go of it (a failed test leaves no `train --watch` behind).
    final class CLIProcess: Sendable {
        let pid: pid_t
        let exit: ChildProcess.Exit
        let outputPath: String

        init(_ arguments: [String], environment: [String: String]) throws {
            outputPath = FileManager.default.temporaryDirectory.appendingPathComponent("gomodel-cli-\(UUID().uuidString).log").path
            (pid, exit) = try JobRestartTests.spawn(arguments, environment: environment, outputPath: outputPath)
        }

        deinit {
            if !exit.hasExited { Glibc.kill(pid, SIGKILL) }
        }

        var output: String { (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "" }

        /// Its output and exit status, once it has ended.
        func wait() async -> (output: String, status: Int32) {
            let status = await exit.status
            defer { try? FileManager.default.removeItem(atPath: outputPath) }
            return (output.trimmingCharacters(in: .whitespacesAndNewlines), status)
        }
    }

    /// Runs the CLI; returns its standard output and error (together, as written) and exit status.
    static func runWithStatus(_ arguments: [String], environment: [String: String]) async throws -> (output: String, status: Int32) {
        try await CLIProcess(arguments, environment: environment).wait()
    }

    static func waitFor(_ what: String, timeout: TimeInterval = 20, _ condition: () async throws -> Bool) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if (try? await condition()) == true { return }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw TimedOut(what: what, seconds: timeout)
    }

    struct TimedOut: Error, CustomStringConvertible {
        let what: String
        let seconds: TimeInterval
        var description: String { "timed out after \(Int(seconds)) s waiting for \(what)" }
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: binary), "build gomodel first (swift build)"))
    func aKilledServerResumesTrackingAfterRestart() async throws {
        let fake = FakeRunPod()
        try await fake.start()
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("gomodel-restart-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        let port = try freePort()
        let base = URL(string: "http://127.0.0.1:\(port)")!
        let environment = [
            "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin",
            "GOMODEL_DATA_DIR": work.appendingPathComponent("data").path, "GOMODEL_PUBLIC_URL": base.absoluteString,
            "RUNPOD_ENDPOINT_ID": FakeRunPod.endpointID, "RUNPOD_API_KEY": FakeRunPod.apiKey, "RUNPOD_BASE_URL": fake.baseURL.absoluteString,
        ]
        let log = work.appendingPathComponent("serve.log")
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        var server = try Server(environment: environment, port: port, log: log)
        var failure: (any Error)?
        do {
            func get(_ path: String, token: String? = nil) async throws -> (UInt, [String: Any]) {
                var request = HTTPClientRequest(url: base.absoluteString + path)
                if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
                let response = try await http.execute(request, timeout: .seconds(5))
                let body = try await response.body.collect(upTo: 1 << 20)
                return (response.status.code, (try? JSONSerialization.jsonObject(with: Data(buffer: body)) as? [String: Any]) ?? [:])
            }
            try await Self.waitFor("the server") { try await get("/healthz").0 == 200 }
            _ = try await Self.run(["users", "create", "--email", "ann@example.com", "--password", "correct horse battery"], environment: environment)
            let token = try await Self.run(["tokens", "create", "--email", "ann@example.com"], environment: environment)
            let api = ServerAPI(baseURL: base, token: token, http: http)
            let folder = try TestImage.folder(["control/cat.png": TestImage.png(), "target/cat.png": TestImage.png(), "target/cat.txt": Array("make it blue".utf8)])
            let pushed = try await DatasetPush(api: api, http: http).run(.init(directory: folder, name: "pairs"))
            #expect(pushed.dataset.sound)

            var create = HTTPClientRequest(url: base.absoluteString + "/api/jobs")
            create.method = .POST
            create.headers.add(name: "Authorization", value: "Bearer \(token)")
            create.headers.add(name: "Content-Type", value: "application/json")
            create.body = .bytes(ByteBuffer(string: #"{"datasetId": "\#(pushed.dataset.id.uuidString)", "params": {"steps": 100, "saveEvery": 50, "sampleEvery": 50}}"#))
            let created = try await http.execute(create, timeout: .seconds(5))
            let jobJSON = try JSONSerialization.jsonObject(with: Data(buffer: try await created.body.collect(upTo: 1 << 20))) as? [String: Any]
            let jobID = try #require(jobJSON?["id"] as? String)

            // The running server's own loop submits it.
            try await Self.waitFor("the submission") { fake.jobs.count == 1 }
            let runPodID = try #require(fake.jobs.first?.id)
            fake.start(runPodID)
            fake.progress(runPodID, ["phase": "training", "step": 10, "total_steps": 100])
            try await Self.waitFor("running") { try await get("/api/jobs/\(jobID)", token: token).1["status"] as? String == "running" }

            await server.kill()
            // It ends while the server is down: after the restart its poll (or a webhook attempt
            // still under way) brings the result.
            fake.complete(runPodID, output: ["steps": 100, "final_loss": 0.03, "artifacts": []])

            server = try Server(environment: environment, port: port, log: log)
            try await Self.waitFor("tracking after the restart", timeout: 60) {
                try await get("/api/jobs/\(jobID)", token: token).1["status"] as? String == "completed"
            }
            let shown = try await get("/api/jobs/\(jobID)", token: token).1
            #expect((shown["progress"] as? [String: Any])?["loss"] as? Double == 0.03)
            #expect(fake.calls("run") == 1, "never submitted twice")

            // The CLI: login, train --watch while the "GPU" works, jobs list/show/cancel/retry.
            var cli = environment
            cli["XDG_CONFIG_HOME"] = work.appendingPathComponent("config").path
            #expect(try await Self.runWithStatus(["login", "--server", base.absoluteString, "--token", token], environment: cli).status == 0)
            let watching = try CLIProcess(["train", "--dataset", "pairs", "--steps", "200", "--rank", "32", "--watch"], environment: cli)
            do {
                try await Self.waitFor("the second submission") { fake.jobs.count == 2 }
            } catch {
                Issue.record("train said: \(watching.output)")
                throw error
            }
            let second = try #require(fake.jobs.last)
            guard case .array(let processes)? = second.input["job_config"]?["config"]?["process"] else { throw POSIXError(.EBADMSG) }
            #expect(processes.first?["network"]?["linear"] == 32)
            fake.start(second.id)
            fake.progress(second.id, ["phase": "training", "step": 100, "total_steps": 200, "loss": 0.25])
            let secondID = try #require(second.input["trainer_job_id"]?.stringValue)
            try await Self.waitFor("the progress") {
                (try await get("/api/jobs/\(secondID)", token: token).1["progress"] as? [String: Any])?["step"] as? Int == 100
            }
            try await Self.waitFor("train --watch to show the progress") { watching.output.contains("step 100/200") }
            fake.complete(second.id, output: ["steps": 200, "final_loss": 0.02, "artifacts": [["kind": "lora", "key": .string("outputs/x/lora/a.safetensors")]]])
            let (watched, status) = await watching.wait()
            #expect(status == 0, "\(watched)")
            #expect(watched.contains("Queued job") && watched.contains("step 100/200") && watched.contains("loss 0.2500") && watched.contains("Completed."), "\(watched)")
            let listed = try await Self.runWithStatus(["jobs", "list"], environment: cli).output
            #expect(listed.components(separatedBy: "completed").count == 3)
            let shownCLI = try await Self.runWithStatus(["jobs", "show", jobID], environment: cli).output
            #expect(shownCLI.contains("RunPod \(runPodID)") && shownCLI.contains("completed: Completed."))
            let finishedCancel = try await Self.runWithStatus(["jobs", "cancel", jobID], environment: cli)
            #expect(finishedCancel.status != 0 && finishedCancel.output.contains("already ended"))
            let badRank = try await Self.runWithStatus(["train", "--dataset", "pairs", "--rank", "500"], environment: cli)
            #expect(badRank.status != 0 && badRank.output.contains("params.rank"))
        } catch {
            failure = error
        }
        await server.kill()
        try await http.shutdown()
        try await fake.stop()
        if let failure {
            Issue.record("server log:\n\(String(((try? String(contentsOf: log, encoding: .utf8)) ?? "").suffix(3000)))")
            throw failure
        }
        try? FileManager.default.removeItem(at: work)
    }
}
