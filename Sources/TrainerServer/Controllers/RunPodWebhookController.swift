import Fluent
import Foundation
import NIOFoundationCompat
import RunPod
import SQLKit
import TrainerCore
import Vapor

/// `POST /api/runpod/webhook/{secret}`: RunPod calls it when a job ends (3 attempts, 10 s
/// apart), with the body `/status` would give. It short-cuts polling, and it is how a job whose
/// submission answer was lost gets its RunPod id back (see `JobRunner`). The secret is made per
/// submission and only its digest is stored.
struct RunPodWebhookController: Sendable {
    let jobs: JobService
    let now: @Sendable () -> Date

    func register(public routes: any RoutesBuilder) {
        routes.post("runpod", "webhook", ":secret", use: receive)
        routes.post("runpod", "progress", ":secret", use: progress)
    }

    /// `POST /api/runpod/progress/{secret}`: the worker's progress channel. It posts here what it
    /// posts to RunPod's job-done (progress, then the result), so the server need not poll RunPod
    /// to know. The secret is per attempt (in the job's input) and only its digest is stored;
    /// reports about an attempt that ended are ignored.
    @Sendable func progress(request: Request) async throws -> Response {
        guard let secret = request.parameters.get("secret"),
            let job = try await jobs.job(progressSecret: secret, on: request.db)
        else { throw APIError.notFound("Unknown progress channel (it is valid for one attempt of one job).") }
        guard let data = request.body.data, let body = try? JSONDecoder().decode(JSONValue.self, from: data), case .object = body else {
            throw APIError.badRequest(
                "invalid_json", "The body is what the worker posts to job-done: {\"status\": \"IN_PROGRESS\", \"output\": …}, {\"output\": …} or {\"error\": …}.")
        }
        guard !job.status.isFinal else { return Response(status: .noContent) }
        let report = JobService.workerReport(body, runnerID: job.runPodJobID ?? "", cancelRequested: job.cancelRequested)
        try await jobs.applyDeliveredOnce(report, to: job, on: request.db)
        if !job.status.isFinal, job.progressDigest != nil {
            try await jobs.postponePoll(of: job, by: JobRunner.pollAfterChannelReport, on: request.db)
        }
        return Response(status: .noContent)
    }

    @Sendable func receive(request: Request) async throws -> Response {
        guard let secret = request.parameters.get("secret"),
            let job = try await jobs.job(webhookSecret: secret, on: request.db)
        else { throw APIError.notFound("Unknown webhook.") }
        guard let data = request.body.data, let report = try? JSONDecoder().decode(RunPodJob.self, from: data) else {
            throw APIError.badRequest("invalid_json", "The body must be a RunPod job status: {\"id\", \"status\", \"output\"?, \"error\"?}.")
        }
        if job.runPodJobID == nil {
            // The submission's answer was lost; RunPod tells us the id now (only for a submission
            // under way: the secret is renewed with every attempt).
            guard job.submitStartedAt != nil, !job.status.isFinal else { return Response(status: .ok) }
            job.runPodJobID = report.id
        } else if job.runPodJobID != report.id {
            // Another attempt's job: nothing to do, but RunPod must stop retrying.
            return Response(status: .ok)
        }
        if !(try await jobs.applyDeliveredOnce(report, to: job, on: request.db)) { try await job.save(on: request.db) }
        return Response(status: .ok)
    }

    static let operations: [APIOperation] = [
        APIOperation(
            method: .POST, path: "/api/runpod/webhook/{secret}", summary: "RunPod's call when a job ends (the secret is per submission).", access: .anyone,
            requestSchema: ["type": "object", "required": ["id", "status"], "properties": ["id": ["type": "string"], "status": ["type": "string"]]],
            responses: [200: ("Recorded.", nil), 400: ("Not a RunPod job status.", .ref("Error")), 404: ("Unknown webhook.", .ref("Error"))]
        ),
        APIOperation(
            method: .POST, path: "/api/runpod/progress/{secret}",
            summary:
                "A worker's progress channel (the URL is in the job's input as `progress_channel.url`, valid for one attempt): what it posts to RunPod's job-done, sent here too.",
            access: .anyone,
            requestSchema: [
                "type": "object",
                "properties": [
                    "status": ["type": "string", "enum": ["IN_PROGRESS"]], "output": ["type": "object"], "error": ["type": "string"],
                ],
            ],
            responses: [
                204: ("Recorded (reports about an attempt that ended change nothing).", nil), 400: ("Not a worker report.", .ref("Error")),
                404: ("Unknown progress channel.", .ref("Error")),
            ]
        ),
    ]
}
