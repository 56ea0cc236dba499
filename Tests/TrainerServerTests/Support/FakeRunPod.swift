import Foundation
import NIOConcurrencyHelpers
import NIOFoundationCompat
import TrainerCore
import Vapor

/// RunPod Serverless's queue API as reference/runpod.md §1 describes it, on a loopback port:
/// `/v2/{endpoint}/run|status|cancel|retry|health|purge-queue`, Bearer auth, the six states,
/// progress as `output` while IN_PROGRESS, results kept 30 minutes after the end (then 404),
/// webhooks on final states retried twice 10 s apart. Tests drive the "worker" side
/// (`start`, `progress`, `complete`, `fail`) and inject faults per operation, or let a real
/// worker do it over the worker protocol (§2): `job-take` (a 2 s long poll), `job-done`
/// (progress with `status: IN_PROGRESS`, then the output or the error), `job-stop` (jobs
/// cancelled while a worker ran them) and `ping`; `workerEnvironment` holds the variables
/// RunPod sets in its workers.
final class FakeRunPod: @unchecked Sendable {
    enum Fault: Sendable {
        /// Answer with this status and a short body, doing nothing.
        case status(Int)
        /// Do the operation, then wait this long before answering (client timeouts).
        case delay(TimeInterval)
        /// Do the operation, then drop the connection without an answer.
        case dropAfterHandling
    }

    struct Job {
        var id: String
        var input: JSONValue
        var webhook: String?
        var status: String
        var output: JSONValue?
        var error: String?
        var submittedAt: Date
        var startedAt: Date?
        var finishedAt: Date?
    }

    static let endpointID = "fake-endpoint"
    static let apiKey = "fake-runpod-key"
    static let retention: TimeInterval = 30 * 60

    private let state = NIOLockedValueBox(State())
    let now: @Sendable () -> Date
    /// Seconds between webhook attempts (10 in RunPod; tests shorten it).
    let webhookRetryInterval: TimeInterval
    private(set) var app: Application!
    private(set) var baseURL: URL!

    struct State {
        var jobs: [String: Job] = [:]
        var order: [String] = []
        var faults: [String: [Fault]] = [:]
        var calls: [String: Int] = [:]
        var webhookDeliveries: [(url: String, status: String)] = []
        /// Job id → the worker that took it.
        var takenBy: [String: String] = [:]
        var pings: [String] = []
        /// Webhook deliveries in flight: ended before the fake stops (its HTTP client goes with it).
        var deliveries: [Task<Void, Never>] = []
    }

    init(now: @escaping @Sendable () -> Date = { Date() }, webhookRetryInterval: TimeInterval = 0.05) {
        self.now = now
        self.webhookRetryInterval = webhookRetryInterval
    }

    func start() async throws {
        let app = try await Application.make(.testing)
        app.logger.logLevel = .critical
        let routes = app.grouped("v2", ":endpoint")
        routes.post("run", use: handler("run", run))
        routes.on(.GET, "status", ":id", use: handler("status", status))
        routes.on(.POST, "status", ":id", use: handler("status", status))
        routes.post("cancel", ":id", use: handler("cancel", cancel))
        routes.post("retry", ":id", use: handler("retry", retry))
        routes.get("health", use: handler("health", health))
        routes.post("purge-queue", use: handler("purge-queue", purge))
        routes.get("job-take", ":worker", use: handler("job-take", take))
        routes.on(.POST, "job-done", ":worker", ":id", body: .collect(maxSize: "1mb"), use: handler("job-done", done))
        routes.get("job-stop", ":worker", use: handler("job-stop", jobsToStop))
        routes.get("ping", ":worker", use: handler("ping", ping))
        try await app.server.start(address: .hostname("127.0.0.1", port: 0))
        self.app = app
        baseURL = URL(string: "http://127.0.0.1:\(app.http.server.shared.localAddress!.port!)/v2")!
    }

    func stop() async throws {
        for delivery in state.withLockedValue({ $0.deliveries }) {
            delivery.cancel()
            await delivery.value
        }
        await app.server.shutdown()
        try await app.asyncShutdown()
    }

    // MARK: Test controls

    func inject(_ faults: Fault..., into operation: String) {
        state.withLockedValue { $0.faults[operation, default: []] += faults }
    }

    /// What RunPod sets in a worker of this endpoint (reference/runpod.md §2.1 and the URL
    /// shapes of §2.3: job-done carries `$RUNPOD_POD_ID` and `$ID`).
    func workerEnvironment(podID: String) -> [String: String] {
        let base = baseURL.absoluteString + "/" + Self.endpointID
        return [
            "RUNPOD_WEBHOOK_GET_JOB": base + "/job-take/$RUNPOD_POD_ID?gpu=NVIDIA+H200",
            "RUNPOD_WEBHOOK_POST_OUTPUT": base + "/job-done/$RUNPOD_POD_ID/$ID?gpu=NVIDIA+H200",
            "RUNPOD_WEBHOOK_PING": base + "/ping/$RUNPOD_POD_ID",
            "RUNPOD_AI_API_KEY": Self.apiKey, "RUNPOD_POD_ID": podID, "RUNPOD_PING_INTERVAL": "1000",
        ]
    }

    var pings: [String] { state.withLockedValue { $0.pings } }

    func calls(_ operation: String) -> Int { state.withLockedValue { $0.calls[operation] ?? 0 } }
    var jobs: [Job] { state.withLockedValue { state in state.order.compactMap { state.jobs[$0] } } }
    var webhookDeliveries: [(url: String, status: String)] { state.withLockedValue { $0.webhookDeliveries } }

    /// A worker took the job.
    func start(_ id: String) {
        update(id) {
            $0.status = "IN_PROGRESS"
            $0.startedAt = now()
        }
    }

    /// A worker's `progress_update`: replaces `output` while IN_PROGRESS.
    func progress(_ id: String, _ output: JSONValue) { update(id) { if $0.status == "IN_PROGRESS" { $0.output = output } } }

    func complete(_ id: String, output: JSONValue) { finish(id, status: "COMPLETED") { $0.output = output } }

    func fail(_ id: String, error: String) {
        finish(id, status: "FAILED") {
            $0.error = error
            $0.output = nil
        }
    }

    func timeOut(_ id: String) { finish(id, status: "TIMED_OUT") { _ in } }

    /// RunPod deletes a job 30 minutes after its end (or when its TTL runs out).
    func forget(_ id: String) { state.withLockedValue { _ = $0.jobs.removeValue(forKey: id) } }

    /// A status RunPod's docs list but no SDK handles.
    func setRawStatus(_ id: String, _ status: String) { update(id) { $0.status = status } }

    private func update(_ id: String, _ change: (inout Job) -> Void) {
        state.withLockedValue { state in
            if var job = state.jobs[id] {
                change(&job)
                state.jobs[id] = job
            }
        }
    }

    private func finish(_ id: String, status: String, _ change: (inout Job) -> Void) {
        let job: Job? = state.withLockedValue { state in
            guard var job = state.jobs[id] else { return nil }
            change(&job)
            job.status = status
            job.finishedAt = now()
            state.jobs[id] = job
            return job
        }
        if let job, let webhook = job.webhook { deliverWebhook(to: webhook, job: job) }
    }

    /// POSTs the status body; on a non-200 answer tries twice more (RunPod: 3 attempts, 10 s apart).
    private func deliverWebhook(to url: String, job: Job) {
        let body = Self.statusBody(job, now: now())
        let interval = webhookRetryInterval
        let delivery = Task {
            for attempt in 1...3 where !Task.isCancelled {
                var request = ClientRequest(method: .POST, url: URI(string: url), headers: ["Content-Type": "application/json"])
                request.body = ByteBuffer(data: body)
                let delivered = (try? await app.client.send(request).status == .ok) ?? false
                state.withLockedValue { $0.webhookDeliveries.append((url, job.status)) }
                if delivered || attempt == 3 { return }
                try? await Task.sleep(for: .seconds(interval))
            }
        }
        state.withLockedValue { $0.deliveries.append(delivery) }
    }

    // MARK: Operations

    private func handler(_ operation: String, _ body: @escaping @Sendable (Request) async throws -> (HTTPStatus, Data)) -> @Sendable (Request) async throws -> Response {
        { [self] request in
            state.withLockedValue { $0.calls[operation, default: 0] += 1 }
            let auth = request.headers.first(name: .authorization) ?? ""
            guard auth == "Bearer \(Self.apiKey)" || auth == Self.apiKey else {
                return Response(status: .unauthorized, body: .init(string: #"{"error": "Unauthorized"}"#))
            }
            guard request.parameters.get("endpoint") == Self.endpointID else {
                return Response(status: .notFound, body: .init(string: #"{"error": "endpoint not found"}"#))
            }
            let fault = state.withLockedValue { state -> Fault? in
                guard var queue = state.faults[operation], !queue.isEmpty else { return nil }
                let fault = queue.removeFirst()
                state.faults[operation] = queue
                return fault
            }
            if case .status(let code)? = fault {
                return Response(status: .init(statusCode: code), body: .init(string: #"{"error": "injected \#(code)"}"#))
            }
            let (status, data) = try await body(request)
            switch fault {
            case .delay(let seconds)?:
                try await Task.sleep(for: .seconds(seconds))
            case .dropAfterHandling?:
                struct Dropped: Error {}
                return Response(status: .ok, body: .init(asyncStream: { writer in try await writer.write(.error(Dropped())) }))
            default:
                break
            }
            return Response(status: status, headers: ["Content-Type": "application/json"], body: .init(data: data))
        }
    }

    private func run(_ request: Request) throws -> (HTTPStatus, Data) {
        struct Body: Decodable {
            let input: JSONValue?
            let webhook: String?
        }
        guard let body = try? JSONDecoder().decode(Body.self, from: Data(buffer: request.body.data ?? ByteBuffer())), let input = body.input else {
            return (.badRequest, Data(#"{"error": "input is required"}"#.utf8))
        }
        let id = "fake-" + UUID().uuidString.lowercased() + "-u1"
        state.withLockedValue { state in
            state.jobs[id] = Job(id: id, input: input, webhook: body.webhook, status: "IN_QUEUE", submittedAt: now())
            state.order.append(id)
        }
        return (.ok, Data(#"{"id": "\#(id)", "status": "IN_QUEUE"}"#.utf8))
    }

    private func status(_ request: Request) throws -> (HTTPStatus, Data) {
        guard let job = liveJob(request.parameters.get("id")) else { return (.notFound, Data(#"{"error": "job not found"}"#.utf8)) }
        return (.ok, Self.statusBody(job, now: now()))
    }

    // MARK: The worker side

    /// The oldest queued job, waiting up to 2 s for one (RunPod long-polls); 204 when none.
    private func take(_ request: Request) async throws -> (HTTPStatus, Data) {
        let worker = request.parameters.get("worker") ?? "?"
        for _ in 0..<40 {
            let taken = state.withLockedValue { state -> Job? in
                guard let id = state.order.first(where: { state.jobs[$0]?.status == "IN_QUEUE" }), var job = state.jobs[id] else { return nil }
                job.status = "IN_PROGRESS"
                job.startedAt = now()
                state.jobs[id] = job
                state.takenBy[id] = worker
                return job
            }
            if let taken { return (.ok, Data(JSONValue.object([("id", .string(taken.id)), ("input", taken.input)]).rendered().utf8)) }
            try await Task.sleep(for: .milliseconds(50))
        }
        return (.noContent, Data())
    }

    /// Progress while IN_PROGRESS; otherwise the result or the error. Posts about a job that is
    /// no longer this worker's, or already ended (cancelled), change nothing.
    private func done(_ request: Request) throws -> (HTTPStatus, Data) {
        guard let id = request.parameters.get("id"), let job = liveJob(id), state.withLockedValue({ $0.takenBy[id] }) == request.parameters.get("worker"),
            let body = try? JSONDecoder().decode(JSONValue.self, from: Data(buffer: request.body.data ?? ByteBuffer()))
        else { return (.badRequest, Data(#"{"error": "unknown job or body"}"#.utf8)) }
        guard job.status == "IN_PROGRESS" else {
            if body["status"]?.stringValue != "IN_PROGRESS" { state.withLockedValue { _ = $0.takenBy.removeValue(forKey: id) } }
            return (.ok, Data("{}".utf8))
        }
        if body["status"]?.stringValue == "IN_PROGRESS" {
            progress(id, body["output"] ?? .null)
        } else if let error = body["error"] {
            fail(id, error: error.stringValue ?? error.rendered())
        } else {
            complete(id, output: body["output"] ?? .null)
        }
        return (.ok, Data("{}".utf8))
    }

    private func jobsToStop(_ request: Request) throws -> (HTTPStatus, Data) {
        let worker = request.parameters.get("worker")
        let ids = state.withLockedValue { state in
            state.takenBy.filter { $0.value == worker && ["CANCELLED", "TIMED_OUT"].contains(state.jobs[$0.key]?.status) }.map(\.key)
        }
        guard !ids.isEmpty else { return (.noContent, Data()) }
        return (.ok, Data(JSONValue.object([("jobsToStop", .array(ids.map { .string($0) }))]).rendered().utf8))
    }

    private func ping(_ request: Request) throws -> (HTTPStatus, Data) {
        state.withLockedValue { $0.pings.append(request.url.query ?? "") }
        return (.ok, Data("{}".utf8))
    }

    private func cancel(_ request: Request) throws -> (HTTPStatus, Data) {
        guard let id = request.parameters.get("id"), liveJob(id) != nil else { return (.notFound, Data(#"{"error": "job not found"}"#.utf8)) }
        let job = state.withLockedValue { state -> Job in
            var job = state.jobs[id]!
            if !["COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"].contains(job.status) {
                job.status = "CANCELLED"
                job.finishedAt = now()
                state.jobs[id] = job
            }
            return job
        }
        return (.ok, Data(#"{"id": "\#(id)", "status": "\#(job.status)"}"#.utf8))
    }

    private func retry(_ request: Request) throws -> (HTTPStatus, Data) {
        guard let id = request.parameters.get("id"), let job = liveJob(id) else { return (.notFound, Data(#"{"error": "job not found"}"#.utf8)) }
        guard ["FAILED", "TIMED_OUT"].contains(job.status) else {
            return (.badRequest, Data(#"{"error": "only FAILED or TIMED_OUT jobs can be retried"}"#.utf8))
        }
        update(id) {
            $0.status = "IN_QUEUE"
            $0.output = nil
            $0.error = nil
            $0.finishedAt = nil
            $0.startedAt = nil
        }
        return (.ok, Data(#"{"id": "\#(id)", "status": "IN_QUEUE"}"#.utf8))
    }

    private func health(_ request: Request) throws -> (HTTPStatus, Data) {
        let counts = state.withLockedValue { state in
            Dictionary(grouping: state.jobs.values, by: \.status).mapValues(\.count)
        }
        let json =
            #"{"jobs": {"completed": \#(counts["COMPLETED"] ?? 0), "failed": \#(counts["FAILED"] ?? 0), "inProgress": \#(counts["IN_PROGRESS"] ?? 0), "inQueue": \#(counts["IN_QUEUE"] ?? 0), "retried": 0}, "workers": {"idle": 1, "running": \#(counts["IN_PROGRESS"] ?? 0), "throttled": 0}}"#
        return (.ok, Data(json.utf8))
    }

    private func purge(_ request: Request) throws -> (HTTPStatus, Data) {
        let removed = state.withLockedValue { state -> Int in
            let queued = state.jobs.values.filter { $0.status == "IN_QUEUE" }.map(\.id)
            for id in queued { state.jobs[id] = nil }
            state.order.removeAll { queued.contains($0) }
            return queued.count
        }
        return (.ok, Data(#"{"removed": \#(removed), "status": "completed"}"#.utf8))
    }

    /// The job, unless it ended more than 30 minutes ago (RunPod has then deleted it).
    private func liveJob(_ id: String?) -> Job? {
        guard let id, let job = state.withLockedValue({ $0.jobs[id] }) else { return nil }
        if let finished = job.finishedAt, now().timeIntervalSince(finished) > Self.retention { return nil }
        return job
    }

    static func statusBody(_ job: Job, now: Date) -> Data {
        var pairs: [(String, JSONValue)] = [("id", .string(job.id)), ("status", .string(job.status))]
        let delay = ((job.startedAt ?? job.finishedAt ?? now).timeIntervalSince(job.submittedAt) * 1000).rounded()
        pairs.append(("delayTime", .int(Int(delay))))
        if let started = job.startedAt {
            pairs.append(("executionTime", .int(Int(((job.finishedAt ?? now).timeIntervalSince(started) * 1000).rounded()))))
        }
        if let output = job.output { pairs.append(("output", output)) }
        if let error = job.error { pairs.append(("error", .string(error))) }
        pairs.append(("workerId", "fake-worker-1"))
        return Data(JSONValue.object(pairs).rendered().utf8)
    }
}
