import AsyncHTTPClient
import Crypto
import Fluent
import Foundation
import NIOCore
import ObjectStorage
import Testing
import VaporTesting

@testable import TrainerServer

/// The dataset API against a listening server: presigned PUTs really go to the built-in store.
@Suite struct DatasetTests {
    /// A signed-in user of a running test server.
    struct User {
        var client: APIClient
        let store: RunningStore

        init(_ store: RunningStore, email: String) async throws {
            self.store = store
            client = APIClient(store.app)
            client.host = store.baseURL.host! + ":\(store.baseURL.port!)"
            try await client.signUp(email)
        }

        mutating func createDataset(_ name: String = "pairs", defaultCaption: String? = nil) async throws -> String {
            let caption = defaultCaption.map { #", "defaultCaption": "\#($0)""# } ?? ""
            let response = try await client.send(.POST, "/api/datasets", body: #"{"name": "\#(name)"\#(caption)}"#)
            #expect(response.status == .created, "\(response.body.string)")
            // Ids are UUIDs; keys use their lower-case form.
            return try #require(response.json["id"] as? String).lowercased()
        }

        mutating func sign(_ id: String, _ files: [(String, [UInt8])], withChecksum: Bool = true) async throws -> TestingHTTPResponse {
            let entries = files.map { path, bytes -> [String: Any] in
                var entry: [String: Any] = ["path": path, "size": bytes.count, "contentType": "image/png"]
                if withChecksum { entry["sha256"] = SigV4Signer.hex(Array(SHA256.hash(data: Data(bytes)))) }
                return entry
            }
            let body = String(decoding: try JSONSerialization.data(withJSONObject: ["files": entries]), as: UTF8.self)
            return try await client.send(.POST, "/api/datasets/\(id)/uploads", body: body)
        }

        /// PUTs `bytes` to a signed upload exactly as a browser or the CLI would; returns the status.
        func put(_ upload: [String: Any], _ bytes: [UInt8], headers overrides: [String: String] = [:]) async throws -> UInt {
            var request = HTTPClientRequest(url: try #require(upload["url"] as? String))
            request.method = .PUT
            let signed = try #require(upload["headers"] as? [String: String])
            for (name, value) in signed.merging(overrides, uniquingKeysWith: { _, new in new }) where name != "content-length" {
                request.headers.add(name: name, value: value)
            }
            request.body = .bytes(ByteBuffer(bytes: bytes))
            let response = try await store.http.execute(request, timeout: .seconds(30))
            _ = try await response.body.collect(upTo: 1 << 20)
            return response.status.code
        }

        mutating func complete(_ id: String, _ paths: [String]) async throws -> [String: Any] {
            let body = String(decoding: try JSONSerialization.data(withJSONObject: ["paths": paths]), as: UTF8.self)
            let response = try await client.send(.POST, "/api/datasets/\(id)/uploads/complete", body: body)
            #expect(response.status == .ok, "\(response.body.string)")
            return try response.json
        }

        /// Signs, uploads and completes every file; returns the completion's answer.
        @discardableResult
        mutating func upload(_ id: String, _ files: [(String, [UInt8])]) async throws -> [String: Any] {
            let signed = try await sign(id, files)
            #expect(signed.status == .ok, "\(signed.body.string)")
            let uploads = try #require(try signed.json["uploads"] as? [[String: Any]])
            for (upload, (_, bytes)) in zip(uploads, files) {
                #expect(try await put(upload, bytes) == 200)
            }
            return try await complete(id, files.map(\.0))
        }

        mutating func validation(_ id: String) async throws -> [[String: Any]] {
            let response = try await client.send(.GET, "/api/datasets/\(id)/validation")
            #expect(response.status == .ok)
            return try #require(try response.json["findings"] as? [[String: Any]])
        }
    }

    static func codes(_ findings: [[String: Any]]) -> [String] { findings.compactMap { $0["code"] as? String }.sorted() }

    static let pair: [(String, [UInt8])] = [
        ("control/cat.png", TestImage.png()), ("target/cat.png", TestImage.png()), ("target/cat.txt", Array("make the cat blue".utf8)),
    ]

    @Test func aPairIsSignedUploadedCheckedAndValidated() async throws {
        try await withRunningStore { store in
            var user = try await User(store, email: "ann@example.com")
            let id = try await user.createDataset()
            let signed = try await user.sign(id, Self.pair)
            #expect(signed.status == .ok)
            let uploads = try #require(try signed.json["uploads"] as? [[String: Any]])
            #expect(
                uploads.map { $0["key"] as? String } == [
                    "datasets/\(id)/control_1/cat.png", "datasets/\(id)/target/cat.png", "datasets/\(id)/target/cat.txt",
                ])
            #expect(uploads.allSatisfy { $0["method"] as? String == "PUT" && ($0["url"] as? String)?.contains("X-Amz-Signature=") == true })
            let headers = try #require(uploads[0]["headers"] as? [String: String])
            #expect(headers["content-type"] == "image/png" && headers["content-length"] == "\(Self.pair[0].1.count)")
            #expect(headers["x-amz-checksum-sha256"] != nil)
            for (upload, (_, bytes)) in zip(uploads, Self.pair) { #expect(try await user.put(upload, bytes) == 200) }

            let completed = try await user.complete(id, Self.pair.map(\.0))
            #expect((completed["failures"] as? [Any])?.isEmpty == true)
            #expect(completed["sampleCount"] as? Int == 1 && completed["fileCount"] as? Int == 3 && completed["sound"] as? Bool == true)
            #expect(completed["controlsPerSample"] as? Int == 1)
            #expect((completed["validation"] as? [String: Any])?["sound"] as? Bool == true)

            // Completing again changes nothing.
            let again = try await user.complete(id, Self.pair.map(\.0))
            #expect(again["fileCount"] as? Int == 3 && (again["failures"] as? [Any])?.isEmpty == true)

            let shown = try await user.client.send(.GET, "/api/datasets/\(id)")
            let files = try #require(try shown.json["files"] as? [[String: Any]])
            let target = try #require(files.first { $0["key"] as? String == "target/cat.png" })
            #expect(target["width"] as? Int == 512 && target["height"] as? Int == 512 && target["format"] as? String == "png")
            #expect(files.first { $0["key"] as? String == "target/cat.txt" }?["caption"] as? String == "make the cat blue")
            let listed = try await user.client.send(.GET, "/api/datasets")
            #expect((try listed.json["datasets"] as? [[String: Any]])?.map { $0["name"] as? String } == ["pairs"])
        }
    }

    @Test func everyLayoutLandsInTheCanonicalOne() async throws {
        try await withRunningStore { store in
            var user = try await User(store, email: "ann@example.com")
            let id = try await user.createDataset()
            let paths = [
                "my set/input/a.PNG", "my set/input_2/a.jpg", "my set/output/a.JPEG", "my set/output/a.txt",
                "b_start.png", "b_start2.webp", "b_end.png", "b.txt", "nested/deeper/start_3/c.png", "end/c.png",
                "control/ünïcödé 猫.png", ".DS_Store", "__MACOSX/control/._a.png",
            ]
            let response = try await user.sign(id, paths.map { ($0, [1, 2, 3]) })
            #expect(response.status == .ok, "\(response.body.string)")
            let uploads = try #require(try response.json["uploads"] as? [[String: Any]])
            let keys = uploads.compactMap { ($0["key"] as? String)?.replacingOccurrences(of: "datasets/\(id)/", with: "") }
            #expect(
                keys == [
                    "control_1/a.png", "control_2/a.jpg", "target/a.jpg", "target/a.txt",
                    "control_1/b.png", "control_2/b.webp", "target/b.png", "target/b.txt", "control_3/c.png", "target/c.png",
                    "control_1/ünïcödé 猫.png",
                ])
            #expect(try response.json["skipped"] as? [String] == [".DS_Store", "__MACOSX/control/._a.png"])
            // The unicode key really goes through the store and back.
            let unicode = try #require(uploads.last)
            #expect(try await user.put(unicode, [1, 2, 3]) == 200)
            let completed = try await user.complete(id, ["control/ünïcödé 猫.png"])
            #expect((completed["failures"] as? [Any])?.isEmpty == true && completed["fileCount"] as? Int == 1)
        }
    }

    @Test func refusedNamesSignNothingAndSayWhy() async throws {
        try await withRunningStore { store in
            var user = try await User(store, email: "ann@example.com")
            let id = try await user.createDataset()
            let bad = ["../target/x.png", "/etc/target/x.png", "target/be\u{7}ll.png", "target/notes.md", "target/x.png", "output/x.png"]
            let response = try await user.sign(id, [("control/ok.png", [1])] + bad.map { ($0, [1]) })
            #expect(response.status == .unprocessableEntity && response.errorCode == "invalid_paths")
            let details = try #require((try response.json["error"] as? [String: Any])?["details"] as? [[String: String]])
            #expect(details.map { $0["path"] } == ["../target/x.png", "/etc/target/x.png", "target/be\u{7}ll.png", "target/notes.md", "output/x.png"])
            #expect(details[2]["reason"]?.contains("invisible character (U+0007)") == true)
            #expect(details[4]["reason"]?.contains("target/x.png") == true)
            // Nothing was signed, not even the good file.
            let completed = try await user.complete(id, ["control/ok.png"])
            let failures = try #require(completed["failures"] as? [[String: String]])
            #expect(failures.first?["reason"]?.contains("never signed") == true)
        }
    }

    @Test func batchesAreLimitedTo500Files() async throws {
        try await withRunningStore { store in
            var user = try await User(store, email: "ann@example.com")
            let id = try await user.createDataset()
            let response = try await user.sign(id, (0...500).map { ("target/\($0).png", [1]) }, withChecksum: false)
            #expect(response.status == .badRequest && response.errorCode == "too_many_files")
            #expect(response.errorMessage?.contains("at most 500") == true)
            let fine = try await user.sign(id, (0..<500).map { ("target/\($0).png", [1]) }, withChecksum: false)
            #expect(fine.status == .ok)
            // Only system litter: nothing to sign, and no error.
            let litter = try await user.sign(id, [(".DS_Store", [1]), ("__MACOSX/x.png", [1])], withChecksum: false)
            #expect(try litter.status == .ok && (litter.json["uploads"] as? [Any])?.isEmpty == true)
        }
    }

    @Test func theStoreHoldsUploadsToTheSignedSizeAndContent() async throws {
        try await withRunningStore { store in
            var user = try await User(store, email: "ann@example.com")
            let id = try await user.createDataset()
            let image = TestImage.png()
            let upload = try #require((try await user.sign(id, [("target/cat.png", image)]).json["uploads"] as? [[String: Any]])?.first)
            // Longer than signed: the signature covers content-length, so the store refuses it.
            #expect(try await user.put(upload, image + [0], headers: ["content-length": "\(image.count + 1)"]) == 403)
            // Same size, other bytes: the signed checksum does not match.
            var other = image
            other[other.count - 1] ^= 0xFF
            #expect(try await user.put(upload, other) == 400)
            // A different type than signed.
            #expect(try await user.put(upload, image, headers: ["content-type": "image/jpeg"]) == 403)
            let completed = try await user.complete(id, ["target/cat.png"])
            let failures = try #require(completed["failures"] as? [[String: String]])
            #expect(failures.first?["reason"]?.contains("not in the bucket") == true)
            #expect(completed["fileCount"] as? Int == 0)
            // The right bytes go through.
            #expect(try await user.put(upload, image) == 200)
            #expect((try await user.complete(id, ["target/cat.png"])["failures"] as? [Any])?.isEmpty == true)
        }
    }

    @Test func completionChecksSizeAndChecksumAgainstTheSignedOnes() async throws {
        try await withRunningStore { store in
            var user = try await User(store, email: "ann@example.com")
            let id = try await user.createDataset()
            let image = TestImage.png()
            _ = try await user.sign(id, [("target/cat.png", image)])
            // Someone with the store's keys writes other content under the key.
            let client = store.client()
            try await client.putObject(key: "datasets/\(id)/target/cat.png", bytes: ByteBuffer(bytes: image + [1, 2]))
            let completed = try await user.complete(id, ["target/cat.png"])
            let reason = try #require((completed["failures"] as? [[String: String]])?.first?["reason"])
            #expect(reason.contains("\(image.count + 2) bytes in the bucket but was signed as \(image.count)"))
            try await client.putObject(key: "datasets/\(id)/target/cat.png", bytes: ByteBuffer(bytes: image))
            let sameSize = try await user.complete(id, ["target/cat.png"])
            #expect((sameSize["failures"] as? [[String: String]])?.first?["reason"]?.contains("SHA-256") == true)
        }
    }

    @Test func everyValidationFindingReachesTheAPI() async throws {
        try await withRunningStore { store in
            var user = try await User(store, email: "ann@example.com")
            let id = try await user.createDataset()
            try await user.upload(
                id,
                [
                    ("control/ok.png", TestImage.png()), ("target/ok.png", TestImage.png()), ("target/ok.txt", Array("x".utf8)),
                    ("target/nocontrol.png", TestImage.png()), ("target/nocontrol.txt", Array("x".utf8)),
                    ("control/nocaption.png", TestImage.png()), ("target/nocaption.jpg", TestImage.jpeg()),
                    ("control/orphan.png", TestImage.png()),
                    ("control/text.png", TestImage.png()), ("target/text.png", Array("this is not an image".utf8)), ("target/text.txt", Array("x".utf8)),
                    ("control/small.png", TestImage.png(width: 100, height: 100)), ("target/small.png", TestImage.png()), ("target/small.txt", Array("x".utf8)),
                    ("control/huge.png", TestImage.png(width: 9000, height: 300)), ("target/huge.png", TestImage.png()), ("target/huge.txt", Array("x".utf8)),
                    ("control/empty.png", TestImage.png()), ("target/empty.png", []), ("target/empty.txt", Array("x".utf8)),
                ])
            let findings = try await user.validation(id)
            #expect(Self.codes(findings) == ["empty_file", "missing_caption", "missing_control", "not_an_image", "orphan", "too_large", "too_small"])
            let byCode = Dictionary(findings.map { ($0["code"] as! String, $0) }, uniquingKeysWith: { first, _ in first })
            #expect(byCode["missing_control"]?["file"] as? String == "target/nocontrol.png")
            #expect(byCode["missing_caption"]?["file"] as? String == "target/nocaption.jpg")
            #expect(byCode["not_an_image"]?["file"] as? String == "target/text.png")
            #expect(byCode["too_large"]?["message"] as? String == "control_1/huge.png is 9000×300 px; the largest side may be at most 8192 px. Downscale it.")
            #expect(byCode["too_small"]?["severity"] as? String == "warning")
            #expect(byCode["empty_file"]?["file"] as? String == "target/empty.png")
        }
    }

    @Test func captionsAreEditedPerSampleAndFallBackToTheDefault() async throws {
        try await withRunningStore { store in
            var user = try await User(store, email: "ann@example.com")
            let id = try await user.createDataset()
            try await user.upload(id, [("control/cat.png", TestImage.png()), ("target/cat.png", TestImage.png())])
            #expect(Self.codes(try await user.validation(id)) == ["missing_caption"])

            let patched = try await user.client.send(.PATCH, "/api/datasets/\(id)/samples/cat", body: #"{"caption": "  <b>make it blue</b>  "}"#)
            #expect(try patched.status == .ok && (patched.json["validation"] as? [String: Any])?["sound"] as? Bool == true)
            let caption = try await store.client().getObjectBytes(key: "datasets/\(id)/target/cat.txt")
            #expect(caption.getString(at: 0, length: caption.readableBytes) == "<b>make it blue</b>")

            let cleared = try await user.client.send(.PATCH, "/api/datasets/\(id)/samples/cat", body: #"{"caption": ""}"#)
            #expect(try cleared.status == .ok && (cleared.json["sound"] as? Bool) == false)
            #expect(try await store.client().headObject(key: "datasets/\(id)/target/cat.txt") == nil)
            let withDefault = try await user.client.send(.PATCH, "/api/datasets/\(id)", body: #"{"defaultCaption": "make it blue"}"#)
            #expect(try withDefault.status == .ok && (withDefault.json["sound"] as? Bool) == true)

            let missing = try await user.client.send(.PATCH, "/api/datasets/\(id)/samples/dog", body: #"{"caption": "x"}"#)
            #expect(missing.status == .notFound && missing.errorMessage?.contains("no sample 'dog'") == true)
        }
    }

    @Test func anotherUserGets404OnEveryRoute() async throws {
        try await withRunningStore { store in
            var ann = try await User(store, email: "ann@example.com")
            let id = try await ann.createDataset()
            try await ann.upload(id, Self.pair)
            var bob = try await User(store, email: "bob@example.com")
            let routes: [(HTTPMethod, String, String?)] = [
                (.GET, "/api/datasets/\(id)", nil),
                (.PATCH, "/api/datasets/\(id)", #"{"name": "mine"}"#),
                (.DELETE, "/api/datasets/\(id)", nil),
                (.POST, "/api/datasets/\(id)/uploads", #"{"files": [{"path": "target/x.png", "size": 1, "contentType": "image/png"}]}"#),
                (.POST, "/api/datasets/\(id)/uploads/complete", #"{"paths": ["target/cat.png"]}"#),
                (.GET, "/api/datasets/\(id)/validation", nil),
                (.PATCH, "/api/datasets/\(id)/samples/cat", #"{"caption": "x"}"#),
            ]
            for (method, path, body) in routes {
                let response = try await bob.client.send(method, path, body: body)
                #expect(response.status == .notFound && response.errorCode == "not_found", "\(method) \(path)")
            }
            #expect((try await bob.client.send(.GET, "/api/datasets").json["datasets"] as? [Any])?.isEmpty == true)
            // Ann's dataset is untouched.
            let shown = try await ann.client.send(.GET, "/api/datasets/\(id)")
            #expect(try shown.status == .ok && (shown.json["fileCount"] as? Int) == 3 && (shown.json["name"] as? String) == "pairs")
        }
    }

    @Test func deletingADatasetRemovesItsObjects() async throws {
        try await withRunningStore { store in
            var user = try await User(store, email: "ann@example.com")
            let keep = try await user.createDataset("keep")
            try await user.upload(keep, Self.pair)
            let id = try await user.createDataset("drop")
            try await user.upload(id, Self.pair)
            // A signed but never completed upload is in the bucket too.
            let stray = try #require((try await user.sign(id, [("control/dog.png", TestImage.png())]).json["uploads"] as? [[String: Any]])?.first)
            #expect(try await user.put(stray, TestImage.png()) == 200)
            #expect(try await store.client().listAllObjects(prefix: "datasets/\(id)/").count == 4)

            #expect(try await user.client.send(.DELETE, "/api/datasets/\(id)").status == .noContent)
            #expect(try await store.client().listAllObjects(prefix: "datasets/\(id)/").isEmpty)
            #expect(try await store.client().listAllObjects(prefix: "datasets/\(keep)/").count == 3)
            #expect(try await user.client.send(.GET, "/api/datasets/\(id)").status == .notFound)
            #expect(try await user.client.send(.DELETE, "/api/datasets/\(id)").status == .notFound)
        }
    }

    @Test func aDatasetInUseByAJobCannotChange() async throws {
        try await withRunningStore { store in
            var user = try await User(store, email: "ann@example.com")
            let id = try await user.createDataset()
            try await user.upload(id, Self.pair)
            let dataset = try #require(try await Dataset.find(UUID(uuidString: id), on: store.app.db))
            dataset.lockedByJobID = UUID()
            try await dataset.save(on: store.app.db)

            let attempts: [(HTTPMethod, String, String?)] = [
                (.POST, "/api/datasets/\(id)/uploads", #"{"files": [{"path": "target/x.png", "size": 1}]}"#),
                (.POST, "/api/datasets/\(id)/uploads/complete", #"{"paths": ["target/cat.png"]}"#),
                (.PATCH, "/api/datasets/\(id)/samples/cat", #"{"caption": "x"}"#),
                (.PATCH, "/api/datasets/\(id)", #"{"defaultCaption": "x"}"#),
                (.DELETE, "/api/datasets/\(id)", nil),
            ]
            for (method, path, body) in attempts {
                let response = try await user.client.send(method, path, body: body)
                #expect(response.status == .conflict && response.errorCode == "dataset_in_use", "\(method) \(path)")
            }
            #expect(try await store.client().listAllObjects(prefix: "datasets/\(id)/").count == 3)
            // Renaming does not change what a job trains on.
            #expect(try await user.client.send(.PATCH, "/api/datasets/\(id)", body: #"{"name": "renamed"}"#).status == .ok)
        }
    }

    @Test func anUploadOfAnotherFormatReplacesTheSampleFile() async throws {
        try await withRunningStore { store in
            var user = try await User(store, email: "ann@example.com")
            let id = try await user.createDataset()
            try await user.upload(id, Self.pair)
            try await user.upload(id, [("target/cat.jpg", TestImage.jpeg())])
            let keys = try await store.client().listAllObjects(prefix: "datasets/\(id)/target/").map(\.key)
            #expect(keys == ["datasets/\(id)/target/cat.jpg", "datasets/\(id)/target/cat.txt"])
            #expect(Self.codes(try await user.validation(id)).isEmpty)
        }
    }

    @Test func namesAreCheckedAndUnique() async throws {
        try await withRunningStore { store in
            var user = try await User(store, email: "ann@example.com")
            _ = try await user.createDataset("pairs")
            let taken = try await user.client.send(.POST, "/api/datasets", body: #"{"name": "pairs"}"#)
            #expect(taken.status == .conflict && taken.errorCode == "name_taken")
            let empty = try await user.client.send(.POST, "/api/datasets", body: #"{"name": "  "}"#)
            #expect(empty.status == .badRequest && empty.errorCode == "invalid_name")
            let control = try await user.client.send(.POST, "/api/datasets", body: #"{"name": "a\u0007b"}"#)
            #expect(control.status == .badRequest && control.errorCode == "invalid_name")
            // A right-to-left override would show "pairs\u{202E}lanif" as "pairsfinal".
            let bidi = try await user.client.send(.POST, "/api/datasets", body: #"{"name": "pairs\u202Elanif"}"#)
            #expect(bidi.status == .badRequest && bidi.errorCode == "invalid_name")
            _ = try await user.createDataset("café 日本語 😀")
            // Another user may use the same name.
            var bob = try await User(store, email: "bob@example.com")
            _ = try await bob.createDataset("pairs")
        }
    }

    @Test func theSizeLimitIsCheckedBeforeUploading() async throws {
        try await withRunningStore(environment: ["GOMODEL_DATASET_MAX_BYTES": "10KiB"]) { store in
            var user = try await User(store, email: "ann@example.com")
            let id = try await user.createDataset()
            let response = try await user.sign(id, [("target/a.png", [UInt8](repeating: 1, count: 6000)), ("target/b.png", [UInt8](repeating: 1, count: 6000))])
            #expect(response.status == .unprocessableEntity && response.errorCode == "dataset_too_large")
            #expect(response.errorMessage?.contains("at most 10240") == true)
            // Signed but never completed uploads count for their 15 minutes: no filling the
            // bucket batch by batch.
            #expect(try await user.sign(id, [("target/a.png", [UInt8](repeating: 1, count: 6000))]).status == .ok)
            let second = try await user.sign(id, [("target/b.png", [UInt8](repeating: 1, count: 6000))])
            #expect(second.status == .unprocessableEntity && second.errorCode == "dataset_too_large")
            // Signing the same file again replaces its pending size rather than adding to it.
            #expect(try await user.sign(id, [("target/a.png", [UInt8](repeating: 1, count: 6000))]).status == .ok)
            store.clock.advance(by: 16 * 60)
            #expect(try await user.sign(id, [("target/b.png", [UInt8](repeating: 1, count: 6000))]).status == .ok)
        }
    }
}
