import Fluent
import SQLiteNIO
import TrainerCore
import Vapor

/// Turns every error into the API's JSON error shape. Anything not caused by the request
/// becomes a 500 whose details go to the log only, never to the client.
struct APIErrorMiddleware: AsyncMiddleware {
    func respond(to request: Request, chainingTo next: any AsyncResponder) async throws -> Response {
        do {
            return try await next.respond(to: request)
        } catch {
            return Self.response(for: error, request: request)
        }
    }

    static func response(for error: any Error, request: Request) -> Response {
        let apiError = apiError(for: error)
        if apiError.status == .internalServerError {
            request.logger.error("request failed", metadata: ["error": "\(String(reflecting: error))"])
        }
        return
            (try? JSON.response(
                API.ErrorBody(error: .init(code: apiError.code, message: apiError.message, details: apiError.details)),
                status: apiError.status, headers: apiError.headers
            )) ?? Response(status: .internalServerError)
    }

    static func apiError(for error: any Error) -> APIError {
        switch error {
        case let error as APIError:
            return error
        case let error as any APIErrorConvertible:
            return error.apiError
        case let error as SQLiteError where [.busy, .locked, .busyTimeout, .busyInSnapshot, .busyInRecovery].contains(error.reason):
            // SQLite could not take its lock in time: a moment later it will.
            return APIError(
                status: .serviceUnavailable, code: "database_busy", message: "The database is busy; retry in a second.",
                headers: ["Retry-After": "1"])
        case let error as any DatabaseError where error.isConstraintFailure:
            return .conflict("conflict", "The request conflicts with data that changed meanwhile; fetch it again and retry.")
        case let error as any AbortError where error.status != .internalServerError:
            return APIError(status: error.status, code: code(for: error.status), message: message(for: error))
        default:
            return APIError(
                status: .internalServerError, code: "internal_error", message: "Something went wrong on the server; it has been logged. Try again, and report it if it persists.")
        }
    }

    private static func code(for status: HTTPResponseStatus) -> String {
        switch status {
        case .notFound: "not_found"
        case .methodNotAllowed: "method_not_allowed"
        case .payloadTooLarge: "payload_too_large"
        case .unsupportedMediaType: "unsupported_media_type"
        case .unauthorized: "unauthorized"
        case .forbidden: "forbidden"
        default: "bad_request"
        }
    }

    private static func message(for error: any AbortError) -> String {
        switch error.status {
        case .notFound: "There is nothing at this address; see /api/openapi.json for the API's routes."
        case .payloadTooLarge: "The request body is too large."
        default: error.reason
        }
    }
}
