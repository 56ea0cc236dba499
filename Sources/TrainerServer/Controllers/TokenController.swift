import Fluent
import TrainerCore
import Vapor

/// API tokens: `POST /api/tokens` (the value is shown once), `GET /api/tokens`, `DELETE /api/tokens/{id}`.
struct TokenController: Sendable {
    let accounts: AccountService

    func register(signedIn routes: any RoutesBuilder) {
        routes.post("tokens", use: create)
        routes.get("tokens", use: list)
        routes.delete("tokens", ":id", use: delete)
    }

    @Sendable func create(request: Request) async throws -> Response {
        let body = try request.decodeJSON(API.NamedCreate.self)
        let (value, token) = try await accounts.issueToken(for: request.principal.user, name: body.name, on: request.db)
        return try JSON.response(token.shape(value: value), status: .created)
    }

    @Sendable func list(request: Request) async throws -> Response {
        let tokens = try await APIToken.newestFirst(of: request.principal.userID, on: request.db).all()
        return try JSON.response(API.TokenList(tokens: tokens.map { $0.shape() }))
    }

    @Sendable func delete(request: Request) async throws -> Response {
        try await accounts.deleteToken(request.parameters.get("id", as: UUID.self), userID: request.principal.userID, on: request.db)
        return Response(status: .noContent)
    }

    static let operations: [APIOperation] = [
        APIOperation(
            method: .POST, path: "/api/tokens", summary: "Create an API token; its value is shown only in this response.",
            requestSchema: ["type": "object", "required": ["name"], "properties": ["name": .visibleName]],
            responses: [201: ("The new token, with its value.", .ref("Token"))]
        ),
        APIOperation(
            method: .GET, path: "/api/tokens", summary: "List your API tokens (without their values).",
            responses: [200: ("Your tokens.", ["type": "object", "properties": ["tokens": ["type": "array", "items": .ref("Token")]]])]),
        APIOperation(
            method: .DELETE, path: "/api/tokens/{id}", summary: "Revoke an API token.",
            responses: [204: ("Revoked.", nil), 404: ("No such token of yours.", .ref("Error"))]),
    ]

    static let schemas: [String: SchemaValue] = [
        "Token": [
            "type": "object", "required": ["id", "name", "hint", "createdAt"],
            "properties": [
                "id": ["type": "string", "format": "uuid"], "name": ["type": "string"],
                "hint": ["type": "string", "description": "The token's first characters."],
                "createdAt": ["type": "string", "format": "date-time"], "lastUsedAt": ["type": "string", "format": "date-time"],
                "token": ["type": "string", "description": "The secret value; only in the creation response."],
            ],
        ]
    ]
}
