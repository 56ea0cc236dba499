import Fluent
import FluentSQL
import Prometheus
import TrainerCore
import Vapor

/// `/healthz`, `/readyz`, `/metrics` and `/api/openapi.json`.
struct SystemController: Sendable {
    let registry: PrometheusCollectorRegistry
    let openAPIDocument: Data

    struct Status: Encodable {
        let status: String
    }

    func register(_ routes: any RoutesBuilder) {
        routes.get("healthz", use: health)
        routes.get("readyz", use: ready)
        routes.get("metrics", use: metrics)
        routes.get("api", "openapi.json", use: openAPI)
    }

    @Sendable func health(request: Request) async throws -> Response {
        try JSON.response(Status(status: "ok"))
    }

    @Sendable func ready(request: Request) async throws -> Response {
        do {
            try await request.db.ping()
            return try JSON.response(Status(status: "ready"))
        } catch {
            request.logger.warning("database not reachable", metadata: ["error": "\(String(reflecting: error))"])
            return try JSON.response(
                API.ErrorBody(error: .init(code: "database_unavailable", message: "The database does not answer; check DATABASE_URL and that the database server is up.")),
                status: .serviceUnavailable
            )
        }
    }

    @Sendable func metrics(request: Request) async throws -> Response {
        var headers = HTTPHeaders()
        headers.contentType = HTTPMediaType(type: "text", subType: "plain", parameters: ["version": "0.0.4", "charset": "utf-8"])
        return Response(status: .ok, headers: headers, body: .init(string: registry.emitToString()))
    }

    @Sendable func openAPI(request: Request) async throws -> Response {
        var headers = HTTPHeaders()
        headers.contentType = .json
        return Response(status: .ok, headers: headers, body: .init(data: openAPIDocument))
    }

    static let operations: [APIOperation] = [
        APIOperation(
            method: .GET, path: "/api/openapi.json", summary: "This OpenAPI 3.1 document.", access: .anyone,
            responses: [200: ("The document.", ["type": "object"])])
    ]
}
