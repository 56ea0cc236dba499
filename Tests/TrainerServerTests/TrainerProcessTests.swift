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
}
