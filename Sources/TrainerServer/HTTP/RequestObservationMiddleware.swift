import Prometheus
import Vapor

/// Counts, times and logs every request by its route pattern (`/api/tokens/:id`), never by its raw
/// path: paths can carry secrets (webhook secrets, presigned keys) and unbounded label values.
struct RequestObservationMiddleware: AsyncMiddleware {
    let registry: PrometheusCollectorRegistry

    func respond(to request: Request, chainingTo next: any AsyncResponder) async throws -> Response {
        let start = ContinuousClock.now
        let response = try await next.respond(to: request)
        let elapsed = ContinuousClock.now - start
        let route = request.route.map { "/" + $0.path.map(\.description).joined(separator: "/") } ?? "unmatched"
        let method = request.method.rawValue
        let status = String(response.status.code)
        registry.makeCounter(
            descriptor: .init(namespace: "http", metricName: "requests", unitName: "total", helpText: "HTTP requests by method, route and status."),
            labels: [("method", method), ("route", route), ("status", status)]
        ).increment()
        registry.makeDurationHistogram(
            descriptor: .init(namespace: "http", metricName: "request_duration", unitName: "seconds", helpText: "HTTP request latency by method and route."),
            labels: [("method", method), ("route", route)],
            buckets: Self.buckets
        ).record(elapsed)
        request.logger.info("\(method) \(route) \(status)", metadata: ["ms": "\(elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000)"])
        return response
    }

    private static let buckets: [Duration] = [
        .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
        .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5), .seconds(10),
    ]
}
