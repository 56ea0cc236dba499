import TrainerCore
import Vapor

/// An error the API reports to its client as `{"error": {"code", "message"}}`.
///
/// `code` is stable for programs; `message` is for people and says what to do.
struct APIError: Error, Sendable {
    let status: HTTPResponseStatus
    let code: String
    let message: String
    var headers: HTTPHeaders = [:]
    /// Per-item problems (e.g. each refused file), for programs to show beside the items.
    var details: [API.Item]? = nil

    static func badRequest(_ code: String = "bad_request", _ message: String) -> APIError {
        APIError(status: .badRequest, code: code, message: message)
    }

    static func unauthorized(_ message: String) -> APIError {
        APIError(status: .unauthorized, code: "unauthorized", message: message)
    }

    static func forbidden(_ code: String = "forbidden", _ message: String) -> APIError {
        APIError(status: .forbidden, code: code, message: message)
    }

    static func notFound(_ message: String) -> APIError {
        APIError(status: .notFound, code: "not_found", message: message)
    }

    static func conflict(_ code: String, _ message: String) -> APIError {
        APIError(status: .conflict, code: code, message: message)
    }
}
