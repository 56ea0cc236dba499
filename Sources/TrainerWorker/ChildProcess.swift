import Foundation
import NIOConcurrencyHelpers

#if canImport(Glibc)
    import Glibc
#endif

/// Child processes that inherit nothing but their three standard streams, waited for without
/// holding one of the few threads async tasks share.
///
/// Foundation's `Process` is not used: its child inherits every descriptor that another thread
/// opens while it spawns (it closes only those open when it looked), among them the socket by which
/// Foundation learns that another child ended and that child's output pipe. A long-lived child
/// holding them hides that other child's end and its output's end until it exits itself: a
/// worker's trainer would hold its `nvidia-smi` probe open for hours.
public enum ChildProcess {
    /// Why a child could not be started, as the C library says it.
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// A pipe whose ends are closed on exec from the start (no window for a spawn on another thread).
    public static func pipe() throws -> (read: Int32, write: Int32) {
        var ends: [Int32] = [0, 0]
        guard let pipe2 else { throw Failure(description: "this C library has no pipe2") }
        guard pipe2(&ends, O_CLOEXEC) == 0 else { throw Failure(description: "no pipe: " + String(cString: strerror(errno))) }
        return (ends[0], ends[1])
    }

    /// posix_spawn of `arguments` (the first is a path) with `environment` as its whole environment,
    /// standard input from /dev/null, output and errors to the descriptors given, and
    /// every other descriptor closed. The signal state is a fresh program's (Swift's threads block
    /// SIGINT, SIGTERM, SIGCHLD…, and a trainer that inherited that would never see a stop's
    /// SIGINT; its DataLoader workers, stopped with SIGTERM, would hang it forever), and the child
    /// leads a process group of its own, so that a signal can reach what it starts in turn.
    public static func spawn(_ arguments: [String], environment: [String: String], directory: String? = nil, output: Int32, errors: Int32) throws
        -> pid_t
    {
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
        guard let closeFrom else { throw Failure(description: "this C library has no posix_spawn_file_actions_addclosefrom_np (glibc 2.34 or later is needed)") }
        _ = closeFrom(&actions, 3)
        if let directory {
            guard let addChdir else { throw Failure(description: "this C library has no posix_spawn_file_actions_addchdir_np (glibc 2.29 or later is needed)") }
            _ = addChdir(&actions, directory)
        }
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for pointer in argv + envp { free(pointer) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, arguments[0], &actions, &attributes, argv, envp)
        guard result == 0 else { throw Failure(description: String(cString: strerror(result))) }
        return pid
    }

    /// A child's exit, waited for by a thread of its own (a trainer runs for hours on a GPU).
    /// `reaped` runs on that thread right after the wait, before anyone learns the status.
    public final class Exit: Sendable {
        private let slot = NIOLockedValueBox<(status: Int32?, waiting: [CheckedContinuation<Int32, Never>])>((nil, []))

        public init(of pid: pid_t, reaped: @escaping @Sendable (Int32) -> Void = { _ in }) {
            Thread.detachNewThread { [slot] in
                var raw: Int32 = 0
                var waited: pid_t
                repeat { waited = waitpid(pid, &raw, 0) } while waited == -1 && errno == EINTR
                let signal = raw & 0x7f
                let status = waited == -1 ? -1 : signal == 0 ? (raw >> 8) & 0xff : 128 + signal
                reaped(status)
                let waiting = slot.withLockedValue { slot in
                    slot.status = status
                    defer { slot.waiting = [] }
                    return slot.waiting
                }
                for continuation in waiting { continuation.resume(returning: status) }
            }
        }

        /// Whether it has exited (and been waited for).
        public var hasExited: Bool { slot.withLockedValue { $0.status != nil } }

        /// The exit status (128 + the signal when a signal ended it; -1 when it could not be waited
        /// for), once it has exited.
        public var status: Int32 {
            get async {
                await withCheckedContinuation { continuation in
                    let known = slot.withLockedValue { slot -> Int32? in
                        if slot.status == nil { slot.waiting.append(continuation) }
                        return slot.status
                    }
                    if let known { continuation.resume(returning: known) }
                }
            }
        }
    }

    /// A command's standard output (its errors are dropped), or nil when it cannot start, fails,
    /// or runs past `timeout`: then it is killed (its group too) and, should it not die (a driver
    /// call stuck in the kernel), left behind with its thread.
    public static func output(of command: [String], environment: [String: String] = ProcessInfo.processInfo.environment, timeout: Duration) async -> String? {
        guard let output = try? pipe() else { return nil }
        let devNull = open("/dev/null", O_WRONLY | O_CLOEXEC)
        defer { if devNull >= 0 { close(devNull) } }
        let pid: pid_t
        do {
            pid = try spawn(["/usr/bin/env"] + command, environment: environment, output: output.write, errors: devNull >= 0 ? devNull : output.write)
        } catch {
            close(output.read)
            close(output.write)
            return nil
        }
        close(output.write)
        let exit = Exit(of: pid)
        let finished = await firstWithin(timeout) { () async -> (Int32, Data) in
            // The read blocks until the last holder of the write end is gone: a thread of its own.
            let data = await withCheckedContinuation { (continuation: CheckedContinuation<Data, Never>) in
                Thread.detachNewThread {
                    var data = Data()
                    readToEnd(output.read) { data.append($0) }
                    continuation.resume(returning: data)
                }
            }
            return (await exit.status, data)
        }
        guard let (status, data) = finished else {
            // Not once it has been waited for: its group's number may be another's by then.
            if !exit.hasExited { kill(-pid, SIGKILL) }
            return nil
        }
        return status == 0 ? String(decoding: data, as: UTF8.self) : nil
    }

    /// Reads `descriptor` until the last holder of its write end is gone, handing each chunk to
    /// `chunk`, then closes it. It blocks: call it on a thread of its own.
    static func readToEnd(_ descriptor: Int32, _ chunk: (Data) -> Void) {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = read(descriptor, &buffer, buffer.count)
            if count > 0 {
                chunk(Data(buffer[0..<count]))
            } else if count == 0 || errno != EINTR {
                break
            }
        }
        close(descriptor)
    }

    /// What `operation` returns if it ends within `timeout`, else nil. An operation that does not
    /// end (a wait nothing can cancel) is left running.
    static func firstWithin<Value: Sendable>(_ timeout: Duration, _ operation: @escaping @Sendable () async -> Value) async -> Value? {
        let waiting = NIOLockedValueBox<CheckedContinuation<Value?, Never>?>(nil)
        let answer: @Sendable (Value?) -> Void = { value in
            waiting.withLockedValue { slot in
                defer { slot = nil }
                return slot
            }?.resume(returning: value)
        }
        return await withCheckedContinuation { continuation in
            waiting.withLockedValue { $0 = continuation }
            let timer = Task {
                guard (try? await Task.sleep(for: timeout)) != nil else { return }
                answer(nil)
            }
            Task {
                answer(await operation())
                timer.cancel()
            }
        }
    }
}

/// glibc's `pipe2` (2.9+), `posix_spawn_file_actions_addclosefrom_np` (2.34+) and
/// `posix_spawn_file_actions_addchdir_np` (2.29+), which Swift's Glibc module does not declare.
private func glibc<Function>(_ name: String, as type: Function.Type) -> Function? { dlsym(nil, name).map { unsafeBitCast($0, to: type) } }
private let pipe2 = glibc("pipe2", as: (@convention(c) (UnsafeMutablePointer<Int32>, Int32) -> Int32).self)
private let closeFrom = glibc("posix_spawn_file_actions_addclosefrom_np", as: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32).self)
private let addChdir = glibc(
    "posix_spawn_file_actions_addchdir_np", as: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>) -> Int32).self)
