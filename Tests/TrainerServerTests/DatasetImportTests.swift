import AsyncHTTPClient
import Fluent
import Foundation
import NIOCore
import ObjectStorage
import Testing
import TrainerCore
import VaporTesting
import ZIPFoundation

@testable import TrainerServer

/// Zip imports through the API and the built-in store: upload with the presigned PUT, unpack,
/// and refusals that leave the dataset as it was. (Tests/Clients/zip_import_e2e.py covers bombs,
/// links, truncated zips and the CLI with the real binary.)
@Suite struct DatasetImportTests {
    /// A zip of these entries, written with ZIPFoundation (paths as given, '..' included).
    static func zip(_ entries: [(String, [UInt8])]) throws -> [UInt8] {
        let archive = try Archive(accessMode: .create)
        for (path, bytes) in entries {
            try archive.addEntry(with: path, type: .file, uncompressedSize: Int64(bytes.count), compressionMethod: .deflate) { position, size in
                Data(bytes[Int(position)..<Int(position) + size])
            }
        }
        return Array(archive.data!)
    }

    /// Creates the import, PUTs the zip and asks to unpack it; returns the import's id.
    static func importZip(_ user: inout DatasetTests.User, _ datasetID: String, _ bytes: [UInt8]) async throws -> String {
        let created = try await user.client.send(.POST, "/api/datasets/\(datasetID)/imports", body: #"{"fileName": "pairs.zip", "size": \#(bytes.count)}"#)
        #expect(created.status == .created, "\(created.body.string)")
        let id = try #require((try created.json["import"] as? [String: Any])?["id"] as? String)
        let upload = try #require(try created.json["upload"] as? [String: Any])
        #expect(try await user.put(upload, bytes) == 200)
        let unpack = try await user.client.send(.POST, "/api/datasets/\(datasetID)/imports/\(id)/unpack")
        #expect(unpack.status == .accepted, "\(unpack.body.string)")
        return id
    }

    /// The import once it has ended (polled: it unpacks in the background).
    static func ended(_ user: inout DatasetTests.User, _ datasetID: String, _ id: String) async throws -> [String: Any] {
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            let shown = try await user.client.send(.GET, "/api/datasets/\(datasetID)/imports/\(id)").json
            if ["done", "failed"].contains(shown["state"] as? String) { return shown }
            try await Task.sleep(for: .milliseconds(20))
        }
        Issue.record("the import did not end in 30 s")
        return [:]
    }

    /// Every key in the bucket.
    static func keys(_ store: RunningStore) async throws -> [String] {
        try await S3Client(endpoint: store.endpoint, httpClient: store.http).listAllObjects().map(\.key).sorted()
    }

    @Test func aFalZipBecomesTheDatasetAndTheZipIsGone() async throws {
        try await withRunningStore { store in
            var user = try await DatasetTests.User(store, email: "zip@example.com")
            let datasetID = try await user.createDataset()
            let zip = try Self.zip([
                ("pairs/cat_start.png", TestImage.png()), ("pairs/cat_end.png", TestImage.png()), ("pairs/cat.txt", Array("make the cat blue".utf8)),
                ("pairs/dog_start.png", TestImage.png()), ("pairs/dog_start2.png", TestImage.png()), ("pairs/dog_end.png", TestImage.png()),
                ("pairs/dog.txt", Array("make the dog red".utf8)), ("__MACOSX/pairs/._cat_start.png", [0, 1, 2]),
            ])
            let id = try await Self.importZip(&user, datasetID, zip)
            let ended = try await Self.ended(&user, datasetID, id)
            #expect(ended["state"] as? String == "done", "\(ended)")
            #expect(ended["placed"] as? Int == 7 && ended["ignored"] as? Int == 1 && ended["entriesDone"] as? Int == 7 && ended["entriesTotal"] as? Int == 7)
            let validation = try await user.client.send(.GET, "/api/datasets/\(datasetID)/validation").json
            #expect(validation["sound"] as? Bool == true && validation["samples"] as? Int == 2 && validation["controlsPerSample"] as? Int == 2, "\(validation)")
            let keys = try await Self.keys(store)
            #expect(keys.contains("datasets/\(datasetID)/control_2/dog.png"))
            #expect(!keys.contains { $0.hasPrefix("imports/") }, "the zip is deleted once unpacked")
            // An ended import cannot be unpacked again.
            let again = try await user.client.send(.POST, "/api/datasets/\(datasetID)/imports/\(id)/unpack")
            #expect(again.status == .conflict)
        }
    }

    @Test func aRefusedZipLeavesTheDatasetAsItWas() async throws {
        try await withRunningStore { store in
            var user = try await DatasetTests.User(store, email: "zip@example.com")
            let datasetID = try await user.createDataset()
            try await user.upload(datasetID, DatasetTests.pair)
            let before = try await user.client.send(.GET, "/api/datasets/\(datasetID)").json["files"] as? [[String: Any]]

            let traversal = try Self.zip([("control/dog.png", TestImage.png()), ("target/dog.png", TestImage.png()), ("../evil.png", TestImage.png())])
            var ended = try await Self.ended(&user, datasetID, try await Self.importZip(&user, datasetID, traversal))
            #expect(ended["state"] as? String == "failed" && (ended["error"] as? [String: Any])?["code"] as? String == "path_traversal", "\(ended)")

            // An image that is not one is found in its bytes, after the good files were unpacked.
            let fake = try Self.zip([("control/dog.png", TestImage.png()), ("target/dog.png", TestImage.png()), ("target/owl.png", Array("not an image".utf8))])
            ended = try await Self.ended(&user, datasetID, try await Self.importZip(&user, datasetID, fake))
            let error = ended["error"] as? [String: Any]
            #expect(ended["state"] as? String == "failed" && error?["code"] as? String == "not_an_image" && (error?["message"] as? String)?.contains("target/owl.png") == true)

            let after = try await user.client.send(.GET, "/api/datasets/\(datasetID)").json["files"] as? [[String: Any]]
            #expect(after?.compactMap { $0["key"] as? String } == before?.compactMap { $0["key"] as? String })
            let keys = try await Self.keys(store)
            #expect(keys == ["datasets/\(datasetID)/control_1/cat.png", "datasets/\(datasetID)/target/cat.png", "datasets/\(datasetID)/target/cat.txt"])
        }
    }

    @Test func importsAreRefusedOutOfOrderAndForOthers() async throws {
        try await withRunningStore { store in
            var user = try await DatasetTests.User(store, email: "zip@example.com")
            let datasetID = try await user.createDataset()
            let created = try await user.client.send(.POST, "/api/datasets/\(datasetID)/imports", body: #"{"fileName": "pairs.zip", "size": 100}"#)
            let id = try #require((try created.json["import"] as? [String: Any])?["id"] as? String)
            let early = try await user.client.send(.POST, "/api/datasets/\(datasetID)/imports/\(id)/unpack")
            #expect(early.status == .conflict && early.body.string.contains("PUT it to the import's upload URL first"), "\(early.body.string)")
            let notZip = try await user.client.send(.POST, "/api/datasets/\(datasetID)/imports", body: #"{"fileName": "pairs.tar", "size": 100}"#)
            #expect(notZip.status == .badRequest)
            let tooLarge = try await user.client.send(.POST, "/api/datasets/\(datasetID)/imports", body: #"{"fileName": "pairs.zip", "size": 99999999999999}"#)
            #expect(tooLarge.status == .badRequest)

            var other = try await DatasetTests.User(store, email: "other@example.com")
            #expect(try await other.client.send(.GET, "/api/datasets/\(datasetID)/imports/\(id)").status == .notFound)
            #expect(try await other.client.send(.POST, "/api/datasets/\(datasetID)/imports", body: #"{"fileName": "pairs.zip", "size": 100}"#).status == .notFound)
        }
    }

    @Test func anUnpackingImportHoldsTheDatasetUntilItsServerIsGone() async throws {
        try await withRunningStore { store in
            var user = try await DatasetTests.User(store, email: "zip@example.com")
            let datasetID = try await user.createDataset()
            try await user.upload(datasetID, DatasetTests.pair)
            // An import unpacking now (as another instance would be).
            let record = DatasetImport(datasetID: try #require(UUID(uuidString: datasetID)), fileName: "pairs.zip", size: 10, now: store.clock.now)
            record.state = .unpacking
            try await record.create(on: store.app.db)
            let deleted = try await user.client.send(.DELETE, "/api/datasets/\(datasetID)")
            #expect(deleted.status == .conflict && deleted.body.string.contains("being unpacked"), "\(deleted.body.string)")
            let job = try await user.client.send(.POST, "/api/jobs", body: #"{"datasetId": "\#(datasetID)"}"#)
            #expect(job.status == .conflict && job.body.string.contains("being unpacked"), "\(job.body.string)")

            // Its server stopped: no heartbeat for over 5 minutes. It reads as interrupted, and holds nothing.
            record.updatedAt = store.clock.now.addingTimeInterval(-DatasetImporter.staleAfter - 1)
            try await record.save(on: store.app.db)
            let shown = try await user.client.send(.GET, "/api/datasets/\(datasetID)/imports/\(record.id!.uuidString)").json
            #expect(shown["state"] as? String == "failed" && (shown["error"] as? [String: Any])?["code"] as? String == "interrupted")
            #expect(try await user.client.send(.POST, "/api/jobs", body: #"{"datasetId": "\#(datasetID)"}"#).status == .created)
        }
    }
}
