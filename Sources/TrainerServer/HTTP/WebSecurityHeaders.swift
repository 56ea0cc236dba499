import Vapor

/// Headers of every page and asset of the web app. Scripts come only from our own origin (no
/// inline scripts or handlers); uploads and thumbnails talk to the bucket, whose origin differs
/// from ours with R2/S3 or a GOMODEL_PUBLIC_URL.
struct WebSecurityHeaders: AsyncMiddleware {
    let contentSecurityPolicy: String

    init(storeOrigin: String?) {
        contentSecurityPolicy = Self.policy(storeOrigin: storeOrigin)
    }

    static func policy(storeOrigin: String?) -> String {
        let store = storeOrigin.map { " " + $0 } ?? ""
        return [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data: blob:\(store)",
            "connect-src 'self'\(store)",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ].joined(separator: "; ")
    }

    func respond(to request: Request, chainingTo next: any AsyncResponder) async throws -> Response {
        let response = try await next.respond(to: request)
        response.headers.replaceOrAdd(name: "Content-Security-Policy", value: contentSecurityPolicy)
        response.headers.replaceOrAdd(name: "X-Content-Type-Options", value: "nosniff")
        response.headers.replaceOrAdd(name: "Referrer-Policy", value: "same-origin")
        response.headers.replaceOrAdd(name: "X-Frame-Options", value: "DENY")
        return response
    }
}
