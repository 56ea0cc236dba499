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
            var ends: [Int32] = [0, 0]
            // Close-on-exec: the trainer gets only the copies spawn puts on its 1 and 2.
            guard pipe(&ends) == 0 else { throw JobFailure("The trainer's output pipe could not be made (errno \(errno)).") }
            for end in ends { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
            readEnds.append(ends[0])
            writeEnds.append(ends[1])
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
            pid = try Self.spawn(arguments, environment: environment, directory: directory, output: writeEnds[0], errors: writeEnds[1])
        } catch {
            for end in readEnds + writeEnds { close(end) }
            throw JobFailure("The trainer could not be started (\(command.joined(separator: " "))): \(error)")
        }
        for end in writeEnds { close(end) }
        // A thread per stream, blocking in read(2) until the last writer (the trainer, or a child
        // of it) is gone.
        for (index, descriptor) in readEnds.enumerated() {
            Thread.detachNewThread {
                var buffer = [UInt8](repeating: 0, count: 65536)
                while true {
                    let count = read(descriptor, &buffer, buffer.count)
                    if count > 0 {
                        continuation.yield((index, Data(buffer[0..<count])))
                    } else if count == 0 || errno != EINTR {
                        break
                    }
                }
                close(descriptor)
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
        // The exit status, from a thread of its own that waits for it (hours, on a GPU).
        let exited = NIOLockedValueBox<(status: Int32?, waiting: CheckedContinuation<Int32, Never>?)>((nil, nil))
        Thread.detachNewThread { [state] in
            var raw: Int32 = 0
            while waitpid(pid, &raw, 0) == -1 && errno == EINTR {}
            let signal = raw & 0x7f
            let code = signal == 0 ? (raw >> 8) & 0xff : 128 + signal
            state.withLockedValue { current in
                // Stragglers of the trainer's group (DataLoader workers) go with it.
                kill(-pid, SIGKILL)
                current = .exited
            }
            exited.withLockedValue { slot -> CheckedContinuation<Int32, Never>? in
                slot.status = code
                defer { slot.waiting = nil }
                return slot.waiting
            }?.resume(returning: code)
        }
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
                    if let status = slot.status { return status }
                    slot.waiting = waiting
                    return nil
                }
                if let known { waiting.resume(returning: known) }
            }
        } onCancel: {
            self.stop()
        }
    }

    /// posix_spawn with the signal state a trainer expects. Foundation's Process passes on the
    /// spawning thread's signal mask (Swift's threads block SIGINT, SIGTERM, SIGCHLD…) and the
    /// signals gomodel ignores: ai-toolkit would then never see the stop's SIGINT, and its
    /// DataLoader workers, stopped with SIGTERM at exit, would hang it forever. Here the mask is
    /// empty, every signal has its default action, and the trainer leads a process group of its own.
    static func spawn(_ arguments: [String], environment: [String: String], directory: String?, output: Int32, errors: Int32) throws -> pid_t {
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        var allSignals = sigset_t()
        sigfillset(&allSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        posix_spawnattr_setsigdefault(&attributes, &allSignals)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP))
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, output, 1)
        posix_spawn_file_actions_adddup2(&actions, errors, 2)
        if let directory {
            guard let addChdir = Self.addChdir else { throw JobFailure("this C library has no posix_spawn_file_actions_addchdir_np (glibc 2.29 or later is needed)") }
            _ = addChdir(&actions, directory)
        }
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for pointer in argv + envp { free(pointer) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, arguments[0], &actions, &attributes, argv, envp)
        guard result == 0 else { throw JobFailure(String(cString: strerror(result))) }
        return pid
    }

    /// glibc's `posix_spawn_file_actions_addchdir_np` (2.29+), which Swift's Glibc module does
    /// not declare.
    private static let addChdir: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>) -> Int32)? =
        dlsym(nil, "posix_spawn_file_actions_addchdir_np").map {
            unsafeBitCast($0, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>) -> Int32).self)
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
