import Fluent
import Vapor

/// API tokens: `POST /api/tokens` (the value is shown once), `GET /api/tokens`, `DELETE /api/tokens/{id}`.
struct TokenController: Sendable {
    let accounts: AccountService

    struct CreateRequest: Decodable {
        let name: String
    }

    struct TokenResponse: Encodable {
        let id: UUID
        let name: String
        let hint: String
        let createdAt: Date
        let lastUsedAt: Date?
        /// Present only in the response that created it.
        let token: String?

        init(_ token: APIToken, value: String? = nil) {
            id = token.id!
            name = token.name
            hint = token.hint
            createdAt = token.createdAt
            lastUsedAt = token.lastUsedAt
            self.token = value
        }
    }

    struct TokenList: Encodable {
        let tokens: [TokenResponse]
    }

    func register(signedIn routes: any RoutesBuilder) {
        routes.post("tokens", use: create)
        routes.get("tokens", use: list)
        routes.delete("tokens", ":id", use: delete)
    }

    @Sendable func create(request: Request) async throws -> Response {
        let body = try request.decodeJSON(CreateRequest.self)
        let (value, token) = try await accounts.issueToken(for: request.principal.user, name: body.name, on: request.db)
        return try JSON.response(TokenResponse(token, value: value), status: .created)
    }

    @Sendable func list(request: Request) async throws -> Response {
        let tokens = try await APIToken.newestFirst(of: request.principal.userID, on: request.db).all()
        return try JSON.response(TokenList(tokens: tokens.map { TokenResponse($0) }))
    }

    @Sendable func delete(request: Request) async throws -> Response {
        // Someone else's token answers exactly like a missing one.
        guard let id = request.parameters.get("id", as: UUID.self),
            let token = try await APIToken.query(on: request.db)
                .filter(\.$id == id).filter(\.$user.$id == request.principal.userID).first()
        else { throw APIError.notFound("No token with this id; GET /api/tokens lists yours.") }
        try await token.delete(on: request.db)
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
