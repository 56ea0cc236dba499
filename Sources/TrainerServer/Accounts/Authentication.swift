import Fluent
import TrainerCore
import Vapor

/// The browser-session cookie.
struct SessionCookie: Sendable {
    static let name = "gomodel_session"

    let secure: Bool
    let lifetime: TimeInterval

    func set(_ value: String) -> HTTPCookies.Value {
        HTTPCookies.Value(string: value, maxAge: Int(lifetime), path: "/", isSecure: secure, isHTTPOnly: true, sameSite: .lax)
    }

    func cleared() -> HTTPCookies.Value {
        HTTPCookies.Value(string: "", expires: Date(timeIntervalSince1970: 0), maxAge: 0, path: "/", isSecure: secure, isHTTPOnly: true, sameSite: .lax)
    }
}

/// Marks a browser that has signed in before (`KnownDevice`): sent only to the sign-in routes,
/// kept for 400 days (the most browsers allow).
struct DeviceCookie: Sendable {
    static let name = "gomodel_device"

    let secure: Bool

    func set(_ value: String) -> HTTPCookies.Value {
        HTTPCookies.Value(string: value, maxAge: 400 * 24 * 3600, path: "/api/auth", isSecure: secure, isHTTPOnly: true, sameSite: .strict)
    }
}

/// Finds who is calling: an `Authorization: Bearer` token first, else the session cookie.
///
/// A bearer token that is wrong is refused outright (the caller asked to be that token); a stale
/// session cookie only makes the caller anonymous, and is cleared in the response.
struct AuthenticationMiddleware: AsyncMiddleware {
    let accounts: AccountService
    let cookie: SessionCookie

    func respond(to request: Request, chainingTo next: any AsyncResponder) async throws -> Response {
        if request.headers.contains(name: .authorization) {
            guard let bearer = request.headers.bearerAuthorization else {
                throw APIError.unauthorized("Only 'Authorization: Bearer <token>' is accepted; create a token with POST /api/tokens or `gomodel tokens create`.")
            }
            guard let principal = try await accounts.principal(forBearer: bearer.token, on: request.db) else {
                throw APIError.unauthorized("This API token is unknown or has been revoked; create a new one with POST /api/tokens or `gomodel tokens create`.")
            }
            request.auth.login(principal)
            return try await next.respond(to: request)
        }
        guard let cookieValue = request.cookies[SessionCookie.name]?.string, !cookieValue.isEmpty else {
            return try await next.respond(to: request)
        }
        if let principal = try await accounts.principal(forSessionCookie: cookieValue, on: request.db) {
            request.auth.login(principal)
            return try await next.respond(to: request)
        }
        let response: Response
        do {
            response = try await next.respond(to: request)
        } catch {
            response = APIErrorMiddleware.response(for: error, request: request)
        }
        if response.cookies[SessionCookie.name] == nil {
            response.cookies[SessionCookie.name] = cookie.cleared()
        }
        return response
    }
}

/// Refuses anonymous callers, and cookie-authenticated state changes without the session's CSRF token.
struct RequireSignIn: AsyncMiddleware {
    static let csrfHeader: HTTPHeaders.Name = "X-CSRF-Token"

    func respond(to request: Request, chainingTo next: any AsyncResponder) async throws -> Response {
        let principal = try request.principal
        if case .session(let session) = principal.credential {
            try Self.verifyCSRF(request, session: session)
        }
        return try await next.respond(to: request)
    }

    /// Cookies ride along on cross-site requests; the CSRF token does not, so it proves the request
    /// came from our own pages (or a client that read it from the login response).
    static func verifyCSRF(_ request: Request, session: BrowserSession) throws {
        guard ![.GET, .HEAD, .OPTIONS].contains(request.method) else { return }
        guard let sent = request.headers.first(name: csrfHeader),
            constantTimeEquals(sent, session.csrfToken)
        else {
            throw APIError.forbidden(
                "csrf_failed",
                "This request changes data with a session cookie but lacks the session's CSRF token; send it in the X-CSRF-Token header (it is in the login response and GET /api/me)."
            )
        }
    }
}
