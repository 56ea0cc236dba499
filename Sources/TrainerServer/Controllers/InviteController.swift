import Fluent
import TrainerCore
import Vapor

/// `POST /api/invites`: admins make single-use sign-up codes for `GOMODEL_SIGNUP=invite`.
struct InviteController: Sendable {
    let accounts: AccountService

    func register(signedIn routes: any RoutesBuilder) {
        routes.post("invites", use: create)
    }

    @Sendable func create(request: Request) async throws -> Response {
        let user = try request.principal.user
        guard user.isAdmin else { throw APIError.forbidden("admin_only", "Only administrators can create invites.") }
        let (code, invite) = try await accounts.createInvite(by: user, on: request.db)
        return try JSON.response(API.Invite(code: code, expiresAt: invite.expiresAt), status: .created)
    }

    static let operations: [APIOperation] = [
        APIOperation(
            method: .POST, path: "/api/invites", summary: "Create a single-use sign-up invite code, valid 7 days (admins only).", access: .admin,
            responses: [
                201: (
                    "The invite.",
                    [
                        "type": "object", "required": ["code", "expiresAt"],
                        "properties": [
                            "code": ["type": "string"], "expiresAt": ["type": "string", "format": "date-time"],
                        ],
                    ]
                ), 403: ("Not an administrator.", .ref("Error")),
            ])
    ]
}
