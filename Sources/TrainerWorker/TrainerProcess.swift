import Foundation
import NIOConcurrencyHelpers
import TrainerCore
#if canImport(Glibc)
import Glibc
#endif

/// The trainer as a child process: its stdout and stderr go to the log file and, split into
/// lines (tqdm's `\r` redraws included), to `onLine`. Cancelling the task stops it the way
/// ai-toolkit expects: SIGINT (it saves nothing more and exits 0), then SIGKILL after `stopGrace`.
struct TrainerProcess {
    let command: [String]
    let directory: String?
    let environment: [String: String]
    let logPath: String

    func run(stopGrace: Duration, onLine: @escaping @Sendable (String) -> Void) async throws -> Int32 {
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
        process.terminationHandler = { process in
            let code = process.terminationStatus
            let waiting = exited.withLockedValue { waiting -> CheckedContinuation<Int32, Never>? in
                status.withLockedValue { $0 = code }
                defer { waiting = nil }
                return waiting
            }
            waiting?.resume(returning: code)
        }
        do {
            try process.run()
        } catch {
            throw JobFailure("The trainer could not be started (\(command.joined(separator: " "))): \(error)")
        }
        let pid = process.processIdentifier
        return await withTaskCancellationHandler {
            var pending = ["", ""]
            for await (index, data) in chunks {
                log.write(data)
                for line in TrainerLog.lines(appending: String(decoding: data, as: UTF8.self), to: &pending[index]) { onLine(line) }
            }
            for rest in pending where !rest.isEmpty { onLine(rest) }
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
            kill(pid, SIGINT)
            Task {
                try? await Task.sleep(for: stopGrace)
                if process.isRunning { kill(pid, SIGKILL) }
            }
        }
    }
}
