import Crypto
import Fluent
import Foundation
import NIOFoundationCompat
import ObjectStorage
import TrainerCore
import Vapor

/// Training jobs (DESIGN §7): create, list, show, live events, cancel, retry, artifact downloads.
struct JobController: Sendable {
    let jobs: JobService
    let datasets: DatasetService
    let bucket: Bucket
    let publicURL: URL?
    let trustProxy: Bool
    let gpuPricePerSecond: Double?
    let retention: Retention
    let clock: any Clock<Duration>
    /// An event stream open when the server stops ends at its next step (the client reconnects).
    let shutdown: ServerShutdown

    /// The job as the API shows it: times and cost as of now, and when retention deletes its outputs.
    func shaped(_ job: Job) -> API.Job {
        var shaped = job.shape(now: jobs.now(), pricePerSecond: gpuPricePerSecond)
        shaped.outputsExpireAt = retention.outputsExpire(job)
        shaped.outputsDeletedAt = job.outputsDeletedAt
        return shaped
    }

    /// A short stable id for an artifact: the first 16 hex digits of its key's SHA-256.
    static func artifactID(_ key: String) -> String {
        String(SigV4Signer.hex(SHA256.hash(data: Data(key.utf8))).prefix(16))
    }

    func register(signedIn routes: any RoutesBuilder) {
        let jobs = routes.grouped("jobs")
        jobs.post(use: create)
        jobs.get(use: list)
        jobs.get(":id", use: show)
        jobs.get(":id", "events", use: events)
        jobs.post(":id", "cancel", use: cancel)
        jobs.post(":id", "retry", use: retry)
        jobs.get(":id", "artifacts", ":artifactId", use: artifact)
        jobs.post(":id", "promote", use: promote)
        jobs.get(":id", "result", use: result)
        jobs.get(":id", "record", use: record)
        jobs.delete(":id", use: delete)
        routes.get("presets", use: presets)
        routes.get("estimate", use: estimate)
    }

    @Sendable func delete(request: Request) async throws -> Response {
        try await jobs.delete(try await find(request), bucket: bucket, on: request.db)
        return Response(status: .noContent)
    }

    /// The job's reproducibility record (`API.JobRecord`).
    @Sendable func record(request: Request) async throws -> Response {
        let job = try await find(request)
        guard !job.isDraftJob else { throw APIError.conflict("not_a_training", "A drafting job trains nothing; it has no reproducibility record.") }
        let attempts = try await JobAttempt.query(on: request.db).filter(\.$job.$id == job.id!).sort(\.$attempt).all()
        let dataset = try await datasets.lookup(job.datasetID, userID: try request.principal.userID, on: request.db)
        let parameters = try JSONDecoder().decode(API.JobParameters.self, from: Data(job.parameters.utf8))
        let files = job.datasetFiles.flatMap { try? JSONDecoder().decode([RunRecord.DatasetFile].self, from: Data($0.utf8)) } ?? []
        let record = API.JobRecord(
            recordVersion: RunRecord.version, serverVersion: GomodelVersion.current,
            job: .init(
                id: job.id!, createdAt: job.createdAt, status: job.status.rawValue, preset: job.preset,
                baseModel: QwenImageEdit.presets.first { $0.id == job.preset }?.baseModel, parameters: parameters, promotedStep: job.promotedStep),
            config: try JSONDecoder().decode(JSONValue.self, from: Data(job.jobConfig.utf8)),
            dataset: .init(id: job.datasetID, name: dataset?.name, sha256: job.datasetSHA256, files: files),
            attempts: attempts.map { attempt in
                .init(
                    attempt: attempt.attempt, status: attempt.status, runnerId: attempt.runnerID, startedAt: attempt.startedAt, endedAt: attempt.endedAt,
                    environment: attempt.environment.flatMap { try? JSONDecoder().decode(JSONValue.self, from: Data($0.utf8)) }, checkpoints: attempt.checkpointSteps,
                    resumedFromStep: attempt.resumedFromStep, stepsTrained: attempt.stepsTrained, secondsPerStep: attempt.secondsPerStep,
                    datasetSha256: attempt.datasetSHA256)
            },
            artifacts: job.shape(now: jobs.now()).artifacts)
        let response = try JSON.response(record)
        let name = "gomodel-record-\(job.id!.uuidString.lowercased()).json"
        response.headers.replaceOrAdd(name: .contentDisposition, value: "inline; filename=\"\(name)\"")
        return response
    }

    /// `GET /api/estimate?preset=&profile=&steps=`: a run's GPU time (and cost), learned from
    /// this server's completed runs of that preset and profile when there are some.
    @Sendable func estimate(request: Request) async throws -> Response {
        _ = try request.principal.userID
        let preset = try JobService.preset(try? request.query.get(String.self, at: "preset"))
        var input = API.JobParameters()
        input.profile = try? request.query.get(String.self, at: "profile")
        guard let steps = try? request.query.get(Int.self, at: "steps") else {
            throw APIError.badRequest("invalid_parameter", "Give the run's steps, e.g. /api/estimate?steps=3000 (and preset, profile).")
        }
        input.steps = steps
        let parameters = try JobService.parameters(from: input, preset: preset)
        let learned = try await JobAttempt.learnedSpeed(preset: preset.id, profile: parameters.profile.rawValue, on: request.db)
        let seconds = TrainingEstimate.seconds(steps: parameters.steps, profile: parameters.profile, learned: learned)
        return try JSON.response(
            API.Estimate(
                preset: preset.id, profile: parameters.profile.rawValue, steps: parameters.steps, seconds: seconds.rounded(),
                secondsPerStep: learned?.secondsPerStep ?? TrainingEstimate.secondsPerStep(parameters.profile),
                overheadSeconds: learned?.overheadSeconds ?? TrainingEstimate.overheadSeconds, source: learned == nil ? "assumed" : "learned",
                basis: TrainingEstimate.source(learned), gpuName: learned?.gpuName, runs: learned?.runs,
                cost: gpuPricePerSecond.map { (seconds * $0 * 100).rounded() / 100 }))
    }

    @Sendable func presets(request: Request) async throws -> Response {
        _ = try request.principal.userID
        return try JSON.response(API.PresetList(presets: QwenImageEdit.presets.map(\.shape)))
    }

    @Sendable func create(request: Request) async throws -> Response {
        let body = try request.decodeJSON(API.JobCreate.self, fields: ["datasetId", "preset", "params"])
        try Self.refuseUnknownParameters(request)
        let preset = try JobService.preset(body.preset)
        let parameters = try JobService.parameters(from: body.params ?? API.JobParameters(), preset: preset)
        let dataset = try await datasets.find(body.datasetId, userID: try request.principal.userID, on: request.db)
        let job = try await jobs.create(userID: try request.principal.userID, dataset: dataset, preset: preset, parameters: parameters, on: request.db)
        return try JSON.response(shaped(job), status: .created)
    }

    @Sendable func list(request: Request) async throws -> Response {
        let all = try await Job.newestFirst(of: request.principal.userID, on: request.db).limit(500).all()
        return try JSON.response(API.JobList(jobs: all.map(shaped)))
    }

    @Sendable func show(request: Request) async throws -> Response {
        let job = try await find(request)
        var response = shaped(job)
        response.events = try await jobs.events(of: job, on: request.db).map(\.shape)
        return try JSON.response(response)
    }

    @Sendable func cancel(request: Request) async throws -> Response {
        let job = try await find(request)
        try await jobs.requestCancel(job, on: request.db)
        return try JSON.response(shaped(job))
    }

    @Sendable func retry(request: Request) async throws -> Response {
        let job = try await find(request)
        try await jobs.retry(job, on: request.db)
        return try JSON.response(shaped(job))
    }

    /// A redirect to a presigned GET of the artifact, valid 15 minutes, saved under its file name.
    @Sendable func artifact(request: Request) async throws -> Response {
        let job = try await find(request)
        guard let wanted = request.parameters.get("artifactId"), let artifact = job.storedArtifacts.first(where: { Self.artifactID($0.key) == wanted }) else {
            throw APIError.notFound("The job has no such artifact; GET /api/jobs/{id} lists them.")
        }
        return try redirect(to: artifact, request)
    }

    /// The job's result (a promoted checkpoint, else the final LoRA): what "download" means.
    @Sendable func result(request: Request) async throws -> Response {
        let job = try await find(request)
        guard let artifact = JobArtifact.result(of: job.storedArtifacts, promotedStep: job.promotedStep) else {
            throw APIError.notFound("The job has no LoRA yet (it has not completed, and no checkpoint was made its result).")
        }
        return try redirect(to: artifact, request)
    }

    @Sendable func promote(request: Request) async throws -> Response {
        let job = try await find(request)
        let body = try request.decodeJSON(API.Promotion.self, fields: ["step"])
        try await jobs.promote(job, step: body.step, stored: { artifact in try await bucket.head(key: artifact.key) != nil }, on: request.db)
        return try JSON.response(shaped(job))
    }

    private func redirect(to artifact: JobArtifact, _ request: Request) throws -> Response {
        let name = String(artifact.key.split(separator: "/").last ?? "artifact")
        let url = bucket.presignedGet(key: artifact.key, downloadName: name, origin: try request.origin(publicURL: publicURL, trustProxy: trustProxy)).url
        return Response(status: .seeOther, headers: ["Location": url.absoluteString, "Cache-Control": "no-store"])
    }

    /// Server-sent events: the job now, then each time it changes, until it ends. Reads the
    /// database, so it works whichever instance tracks the job. A client that does not ask for
    /// the stream (`Accept: text/event-stream`, as EventSource and the CLI send) gets the job
    /// now as one event, and the answer ends: a plain HTTP client does not hang on it.
    @Sendable func events(request: Request) async throws -> Response {
        let job = try await find(request)
        let follows = request.headers[.accept].contains { $0.lowercased().contains("text/event-stream") }
        let id = job.id!
        let userID = try request.principal.userID
        let db = request.db
        let jobs = jobs
        let controller = self
        let (clock, shutdown) = (clock, shutdown)
        let body = Response.Body(asyncStream: { writer in
            var lastSeen: Date?
            // Seconds of the clock, counted in the loop's own steps.
            var open = 0
            var quiet = 0
            do {
                while open < 1800, !shutdown.isStopping {
                    let current = try await jobs.find(id, userID: userID, on: db)
                    if current.updatedAt != lastSeen {
                        lastSeen = current.updatedAt
                        let data = try API.encoder.encode(controller.shaped(current))
                        try await writer.write(.buffer(ByteBuffer(string: "event: job\ndata: " + String(decoding: data, as: UTF8.self) + "\n\n")))
                        quiet = 0
                        if current.status.isFinal || !follows { break }
                    } else if quiet >= 15 {
                        // Keeps proxies from closing an idle stream.
                        try await writer.write(.buffer(ByteBuffer(string: ": still here\n\n")))
                        quiet = 0
                    }
                    try await clock.sleep(for: .seconds(1))
                    open += 1
                    quiet += 1
                }
                try await writer.write(.end)
            } catch {
                try? await writer.write(.end)
            }
        })
        return Response(status: .ok, headers: ["Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"], body: body)
    }

    private func find(_ request: Request) async throws -> Job {
        try await jobs.find(request.parameters.get("id", as: UUID.self), userID: request.principal.userID, on: request.db)
    }

    /// A misspelled parameter must not be silently ignored (ai-toolkit would do just that).
    static func refuseUnknownParameters(_ request: Request) throws {
        guard let data = request.body.data, let object = try? JSONSerialization.jsonObject(with: Data(buffer: data)) as? [String: Any] else { return }
        if let params = object["params"] as? [String: Any], let unknown = params.keys.sorted().first(where: { !API.JobParameters.keys.contains($0) }) {
            throw APIError.badRequest(
                "invalid_parameter", "params.\(unknown) is not a parameter; the parameters are \(API.JobParameters.keys.sorted().joined(separator: ", ")).")
        }
    }

    // MARK: OpenAPI

    /// The training parameters, from the limits `QwenImageEdit.validate` checks.
    static let parametersSchema: SchemaValue = {
        typealias Limits = QwenImageEdit.Limits
        let defaults = QwenImageEdit.Parameters()
        let interval: SchemaValue = ["type": "integer", "minimum": .int(Limits.minimumInterval), "maximum": .int(Limits.steps.upperBound)]
        // Each profile's largest size (the default profile's when none is named).
        let sizeRules: [SchemaValue] = QwenImageEdit.Profile.allCases.filter { $0.maximumResolution < Limits.resolution.upperBound }.map { profile in
            let named: SchemaValue = ["properties": ["profile": ["const": .string(profile.rawValue)]], "required": ["profile"]]
            let condition: SchemaValue =
                profile == defaults.profile ? ["anyOf": [named, ["not": ["required": ["profile"]]], ["properties": ["profile": ["type": "null"]]]]] : named
            return ["if": condition, "then": ["properties": ["resolutions": ["items": ["maximum": .int(profile.maximumResolution)]]]]]
        }
        return [
            "type": "object", "additionalProperties": false, "allOf": .array(sizeRules),
            "properties": [
                "steps": ["type": "integer", "minimum": .int(Limits.steps.lowerBound), "maximum": .int(Limits.steps.upperBound), "default": .int(defaults.steps)],
                "learningRate": [
                    "type": "number", "minimum": .double(Limits.learningRate.lowerBound), "maximum": .double(Limits.learningRate.upperBound),
                    "default": .double(defaults.learningRate),
                ],
                "rank": ["type": "integer", "minimum": .int(Limits.rank.lowerBound), "maximum": .int(Limits.rank.upperBound), "default": .int(defaults.rank)],
                "profile": [
                    "type": "string", "enum": .array(QwenImageEdit.Profile.allCases.map { .string($0.rawValue) }), "default": .string(defaults.profile.rawValue),
                    "description": .string("GPU memory of the worker: " + QwenImageEdit.Profile.allCases.map { "\($0.rawValue): \($0.label)" }.joined(separator: "; ")),
                ],
                "resolutions": [
                    "type": "array", "minItems": .int(Limits.resolutionCount.lowerBound), "maxItems": .int(Limits.resolutionCount.upperBound), "uniqueItems": true,
                    "items": [
                        "type": "integer", "minimum": .int(Limits.resolution.lowerBound), "maximum": .int(Limits.resolution.upperBound),
                        "multipleOf": .int(Limits.resolutionMultiple),
                    ],
                    "description": "Training sizes in px; each profile has its own largest size (see profile).",
                ],
                "saveEvery": interval.merging(["description": "Steps between checkpoints; more than steps means at the end. Default: every 250 steps, or a quarter of a short run."]
                ),
                "sampleEvery": [
                    "anyOf": [["type": "integer", "const": 0], interval], "description": "Steps between sample images, 0 for none; more than steps means at the end.",
                ],
                "keepCheckpoints": [
                    "type": "integer", "minimum": .int(Limits.keepCheckpoints.lowerBound), "maximum": .int(Limits.keepCheckpoints.upperBound),
                    "default": .int(defaults.keepCheckpoints),
                ],
                "seed": ["type": "integer", "minimum": .int(Limits.seed.lowerBound), "maximum": .int(Limits.seed.upperBound), "default": .int(defaults.seed)],
                "triggerWord": ["type": "string", "pattern": .string("^$|" + Limits.triggerWordPattern), "description": "Replaces [trigger] in captions; empty: none."],
                "samplePairs": ["type": "array", "maxItems": .int(Limits.samplePairs), "items": ["type": "string"], "description": "Stems of the samples used for sample images."],
                "hfRepo": [
                    "type": "string", "pattern": .string("^$|" + Limits.hfRepoPattern),
                    "description": "A Hugging Face model repo (me/name) the LoRA folder is pushed to at the end, with the worker's HF_TOKEN; empty: none.",
                ],
                "hfPublic": ["type": "boolean", "default": false, "description": "Whether a repo the push creates is public."],
            ],
        ]
    }()

    static let operations: [APIOperation] = [
        APIOperation(
            method: .POST, path: "/api/jobs", summary: "Train a LoRA on a sound dataset (Qwen-Image-Edit-2509 unless another preset is named).",
            requestSchema: [
                "type": "object", "required": ["datasetId"], "additionalProperties": false,
                "properties": [
                    "datasetId": ["type": "string", "format": "uuid"],
                    "preset": [
                        "type": "string", "enum": .array(QwenImageEdit.presets.map { .string($0.id) }), "default": .string(QwenImageEdit.defaultPreset.id),
                        "description": "The model to train (GET /api/presets lists them).",
                    ],
                    "params": parametersSchema,
                ],
            ],
            responses: [
                201: ("The queued job.", .ref("Job")), 404: ("No such dataset of yours.", .ref("Error")),
                409: ("Uploads to the dataset are under way.", .ref("Error")),
                422: ("The dataset is not sound (error.details lists its problems), or a sample pair is not in it.", .ref("Error")),
            ]
        ),
        APIOperation(
            method: .GET, path: "/api/presets", summary: "The models you can train (the `preset` of POST /api/jobs), with their GPU profiles and defaults.",
            responses: [
                200: (
                    "The presets; the one with isDefault is used when a job names none.",
                    ["type": "object", "required": ["presets"], "properties": ["presets": ["type": "array", "items": .ref("Preset")]]]
                )
            ]),
        APIOperation(
            method: .GET, path: "/api/jobs", summary: "Your jobs, newest first.",
            responses: [200: ("Your jobs.", ["type": "object", "properties": ["jobs": ["type": "array", "items": .ref("Job")]]])]),
        APIOperation(
            method: .GET, path: "/api/jobs/{id}", summary: "A job with its progress, artifacts and event log.",
            responses: [200: ("The job.", .ref("Job")), 404: ("No such job of yours.", .ref("Error"))]),
        APIOperation(
            method: .GET, path: "/api/jobs/{id}/events",
            summary: "Server-sent events: `event: job` with the job each time it changes, until it ends (with Accept: text/event-stream; otherwise the job now, as one event).",
            responses: [
                200: (
                    "Each event: `event: job`, and the job as JSON in `data`.",
                    [
                        "type": "object", "required": ["event", "data"],
                        "properties": [
                            "event": ["const": "job"], "data": ["type": "string", "contentMediaType": "application/json", "contentSchema": .ref("Job")],
                        ],
                    ]
                ), 404: ("No such job of yours.", .ref("Error")),
            ], produces: "text/event-stream"),
        APIOperation(
            method: .POST, path: "/api/jobs/{id}/cancel", summary: "Cancel a job (at RunPod when it is there).",
            responses: [200: ("The job.", .ref("Job")), 404: ("No such job of yours.", .ref("Error")), 409: ("The job already ended.", .ref("Error"))]),
        APIOperation(
            method: .POST, path: "/api/jobs/{id}/retry", summary: "A new attempt of a failed, cancelled or timed-out job; it resumes from its last checkpoint.",
            responses: [
                200: ("The job.", .ref("Job")), 404: ("No such job of yours.", .ref("Error")),
                409: ("The job completed or still runs, or a zip is being unpacked into its dataset.", .ref("Error")),
                422: ("Its dataset is not sound now (error.details lists its problems).", .ref("Error")),
            ]),
        APIOperation(
            method: .GET, path: "/api/jobs/{id}/artifacts/{artifactId}", summary: "Download an artifact: a redirect to a presigned URL valid 15 minutes.",
            responses: [303: ("To the file.", nil), 404: ("No such job or artifact of yours.", .ref("Error"))]),
        APIOperation(
            method: .GET, path: "/api/jobs/{id}/result",
            summary: "Download the job's result: the checkpoint promoted to it, else the final LoRA (a redirect to a presigned URL valid 15 minutes).",
            responses: [303: ("To the file.", nil), 404: ("No such job of yours, or no LoRA yet.", .ref("Error"))]),
        APIOperation(
            method: .POST, path: "/api/jobs/{id}/promote",
            summary: "Make one of a completed or cancelled job's checkpoints its result (step), or the final LoRA again (step null); downloads follow.",
            requestSchema: [
                "type": "object", "required": ["step"], "additionalProperties": false,
                "properties": ["step": ["type": ["integer", "null"], "minimum": 0, "description": "A checkpoint's step; null: the final LoRA."]],
            ],
            responses: [
                200: ("The job, with its result.", .ref("Job")), 404: ("No such job of yours, or no checkpoint at that step.", .ref("Error")),
                409: ("The job is not completed or cancelled.", .ref("Error")), 410: ("The checkpoint is no longer in the bucket.", .ref("Error")),
            ]),
        APIOperation(
            method: .DELETE, path: "/api/jobs/{id}",
            summary: "Delete an ended job: its outputs in the bucket (LoRA, checkpoints, samples), then the job, its events and its record.",
            responses: [
                204: ("Deleted.", nil), 404: ("No such job of yours.", .ref("Error")),
                409: ("The job has not ended (job_active); cancel it first.", .ref("Error")),
            ]),
        APIOperation(
            method: .GET, path: "/api/jobs/{id}/record",
            summary:
                "The job's reproducibility record: every parameter (the seed too), the config sent, the dataset's files with their SHA-256 and a digest, and each attempt's worker, GPU, trainer commit, package versions and checkpoints. `gomodel train --from-record` starts the same training again.",
            responses: [
                200: ("The record.", .ref("JobRecord")), 404: ("No such job of yours.", .ref("Error")),
                409: ("A drafting job, which trains nothing.", .ref("Error")),
            ]),
        APIOperation(
            method: .GET, path: "/api/estimate",
            summary:
                "A run's GPU time (and cost, with a price set): the median speed of this server's last completed runs of the preset and profile on one GPU when there are some, assumed figures otherwise; `source` and `basis` say which.",
            query: [
                "steps": (["type": "integer", "minimum": .int(QwenImageEdit.Limits.steps.lowerBound), "maximum": .int(QwenImageEdit.Limits.steps.upperBound)], true),
                "preset": (["type": "string", "enum": .array(QwenImageEdit.presets.map { .string($0.id) })], false),
                "profile": (["type": "string", "enum": .array(QwenImageEdit.Profile.allCases.map { .string($0.rawValue) })], false),
            ],
            responses: [200: ("The estimate.", .ref("Estimate")), 400: ("No steps, or a step count, preset or profile that is not valid.", .ref("Error"))]),
    ]

    static let schemas: [String: SchemaValue] = [
        "Estimate": [
            "type": "object", "required": ["preset", "profile", "steps", "seconds", "secondsPerStep", "overheadSeconds", "source", "basis"],
            "properties": [
                "preset": ["type": "string"], "profile": ["type": "string"], "steps": ["type": "integer"], "seconds": ["type": "number", "minimum": 0],
                "secondsPerStep": ["type": "number", "minimum": 0], "overheadSeconds": ["type": "number", "minimum": 0],
                "source": ["type": "string", "enum": ["learned", "assumed"]], "basis": ["type": "string", "description": "Where the figures come from, for people."],
                "gpuName": ["type": "string"], "runs": ["type": "integer", "minimum": 1], "cost": ["type": "number"],
            ],
        ],
        "JobRecord": [
            "type": "object", "required": ["recordVersion", "serverVersion", "job", "config", "dataset", "attempts", "artifacts"],
            "properties": [
                "recordVersion": ["type": "integer", "const": .int(RunRecord.version)], "serverVersion": ["type": "string"],
                "job": [
                    "type": "object", "required": ["id", "createdAt", "status", "preset", "parameters"],
                    "properties": [
                        "id": ["type": "string", "format": "uuid"], "createdAt": ["type": "string", "format": "date-time"], "status": ["type": "string"],
                        "preset": ["type": "string"], "baseModel": ["type": "string"], "parameters": parametersSchema, "promotedStep": ["type": "integer"],
                    ],
                ],
                "config": ["type": "object", "description": "The ai-toolkit config sent to the worker."],
                "dataset": [
                    "type": "object", "required": ["id", "files"],
                    "properties": [
                        "id": ["type": "string", "format": "uuid"], "name": ["type": "string"],
                        "sha256": ["type": "string", "description": "SHA-256 of one line `{sha256}  {path}` per file, sorted by path (sha256sum's form)."],
                        "files": [
                            "type": "array",
                            "items": [
                                "type": "object", "required": ["path", "bytes"],
                                "properties": ["path": ["type": "string"], "bytes": ["type": "integer"], "sha256": ["type": "string"]],
                            ],
                        ],
                    ],
                ],
                "attempts": [
                    "type": "array",
                    "items": [
                        "type": "object", "required": ["attempt", "status", "checkpoints"],
                        "properties": [
                            "attempt": ["type": "integer"], "status": ["type": "string"], "runnerId": ["type": "string"],
                            "startedAt": ["type": "string", "format": "date-time"], "endedAt": ["type": "string", "format": "date-time"],
                            "environment": [
                                "type": "object", "description": "The worker's report: worker_version, gpu_name, trainer_commit, python, packages (name → version).",
                            ],
                            "checkpoints": ["type": "array", "items": ["type": "integer"]], "resumedFromStep": ["type": "integer"],
                            "stepsTrained": ["type": "integer"], "secondsPerStep": ["type": "number"], "datasetSha256": ["type": "string"],
                        ],
                    ],
                ],
                "artifacts": [
                    "type": "array",
                    "items": [
                        "type": "object", "required": ["id", "kind", "key"],
                        "properties": [
                            "id": ["type": "string"], "kind": ["type": "string"], "key": ["type": "string"], "bytes": ["type": "integer"], "step": ["type": "integer"],
                            "sha256": ["type": "string"],
                        ],
                    ],
                ],
            ],
        ],
        "Preset": [
            "type": "object", "required": ["id", "label", "baseModel", "isDefault", "profiles", "defaults"],
            "properties": [
                "id": ["type": "string"], "label": ["type": "string"], "baseModel": ["type": "string", "description": "The Hugging Face model trained on."],
                "isDefault": ["type": "boolean"],
                "profiles": [
                    "type": "array",
                    "items": [
                        "type": "object", "required": ["id", "label", "maximumResolution", "secondsPerStep"],
                        "properties": [
                            "id": ["type": "string"], "label": ["type": "string"], "maximumResolution": ["type": "integer"],
                            "secondsPerStep": ["type": "number", "description": "The assumption estimates use."],
                        ],
                    ],
                ],
                "defaults": parametersSchema,
            ],
        ],
        "Job": [
            "type": "object", "required": ["id", "datasetId", "status", "attempt", "createdAt"],
            "properties": [
                "id": ["type": "string", "format": "uuid"], "datasetId": ["type": "string", "format": "uuid"],
                "preset": ["type": "string", "description": "The preset it trains (GET /api/presets), or draft-instructions for a job drafting instructions."],
                "params": ["type": "object", "description": "The training parameters; for a drafting job, samples and model."],
                "status": ["type": "string", "enum": ["queued", "submitted", "running", "completed", "failed", "cancelled", "timed_out"]],
                "runnerStatus": ["type": "string", "description": "RunPod's own status string, unknown ones included."],
                "attempt": ["type": "integer"],
                "progress": [
                    "type": "object",
                    "properties": [
                        "phase": ["type": "string"], "step": ["type": "integer"], "totalSteps": ["type": "integer"], "loss": ["type": "number"],
                        "itPerSec": ["type": "number"], "etaSeconds": ["type": "number"], "message": ["type": "string"],
                    ],
                ],
                "runpodJobId": ["type": "string"],
                "artifacts": [
                    "type": "array",
                    "items": [
                        "type": "object",
                        "properties": [
                            "id": ["type": "string"], "kind": ["type": "string", "enum": .array(JobArtifact.Kind.allCases.map { .string($0.rawValue) })],
                            "key": ["type": "string"], "bytes": ["type": "integer"], "step": ["type": "integer"], "sha256": ["type": "string"],
                        ],
                    ],
                ],
                "error": ["type": "string"], "errorDetail": ["type": "string"], "cancelRequested": ["type": "boolean"],
                "result": [
                    "type": "object", "required": ["artifactId", "kind", "promoted"], "description": "What downloading the job's LoRA gives (GET …/result).",
                    "properties": [
                        "artifactId": ["type": "string"], "kind": ["type": "string", "enum": ["lora", "checkpoint"]], "step": ["type": "integer"],
                        "promoted": ["type": "boolean"],
                    ],
                ],
                "createdAt": ["type": "string", "format": "date-time"], "submittedAt": ["type": "string", "format": "date-time"],
                "startedAt": ["type": "string", "format": "date-time"], "finishedAt": ["type": "string", "format": "date-time"],
                "queueSeconds": ["type": "number"], "executionSeconds": ["type": "number"],
                "cost": ["type": "number", "description": "GPU seconds times GOMODEL_GPU_PRICE_PER_SECOND (so far, or final); absent when no price is set."],
                "outputsExpireAt": ["type": "string", "format": "date-time", "description": "When retention (GOMODEL_RETENTION_DAYS) deletes its outputs."],
                "outputsDeletedAt": ["type": "string", "format": "date-time", "description": "When retention deleted its outputs."],
                "events": [
                    "type": "array",
                    "items": [
                        "type": "object",
                        "properties": [
                            "at": ["type": "string", "format": "date-time"], "status": ["type": "string"], "message": ["type": "string"],
                        ],
                    ],
                ],
            ],
        ],
    ]
}
