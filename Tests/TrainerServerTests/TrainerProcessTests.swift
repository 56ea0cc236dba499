import Foundation
import NIOConcurrencyHelpers
import Testing

@testable import TrainerWorker

#if canImport(Glibc)
    import Glibc
#endif

/// The trainer starts with the signal state a program expects, whatever gomodel's own is: Swift's
/// threads block SIGINT, SIGTERM and SIGCHLD, and `gomodel worker` ignores SIGINT and SIGTERM.
/// Passed on (as Foundation's Process does), ai-toolkit never sees a stop's SIGINT, and its
/// DataLoader workers, stopped with SIGTERM at exit, hang it forever (found with the real trainer).
@Suite(.serialized) struct TrainerProcessTests {
    /// Runs `command`; `stopWhen` stops it once a line says it is ready (a stop sent before the
    /// trainer installed its handler would test Python's startup, not the stop).
    func run(_ command: [String], stopWhen: (@Sendable (String) -> Bool)? = nil) async throws -> (status: Int32, lines: [String]) {
        let log = WorkerFailureTests.work() + ".log"
        defer { try? FileManager.default.removeItem(atPath: log) }
        let trainer = TrainerProcess(command: command, directory: "/", environment: [:], logPath: log, stopGrace: .seconds(20))
        let lines = NIOLockedValueBox<[String]>([])
        let status = try await trainer.run { line in
            lines.withLockedValue { $0.append(line) }
            if stopWhen?(line) == true { trainer.stop() }
        }
        return (status, lines.withLockedValue { $0 })
    }

    @Test func theTrainerGetsNoBlockedOrIgnoredSignals() async throws {
        // As `gomodel worker` does.
        let previous = (signal(SIGINT, SIG_IGN), signal(SIGTERM, SIG_IGN))
        defer {
            signal(SIGINT, previous.0)
            signal(SIGTERM, previous.1)
        }
        let (status, lines) = try await run(["/bin/grep", "-E", "^(SigBlk|SigIgn):", "/proc/self/status"])
        #expect(status == 0 && lines.count == 2, "\(lines)")
        // The standard signals (1–31); glibc keeps its own real-time ones (32, 33) to itself.
        for line in lines {
            let mask = UInt64(line.split(separator: "\t").last ?? "", radix: 16) ?? .max
            #expect(mask & 0x7fff_ffff == 0, "\(line)")
        }
    }

    @Test func aStopReachesATrainerThatHandlesSIGINTAndItsChildren() async throws {
        let previous = signal(SIGINT, SIG_IGN)
        defer { signal(SIGINT, previous) }
        // Like ai-toolkit: a child of its own (a DataLoader worker) and a SIGINT handler that exits 0.
        let script = """
            import os, signal, sys, time
            child = os.fork()
            if child == 0:
                time.sleep(60); os._exit(0)
            signal.signal(signal.SIGINT, lambda *_: (print("Job stopped", flush=True), sys.exit(0)))
            print("started", flush=True)
            time.sleep(60)
            """
        let started = ContinuousClock.now
        let (status, lines) = try await run(["/usr/bin/env", "python3", "-c", script], stopWhen: { $0 == "started" })
        #expect(status == 0 && lines.contains("Job stopped"), "\(lines)")
        // Not the 20 s grace, and the output ended although the child held the pipe: it was stopped too.
        #expect(ContinuousClock.now - started < .seconds(10))
    }

    /// A child inherits no descriptor but its standard streams, not even one the parent left open
    /// on exec: a long trainer that held another command's pipe (or the socket by which Foundation's
    /// Process learns a child ended) would keep that command "running" until the trainer ends.
    @Test func aChildInheritsOnlyItsStandardStreams() async throws {
        var leaky: [Int32] = [0, 0]
        #expect(pipe(&leaky) == 0)
        defer { for end in leaky { close(end) } }
        let probe = "import os; print(sorted(int(fd) for fd in os.listdir('/proc/self/fd')))"
        // listdir holds one descriptor of its own while it reads.
        let shown = await ChildProcess.output(of: ["python3", "-c", probe], timeout: .seconds(20))
        #expect(shown == "[0, 1, 2, 3]\n", "\(shown ?? "nil")")
        let (status, lines) = try await run(["/usr/bin/env", "python3", "-c", probe])
        #expect(status == 0 && lines == ["[0, 1, 2, 3]"], "\(lines)")
    }

    /// A trainer that is not there is a job failure that names it and says why.
    @Test func aMissingTrainerSaysWhatCouldNotStart() async throws {
        let error = await #expect(throws: JobFailure.self) { try await run(["/nonexistent/trainer", "--config", "x.yaml"]) }
        #expect(error?.message == "The trainer could not be started (/nonexistent/trainer --config x.yaml): No such file or directory", "\(String(describing: error))")
    }

    /// A command's output, or nil when it fails or runs past its time (then it is killed, and the
    /// answer does not wait for it).
    @Test func aCommandsOutputIsNilWhenItFailsOrRunsTooLong() async throws {
        let echoed = await ChildProcess.output(of: ["echo", "hello"], timeout: .seconds(20))
        #expect(echoed == "hello\n", "\(echoed ?? "nil")")
        #expect(await ChildProcess.output(of: ["false"], timeout: .seconds(20)) == nil)
        #expect(await ChildProcess.output(of: ["no-such-command-here"], timeout: .seconds(20)) == nil)
        let started = ContinuousClock.now
        #expect(await ChildProcess.output(of: ["sleep", "30"], timeout: .milliseconds(300)) == nil)
        #expect(ContinuousClock.now - started < .seconds(10))
    }
}
