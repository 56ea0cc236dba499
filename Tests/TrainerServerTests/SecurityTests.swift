import Fluent
import Foundation
import Testing
import TrainerCore
import VaporTesting

@testable import TrainerServer

@Suite struct CSRFTests {
    @Test func cookieRequestsThatChangeDataNeedTheSessionsToken() async throws {
        try await withTestApp { app in
            var ada = APIClient(app)
            try await ada.signUp("ada@example.com")
            let missing = try await ada.send(.POST, "/api/tokens", body: #"{"name": "x"}"#, sendCSRF: false)
            #expect(missing.status == .forbidden)
            #expect(missing.errorCode == "csrf_failed")
            let wrong = try await ada.send(.POST, "/api/tokens", body: #"{"name": "x"}"#, sendCSRF: false, headers: ["X-CSRF-Token": "guess"])
            #expect(wrong.status == .forbidden)
            #expect(try await APIToken.query(on: app.db).count() == 0)

            // Another session's token does not fit this session.
            var other = APIClient(app)
            try await other.logIn("ada@example.com")
            #expect(other.csrfToken != ada.csrfToken)
            let foreign = try await ada.send(.POST, "/api/tokens", body: #"{"name": "x"}"#, sendCSRF: false, headers: ["X-CSRF-Token": other.csrfToken!])
            #expect(foreign.status == .forbidden)

            #expect(try await ada.send(.POST, "/api/tokens", body: #"{"name": "x"}"#).status == .created)
            #expect(try await ada.send(.GET, "/api/tokens", sendCSRF: false).status == .ok, "reads need no token")
        }
    }

    @Test func formEncodedBodiesAreRefused() async throws {
        // A cross-site HTML form can post urlencoded bodies without a preflight; JSON it cannot.
        try await withTestApp { app in
            var client = APIClient(app)
            let response = try await client.send(
                .POST, "/api/auth/signup", body: "email=ada%40example.com&password=correct+horse+battery", contentType: "application/x-www-form-urlencoded")
            #expect(response.status == .unsupportedMediaType)
            #expect(response.errorCode == "unsupported_media_type")
        }
    }
}

@Suite struct LoginThrottlingTests {
    @Test func fiveWrongPasswordsLockTheGuesserNotTheOwner() async throws {
        let clock = TestClock()
        try await withTestApp(environment: ["GOMODEL_TRUST_PROXY": "true"], clock: clock) { app in
            var ada = APIClient(app)
            ada.forwardedFor = "203.0.113.5"
            try await ada.signUp("ada@example.com")
            #expect(ada.deviceCookie != nil, "signing up makes the browser a known device")
            var attacker = APIClient(app)
            attacker.forwardedFor = "198.51.100.7"
            for _ in 0..<5 {
                #expect(try await attacker.logIn("ada@example.com", password: "guess guess guess").status == .unauthorized)
            }
            let locked = try await attacker.logIn("ada@example.com")
            #expect(locked.status == .tooManyRequests)
            #expect(locked.errorCode == "too_many_attempts")
            #expect(locked.body.string.contains("gomodel users unlock"), "the message says how to lift it")
            let retryAfter = try #require(locked.headers.first(name: "Retry-After").flatMap(Int.init))
            #expect((1...900).contains(retryAfter))
            #expect(attacker.sessionCookie == nil)

            // The owner is not locked out: not on a new browser elsewhere, nor on a known one at
            // the guesser's very address (five wrong passwords used to lock the account for all).
            var laptop = APIClient(app)
            laptop.forwardedFor = "192.0.2.44"
            #expect(try await laptop.logIn("ada@example.com").status == .ok)
            ada.forwardedFor = attacker.forwardedFor
            #expect(try await ada.logIn("ada@example.com").status == .ok)
            // A stranger's browser at the guesser's address stays locked until the lock ends.
            var sameAddress = APIClient(app)
            sameAddress.forwardedFor = attacker.forwardedFor
            #expect(try await sameAddress.logIn("ada@example.com").status == .tooManyRequests)
            clock.advance(by: 15 * 60 + 1)
            #expect(try await attacker.logIn("ada@example.com").status == .ok)
        }
    }

    @Test func guessesFromManyAddressesLockOnlyUnknownBrowsersAndAnAdministratorLiftsIt() async throws {
        try await withTestApp(environment: ["GOMODEL_TRUST_PROXY": "true"]) { app in
            var ada = APIClient(app)
            try await ada.signUp("ada@example.com")
            for index in 0..<LoginThrottle.perAccount.maximumFailures {
                var attacker = APIClient(app)
                attacker.forwardedFor = "198.51.100.\(index)"
                #expect(try await attacker.logIn("ada@example.com", password: "guess guess guess").status == .unauthorized)
            }
            var stranger = APIClient(app)
            stranger.forwardedFor = "192.0.2.44"
            #expect(try await stranger.logIn("ada@example.com").status == .tooManyRequests, "the whole account is locked for unknown browsers")
            #expect(try await ada.logIn("ada@example.com").status == .ok, "but not for the owner's known browser")

            // A known device's own wrong passwords still count, on their own.
            for _ in 0..<LoginThrottle.perKnownDevice.maximumFailures {
                #expect(try await ada.logIn("ada@example.com", password: "typo typo typo").status == .unauthorized)
            }
            #expect(try await ada.logIn("ada@example.com").status == .tooManyRequests)

            try await Administration(app: app).unlock(email: "Ada@example.com")
            #expect(try await stranger.logIn("ada@example.com").status == .ok)
            await #expect(throws: AccountService.Failure.noAccount("nobody@example.com")) { try await Administration(app: app).unlock(email: "nobody@example.com") }
        }
    }

    @Test func parallelGuessesAreAllCounted() async throws {
        try await withTestApp { app in
            var ada = APIClient(app)
            try await ada.signUp("ada@example.com")
            // Twenty guesses at once: each is counted before its password is checked, so at most
            // five are checked and the account ends up locked.
            let statuses = try await withThrowingTaskGroup(of: HTTPResponseStatus.self) { group in
                for _ in 0..<20 {
                    group.addTask {
                        var attacker = APIClient(app)
                        return try await attacker.logIn("ada@example.com", password: "guess guess guess").status
                    }
                }
                return try await group.reduce(into: [HTTPResponseStatus]()) { $0.append($1) }
            }
            #expect(statuses.filter { $0 == .unauthorized }.count <= 5)
            #expect(statuses.filter { $0 == .tooManyRequests }.count >= 15)
            #expect(!statuses.contains(.internalServerError))
            var owner = APIClient(app)
            #expect(try await owner.logIn("ada@example.com").status == .tooManyRequests)
        }
    }

    @Test func aSuccessfulLoginResetsTheAccountCount() async throws {
        try await withTestApp { app in
            var ada = APIClient(app)
            try await ada.signUp("ada@example.com")
            ada.deviceCookie = nil  // as a new browser, counted per account and address
            for _ in 0..<4 { try await ada.logIn("ada@example.com", password: "typo typo typo") }
            #expect(try await ada.logIn("ada@example.com").status == .ok)
            ada.deviceCookie = nil
            for _ in 0..<4 { try await ada.logIn("ada@example.com", password: "typo typo typo") }
            #expect(try await ada.logIn("ada@example.com").status == .ok)
        }
    }

    @Test func oneAddressGuessingManyAccountsIsLockedOut() async throws {
        try await withTestApp(environment: ["GOMODEL_TRUST_PROXY": "true"]) { app in
            var ada = APIClient(app)
            try await ada.signUp("ada@example.com")
            var attacker = APIClient(app)
            attacker.forwardedFor = "198.51.100.7"
            for index in 0..<20 {
                #expect(try await attacker.logIn("user\(index)@example.com", password: "guess guess guess").status == .unauthorized)
            }
            #expect(try await attacker.logIn("ada@example.com").status == .tooManyRequests)

            // Someone else, behind the same proxy but at another address, is not affected.
            var neighbour = APIClient(app)
            neighbour.forwardedFor = "10.0.0.1, 203.0.113.9"
            #expect(try await neighbour.logIn("ada@example.com").status == .ok)
        }
    }

    @Test func forwardedForIsIgnoredUnlessTrusted() async throws {
        try await withTestApp { app in
            var ada = APIClient(app)
            try await ada.signUp("ada@example.com")
            var attacker = APIClient(app)
            for index in 0..<20 {
                // A fresh spoofed address each time must not dodge the per-address count.
                attacker.forwardedFor = "192.0.2.\(index)"
                try await attacker.logIn("user\(index)@example.com", password: "guess guess guess")
            }
            attacker.forwardedFor = "192.0.2.200"
            #expect(try await attacker.logIn("ada@example.com").status == .tooManyRequests)
        }
    }
}

@Suite struct ErrorTests {
    @Test func malformedJSONIsABadRequestNotAServerError() async throws {
        try await withTestApp { app in
            var client = APIClient(app)
            let cases: [(String, String)] = [
                ("{bad", "The request body is not valid JSON."),
                ("[1, 2]", "The field '' must be of a different type."),
                (#"{"email": "ada@example.com"}"#, "The field 'password' is required."),
                (#"{"email": 42, "password": "correct horse battery"}"#, "The field 'email' must be a string."),
                ("", "The request body is empty; send a JSON object."),
            ]
            for (body, message) in cases {
                let response = try await client.send(.POST, "/api/auth/signup", body: body)
                #expect(response.status == .badRequest, "\(body)")
                #expect(response.errorCode == "invalid_json", "\(body)")
                if body != "[1, 2]" { #expect(response.errorMessage == message, "\(body)") }
            }
            let noContentType = try await client.send(.POST, "/api/auth/login", body: "{}", contentType: nil)
            #expect(noContentType.status == .unsupportedMediaType)
        }
    }

    @Test func unknownRoutesAndMethodsAnswerInJSON() async throws {
        try await withTestApp { app in
            var client = APIClient(app)
            let missing = try await client.send(.GET, "/api/nothing-here")
            #expect(missing.status == .notFound)
            #expect(missing.errorCode == "not_found")
            #expect(missing.headers.contentType == .json)

            // A documented path asked with a method it lacks: 405 with Allow, not 404.
            for (method, path, allow) in [
                (HTTPMethod.TRACE, "/api/me", "GET, HEAD"), (.GET, "/api/auth/login", "POST"),
                (.PUT, "/api/tokens", "GET, POST, HEAD"), (.POST, "/api/datasets/\(UUID())", "DELETE, GET, PATCH, HEAD"),
            ] {
                let wrong = try await client.send(method, path)
                #expect(wrong.status == .methodNotAllowed && wrong.errorCode == "method_not_allowed", "\(method) \(path): \(wrong.status)")
                #expect(wrong.headers.first(name: "Allow") == allow, "\(method) \(path)")
            }
            let options = try await client.send(.OPTIONS, "/api/tokens")
            #expect(options.status == .noContent && options.headers.first(name: "Allow") == "GET, POST, HEAD")
        }
    }

    @Test func oversizedHeadersAreAnswered431() async throws {
        try await withTestApp { app in
            let running = try await app.testing(method: .running(port: 0))
            let cookie = "gomodel_session=" + String(repeating: "c", count: 40_000)
            let response = try await running.sendRequest(.GET, "/api/me", headers: ["Cookie": cookie])
            #expect(response.status == .requestHeaderFieldsTooLarge && response.errorCode == "headers_too_large", "\(response.status)")
            #expect(response.body.string.contains("clear this site's cookies"))
            #expect(try await running.sendRequest(.GET, "/healthz", headers: ["Cookie": String(cookie.prefix(8_000))]).status == .ok)
        }
    }

    @Test func oversizedBodiesAreRefused() async throws {
        try await withTestApp { app in
            // Through a real socket: the limit applies while the body streams in.
            let huge = #"{"email": "ada@example.com", "password": ""# + String(repeating: "x", count: 2_000_000) + #""}"#
            let response = try await app.testing(method: .running(port: 0))
                .sendRequest(.POST, "/api/auth/signup", headers: ["Content-Type": "application/json"], body: ByteBuffer(string: huge))
            #expect(response.status == .payloadTooLarge)
            #expect(response.errorCode == "payload_too_large")
        }
    }
}
