import Foundation
import NIOConcurrencyHelpers
import TrainerCore

#if canImport(Glibc)
    import Glibc
#endif

/// The trainer as a child process: its stdout and stderr go to the log file and, split into
/// lines (tqdm's `\r` redraws included), to `onLine`, in order. `stop()` (also what cancelling
/// `run` does) stops it the way ai-toolkit expects: SIGINT (it saves nothing more and exits 0),
/// then SIGKILL after `stopGrace`. Signals go to its process group (it leads one of its own), as
/// Ctrl-C would: ai-toolkit's DataLoader workers are in it, and outlive a killed
/// trainer otherwise; what is left of the group when the trainer exits is killed.
final class TrainerProcess: Sendable {
    let command: [String]
    let directory: String?
    let environment: [String: String]
    let logPath: String
    let stopGrace: Duration

    private enum State {
        case notStarted
        case running(pid_t)
        case stopRequested, exited
    }
    private let state = NIOLockedValueBox(State.notStarted)

    init(command: [String], directory: String?, environment: [String: String], logPath: String, stopGrace: Duration) {
        self.command = command
        self.directory = directory
        self.environment = environment
        self.logPath = logPath
        self.stopGrace = stopGrace
    }

    /// Starts the trainer and returns its exit status (128 + the signal when a signal ended it)
    /// once it has exited and all its output has been handed to `onLine`.
    func run(onLine: @escaping @Sendable (String) async -> Void) async throws -> Int32 {
        guard let executable = command.first else { throw JobFailure("No trainer command is configured (AI_TOOLKIT_DIR or GOMODEL_TRAINER_COMMAND).") }
        let environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }.merging(["PYTHONUNBUFFERED": "1"]) { _, new in new }
        // A bare name is looked up on the trainer's PATH, by env.
        let arguments = executable.hasPrefix("/") ? command : ["/usr/bin/env"] + command
        // Appended to: the worker may have written its own lines first.
        if !FileManager.default.fileExists(atPath: logPath) { _ = FileManager.default.createFile(atPath: logPath, contents: nil) }
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        log.seekToEndOfFile()
        let (chunks, continuation) = AsyncStream<(Int, Data)>.makeStream()
        let open = NIOLockedValueBox(2)
        var readEnds: [Int32] = []
        var writeEnds: [Int32] = []
        for _ in 0..<2 {
            // The trainer gets only the copies spawn puts on its 1 and 2.
            do {
                let ends = try ChildProcess.pipe()
                readEnds.append(ends.read)
                writeEnds.append(ends.write)
            } catch {
                for end in readEnds + writeEnds { close(end) }
                throw JobFailure("The trainer's output pipe could not be made (\(error)).")
            }
        }
        let startAllowed = state.withLockedValue { current -> Bool in
            if case .stopRequested = current { return false }
            return true
        }
        guard startAllowed, !Task.isCancelled else {
            for end in readEnds + writeEnds { close(end) }
            throw CancellationError()
        }
        let pid: pid_t
        do {
            pid = try ChildProcess.spawn(arguments, environment: environment, directory: directory, output: writeEnds[0], errors: writeEnds[1])
        } catch {
            for end in readEnds + writeEnds { close(end) }
            throw JobFailure("The trainer could not be started (\(command.joined(separator: " "))): \(error)")
        }
        for end in writeEnds { close(end) }
        // A thread per stream, blocking in read(2) until the last writer (the trainer, or a child
        // of it) is gone.
        for (index, descriptor) in readEnds.enumerated() {
            Thread.detachNewThread {
                ChildProcess.readToEnd(descriptor) { continuation.yield((index, $0)) }
                if open.withLockedValue({
                    $0 -= 1
                    return $0
                }) == 0 {
                    continuation.finish()
                }
            }
        }
        let stoppedEarly = state.withLockedValue { current -> Bool in
            defer { current = .running(pid) }
            if case .stopRequested = current { return true }
            return false
        }
        if stoppedEarly { stop() }
        let exit = ChildProcess.Exit(of: pid) { [state] _ in
            state.withLockedValue { current in
                // Stragglers of the trainer's group (DataLoader workers) go with it.
                kill(-pid, SIGKILL)
                current = .exited
            }
        }
        return await withTaskCancellationHandler {
            var pending = ["", ""]
            for await (index, data) in chunks {
                log.write(data)
                for line in TrainerLog.lines(appending: String(decoding: data, as: UTF8.self), to: &pending[index]) { await onLine(line) }
            }
            for rest in pending where !rest.isEmpty { await onLine(rest) }
            try? log.close()
            return await exit.status
        } onCancel: {
            self.stop()
        }
    }

    /// SIGINT now, SIGKILL after `stopGrace` if it is still running; before it starts, it never will.
    func stop() {
        let pid = state.withLockedValue { current -> pid_t? in
            switch current {
            case .running(let pid): return pid
            case .notStarted:
                current = .stopRequested
                return nil
            case .stopRequested, .exited: return nil
            }
        }
        guard let pid else { return }
        kill(-pid, SIGINT)
        // Not a child of the job's task group: it must outlive a cancelled job, and it does
        // nothing once the trainer has exited (the state says so; a reused pid is never hit).
        Task { [state, stopGrace] in
            try? await Task.sleep(for: stopGrace)
            state.withLockedValue { current in
                if case .running(let running) = current, running == pid { kill(-pid, SIGKILL) }
            }
        }
    }
}
