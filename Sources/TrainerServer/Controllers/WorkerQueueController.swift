import Fluent
import Foundation
import NIOFoundationCompat
import Prometheus
import TrainerCore
import Vapor

/// RunPod's worker protocol, served by the built-in queue (reference/runpod.md §2):
/// `GET /v2/{endpoint}/job-take/{worker}` (long poll; 204 when there is no job),
/// `POST /v2/{endpoint}/job-done/{worker}/{job}` (progress and results), `GET …/job-stop/{worker}`
/// and `GET …/ping/{worker}`. Workers authenticate with a worker key in `Authorization`, raw as
/// RunPod's SDK sends it, or as `Bearer`.
struct WorkerQueueController: Sendable {
    let queue: BuiltInQueue
    let workerKeys: WorkerKeyService
    /// How long job-take waits for a job before answering 204 (RunPod's SDK gives up at 90 s).
    let longPoll: Duration
    let clock: any Clock<Duration>
    /// Job-takes waiting for a job now: idle workers, for the operator (and for tests to sync on).
    let waitingTakes: Gauge
    /// A take waiting when the server stops answers 204 at its next step.
    let shutdown: ServerShutdown

    func register(_ app: Application) {
        let routes = app.grouped("v2", ":endpoint")
        routes.get("job-take", ":worker", use: take)
        routes.post("job-done", ":worker", ":job", use: done)
        routes.get("job-stop", ":worker", use: stop)
        routes.get("ping", ":worker", use: ping)
    }

    @Sendable func take(request: Request) async throws -> Response {
        let worker = try await authenticate(request)
        waitingTakes.increment()
        defer { waitingTakes.decrement() }
        let db = request.db
        var waited: Duration = .zero
        while true {
            if let (id, input) = try await queue.take(worker: worker, on: db) {
                let body = ByteBuffer(string: JSONValue.object([("id", .string(id)), ("input", input)]).rendered())
                let (queue, logger) = (queue, request.logger)
                // A worker killed while it waited has closed its connection, and the write fails:
                // the job goes back to the queue at once instead of waiting for a first ping.
                let stream: @Sendable (any AsyncBodyStreamWriter) async throws -> Void = { writer in
                    do {
                        try await writer.write(.buffer(body))
                    } catch {
                        do {
                            try await queue.handBack(runnerID: id, worker: worker, on: db)
                        } catch let failure {
                            logger.warning("a job whose take could not be answered was not handed back; its lease ends it", metadata: ["job": "\(id)", "error": "\(failure)"])
                        }
                        throw error
                    }
                    try await writer.write(.end)
                }
                return Response(status: .ok, headers: ["Content-Type": "application/json"], body: .init(asyncStream: stream, count: body.readableBytes))
            }
            guard waited < longPoll, !shutdown.isStopping else { return Response(status: .noContent) }
            let step = min(.seconds(1), longPoll - waited)
            try await clock.sleep(for: step)
            waited += step
        }
    }

    @Sendable func done(request: Request) async throws -> Response {
        let worker = try await authenticate(request)
        guard let runnerID = request.parameters.get("job") else { throw Abort(.notFound) }
        // RunPod's SDK sends JSON text labelled application/x-www-form-urlencoded: read the bytes.
        guard let data = request.body.data, let body = try? JSONDecoder().decode(JSONValue.self, from: data), case .object = body else {
            throw APIError.badRequest("invalid_json", "job-done takes a JSON object: {\"output\": …}, {\"error\": …} or {\"status\": \"IN_PROGRESS\", \"output\": …}.")
        }
        try await queue.done(worker: worker, runnerID: runnerID, body: body, on: request.db)
        return Response(status: .ok, headers: ["Content-Type": "application/json"], body: .init(string: "{}"))
    }

    @Sendable func stop(request: Request) async throws -> Response {
        let worker = try await authenticate(request)
        let ids = try await queue.jobsToStop(worker: worker, on: request.db)
        guard !ids.isEmpty else { return Response(status: .noContent) }
        let body: JSONValue = ["jobsToStop": .array(ids.map { .string($0) })]
        return Response(status: .ok, headers: ["Content-Type": "application/json"], body: .init(string: body.rendered()))
    }

    @Sendable func ping(request: Request) async throws -> Response {
        let worker = try await authenticate(request)
        let ids = (request.query[String.self, at: "job_id"] ?? "").split(separator: ",").map { String($0) }
        try await queue.ping(worker: worker, runnerIDs: ids, on: request.db)
        return Response(status: .ok, headers: ["Content-Type": "application/json"], body: .init(string: #"{"status": "pong"}"#))
    }

    /// The worker behind the call: its key, raw as RunPod's SDK sends it or as `Bearer`, and its
    /// id from the path.
    private func authenticate(_ request: Request) async throws -> WorkerKeyService.Worker {
        var presented = request.headers.first(name: .authorization) ?? ""
        if presented.lowercased().hasPrefix("bearer ") { presented = String(presented.dropFirst(7)) }
        let worker = try await workerKeys.authenticate(secret: presented, workerID: request.parameters.get("worker") ?? "", on: request.db)
        guard !worker.id.isEmpty, worker.id.count <= 200 else { throw Abort(.notFound) }
        return worker
    }
}
