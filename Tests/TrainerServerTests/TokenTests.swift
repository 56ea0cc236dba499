import Fluent
import Foundation
import Testing
import VaporTesting

@testable import TrainerServer

@Suite struct TokenTests {
    @Test func aTokenIsShownOnceAndWorksAsBearer() async throws {
        try await withTestApp { app in
            var ada = APIClient(app)
            try await ada.signUp("ada@example.com")
            let value = try await ada.createToken(name: "laptop")
            #expect(value.hasPrefix("gm_"))

            let stored = try #require(try await APIToken.query(on: app.db).first())
            #expect(stored.tokenHash != value)
            #expect(stored.tokenHash.count == 64, "only the SHA-256 is stored")

            let list = try await ada.send(.GET, "/api/tokens")
            let tokens = try #require(try list.json["tokens"] as? [[String: Any]])
            #expect(tokens.count == 1)
            #expect(tokens[0]["name"] as? String == "laptop")
            #expect(tokens[0]["token"] == nil)
            #expect(!list.body.string.contains(value))

            var cli = APIClient(app)
            cli.bearerToken = value
            let me = try await cli.send(.GET, "/api/me")
            #expect(me.status == .ok)
            #expect((try me.json["user"] as? [String: Any])?["email"] as? String == "ada@example.com")
            #expect(try me.json["csrfToken"] == nil, "bearer callers need no CSRF token")
            #expect(try await APIToken.query(on: app.db).first()?.lastUsedAt != nil)
        }
    }

    @Test func unknownTokensAreRefusedEvenWithAValidCookie() async throws {
        try await withTestApp { app in
            var ada = APIClient(app)
            try await ada.signUp("ada@example.com")
            ada.bearerToken = "gm_not-a-real-token"
            let response = try await ada.send(.GET, "/api/me")
            #expect(response.status == .unauthorized)
            #expect(response.errorMessage?.contains("unknown or has been revoked") == true)

            var basic = APIClient(app)
            let wrongScheme = try await basic.send(.GET, "/api/me", headers: ["Authorization": "Basic YWRhOnB3"])
            #expect(wrongScheme.status == .unauthorized)
        }
    }

    @Test func aRevokedTokenStopsWorking() async throws {
        try await withTestApp { app in
            var ada = APIClient(app)
            try await ada.signUp("ada@example.com")
            let value = try await ada.createToken()
            let id = try #require(try await ada.send(.GET, "/api/tokens").json["tokens"] as? [[String: Any]])[0]["id"] as? String

            var cli = APIClient(app)
            cli.bearerToken = value
            #expect(try await cli.send(.GET, "/api/me").status == .ok)
            #expect(try await ada.send(.DELETE, "/api/tokens/\(try #require(id))").status == .noContent)
            let after = try await cli.send(.GET, "/api/me")
            #expect(after.status == .unauthorized)
            #expect(try await ada.send(.DELETE, "/api/tokens/\(id!)").status == .notFound)
        }
    }

    @Test func tokensCanRevokeTokensWithoutCSRF() async throws {
        try await withTestApp { app in
            var ada = APIClient(app)
            try await ada.signUp("ada@example.com")
            var cli = APIClient(app)
            cli.bearerToken = try await ada.createToken()
            let created = try await cli.send(.POST, "/api/tokens", body: #"{"name": "second"}"#)
            #expect(created.status == .created)
            let id = try #require(try created.json["id"] as? String)
            #expect(try await cli.send(.DELETE, "/api/tokens/\(id)").status == .noContent)
        }
    }

    @Test func someoneElsesTokenLooksMissing() async throws {
        try await withTestApp { app in
            var ada = APIClient(app)
            try await ada.signUp("ada@example.com")
            _ = try await ada.createToken()
            let adaTokenID = try #require(try await APIToken.query(on: app.db).first()?.id)

            var bob = APIClient(app)
            try await bob.signUp("bob@example.com")
            let response = try await bob.send(.DELETE, "/api/tokens/\(adaTokenID.uuidString)")
            #expect(response.status == .notFound)
            #expect(try await bob.send(.DELETE, "/api/tokens/not-a-uuid").status == .notFound)
            #expect(try await APIToken.query(on: app.db).count() == 1)
            let bobsList = try await bob.send(.GET, "/api/tokens")
            #expect((try bobsList.json["tokens"] as? [Any])?.isEmpty == true)
        }
    }

    @Test func tokenNamesAreChecked() async throws {
        try await withTestApp { app in
            var ada = APIClient(app)
            try await ada.signUp("ada@example.com")
            let blank = try await ada.send(.POST, "/api/tokens", body: #"{"name": "   "}"#)
            #expect(blank.status == .badRequest)
            #expect(blank.errorCode == "invalid_name")
        }
    }
}
