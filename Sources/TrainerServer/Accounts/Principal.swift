import Vapor

/// Who is making a request, and with which credential.
struct Principal: Authenticatable {
    enum Credential {
        case session(BrowserSession)
        case token(APIToken)
    }

    let user: User
    let credential: Credential

    var userID: UUID { user.id! }
}

extension Request {
    /// The signed-in principal; routes behind `RequireSignIn` always have one.
    var principal: Principal {
        get throws {
            guard let principal = auth.get(Principal.self) else {
                throw APIError.unauthorized("Sign in first, or send the header Authorization: Bearer <token>.")
            }
            return principal
        }
    }
}
