import Fluent
import TrainerCore
import Vapor

/// Instructions drafted from the pictures (`DraftService`): start a run, list the drafts, accept
/// (as drafted or edited) or reject each.
struct DraftController: Sendable {
    let drafts: DraftService

    func register(signedIn routes: any RoutesBuilder) {
        let dataset = routes.grouped("datasets", ":id", "drafts")
        dataset.post(use: start)
        dataset.get(use: list)
        dataset.post(":stem", "accept", use: accept)
        dataset.delete(":stem", use: reject)
    }

    @Sendable func start(request: Request) async throws -> Response {
        let dataset = try await find(request)
        let body = (request.body.data?.readableBytes ?? 0) > 0 ? try request.decodeJSON(API.DraftStart.self, fields: ["stems"]) : API.DraftStart(stems: nil)
        // An endpoint run outlives this request: it runs on the application's database.
        let run = try await drafts.start(dataset, userID: try request.principal.userID, stems: body.stems, on: request.application.db)
        return try JSON.response(try await run.shape(now: drafts.now(), on: request.db), status: .accepted)
    }

    @Sendable func list(request: Request) async throws -> Response {
        let dataset = try await find(request)
        let (run, found) = try await drafts.list(dataset, on: request.db)
        return try JSON.response(API.Drafts(run: try await run?.shape(now: drafts.now(), on: request.db), drafts: found.map(\.shape)))
    }

    @Sendable func accept(request: Request) async throws -> Response {
        let dataset = try await find(request)
        let body = (request.body.data?.readableBytes ?? 0) > 0 ? try request.decodeJSON(API.DraftAccept.self, fields: ["caption"]) : API.DraftAccept(caption: nil)
        let report = try await drafts.accept(dataset, stem: request.parameters.get("stem") ?? "", editedText: body.caption, on: request.db)
        return try JSON.response(dataset.shape(validation: report))
    }

    @Sendable func reject(request: Request) async throws -> Response {
        let dataset = try await find(request)
        let report = try await drafts.reject(dataset, stem: request.parameters.get("stem") ?? "", on: request.db)
        return try JSON.response(dataset.shape(validation: report))
    }

    private func find(_ request: Request) async throws -> Dataset {
        try await drafts.datasets.find(request.parameters.get("id", as: UUID.self), userID: try request.principal.userID, on: request.db)
    }

    // MARK: OpenAPI

    static let operations: [APIOperation] = [
        APIOperation(
            method: .POST, path: "/api/datasets/{id}/drafts",
            summary:
                "Draft edit instructions from each sample's pictures with a vision model (a GPU worker's Qwen2.5-VL, or GOMODEL_CAPTION_URL's endpoint); drafts train nothing until accepted.",
            requestSchema: [
                "type": "object", "additionalProperties": false,
                "properties": [
                    "stems": [
                        "type": ["array", "null"], "items": ["type": "string"], "minItems": 1,
                        "description": "The samples to draft; absent: every sample without an instruction or a draft.",
                    ]
                ],
            ],
            responses: [
                202: ("The run; follow GET …/drafts.", .ref("DraftRun")), 400: ("A field that is not one of this request's.", .ref("Error")),
                404: ("No such dataset of yours, or no such sample.", .ref("Error")),
                409: ("A run is drafting for this dataset already.", .ref("Error")), 422: ("Every sample has an instruction or a draft.", .ref("Error")),
            ]
        ),
        APIOperation(
            method: .GET, path: "/api/datasets/{id}/drafts", summary: "The drafts waiting for review, and the latest run.",
            responses: [
                200: (
                    "Drafts by sample.",
                    [
                        "type": "object", "required": ["drafts"],
                        "properties": [
                            "run": .ref("DraftRun"),
                            "drafts": [
                                "type": "array",
                                "items": [
                                    "type": "object", "required": ["stem", "text", "source", "createdAt"],
                                    "properties": [
                                        "stem": ["type": "string"], "text": ["type": "string"],
                                        "source": ["type": "string", "description": "The model that wrote it: worker:… or endpoint:…"],
                                        "createdAt": ["type": "string", "format": "date-time"],
                                    ],
                                ],
                            ],
                        ],
                    ]
                ), 404: ("No such dataset of yours.", .ref("Error")),
            ]),
        APIOperation(
            method: .POST, path: "/api/datasets/{id}/drafts/{stem}/accept", summary: "Accept a draft (or your edit of it, in `caption`): it becomes the sample's caption.",
            requestSchema: [
                "type": "object", "additionalProperties": false,
                "properties": ["caption": ["type": ["string", "null"], "maxLength": .int(DatasetService.maximumCaptionLength)]],
            ],
            responses: [
                200: ("The dataset with its validation.", .ref("Dataset")), 400: ("A field that is not one of this request's.", .ref("Error")),
                404: ("No such dataset, or no draft for this sample.", .ref("Error")), 409: ("A job uses the dataset.", .ref("Error")),
            ]),
        APIOperation(
            method: .DELETE, path: "/api/datasets/{id}/drafts/{stem}", summary: "Reject a draft; the sample is left without an instruction.",
            responses: [200: ("The dataset with its validation.", .ref("Dataset")), 404: ("No such dataset, or no draft for this sample.", .ref("Error"))]),
    ]

    static let schemas: [String: SchemaValue] = [
        "DraftRun": [
            "type": "object", "required": ["id", "mode", "state", "samplesTotal", "samplesDone", "drafted", "createdAt", "updatedAt"],
            "properties": [
                "id": ["type": "string", "format": "uuid"], "mode": ["type": "string", "enum": ["worker", "endpoint"]],
                "jobId": ["type": "string", "format": "uuid", "description": "The queue's drafting job (worker mode)."],
                "state": ["type": "string", "enum": ["running", "done", "failed"]], "samplesTotal": ["type": "integer"],
                "samplesDone": ["type": "integer"], "drafted": ["type": "integer"], "error": ["type": "string"],
                "createdAt": ["type": "string", "format": "date-time"], "updatedAt": ["type": "string", "format": "date-time"],
            ],
        ]
    ]
}
