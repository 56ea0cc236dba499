import AsyncHTTPClient
import Foundation
import ObjectStorage
import Testing
import TrainerCore
import VaporTesting

@testable import TrainerServer

/// The web app's pages: sign-in redirects, who may see what, escaping, CSP and CSRF plumbing.
@Suite struct WebTests {
    static let xssName = "<script>alert(1)</script> cats"

    @Test func signedOutVisitorsAreSentToLogInAndAssetsAreServed() async throws {
        try await withTestApp { app in
            var client = APIClient(app)
            for path in ["/datasets", "/datasets/\(UUID())", "/jobs", "/jobs/new", "/account"] {
                let response = try await client.send(.GET, path)
                #expect(response.status == .seeOther, "\(path)")
                #expect(response.headers.first(name: .location) == "/login?next=\(path)", "\(path)")
            }
            #expect(try await client.send(.GET, "/").headers.first(name: .location) == "/login")
            let withQuery = try await client.send(.GET, "/jobs/new?dataset=\(UUID())")
            #expect(withQuery.headers.first(name: .location)?.hasPrefix("/login?next=/jobs/new%3Fdataset%3D") == true, "the query comes back too")

            let login = try await client.send(.GET, "/login")
            #expect(login.status == .ok)
            #expect(login.headers.contentType?.description.hasPrefix("text/html") == true)
            #expect(login.body.string.contains(#"data-endpoint="/api/auth/login""#))
            let policy = try #require(login.headers.first(name: "Content-Security-Policy"))
            #expect(policy.contains("script-src 'self';"))
            #expect(!policy.contains("unsafe-inline") && !policy.contains("unsafe-eval"))
            #expect(policy.contains("frame-ancestors 'none'"))
            // No inline scripts or handlers, which the policy would block anyway.
            #expect(!login.body.string.contains("<script>") && !login.body.string.contains("onclick"))

            let css = try await client.send(.GET, "/assets/app.css")
            #expect(css.status == .ok)
            #expect(css.headers.contentType?.description.hasPrefix("text/css") == true)
            #expect(css.headers.first(name: "Content-Security-Policy") != nil)
            let script = try await client.send(.GET, "/assets/js/dataset.js")
            #expect(script.status == .ok && script.headers.contentType?.description.hasPrefix("text/javascript") == true)
            #expect(try await client.send(.GET, "/assets/js/common.js").body.string.contains("'X-CSRF-Token'"))
            // Pieces arrive decoded: `js%2F..%2Fapp.css` names a real file of an allowed type.
            for path in [
                "/assets/../Package.swift", "/assets/%2e%2e/Views/layout.leaf", "/assets/Views/layout.leaf", "/assets/js/missing.js",
                "/assets/js%2F..%2Fapp.css", "/assets/js%2F..%2F..%2F..%2FWeb%2FAssets%2Fapp.css", "/assets/js",
            ] {
                #expect(try await client.send(.GET, path).status == .notFound, "\(path)")
            }

            // Signed in, the entry pages send the visitor on.
            try await client.signUp("ann@example.com")
            #expect(try await client.send(.GET, "/").headers.first(name: .location) == "/datasets")
            #expect(try await client.send(.GET, "/login").headers.first(name: .location) == "/datasets")
        }
    }

    @Test func pagesShowTheOwnersThingsEscapedAndAnswer404ToOthers() async throws {
        try await withRunningStore { store in
            var ann = try await DatasetTests.User(store, email: "ann@example.com")
            let datasetID = try await ann.createDataset(Self.xssName)
            try await ann.upload(datasetID, DatasetTests.pair)
            let created = try await ann.client.send(.POST, "/api/jobs", body: #"{"datasetId": "\#(datasetID)", "params": {"steps": 100}}"#)
            #expect(created.status == .created, "\(created.body.string)")
            let jobID = try #require(try created.json["id"] as? String).lowercased()
            let csrf = try #require(ann.client.csrfToken)

            for path in ["/datasets", "/datasets/\(datasetID)", "/jobs", "/jobs/\(jobID)", "/jobs/new?dataset=\(datasetID)", "/account"] {
                let page = try await ann.client.send(.GET, path)
                #expect(page.status == .ok, "\(path): \(page.body.string)")
                let html = page.body.string
                #expect(html.contains(#"<meta name="csrf-token" content="\#(csrf)">"#), "\(path)")
                #expect(page.headers.first(name: "Content-Security-Policy")?.contains("unsafe-inline") == false, "\(path)")
                #expect(page.headers.first(name: .cacheControl) == "no-store", "\(path)")
                #expect(!html.contains("<script>alert(1)"), "\(path) shows the name unescaped")
                if path != "/account" {
                    #expect(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; cats"), "\(path) shows the name escaped")
                }
            }
            #expect(try await ann.client.send(.GET, "/jobs/new?dataset=\(datasetID)").body.string.contains(">Train Qwen Image Edit 2509</button>"))
            #expect(try await ann.client.send(.GET, "/datasets/\(datasetID)").body.string.lowercased().contains(#"data-dataset-id="\#(datasetID)""#))

            var bob = try await DatasetTests.User(store, email: "bob@example.com")
            for path in ["/datasets/\(datasetID)", "/jobs/\(jobID)", "/datasets/not-a-uuid", "/jobs/\(UUID())"] {
                let page = try await bob.client.send(.GET, path)
                #expect(page.status == .notFound, "\(path)")
                #expect(page.body.string.contains("<h1>Not found</h1>") && !page.body.string.contains("alert(1)"), "\(path)")
            }
            for path in ["/datasets", "/jobs", "/jobs/new?dataset=\(datasetID)"] {
                let page = try await bob.client.send(.GET, path)
                #expect(page.status == .ok && !page.body.string.contains("alert(1)"), "\(path) shows another user's dataset")
            }
        }
    }

    @Test func sampleImagesRedirectToTheBucketForTheirOwnerOnly() async throws {
        try await withRunningStore { store in
            var ann = try await DatasetTests.User(store, email: "ann@example.com")
            let datasetID = try await ann.createDataset()
            let target = TestImage.png(width: 300, height: 300)
            try await ann.upload(datasetID, [("control/cat.png", TestImage.png()), ("target/cat.png", target), ("target/cat.txt", Array("make it blue".utf8))])

            let redirect = try await ann.client.send(.GET, "/api/datasets/\(datasetID)/samples/cat/target")
            #expect(redirect.status == .seeOther)
            let location = try #require(redirect.headers.first(name: .location))
            #expect(location.contains("/s3/gomodel/datasets/\(datasetID)/target/cat.png?") && location.contains("X-Amz-Signature="))
            let fetched = try await store.http.execute(HTTPClientRequest(url: location), timeout: .seconds(10))
            #expect(fetched.status == .ok)
            #expect(Array(buffer: try await fetched.body.collect(upTo: 1 << 20)) == target)

            #expect(try await ann.client.send(.GET, "/api/datasets/\(datasetID)/samples/cat/control_1").status == .seeOther)
            for path in ["samples/cat/caption", "samples/dog/target", "samples/cat/control_2"] {
                #expect(try await ann.client.send(.GET, "/api/datasets/\(datasetID)/\(path)").status == .notFound, "\(path)")
            }
            var bob = try await DatasetTests.User(store, email: "bob@example.com")
            #expect(try await bob.client.send(.GET, "/api/datasets/\(datasetID)/samples/cat/target").status == .notFound)
        }
    }

    /// The grid's "Remove sample" button: the sample's files leave the bucket and the dataset.
    @Test func aSampleCanBeRemovedByItsOwnerOnly() async throws {
        try await withRunningStore { store in
            var ann = try await DatasetTests.User(store, email: "ann@example.com")
            let datasetID = try await ann.createDataset()
            try await ann.upload(datasetID, DatasetTests.pair + [("target/owl.png", TestImage.png())])
            #expect(try await ann.client.send(.GET, "/api/datasets/\(datasetID)").json["sound"] as? Bool == false)

            var bob = try await DatasetTests.User(store, email: "bob@example.com")
            #expect(try await bob.client.send(.DELETE, "/api/datasets/\(datasetID)/samples/owl").status == .notFound)
            #expect(try await ann.client.send(.DELETE, "/api/datasets/\(datasetID)/samples/owl", sendCSRF: false).status == .forbidden)

            let removed = try await ann.client.send(.DELETE, "/api/datasets/\(datasetID)/samples/owl")
            #expect(removed.status == .ok, "\(removed.body.string)")
            #expect(try removed.json["sound"] as? Bool == true && removed.json["sampleCount"] as? Int == 1)
            let keys = try await store.client().listAllObjects(prefix: "datasets/\(datasetID)/").map(\.key)
            #expect(keys.sorted() == ["control_1/cat.png", "target/cat.png", "target/cat.txt"].map { "datasets/\(datasetID)/\($0)" })
            #expect(try await ann.client.send(.DELETE, "/api/datasets/\(datasetID)/samples/owl").status == .notFound)
        }
    }

    @Test func thePolicyAllowsTheBucketOriginWhereBrowsersUploadTo() async throws {
        #expect(WebSecurityHeaders.policy(storeOrigin: nil).contains("connect-src 'self';"))
        try await withTestApp(environment: [
            "R2_BUCKET": "loras", "R2_ENDPOINT": "https://0123abcd.r2.cloudflarestorage.com",
            "R2_ACCESS_KEY_ID": String(repeating: "a", count: 32), "R2_SECRET_ACCESS_KEY": String(repeating: "b", count: 64),
        ]) { app in
            var client = APIClient(app)
            let policy = try #require(try await client.send(.GET, "/login").headers.first(name: "Content-Security-Policy"))
            let connect = try #require(policy.split(separator: ";").first { $0.contains("connect-src") })
            let images = try #require(policy.split(separator: ";").first { $0.contains("img-src") })
            #expect(connect.contains("r2.cloudflarestorage.com") && images.contains("r2.cloudflarestorage.com"), "\(policy)")
        }
    }

    @Test func theEstimateGrowsWithStepsAndShrinksWithBiggerCards() {
        let small = TrainingEstimate.seconds(steps: 1000, profile: .gb32)
        #expect(small > TrainingEstimate.seconds(steps: 500, profile: .gb32))
        #expect(small > TrainingEstimate.seconds(steps: 1000, profile: .gb80))
        #expect(small == TrainingEstimate.overheadSeconds + 1000 * TrainingEstimate.secondsPerStep(.gb32))
    }
}
