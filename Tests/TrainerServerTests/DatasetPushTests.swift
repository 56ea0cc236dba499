import AsyncHTTPClient
import Foundation
import ObjectStorage
import Testing
import TrainerClient
import TrainerCore
import VaporTesting

@testable import TrainerServer

/// `gomodel datasets push` (TrainerClient) against a listening server with the built-in store.
@Suite struct DatasetPushTests {
    struct Interrupted: Error {}

    /// `count` samples in fal's flat naming, plus litter and a stray file.
    static func falFolder(samples count: Int) throws -> String {
        var files: [String: [UInt8]] = [".DS_Store": [0], "notes.md": Array("my notes".utf8)]
        for index in 0..<count {
            files["sample \(index)_start.png"] = TestImage.png(width: 512 + index)
            files["sample \(index)_end.png"] = TestImage.png(width: 512 + index, height: 600)
            files["sample \(index).txt"] = Array("make sample \(index) blue".utf8)
        }
        return try TestImage.folder(files)
    }

    static func withPush(_ test: (RunningStore, ServerAPI, HTTPClient) async throws -> Void) async throws {
        try await withRunningStore { store in
            var client = APIClient(store.app)
            try await client.signUp("ann@example.com")
            let token = try await client.createToken()
            try await test(store, ServerAPI(baseURL: store.baseURL, token: token, http: store.http), store.http)
        }
    }

    @Test func anInterruptedPushResumesWithWhatIsMissing() async throws {
        try await Self.withPush { store, api, http in
            let folder = try Self.falFolder(samples: 20)
            let options = DatasetPush.Options(directory: folder, name: "flat", concurrency: 4, batchSize: 8)
            let interrupting = DatasetPush(api: api, http: http) { done in if done == 12 { throw Interrupted() } }
            await #expect(throws: Interrupted.self) { try await interrupting.run(options) }

            let progress = ProgressLog()
            let resumed = try await DatasetPush(api: api, http: http).run(options) { progress.append($0) }
            // What the first run recorded (a completion it abandoned may land a moment later) is
            // skipped; only the rest is sent.
            let recorded = resumed.unchangedFiles
            #expect(recorded >= 8 && resumed.uploadedFiles > 0, "recorded \(recorded) of 60 before the interruption")
            #expect(!resumed.created)
            #expect(resumed.uploadedFiles + recorded == 60)
            #expect(resumed.failures.isEmpty)
            #expect(resumed.ignored == [".DS_Store"])
            #expect(resumed.leftOut.map(\.path) == ["notes.md"])
            #expect(resumed.dataset.fileCount == 60 && resumed.dataset.sampleCount == 20 && resumed.dataset.sound)
            let last = try #require(progress.values.last)
            #expect(last.filesDone == 60 - recorded && last.bytesDone == last.bytesTotal)

            let objects = try await store.client().listAllObjects(prefix: "datasets/")
            #expect(objects.count == 60)
            #expect(objects.contains { $0.key.hasSuffix("/control_1/sample 7.png") })

            let again = try await DatasetPush(api: api, http: http).run(options)
            #expect(again.uploadedFiles == 0 && again.unchangedFiles == 60)
        }
    }

    @Test func aChangedFileIsUploadedAgainAndNothingElse() async throws {
        try await Self.withPush { store, api, http in
            let folder = try Self.falFolder(samples: 3)
            let options = DatasetPush.Options(directory: folder, name: "flat")
            let first = try await DatasetPush(api: api, http: http).run(options)
            #expect(first.created && first.uploadedFiles == 9)
            try Data("make sample 1 red".utf8).write(to: URL(fileURLWithPath: folder + "/sample 1.txt"))
            let second = try await DatasetPush(api: api, http: http).run(options)
            #expect(second.uploadedFiles == 1 && second.unchangedFiles == 8)
            let caption = second.dataset.files?.first { $0.key == "target/sample 1.txt" }
            #expect(caption?.bytes == 17)
        }
    }

    @Test func twoFilesForOneKeyStopThePushBeforeAnything() async throws {
        try await Self.withPush { _, api, http in
            let folder = try TestImage.folder(["control/a.png": TestImage.png(), "a_start.png": TestImage.png(), "target/a.png": TestImage.png()])
            do {
                _ = try await DatasetPush(api: api, http: http).run(.init(directory: folder, name: "dup"))
                Issue.record("the push went ahead")
            } catch let error as PushError {
                #expect(error.description.contains("lands on control_1/a.png"))
            }
            #expect(try await api.datasets().isEmpty)
        }
    }

    @Test func aMissingFolderIsAClearError() async throws {
        try await Self.withPush { _, api, http in
            await #expect(throws: PushError.self) { try await DatasetPush(api: api, http: http).run(.init(directory: "/nonexistent/folder", name: "x")) }
        }
    }

    @Test func theProgressLineShowsFilesBytesRateAndTimeLeft() {
        let line = ProgressLine.render(.init(filesDone: 250, filesTotal: 1000, bytesDone: 256 << 20, bytesTotal: 1 << 30), elapsed: 4)
        #expect(line == "██████░░░░░░░░░░░░░░░░░░ 250/1000 files  256 MiB/1.0 GiB  64 MiB/s  12s left")
        let done = ProgressLine.render(.init(filesDone: 3, filesTotal: 3, bytesDone: 1536, bytesTotal: 1536), elapsed: 1)
        #expect(done.hasSuffix("3/3 files  1.5 KiB/1.5 KiB  1.5 KiB/s  done"))
        #expect(ProgressLine.duration(3725) == "1h02m")
    }
}

/// Progress values as reported, from any task.
final class ProgressLog: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [DatasetPush.Progress] = []

    func append(_ value: DatasetPush.Progress) { lock.withLock { stored.append(value) } }
    var values: [DatasetPush.Progress] { lock.withLock { stored } }
}
