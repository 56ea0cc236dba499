import AsyncHTTPClient
import Crypto
import Fluent
import Foundation
import NIOCore
import NIOPosix
import SQLKit
import TrainerCore
import Vapor

/// Outgoing webhooks (`OutgoingWebhook`): a user's endpoints, the outbox their job events are
/// written to in the transaction that changes the job (so an event is announced exactly once
/// per endpoint, whoever wins the change), and the sender that works through it.
struct WebhookService: Sendable {
    let now: @Sendable () -> Date
    /// `GOMODEL_WEBHOOKS_ALLOW_PRIVATE`: loopback and private targets too (tests, an intranet).
    let allowPrivateTargets: Bool
    let http: HTTPClient
    let wakeup: Wakeup
    /// How long a receiver has to answer.
    var timeout: Duration = .seconds(10)
    /// The sends in flight, each a task of its own and one per endpoint: a slow receiver holds up
    /// only its own deliveries, and takes one of the slots at most.
    var sends = InFlightCalls(limit: 32)
    static let maximumLoggedAttempts = 30

    // MARK: Endpoints

    func create(userID: UUID, _ body: API.WebhookCreate, on db: any Database) async throws -> WebhookEndpoint {
        let url: URL
        switch OutgoingWebhook.target(body.url) {
        case .success(let target): url = target
        case .failure(let problem): throw APIError.badRequest("invalid_url", "The webhook URL \(problem.message).")
        }
        try await checkAddress(of: url)
        let subscribable = OutgoingWebhook.EventType.subscribable
        var chosen: Set<OutgoingWebhook.EventType> = []
        for name in body.events ?? subscribable.map(\.rawValue) {
            guard let type = OutgoingWebhook.EventType(rawValue: name), subscribable.contains(type) else {
                throw APIError.badRequest("invalid_parameter", "'\(name)' is not an event; choose from \(subscribable.map(\.rawValue).joined(separator: ", ")).")
            }
            chosen.insert(type)
        }
        // One order however they were listed.
        let events = subscribable.filter(chosen.contains)
        guard !events.isEmpty else {
            throw APIError.badRequest("invalid_parameter", "'events' is empty; name at least one event, or leave it out for all of them.")
        }
        let description = body.description?.trimmingCharacters(in: .whitespacesAndNewlines)
        // Counted as the OpenAPI document's maxLength counts: in code points.
        if let description, description.unicodeScalars.count > 200 {
            throw APIError.badRequest("invalid_parameter", "'description' is longer than 200 characters.")
        }
        guard try await WebhookEndpoint.query(on: db).filter(\.$user.$id == userID).count() < 20 else {
            throw APIError.conflict("too_many_webhooks", "You have 20 webhooks, the most one account may have; delete one first.")
        }
        var generator = SystemRandomNumberGenerator()
        let secret = OutgoingWebhook.secret(from: (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) })
        let endpoint = WebhookEndpoint(
            userID: userID, url: url.absoluteString, events: events, secret: secret, description: description?.isEmpty == true ? nil : description, createdAt: now())
        try await endpoint.create(on: db)
        return endpoint
    }

    func list(userID: UUID, on db: any Database) async throws -> [WebhookEndpoint] {
        try await WebhookEndpoint.query(on: db).filter(\.$user.$id == userID).sort(\.$createdAt).sort(\.$id).all()
    }

    /// The user's endpoint; another user's is as unknown as a missing one.
    func find(_ id: UUID?, userID: UUID, on db: any Database) async throws -> WebhookEndpoint {
        guard let id, let endpoint = try await WebhookEndpoint.find(id, on: db), endpoint.$user.id == userID else {
            throw APIError.notFound("No webhook with this id.")
        }
        return endpoint
    }

    /// Deletes the endpoint and its deliveries (pending ones are not sent).
    func delete(_ endpoint: WebhookEndpoint, on db: any Database) async throws {
        try await db.transaction { db in
            try await WebhookDelivery.query(on: db).filter(\.$endpoint.$id == endpoint.id!).delete()
            try await endpoint.delete(on: db)
        }
    }

    /// Queues a `webhook.test` event for this endpoint alone; one at a time, so test events
    /// cannot pile up behind a receiver that does not answer.
    func sendTest(to endpoint: WebhookEndpoint, on db: any Database) async throws -> WebhookDelivery {
        if try await WebhookDelivery.query(on: db).filter(\.$endpoint.$id == endpoint.id!).filter(\.$eventType == OutgoingWebhook.EventType.test.rawValue)
            .filter(\.$state == .pending).first() != nil
        {
            throw APIError.conflict(
                "test_pending", "A test event to this webhook is still waiting to be delivered; its deliveries (GET /api/webhooks/{id}/deliveries) show why.")
        }
        let time = now()
        let data: JSONValue = ["webhookId": .string(endpoint.id!.uuidString), "message": "A test event from gomodel."]
        let delivery = Self.delivery(
            to: endpoint.id!, key: "\(OutgoingWebhook.EventType.test.rawValue):\(UUID().uuidString.lowercased())", type: .test, jobID: nil,
            payload: OutgoingWebhook.payload(type: .test, at: time, data: data), at: time)
        try await delivery.create(on: db)
        wakeup.signal()
        return delivery
    }

    func deliveries(of endpoint: WebhookEndpoint, limit: Int = 50, on db: any Database) async throws -> [WebhookDelivery] {
        try await WebhookDelivery.query(on: db).filter(\.$endpoint.$id == endpoint.id!).sort(\.$createdAt, .descending).sort(\.$id).limit(limit).all()
    }

    /// Refuses a target that resolves to a loopback, private, link-local or otherwise
    /// non-public address (unless the operator allows them): a webhook must not become a way
    /// to reach the server's own network.
    func checkAddress(of url: URL) async throws {
        guard !allowPrivateTargets, let host = url.host else { return }
        let addresses = try await Self.resolve(host: host, port: url.port ?? (url.scheme == "https" ? 443 : 80))
        guard !addresses.isEmpty else {
            throw APIError(status: .unprocessableEntity, code: "unresolvable_host", message: "The webhook's host '\(host)' does not resolve to any address; check its spelling.")
        }
        if let refused = addresses.first(where: { !NetworkAddress.isPublic($0) }) {
            throw APIError(
                status: .unprocessableEntity, code: "private_address",
                message:
                    "The webhook's host '\(host)' resolves to \(Self.render(refused)), a loopback, private or link-local address; webhooks go to public addresses only (an operator may allow private ones with GOMODEL_WEBHOOKS_ALLOW_PRIVATE=1)."
            )
        }
    }

    /// Every address `host` resolves to (getaddrinfo, on the thread pool: it blocks).
    static func resolve(host: String, port: Int) async throws -> [[UInt8]] {
        try await NIOThreadPool.singleton.runIfActive {
            var hints = addrinfo()
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            var list: UnsafeMutablePointer<addrinfo>?
            guard getaddrinfo(host, String(port), &hints, &list) == 0, let first = list else { return [] }
            defer { freeaddrinfo(first) }
            var addresses: [[UInt8]] = []
            var entry: UnsafeMutablePointer<addrinfo>? = first
            while let current = entry {
                if let address = current.pointee.ai_addr {
                    switch Int32(current.pointee.ai_family) {
                    case AF_INET:
                        address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) {
                            addresses.append(withUnsafeBytes(of: $0.pointee.sin_addr) { Array($0) })
                        }
                    case AF_INET6:
                        address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) {
                            addresses.append(withUnsafeBytes(of: $0.pointee.sin6_addr) { Array($0) })
                        }
                    default: break
                    }
                }
                entry = current.pointee.ai_next
            }
            return addresses
        }
    }

    static func render(_ address: [UInt8]) -> String {
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let family = address.count == 4 ? AF_INET : AF_INET6
        guard address.withUnsafeBytes({ inet_ntop(family, $0.baseAddress, &text, socklen_t(text.count)) }) != nil else { return "an address" }
        return String(cString: text)
    }

    // MARK: The outbox

    static func delivery(to endpointID: UUID, key: String, type: OutgoingWebhook.EventType, jobID: UUID?, payload: String, at time: Date) -> WebhookDelivery {
        let delivery = WebhookDelivery()
        delivery.id = UUID()
        delivery.$endpoint.id = endpointID
        delivery.messageID = "msg_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        delivery.eventKey = key
        delivery.eventType = type.rawValue
        delivery.jobID = jobID
        delivery.payload = payload
        delivery.state = .pending
        delivery.attempts = 0
        delivery.nextAttemptAt = time
        delivery.log = "[]"
        delivery.createdAt = time
        return delivery
    }

    /// Writes the events a job's change announces to its owner's endpoints: its new status, and
    /// each checkpoint that was not in `artifactsBefore`. Called inside the transaction that
    /// saves the change; a key already written is skipped, so announcing twice sends once.
    static func announce(_ job: Job, from previous: JobStatus, artifactsBefore: [JobArtifact], at time: Date, on db: any Database) async throws {
        guard !job.isDraftJob else { return }
        var events: [(OutgoingWebhook.EventType, Int?)] = []
        // A run that completed between two looks at it (never seen running) started too.
        if job.status == .completed, [.queued, .submitted].contains(previous) { events.append((.jobStarted, nil)) }
        if job.status != previous, let type = OutgoingWebhook.event(for: job.status) { events.append((type, nil)) }
        let known = Set(artifactsBefore.filter { $0.kind == .checkpoint }.compactMap(\.step))
        let saved = Set(job.storedArtifacts.filter { $0.kind == .checkpoint }.compactMap(\.step)).subtracting(known)
        // In step order, after a status change that came with them.
        events += saved.sorted().map { (.checkpointSaved, $0) }
        guard !events.isEmpty else { return }
        let endpoints = try await WebhookEndpoint.query(on: db).filter(\.$user.$id == job.$user.id).all()
        guard !endpoints.isEmpty else { return }
        let sql = try db.sql()
        for (type, step) in events {
            let payload = OutgoingWebhook.payload(type: type, at: time, data: data(of: job, step: step))
            let key = OutgoingWebhook.eventKey(type, job: job.id!, attempt: job.attempt, step: step)
            for endpoint in endpoints where endpoint.eventTypes.contains(type) {
                // The new delivery as `delivery(to:…)` makes it, inserted unless its key is there.
                let delivery = delivery(to: endpoint.id!, key: key, type: type, jobID: job.id, payload: payload, at: time)
                try await sql.insert(into: WebhookDelivery.schema)
                    .columns(
                        "id", "endpoint_id", "message_id", "event_key", "event_type", "job_id", "payload", "state", "attempts", "next_attempt_at", "log", "created_at"
                    )
                    .values(
                        SQLBind(delivery.id!), SQLBind(delivery.$endpoint.id), SQLBind(delivery.messageID), SQLBind(delivery.eventKey), SQLBind(delivery.eventType),
                        SQLBind(delivery.jobID), SQLBind(delivery.payload), SQLBind(delivery.state.rawValue), SQLBind(delivery.attempts),
                        SQLBind(delivery.nextAttemptAt), SQLBind(delivery.log), SQLBind(delivery.createdAt)
                    )
                    .ignoringConflicts(with: ["endpoint_id", "event_key"])
                    .run()
            }
        }
    }

    /// What an event says about its job.
    static func data(of job: Job, step: Int?) -> JSONValue {
        var fields: [(String, JSONValue)] = [
            // Ids as the API writes them, so a receiver can look the job up as it is.
            ("id", .string(job.id!.uuidString)), ("status", .string(job.status.rawValue)), ("preset", .string(job.preset)),
            ("datasetId", .string(job.datasetID.uuidString)), ("attempt", .int(job.attempt)),
        ]
        let progress = job.latestProgress
        if let step = progress?.step { fields.append(("step", .int(step))) }
        if let total = progress?.totalSteps { fields.append(("totalSteps", .int(total))) }
        if let error = job.error { fields.append(("error", .string(error))) }
        var data: [(String, JSONValue)] = [("job", .object(fields))]
        if let step, let checkpoint = job.storedArtifacts.first(where: { $0.kind == .checkpoint && $0.step == step }) {
            var fields: [(String, JSONValue)] = [("step", .int(step)), ("key", .string(checkpoint.key))]
            if let bytes = checkpoint.bytes { fields.append(("bytes", .int(Int(bytes)))) }
            if let sha256 = checkpoint.sha256 { fields.append(("sha256", .string(sha256))) }
            data.append(("checkpoint", .object(fields)))
        }
        return .object(data)
    }

    // MARK: Sending

    /// Starts a send for each endpoint with a delivery due, the oldest first, as many as there is
    /// room for in flight; returns whether more were due. With `waitForSends` (tests) it returns
    /// when they have ended; the server's loop does not wait. Each is leased first, so several
    /// server instances never send one delivery at once.
    @discardableResult
    func deliverDue(on db: any Database, waitForSends: Bool = true) async throws -> Bool {
        let room = sends.limit - sends.inFlight
        guard room > 0 else { return false }
        let time = now()
        let leaseUntil = time.addingTimeInterval(Double(timeout.components.seconds) * 3 + 30)
        let sql = try db.sql()
        let pending = WebhookDelivery.State.pending.rawValue
        // Endpoints this instance is sending to wait for that send (another instance's sends
        // are not known here: at most one per instance).
        let busy = sends.busy
        let notBusy: SQLQueryString = busy.isEmpty ? "" : "AND endpoint_id NOT IN (\(binds: busy))"
        let rows = try await sql.raw(
            """
            UPDATE webhook_deliveries SET lease_until = \(bind: leaseUntil)
            WHERE id IN (SELECT id FROM webhook_deliveries WHERE state = \(bind: pending) AND next_attempt_at <= \(bind: time)
                AND (lease_until IS NULL OR lease_until < \(bind: time)) \(notBusy) ORDER BY next_attempt_at LIMIT \(unsafeRaw: String(room)))
            AND state = \(bind: pending) AND (lease_until IS NULL OR lease_until < \(bind: time))
            RETURNING id
            """
        ).all()
        let ids = try rows.map { try $0.decode(column: "id", as: UUID.self) }
        guard !ids.isEmpty else { return false }
        let deliveries = try await WebhookDelivery.query(on: db).filter(\.$id ~~ ids).with(\.$endpoint).sort(\.$nextAttemptAt).all()
        var started: [Task<Void, Never>] = []
        var released: [UUID] = []
        for delivery in deliveries {
            let task = sends.start(delivery.$endpoint.id) {
                let attempt = await send(delivery)
                // Unrecorded (the endpoint deleted meanwhile, the database away), the lease runs
                // out and it is sent again.
                try? await record(attempt, of: delivery, on: db)
            }
            if let task { started.append(task) } else { released.append(delivery.id!) }
        }
        // Another delivery to an endpoint already being sent to: due again at once, next round.
        if !released.isEmpty {
            try await sql.raw("UPDATE webhook_deliveries SET lease_until = NULL WHERE id IN (\(binds: released))").run()
        }
        if waitForSends { for task in started { await task.value } }
        return started.count == room
    }

    /// One try: the receiver's status code or why there was none.
    func send(_ delivery: WebhookDelivery) async -> API.WebhookAttempt {
        let started = now()
        let clock = ContinuousClock.now
        func attempt(_ status: Int?, _ error: String?) -> API.WebhookAttempt {
            let elapsed = ContinuousClock.now - clock
            return API.WebhookAttempt(
                at: started, statusCode: status, error: error, milliseconds: Int(elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000))
        }
        let endpoint = delivery.endpoint
        let timestamp = Int(started.timeIntervalSince1970)
        let body = Array(delivery.payload.utf8)
        // Checked again: the rules may be stricter than when the URL was stored.
        guard case .success(let url) = OutgoingWebhook.target(endpoint.url),
            let signature = Self.signature(secret: endpoint.secret, id: delivery.messageID, timestamp: timestamp, body: body)
        else {
            return attempt(nil, "The endpoint's URL or secret is not valid; delete the webhook and add it again.")
        }
        do {
            try await checkAddress(of: url)
        } catch let error as APIError {
            return attempt(nil, error.message)
        } catch {
            return attempt(nil, "\(error)")
        }
        var request = HTTPClientRequest(url: url.absoluteString)
        request.method = .POST
        request.headers.add(name: "content-type", value: "application/json")
        request.headers.add(name: "user-agent", value: "gomodel-webhooks/1")
        request.headers.add(name: "webhook-id", value: delivery.messageID)
        request.headers.add(name: "webhook-timestamp", value: String(timestamp))
        request.headers.add(name: "webhook-signature", value: signature)
        request.body = .bytes(ByteBuffer(bytes: body))
        do {
            let response = try await http.execute(request, timeout: .init(timeout))
            // Read (and drop) a little of the answer so the connection can be reused.
            _ = try? await response.body.collect(upTo: 64 * 1024)
            return attempt(Int(response.status.code), nil)
        } catch let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout {
            return attempt(nil, "No answer within \(timeout.components.seconds) s.")
        } catch let error as HTTPClientError where error == .connectTimeout {
            return attempt(nil, "Could not connect within 5 s.")
        } catch let error as IOError {
            return attempt(nil, "Could not connect: \(String(cString: strerror(error.errnoCode))).")
        } catch {
            return attempt(nil, String(describing: error).prefix(300).description)
        }
    }

    /// The `webhook-signature` header for a message; nil for a malformed secret.
    static func signature(secret: String, id: String, timestamp: Int, body: [UInt8]) -> String? {
        guard let key = OutgoingWebhook.signingKey(of: secret) else { return nil }
        let mac = HMAC<SHA256>.authenticationCode(for: OutgoingWebhook.signedContent(id: id, timestamp: timestamp, body: body), using: SymmetricKey(data: key))
        return OutgoingWebhook.signatureHeader(mac: Array(mac))
    }

    /// Records a try: delivered on a 2xx; otherwise tried again later, or failed once the day is up.
    func record(_ attempt: API.WebhookAttempt, of delivery: WebhookDelivery, on db: any Database) async throws {
        delivery.attempts += 1
        delivery.lastStatusCode = attempt.statusCode
        delivery.lastError = attempt.error
        delivery.log = String(decoding: try API.encoder.encode(Array((delivery.attemptLog + [attempt]).suffix(Self.maximumLoggedAttempts))), as: UTF8.self)
        delivery.leaseUntil = nil
        if let status = attempt.statusCode, (200..<300).contains(status) {
            delivery.state = .delivered
            delivery.deliveredAt = now()
            delivery.nextAttemptAt = nil
        } else if let next = OutgoingWebhook.nextAttempt(afterFailures: delivery.attempts, created: delivery.createdAt, now: now()) {
            delivery.nextAttemptAt = next
        } else {
            delivery.state = .failed
            delivery.nextAttemptAt = nil
        }
        try await delivery.save(on: db)
    }
}

extension WebhookEndpoint {
    func shape(secret: String? = nil) -> API.WebhookEndpoint {
        API.WebhookEndpoint(id: id!, url: url, events: eventTypes.map(\.rawValue), description: description, createdAt: createdAt, secret: secret)
    }
}

extension WebhookDelivery {
    var shape: API.WebhookDelivery {
        API.WebhookDelivery(
            id: id!, messageId: messageID, eventType: eventType, jobId: jobID, state: state.rawValue, attempts: attemptLog, nextAttemptAt: nextAttemptAt,
            createdAt: createdAt, deliveredAt: deliveredAt, payload: payload)
    }
}

struct WebhookServiceKey: StorageKey {
    typealias Value = WebhookService
}

/// Shuts an HTTP client of the server's own down with the server.
struct HTTPClientShutdown: LifecycleHandler {
    let client: HTTPClient

    func shutdownAsync(_ application: Application) async {
        try? await client.shutdown()
    }
}
