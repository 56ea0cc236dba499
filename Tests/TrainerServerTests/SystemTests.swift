import Foundation
import Testing
import TrainerCore
import VaporTesting

@testable import TrainerServer

@Suite struct SystemTests {
    @Test func healthAndReadiness() async throws {
        try await withTestApp { app in
            var client = APIClient(app)
            let health = try await client.send(.GET, "/healthz")
            #expect(health.status == .ok)
            #expect(try health.json["status"] as? String == "ok")
            let ready = try await client.send(.GET, "/readyz")
            #expect(ready.status == .ok)
            #expect(try ready.json["status"] as? String == "ready")
        }
    }

    @Test func readinessFailsWhileTheDatabaseIsUnreachable() async throws {
        // Nothing listens on port 1: the process is up, the database is not.
        let app = try await Application.make(.testing)
        do {
            let configuration = try Configuration(environment: ["DATABASE_URL": "postgres://gomodel:secret@127.0.0.1:1/gomodel"])
            try configure(app, configuration: configuration, dependencies: .init(now: { Date() }, bcryptCost: 4))
            var client = APIClient(app)
            #expect(try await client.send(.GET, "/healthz").status == .ok)
            let ready = try await client.send(.GET, "/readyz")
            #expect(ready.status == .serviceUnavailable)
            #expect(ready.errorCode == "database_unavailable")
            #expect(!ready.body.string.contains("secret"))
        } catch {
            try await app.asyncShutdown()
            throw error
        }
        try await app.asyncShutdown()
    }

    @Test func metricsCountRequestsByRoutePattern() async throws {
        try await withTestApp { app in
            var ada = APIClient(app)
            try await ada.signUp("ada@example.com")
            let value = try await ada.createToken()
            let id = try #require(try await ada.send(.GET, "/api/tokens").json["tokens"] as? [[String: Any]])[0]["id"] as! String
            try await ada.send(.DELETE, "/api/tokens/\(id)")
            try await ada.send(.GET, "/api/nothing")

            let metrics = try await ada.send(.GET, "/metrics")
            #expect(metrics.status == .ok)
            #expect(metrics.headers.contentType?.subType == "plain")
            let text = metrics.body.string
            #expect(text.contains(#"http_requests_total{method="POST",route="/api/auth/signup",status="201"} 1"#))
            #expect(text.contains(#"http_requests_total{method="DELETE",route="/api/tokens/:id",status="204"} 1"#))
            #expect(text.contains(#"route="unmatched",status="404""#))
            #expect(text.contains("http_request_duration_seconds_bucket"))
            #expect(!text.contains(id), "raw paths must not become labels")
            #expect(!text.contains(value))
        }
    }

    @Test func secretsFromTheConfigurationAreNeverServed() async throws {
        let secrets = ["rpa_SECRET_API_KEY", "R2SECRETACCESSKEY", "hf_SECRET_TOKEN"]
        let environment = [
            "RUNPOD_ENDPOINT_ID": "abc123", "RUNPOD_API_KEY": secrets[0],
            "R2_BUCKET": "loras", "R2_ENDPOINT": "https://0123abcd.r2.cloudflarestorage.com",
            "R2_ACCESS_KEY_ID": String(repeating: "a", count: 32), "R2_SECRET_ACCESS_KEY": secrets[1], "HF_TOKEN": secrets[2],
        ]
        try await withTestApp(environment: environment) { app in
            var ada = APIClient(app)
            var bodies = [try await ada.signUp("ada@example.com").body.string]
            for path in ["/api/me", "/metrics", "/api/openapi.json", "/healthz", "/readyz", "/api/nothing"] {
                bodies.append(try await ada.send(.GET, path).body.string)
            }
            bodies.append(try await ada.send(.POST, "/api/tokens", body: "{bad").body.string)
            for body in bodies {
                for secret in secrets { #expect(!body.contains(secret)) }
            }
        }
    }
}

@Suite struct OpenAPITests {
    @Test func everyAPIRouteIsDocumentedAndEveryDocumentedRouteExists() async throws {
        try await withTestApp { app in
            var client = APIClient(app)
            let response = try await client.send(.GET, "/api/openapi.json")
            #expect(response.status == .ok)
            let document = try response.json
            #expect(document["openapi"] as? String == "3.1.0")
            let paths = try #require(document["paths"] as? [String: [String: Any]])

            let registered = app.routes.all
                .filter { $0.path.first?.description == "api" }
                .map { route in
                    let path =
                        "/"
                        + route.path.map { component -> String in
                            if case .parameter(let name) = component { return "{\(name)}" }
                            return component.description
                        }.joined(separator: "/")
                    return "\(route.method.rawValue.lowercased()) \(path)"
                }
            #expect(!registered.isEmpty)
            for route in registered {
                let parts = route.split(separator: " ")
                #expect(paths[String(parts[1])]?[String(parts[0])] != nil, "\(route) is registered but missing from /api/openapi.json")
            }
            let documented = paths.flatMap { path, operations in operations.keys.filter { $0 != "parameters" }.map { "\($0) \(path)" } }
            #expect(Set(documented) == Set(registered), "documented operations without a route: \(Set(documented).subtracting(registered))")
        }
    }

    @Test func operationsDescribeTheirErrors() async throws {
        try await withTestApp { app in
            var client = APIClient(app)
            let paths = try #require(try await client.send(.GET, "/api/openapi.json").json["paths"] as? [String: [String: [String: Any]]])
            let createToken = try #require(paths["/api/tokens"]?["post"])
            let responses = try #require(createToken["responses"] as? [String: Any])
            #expect(Set(responses.keys).isSuperset(of: ["201", "400", "401", "403"]))
            #expect(createToken["requestBody"] != nil)
            let deleteToken = try #require(paths["/api/tokens/{id}"]?["delete"])
            #expect((deleteToken["parameters"] as? [[String: Any]])?.first?["name"] as? String == "id")
        }
    }
}
