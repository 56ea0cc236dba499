import Vapor

extension Request {
    /// Where the client reached us, for URLs handed back to it (presigned URLs of the built-in
    /// store): GOMODEL_PUBLIC_URL, else the request's own scheme and host. (A forged Host only
    /// misleads the client that forged it.)
    func origin(publicURL: URL?, trustProxy: Bool) throws -> URL {
        if let publicURL { return publicURL }
        let scheme = trustProxy ? (headers.first(name: "x-forwarded-proto") ?? "http") : "http"
        guard let host = headers.first(name: .host), let url = URL(string: "\(scheme)://\(host)"), url.host != nil else {
            throw APIError.badRequest("missing_host", "The request has no Host header; set GOMODEL_PUBLIC_URL on the server.")
        }
        return url
    }
}
