import Fluent
import TrainerCore
import Vapor

/// `POST /api/auth/signup|login|logout` and `GET /api/me`.
struct AuthController: Sendable {
    let accounts: AccountService
    let cookie: SessionCookie
    let signupPolicy: SignupPolicy
    let clientAddress: ClientAddress

    func register(public routes: any RoutesBuilder, signedIn: any RoutesBuilder) {
        routes.post("auth", "signup", use: signUp)
        routes.post("auth", "login", use: logIn)
        routes.post("auth", "logout", use: logOut)
        signedIn.get("me", use: me)
    }

    @Sendable func signUp(request: Request) async throws -> Response {
        let body = try request.decodeJSON(API.Signup.self)
        let user = try await accounts.signUp(email: body.email, password: body.password, inviteCode: body.inviteCode, policy: signupPolicy, on: request.db)
        return try await startSession(for: user, request: request, status: .created)
    }

    @Sendable func logIn(request: Request) async throws -> Response {
        let body = try request.decodeJSON(API.Login.self)
        let user = try await accounts.logIn(
            email: body.email, password: body.password, clientAddress: clientAddress(of: request),
            knownDevice: request.cookies[DeviceCookie.name]?.string, on: request.db)
        return try await startSession(for: user, request: request, status: .ok)
    }

    /// Ends the browser session (if any) and clears its cookie; bearer tokens are revoked with DELETE /api/tokens/{id}.
    @Sendable func logOut(request: Request) async throws -> Response {
        if let principal = request.auth.get(Principal.self), case .session(let session) = principal.credential {
            try RequireSignIn.verifyCSRF(request, session: session)
            try await session.delete(on: request.db)
        }
        let response = Response(status: .noContent)
        response.cookies[SessionCookie.name] = cookie.cleared()
        return response
    }

    @Sendable func me(request: Request) async throws -> Response {
        let principal = try request.principal
        var csrfToken: String?
        if case .session(let session) = principal.credential { csrfToken = session.csrfToken }
        return try JSON.response(API.Session(user: principal.user.shape, csrfToken: csrfToken))
    }

    private func startSession(for user: User, request: Request, status: HTTPResponseStatus) async throws -> Response {
        // A new session replaces the one the browser had, so a planted cookie cannot be reused.
        if let principal = request.auth.get(Principal.self), case .session(let old) = principal.credential {
            try await old.delete(on: request.db)
        }
        let (cookieValue, session) = try await accounts.startSession(for: user, on: request.db)
        let response = try JSON.response(API.Session(user: user.shape, csrfToken: session.csrfToken), status: status)
        response.cookies[SessionCookie.name] = cookie.set(cookieValue)
        if let device = try await accounts.rememberDevice(request.cookies[DeviceCookie.name]?.string, for: user, on: request.db) {
            response.cookies[DeviceCookie.name] = DeviceCookie(secure: cookie.secure).set(device)
        }
        return response
    }

    static let operations: [APIOperation] = [
        APIOperation(
            method: .POST, path: "/api/auth/signup", summary: "Create an account and sign in (sets the session cookie).", access: .anyone,
            requestSchema: [
                "type": "object", "required": ["email", "password"],
                "properties": [
                    "email": ["type": "string", "format": "email", "maxLength": .int(AccountRules.maximumEmailLength)],
                    "password": ["type": "string", "minLength": .int(AccountRules.minimumPasswordLength), "maxLength": .int(AccountRules.maximumPasswordLength)],
                    "inviteCode": ["type": "string", "description": "Required when the server's sign-up policy is 'invite'."],
                ],
            ],
            responses: [
                201: ("Signed up and signed in.", .ref("Session")), 403: ("Sign-up is closed or needs a valid invite.", .ref("Error")),
                409: ("The e-mail address has an account.", .ref("Error")),
            ]
        ),
        APIOperation(
            method: .POST, path: "/api/auth/login", summary: "Sign in with e-mail and password (sets the session cookie).", access: .anyone,
            requestSchema: ["type": "object", "required": ["email", "password"], "properties": ["email": ["type": "string"], "password": ["type": "string"]]],
            responses: [
                200: ("Signed in.", .ref("Session")), 401: ("Wrong e-mail or password.", .ref("Error")), 429: ("Too many failed attempts; see Retry-After.", .ref("Error")),
            ]
        ),
        APIOperation(
            method: .POST, path: "/api/auth/logout", summary: "End the browser session and clear its cookie.", access: .anyone,
            responses: [204: ("Signed out.", nil), 403: ("Missing CSRF token for the session.", .ref("Error"))]
        ),
        APIOperation(method: .GET, path: "/api/me", summary: "The signed-in user.", responses: [200: ("The user, and the CSRF token for cookie sessions.", .ref("Session"))]),
    ]

    static let schemas: [String: SchemaValue] = [
        "User": [
            "type": "object", "required": ["id", "email", "isAdmin", "createdAt"],
            "properties": [
                "id": ["type": "string", "format": "uuid"], "email": ["type": "string"], "isAdmin": ["type": "boolean"],
                "createdAt": ["type": "string", "format": "date-time"],
            ],
        ],
        "Session": [
            "type": "object", "required": ["user"],
            "properties": [
                "user": .ref("User"),
                "csrfToken": ["type": "string", "description": "Send as X-CSRF-Token on requests that change data with the session cookie."],
            ],
        ],
    ]
}

/// The address a request comes from, for login throttling. Behind a proxy (`GOMODEL_TRUST_PROXY`)
/// it is the last `X-Forwarded-For` hop, the one the proxy itself added.
struct ClientAddress: Sendable {
    let trustProxy: Bool

    func callAsFunction(of request: Request) -> String {
        if trustProxy,
            let forwarded = request.headers.first(name: .xForwardedFor)?
                .split(separator: ",").last?.trimmingCharacters(in: .whitespaces), !forwarded.isEmpty
        {
            return forwarded
        }
        return request.remoteAddress?.ipAddress ?? "unknown"
    }
}
