import Foundation
import NIOConcurrencyHelpers
import TrainerCore
#if canImport(Glibc)
import Glibc
#endif

/// The trainer as a child process: its stdout and stderr go to the log file and, split into
/// lines (tqdm's `\r` redraws included), to `onLine`, in order. `stop()` (also what cancelling
/// `run` does) stops it the way ai-toolkit expects: SIGINT (it saves nothing more and exits 0),
/// then SIGKILL after `stopGrace`.
final class TrainerProcess: Sendable {
    let command: [String]
    let directory: String?
    let environment: [String: String]
    let logPath: String
    let stopGrace: Duration

    private enum State {
        case notStarted, running(pid_t), stopRequested, exited
    }
    private let state = NIOLockedValueBox(State.notStarted)

    init(command: [String], directory: String?, environment: [String: String], logPath: String, stopGrace: Duration) {
        self.command = command
        self.directory = directory
        self.environment = environment
        self.logPath = logPath
        self.stopGrace = stopGrace
    }

    /// Starts the trainer and returns its exit status once it has exited and all its output
    /// has been handed to `onLine`.
    func run(onLine: @escaping @Sendable (String) async -> Void) async throws -> Int32 {
        guard let executable = command.first else { throw JobFailure("No trainer command is configured (AI_TOOLKIT_DIR or GOMODEL_TRAINER_COMMAND).") }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable.hasPrefix("/") ? executable : "/usr/bin/env")
        process.arguments = executable.hasPrefix("/") ? Array(command.dropFirst()) : command
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }.merging(["PYTHONUNBUFFERED": "1"]) { _, new in new }
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        let (chunks, continuation) = AsyncStream<(Int, Data)>.makeStream()
        let open = NIOLockedValueBox(2)
        for (index, pipe) in [output, errors].enumerated() {
            pipe.fileHandleForReading.readabilityHandler = { handle in
                let data = handle.availableData
                if data.isEmpty {
                    handle.readabilityHandler = nil
                    if open.withLockedValue({ $0 -= 1; return $0 }) == 0 { continuation.finish() }
                } else {
                    continuation.yield((index, data))
                }
            }
        }
        let exited = NIOLockedValueBox<CheckedContinuation<Int32, Never>?>(nil)
        let status = NIOLockedValueBox<Int32?>(nil)
        process.terminationHandler = { [state] process in
            let code = process.terminationStatus
            state.withLockedValue { $0 = .exited }
            let waiting = exited.withLockedValue { waiting -> CheckedContinuation<Int32, Never>? in
                status.withLockedValue { $0 = code }
                defer { waiting = nil }
                return waiting
            }
            waiting?.resume(returning: code)
        }
        let startAllowed = state.withLockedValue { current -> Bool in
            if case .stopRequested = current { return false }
            return true
        }
        guard startAllowed, !Task.isCancelled else { throw CancellationError() }
        do {
            try process.run()
        } catch {
            throw JobFailure("The trainer could not be started (\(command.joined(separator: " "))): \(error)")
        }
        let pid = process.processIdentifier
        let stoppedEarly = state.withLockedValue { current -> Bool in
            if case .stopRequested = current { current = .running(pid); return true }
            if case .notStarted = current { current = .running(pid) }
            return false
        }
        if stoppedEarly { stop() }
        return await withTaskCancellationHandler {
            var pending = ["", ""]
            for await (index, data) in chunks {
                log.write(data)
                for line in TrainerLog.lines(appending: String(decoding: data, as: UTF8.self), to: &pending[index]) { await onLine(line) }
            }
            for rest in pending where !rest.isEmpty { await onLine(rest) }
            try? log.close()
            return await withCheckedContinuation { waiting in
                let known = exited.withLockedValue { slot -> Int32? in
                    if let code = status.withLockedValue({ $0 }) { return code }
                    slot = waiting
                    return nil
                }
                if let known { waiting.resume(returning: known) }
            }
        } onCancel: {
            self.stop()
        }
    }

    /// SIGINT now, SIGKILL after `stopGrace` if it is still running; before it starts, it never will.
    func stop() {
        let pid = state.withLockedValue { current -> pid_t? in
            switch current {
            case .running(let pid): return pid
            case .notStarted: current = .stopRequested; return nil
            case .stopRequested, .exited: return nil
            }
        }
        guard let pid else { return }
        kill(pid, SIGINT)
        // Not a child of the job's task group: it must outlive a cancelled job, and it does
        // nothing once the trainer has exited (the state says so; a reused pid is never hit).
        Task { [state, stopGrace] in
            try? await Task.sleep(for: stopGrace)
            state.withLockedValue { current in
                if case .running(let running) = current, running == pid { kill(pid, SIGKILL) }
            }
        }
    }
}
