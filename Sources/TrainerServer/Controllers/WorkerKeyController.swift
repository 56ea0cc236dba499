import Fluent
import TrainerCore
import Vapor

/// Worker keys, for administrators: `POST /api/worker-keys` (the value is shown once),
/// `GET /api/worker-keys`, `POST /api/worker-keys/{id}/revoke`.
struct WorkerKeyController: Sendable {
    let workerKeys: WorkerKeyService

    func register(signedIn routes: any RoutesBuilder) {
        let admin = routes.grouped("worker-keys")
        admin.post(use: create)
        admin.get(use: list)
        admin.post(":id", "revoke", use: revoke)
    }

    @Sendable func create(request: Request) async throws -> Response {
        try requireAdmin(request)
        let body = try request.decodeJSON(API.NamedCreate.self)
        let (value, key) = try await workerKeys.create(name: body.name, on: request.db)
        return try JSON.response(key.shape(runningJobs: 0, value: value), status: .created)
    }

    @Sendable func list(request: Request) async throws -> Response {
        try requireAdmin(request)
        let keys = try await workerKeys.list(on: request.db)
        let running = try await workerKeys.runningJobs(on: request.db)
        return try JSON.response(API.WorkerKeyList(workerKeys: keys.map { $0.shape(runningJobs: running[$0.id!] ?? 0) }))
    }

    @Sendable func revoke(request: Request) async throws -> Response {
        try requireAdmin(request)
        let key = try await workerKeys.find(id: request.parameters.get("id", as: UUID.self), on: request.db)
        try await workerKeys.revoke(key, on: request.db)
        return try JSON.response(key.shape(runningJobs: 0))
    }

    private func requireAdmin(_ request: Request) throws {
        guard try request.principal.user.isAdmin else { throw APIError.forbidden("admin_only", "Only administrators can manage worker keys.") }
    }

    static let operations: [APIOperation] = [
        APIOperation(
            method: .POST, path: "/api/worker-keys", summary: "Create a key for a GPU worker of the built-in queue; its value is shown only in this response (admins only).",
            access: .admin,
            requestSchema: ["type": "object", "required": ["name"], "properties": ["name": .visibleName]],
            responses: [
                201: ("The new key, with its value.", .ref("WorkerKey")), 403: ("Not an administrator.", .ref("Error")),
                409: ("A key not revoked has this name.", .ref("Error")),
            ]
        ),
        APIOperation(
            method: .GET, path: "/api/worker-keys", summary: "List the worker keys, revoked ones included (admins only).", access: .admin,
            responses: [
                200: ("The keys.", ["type": "object", "required": ["workerKeys"], "properties": ["workerKeys": ["type": "array", "items": .ref("WorkerKey")]]]),
                403: ("Not an administrator.", .ref("Error")),
            ]),
        APIOperation(
            method: .POST, path: "/api/worker-keys/{id}/revoke",
            summary: "Revoke a worker key: its workers are refused from their next call and their jobs go back to the queue (admins only).", access: .admin,
            responses: [200: ("The revoked key.", .ref("WorkerKey")), 403: ("Not an administrator.", .ref("Error")), 404: ("No such key.", .ref("Error"))]),
    ]

    static let schemas: [String: SchemaValue] = [
        "WorkerKey": [
            "type": "object", "required": ["id", "name", "createdAt", "runningJobs"],
            "properties": [
                "id": ["type": "string", "format": "uuid"], "name": ["type": "string"],
                "createdAt": ["type": "string", "format": "date-time"], "lastUsedAt": ["type": "string", "format": "date-time"],
                "revokedAt": ["type": "string", "format": "date-time"], "runningJobs": ["type": "integer", "minimum": 0],
                "key": ["type": "string", "description": "The key's value, only when it is created."],
            ],
        ]
    ]
}
