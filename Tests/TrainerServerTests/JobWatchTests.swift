import AsyncHTTPClient
import Foundation
import NIOConcurrencyHelpers
import Testing
import TrainerClient
import TrainerCore
import Vapor

@testable import TrainerServer

/// `ServerAPI.watchJob` (what `gomodel train --watch` and `jobs watch` run) against a server that
/// stops under it: the event stream ends without the job's end (a stopping server ends it), and the
/// next call is refused meanwhile (503 from a proxy while the server restarts). The watch waits and
/// follows the job again, to its end.
@Suite struct JobWatchTests {
    static func job(_ id: UUID, status: String) -> String {
        #"{"id": "\#(id)", "datasetId": "\#(UUID())", "preset": "qwen-image-edit-2509", "status": "\#(status)", "attempt": 1, "artifacts": [], "cancelRequested": false, "createdAt": "2026-11-30T12:00:00Z"}"#
    }

    @Test func aWatchOutlivesAServerStopAndFollowsTheJobToItsEnd() async throws {
        let id = UUID()
        let calls = NIOLockedValueBox<[String]>([])
        try await withLoopbackServer({ app in
            app.get("api", "jobs", ":id", "events") { _ -> Response in
                let streams = calls.withLockedValue {
                    $0.append("events")
                    return $0.filter { $0 == "events" }.count
                }
                let status = streams == 1 ? "running" : "completed"
                return Response(status: .ok, headers: ["Content-Type": "text/event-stream"], body: .init(string: "event: job\ndata: \(Self.job(id, status: status))\n\n"))
            }
            app.get("api", "jobs", ":id") { _ -> Response in
                calls.withLockedValue { $0.append("job") }
                return Response(status: .serviceUnavailable, body: .init(string: #"{"error": {"code": "restarting", "message": "back soon"}}"#))
            }
        }) { base in
            let http = HTTPClient(eventLoopGroupProvider: .singleton)
            let seen = NIOLockedValueBox<[String]>([])
            let final: API.Job
            do {
                final = try await ServerAPI(baseURL: base, token: "gm_test", http: http).watchJob(id) { job in seen.withLockedValue { $0.append(job.status) } }
            } catch {
                try await http.shutdown()
                throw error
            }
            try await http.shutdown()
            #expect(final.status == "completed")
            #expect(seen.withLockedValue { $0 } == ["running", "completed"])
            #expect(calls.withLockedValue { $0 } == ["events", "job", "events"], "the stream, the refused call, then the stream again")
        }
    }

    /// A job's event stream open when the server stops ends at its next step, so that the HTTP
    /// server, which waits for every request in flight, stops at once rather than after its 10 s
    /// shutdown timeout (with the databases closed under the stream).
    @Test func aStoppingServerEndsItsEventStreams() async throws {
        try await JobTests.withSetup { setup in
            let id = try #require(try await setup.createJob()["id"] as? String)
            let token = try await setup.user.client.createToken()
            var request = HTTPClientRequest(url: setup.store.baseURL.absoluteString + "/api/jobs/\(id)/events")
            request.headers.add(name: "Authorization", value: "Bearer \(token)")
            request.headers.add(name: "Accept", value: "text/event-stream")
            let response = try await setup.store.http.execute(request, timeout: .seconds(60))
            let stream = NIOLockedValueBox<(text: String, ended: Bool)>(("", false))
            let reading = Task {
                for try await chunk in response.body { stream.withLockedValue { $0.text += String(buffer: chunk) } }
                stream.withLockedValue { $0.ended = true }
            }
            defer { reading.cancel() }
            try await JobRestartTests.waitFor("the job's first event") { stream.withLockedValue { $0.text.hasPrefix("event: job\n") } }

            let shutdown = try #require(setup.store.app.storage[ServerShutdown.Key.self])
            await shutdown.shutdownAsync(setup.store.app)
            // Within a step of the stream's loop, not the HTTP server's 10 s shutdown timeout.
            try await JobRestartTests.waitFor("the stream to end", timeout: 5) { stream.withLockedValue { $0.ended } }
            #expect(setup.store.app.http.server.shared.localAddress == nil, "the HTTP server has stopped")
        }
    }
}
