import Vapor

/// Answers 431 to a request whose headers are larger than any client of ours sends, with a message
/// saying what to do, instead of handling it.
///
/// The HTTP parser beneath (SwiftNIO, as Vapor 4 configures it) refuses headers over 80 KiB on its
/// own and Vapor then closes the connection without an answer; this limit sits below that, so
/// every oversized request that reaches the server gets its answer.
struct HeaderLimitMiddleware: AsyncMiddleware {
    /// nginx allows 32 KiB of headers by default (4 × 8k buffers); browsers send far less.
    static let maximumBytes = 32 * 1024

    func respond(to request: Request, chainingTo next: any AsyncResponder) async throws -> Response {
        let bytes = request.headers.reduce(0) { $0 + $1.name.utf8.count + $1.value.utf8.count + 4 }
        guard bytes <= Self.maximumBytes else {
            throw APIError(
                status: .requestHeaderFieldsTooLarge, code: "headers_too_large",
                message: "The request's headers are \(bytes / 1024) KiB; at most \(Self.maximumBytes / 1024) KiB are accepted. "
                    + "An oversized Cookie is the usual cause: clear this site's cookies and try again.",
                headers: ["Connection": "close"])
        }
        return try await next.respond(to: request)
    }
}
