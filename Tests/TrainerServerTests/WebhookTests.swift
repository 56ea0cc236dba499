import Fluent
import Foundation
import NIOConcurrencyHelpers
import RunPod
import Testing
import TrainerCore
import VaporTesting

@testable import TrainerServer

/// Outgoing webhooks: registration and its refusals, the outbox written with each job change
/// (each event once), and sending: signed, retried on failure, logged, given up after a day.
@Suite struct WebhookTests {
    static let allowPrivate = ["GOMODEL_WEBHOOKS_ALLOW_PRIVATE": "1"]

    @Test func theSignatureIsStandardWebhooks() {
        // The example of the Standard Webhooks specification (and of its reference libraries).
        let signature = WebhookService.signature(
            secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", id: "msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp: 1_614_265_330, body: Array(#"{"test": 2432232314}"#.utf8))
        #expect(signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        #expect(WebhookService.signature(secret: "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", id: "msg_1", timestamp: 1, body: []) == nil, "a secret without whsec_")
    }

    @Test func aWebhookGoesToAPublicAddressOfItsOwner() async throws {
        try await JobTests.withSetup { setup in
            for url in ["http://127.0.0.1:9/hook", "http://localhost:9/hook", "http://169.254.169.254/latest/meta-data", "http://[::1]:9/", "http://10.1.2.3/"] {
                let refused = try await setup.user.client.send(.POST, "/api/webhooks", body: #"{"url": "\#(url)"}"#)
                #expect(refused.status == .unprocessableEntity && refused.body.string.contains("private_address"), "\(url): \(refused.body.string)")
            }
            for (body, code) in [
                (#"{"url": "ftp://example.com/x"}"#, "invalid_url"), (#"{"url": "http://user:pw@example.com/x"}"#, "invalid_url"),
                (#"{"url": "http://93.184.215.14/x", "events": ["job.exploded"]}"#, "invalid_parameter"),
                (#"{"url": "http://93.184.215.14/x", "events": []}"#, "invalid_parameter"), (#"{"url": "http://93.184.215.14/x", "secret": "mine"}"#, "invalid_parameter"),
                (#"{"url": "http://93.184.215.14/x", "events": ["webhook.test"]}"#, "invalid_parameter"),
            ] {
                let refused = try await setup.user.client.send(.POST, "/api/webhooks", body: body)
                #expect(refused.status == .badRequest && refused.body.string.contains(code), "\(body): \(refused.body.string)")
            }
            // A public address literal needs no resolving.
            let created = try await setup.user.client.send(.POST, "/api/webhooks", body: #"{"url": "http://93.184.215.14/x", "events": ["job.completed"]}"#)
            #expect(created.status == .created, "\(created.body.string)")
            let id = try #require(try created.json["id"] as? String)
            #expect((try created.json["secret"] as? String)?.hasPrefix("whsec_") == true)
            let listed = try await setup.user.client.send(.GET, "/api/webhooks")
            #expect(listed.body.string.contains(id) && !listed.body.string.contains("whsec_"), "the secret is shown once")

            var other = try await DatasetTests.User(setup.store, email: "eve@example.com")
            for (method, path) in [(HTTPMethod.GET, ""), (.DELETE, ""), (.POST, "/test"), (.GET, "/deliveries")] {
                #expect(try await other.client.send(method, "/api/webhooks/\(id)\(path)").status == .notFound, "\(method) \(path)")
            }
            #expect(try await other.client.send(.GET, "/api/webhooks").body.string.contains(id) == false)
            #expect(try await setup.user.client.send(.DELETE, "/api/webhooks/\(id)").status == .noContent)
            #expect(try await setup.user.client.send(.GET, "/api/webhooks/\(id)").status == .notFound)
        }
    }

    @Test func eachEventOfAJobIsWrittenOnceForEachEndpointThatWantsIt() async throws {
        try await JobTests.withSetup(environment: Self.allowPrivate) { setup in
            let all = try #require(try await setup.user.client.send(.POST, "/api/webhooks", body: #"{"url": "http://127.0.0.1:9/all"}"#).json["id"] as? String)
            let completedOnly = try #require(
                try await setup.user.client.send(.POST, "/api/webhooks", body: #"{"url": "http://127.0.0.1:9/done", "events": ["job.completed"]}"#).json["id"] as? String)
            var other = try await DatasetTests.User(setup.store, email: "eve@example.com")
            let foreign = try #require(try await other.client.send(.POST, "/api/webhooks", body: #"{"url": "http://127.0.0.1:9/eve"}"#).json["id"] as? String)

            let id = try #require(try await setup.createJob()["id"] as? String).lowercased()
            let submitted = try await setup.submitAndStart()
            let prefix = "outputs/\(id)/"
            let checkpoint50: JSONValue = ["kind": "checkpoint", "key": .string(prefix + "checkpoints/gm_x_000000050.safetensors"), "step": 50]
            setup.fake.progress(submitted.id, ["step": 60, "total_steps": 100, "artifacts": [checkpoint50]])
            try await setup.pollAgain()
            setup.fake.progress(submitted.id, ["step": 70, "total_steps": 100, "artifacts": [checkpoint50]])
            try await setup.pollAgain()
            setup.fake.complete(
                submitted.id,
                output: [
                    "steps": 100,
                    "artifacts": [
                        ["kind": "lora", "key": .string(prefix + "lora/gm_x.safetensors")], checkpoint50,
                        ["kind": "checkpoint", "key": .string(prefix + "checkpoints/gm_x_000000100.safetensors"), "step": 100],
                    ],
                ])
            try await setup.pollAgain()
            // The same result again (RunPod's webhook after the poll) announces nothing new.
            let job = try #require(try await Job.find(UUID(uuidString: id), on: setup.db))
            let report = RunPodJob(id: submitted.id, status: .completed, output: ["steps": 100], error: nil)
            #expect(try await setup.runner.jobs.apply(report, to: job, on: setup.db) == false)

            func events(_ endpoint: String) async throws -> [String] {
                try await WebhookDelivery.query(on: setup.db).filter(\.$endpoint.$id == UUID(uuidString: endpoint)!).sort(\.$createdAt).all().map { delivery in
                    let data = try JSONDecoder().decode(JSONValue.self, from: Data(delivery.payload.utf8))
                    return delivery.eventType + (data["data"]?["checkpoint"]?["step"]?.numberValue.map { " \(Int($0))" } ?? "")
                }
            }
            // Events of one change share a time; receivers get no order (Standard Webhooks promises none).
            let heard = try await events(all).sorted()
            #expect(heard == ["checkpoint.saved 100", "checkpoint.saved 50", "job.completed", "job.started"], "\(heard)")
            #expect(try await events(completedOnly) == ["job.completed"])
            #expect(try await events(foreign).isEmpty, "another user's webhook hears nothing of this job")
            let completed = try #require(try await WebhookDelivery.query(on: setup.db).filter(\.$eventType == "job.completed").first())
            let payload = try JSONDecoder().decode(JSONValue.self, from: Data(completed.payload.utf8))
            #expect(payload["type"] == "job.completed" && payload["data"]?["job"]?["id"] == .string(id.uppercased()) && payload["data"]?["job"]?["status"] == "completed")
            #expect(payload["timestamp"]?.stringValue?.hasSuffix("Z") == true)
        }
    }

    @Test func aFailureARetryAndACancelAreAnnouncedPerAttempt() async throws {
        try await JobTests.withSetup(environment: Self.allowPrivate) { setup in
            let endpoint = try #require(try await setup.user.client.send(.POST, "/api/webhooks", body: #"{"url": "http://127.0.0.1:9/all"}"#).json["id"] as? String)
            let id = try #require(try await setup.createJob()["id"] as? String).lowercased()
            let first = try await setup.submitAndStart()
            try await setup.pollAgain()
            setup.fake.fail(first.id, error: "CUDA out of memory")
            try await setup.pollAgain()
            #expect(try await setup.user.client.send(.POST, "/api/jobs/\(id)/retry").status == .ok)
            try await setup.submitAndStart()
            try await setup.pollAgain()
            _ = try await setup.user.client.send(.POST, "/api/jobs/\(id)/cancel")
            try await setup.tick()
            try await setup.pollAgain()
            let heard = try await WebhookDelivery.query(on: setup.db).filter(\.$endpoint.$id == UUID(uuidString: endpoint)!).all().map { delivery in
                let data = try JSONDecoder().decode(JSONValue.self, from: Data(delivery.payload.utf8))
                return "\(delivery.eventType) \(Int(data["data"]?["job"]?["attempt"]?.numberValue ?? 0))"
            }
            #expect(heard.sorted() == ["job.cancelled 2", "job.failed 1", "job.started 1", "job.started 2"], "\(heard)")
            let failed = try #require(try await WebhookDelivery.query(on: setup.db).filter(\.$eventType == "job.failed").first())
            #expect(failed.payload.contains("CUDA out of memory"), "the error comes with it")

            // One test event at a time: the next waits until the first is delivered or given up.
            #expect(try await setup.user.client.send(.POST, "/api/webhooks/\(endpoint)/test").status == .accepted)
            let again = try await setup.user.client.send(.POST, "/api/webhooks/\(endpoint)/test")
            #expect(again.status == .conflict && again.body.string.contains("test_pending"), "\(again.body.string)")
        }
    }

    @Test func anEndpointHasOneSendInFlightAndTheOthersGoOn() async throws {
        try await JobTests.withSetup(environment: Self.allowPrivate) { setup in
            let slow = try await Receiver.start(answers: [.ok], delay: .milliseconds(800))
            let quick = try await Receiver.start(answers: [.ok])
            defer {
                Task {
                    try? await slow.stop()
                    try? await quick.stop()
                }
            }
            let slowID = try #require(try await setup.user.client.send(.POST, "/api/webhooks", body: #"{"url": "\#(slow.url)/s"}"#).json["id"] as? String)
            let quickID = try #require(try await setup.user.client.send(.POST, "/api/webhooks", body: #"{"url": "\#(quick.url)/q"}"#).json["id"] as? String)
            // Three events for the slow endpoint (a job's), one for the quick one.
            let id = try #require(try await setup.createJob()["id"] as? String).lowercased()
            try await setup.submitAndStart()
            try await setup.pollAgain()
            _ = try await setup.user.client.send(.POST, "/api/jobs/\(id)/cancel")
            try await setup.tick()
            try await setup.pollAgain()
            #expect(try await setup.user.client.send(.DELETE, "/api/webhooks/\(quickID)").status == .noContent)
            let quickAgain = try #require(try await setup.user.client.send(.POST, "/api/webhooks", body: #"{"url": "\#(quick.url)/q"}"#).json["id"] as? String)
            #expect(try await setup.user.client.send(.POST, "/api/webhooks/\(quickAgain)/test").status == .accepted)
            let webhooks = try #require(setup.store.app.storage[WebhookServiceKey.self])
            // One round: one send to the slow endpoint, one to the quick one; the slow one's other
            // events wait for the next rounds.
            _ = try await webhooks.deliverDue(on: setup.db)
            #expect(slow.requests.count == 1 && quick.requests.count == 1, "\(slow.requests.count), \(quick.requests.count)")
            let waiting = try await WebhookDelivery.query(on: setup.db).filter(\.$endpoint.$id == UUID(uuidString: slowID)!).filter(\.$state == .pending).all()
            #expect(waiting.count == 1 && waiting.allSatisfy { $0.leaseUntil == nil && $0.attempts == 0 }, "released for the next round")
            _ = try await webhooks.deliverDue(on: setup.db)
            #expect(slow.requests.count == 2)
        }
    }

    @Test func aDeliveryIsSignedRetriedAfterAFailureAndLogged() async throws {
        try await JobTests.withSetup(environment: Self.allowPrivate) { setup in
            let receiver = try await Receiver.start(answers: [.internalServerError, .noContent])
            defer { Task { try? await receiver.stop() } }
            let created = try await setup.user.client.send(.POST, "/api/webhooks", body: #"{"url": "\#(receiver.url)/hook"}"#).json
            let id = try #require(created["id"] as? String)
            let secret = try #require(created["secret"] as? String)
            #expect(try await setup.user.client.send(.POST, "/api/webhooks/\(id)/test").status == .accepted)
            let webhooks = try #require(setup.store.app.storage[WebhookServiceKey.self])

            #expect(try await webhooks.deliverDue(on: setup.db) == false)
            var delivery = try #require(try await WebhookDelivery.query(on: setup.db).first())
            #expect(delivery.state == .pending && delivery.attemptLog.map(\.statusCode) == [500])
            // Within a millisecond: a stored time may lose a little precision.
            #expect(abs(try #require(delivery.nextAttemptAt).timeIntervalSince(setup.store.clock.now) - OutgoingWebhook.firstRetryDelay) < 0.001)
            // Not due yet: nothing is sent.
            _ = try await webhooks.deliverDue(on: setup.db)
            #expect(receiver.requests.count == 1)
            setup.store.clock.advance(by: OutgoingWebhook.firstRetryDelay + 0.001)
            _ = try await webhooks.deliverDue(on: setup.db)
            delivery = try #require(try await WebhookDelivery.query(on: setup.db).first())
            #expect(delivery.state == .delivered && delivery.attemptLog.map(\.statusCode) == [500, 204] && delivery.deliveredAt != nil)

            let requests = receiver.requests
            #expect(requests.count == 2 && requests[0].headers["webhook-id"] == requests[1].headers["webhook-id"], "a retry keeps its webhook-id")
            for request in requests {
                let timestamp = try #require(Int(request.headers["webhook-timestamp"] ?? ""))
                let expected = WebhookService.signature(secret: secret, id: request.headers["webhook-id"] ?? "", timestamp: timestamp, body: request.body)
                #expect(request.headers["webhook-signature"] == expected && request.headers["content-type"] == "application/json")
            }
            #expect(requests[1].headers["webhook-timestamp"] != requests[0].headers["webhook-timestamp"], "each try is stamped when it is sent")
            let log = try await setup.user.client.send(.GET, "/api/webhooks/\(id)/deliveries").json
            let shown = try #require((log["deliveries"] as? [[String: Any]])?.first)
            #expect(shown["state"] as? String == "delivered" && (shown["attempts"] as? [[String: Any]])?.map { $0["statusCode"] as? Int } == [500, 204])
        }
    }

    @Test func anUnreachableOrSlowReceiverIsRetriedForADayThenGivenUp() async throws {
        try await JobTests.withSetup(environment: Self.allowPrivate) { setup in
            let slow = try await Receiver.start(answers: [.ok], delay: .seconds(1))
            defer { Task { try? await slow.stop() } }
            var webhooks = try #require(setup.store.app.storage[WebhookServiceKey.self])
            webhooks.timeout = .milliseconds(300)
            for url in ["http://127.0.0.1:\(try freePort())/nobody", "\(slow.url)/slow"] {
                let id = try #require(try await setup.user.client.send(.POST, "/api/webhooks", body: #"{"url": "\#(url)"}"#).json["id"] as? String)
                #expect(try await setup.user.client.send(.POST, "/api/webhooks/\(id)/test").status == .accepted)
            }
            _ = try await webhooks.deliverDue(on: setup.db)
            let deliveries = try await WebhookDelivery.query(on: setup.db).with(\.$endpoint).all()
            for delivery in deliveries {
                let attempt = try #require(delivery.attemptLog.first)
                #expect(delivery.state == .pending && attempt.statusCode == nil && attempt.error != nil, "\(delivery.endpoint.url): \(attempt)")
                if delivery.endpoint.url.hasSuffix("/slow") { #expect(attempt.error?.contains("No answer within") == true, "\(attempt)") }
            }
            // The next tries wait 5 s, 20 s, 80 s… and the last one falls within a day of the event.
            var failures = 1
            while try await WebhookDelivery.query(on: setup.db).filter(\.$state == .pending).count() > 0, failures < 20 {
                let next = try #require(try await WebhookDelivery.query(on: setup.db).filter(\.$state == .pending).sort(\.$nextAttemptAt).first()?.nextAttemptAt)
                // A millisecond past it (the precision a stored time keeps).
                setup.store.clock.advance(by: next.timeIntervalSince(setup.store.clock.now) + 0.001)
                _ = try await webhooks.deliverDue(on: setup.db)
                failures += 1
            }
            for delivery in try await WebhookDelivery.query(on: setup.db).all() {
                #expect(delivery.state == .failed && delivery.attempts == failures)
                #expect(delivery.attemptLog.last!.at.timeIntervalSince(delivery.createdAt) <= OutgoingWebhook.retryWindow)
            }
        }
    }
}

/// A webhook receiver on a loopback port: answers each request with the next of `answers` (the
/// last repeats), after `delay`, and records what it got.
final class Receiver: Sendable {
    struct Received: Sendable {
        let headers: [String: String]
        let body: [UInt8]
    }

    let app: Application
    let url: String
    private let received: NIOLockedValueBox<[Received]>

    var requests: [Received] { received.withLockedValue { $0 } }

    private init(app: Application, url: String, received: NIOLockedValueBox<[Received]>) {
        self.app = app
        self.url = url
        self.received = received
    }

    static func start(answers: [HTTPStatus], delay: Duration = .zero) async throws -> Receiver {
        let app = try await Application.make(.testing)
        app.logger.logLevel = .critical
        let received = NIOLockedValueBox<[Received]>([])
        app.on(.POST, "**", body: .collect(maxSize: "1mb")) { request async throws -> Response in
            let count = received.withLockedValue { list in
                list.append(
                    Received(
                        headers: Dictionary(request.headers.map { ($0.name.lowercased(), $0.value) }) { first, _ in first },
                        body: request.body.data.map { Array($0.readableBytesView) } ?? []))
                return list.count
            }
            if delay > .zero { try await Task.sleep(for: delay) }
            return Response(status: answers[min(count, answers.count) - 1])
        }
        try await app.server.start(address: .hostname("127.0.0.1", port: 0))
        return Receiver(app: app, url: "http://127.0.0.1:\(app.http.server.shared.localAddress!.port!)", received: received)
    }

    func stop() async throws {
        await app.server.shutdown()
        try await app.asyncShutdown()
    }
}
