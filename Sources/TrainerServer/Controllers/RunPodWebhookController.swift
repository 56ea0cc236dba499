import Fluent
import Foundation
import RunPod
import Vapor

/// `POST /api/runpod/webhook/{secret}`: RunPod calls it when a job ends (3 attempts, 10 s
/// apart), with the body `/status` would give. It short-cuts polling, and it is how a job whose
/// submission answer was lost gets its RunPod id back (see `JobRunner`). The secret is made per
/// submission and only its digest is stored.
struct RunPodWebhookController: Sendable {
    let jobs: JobService

    func register(public routes: any RoutesBuilder) {
        routes.post("runpod", "webhook", ":secret", use: receive)
    }

    @Sendable func receive(request: Request) async throws -> Response {
        guard let secret = request.parameters.get("secret"),
              let job = try await Job.query(on: request.db).filter(\.$webhookDigest == OpaqueToken.digest(secret)).first()
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
        if !(try await jobs.apply(report, to: job, on: request.db)) { try await job.save(on: request.db) }
        return Response(status: .ok)
    }

    static let operations: [APIOperation] = [
        APIOperation(
            method: .POST, path: "/api/runpod/webhook/{secret}", summary: "RunPod's call when a job ends (the secret is per submission).", access: .anyone,
            requestSchema: ["type": "object", "required": ["id", "status"], "properties": ["id": ["type": "string"], "status": ["type": "string"]]],
            responses: [200: ("Recorded.", nil), 400: ("Not a RunPod job status.", .ref("Error")), 404: ("Unknown webhook.", .ref("Error"))]
        ),
    ]
}
