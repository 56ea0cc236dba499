import Fluent
import Foundation
import SQLKit
import Testing
import TrainerCore
import VaporTesting

@testable import TrainerServer

@Suite struct AuthTests {
    @Test func everyCharacterOfALongPassphraseCountsAndOlderHashesStillWork() async throws {
        try await withTestApp { app in
            // bcrypt alone reads 72 bytes: these two differ only after that.
            let passphrase = String(repeating: "correct horse battery staple ", count: 3)
            let lookalike = String(passphrase.prefix(72)) + "something else entirely"
            var ada = APIClient(app)
            #expect(try await ada.signUp("ada@example.com", password: passphrase).status == .created)
            var guesser = APIClient(app)
            #expect(try await guesser.logIn("ada@example.com", password: lookalike).status == .unauthorized)
            #expect(try await guesser.logIn("ada@example.com", password: passphrase).status == .ok)

            // An account hashed before (bcrypt of the password itself) signs in as before.
            try await User(email: "old@example.com", passwordHash: try Bcrypt.hash("correct horse battery", cost: 4), isAdmin: false).create(on: app.db)
            var old = APIClient(app)
            #expect(try await old.logIn("old@example.com").status == .ok)
            #expect(try await old.logIn("old@example.com", password: "correct horse batter").status == .unauthorized)
        }
    }

    @Test func signUpStartsASessionAndTheFirstAccountIsAdmin() async throws {
        try await withTestApp { app in
            var ada = APIClient(app)
            let response = try await ada.signUp("Ada@Example.com")
            #expect(response.status == .created)
            let user = try #require(try response.json["user"] as? [String: Any])
            #expect(user["email"] as? String == "ada@example.com")
            #expect(user["isAdmin"] as? Bool == true)
            #expect(user["passwordHash"] == nil)

            let cookie = try #require(response.headers.setCookie?[SessionCookie.name])
            #expect(cookie.isHTTPOnly)
            #expect(cookie.sameSite == .lax)
            #expect(cookie.isSecure == false)
            #expect(ada.csrfToken != nil)

            let me = try await ada.send(.GET, "/api/me")
            #expect(me.status == .ok)
            #expect((try me.json["user"] as? [String: Any])?["email"] as? String == "ada@example.com")

            var bob = APIClient(app)
            let second = try await bob.signUp("bob@example.com")
            #expect((try second.json["user"] as? [String: Any])?["isAdmin"] as? Bool == false)
        }
    }

    /// Found by a black-box run: 20 concurrent sign-ups on a fresh server made 8 administrators.
    @Test func concurrentFirstSignUpsMakeExactlyOneAdministrator() async throws {
        try await withTestApp { app in
            let accounts = AccountService(now: { Date() }, bcryptCost: 4)
            let created = try await withThrowingTaskGroup(of: User.self) { group in
                for index in 0..<50 {
                    group.addTask { try await accounts.signUp(email: "user\(index)@example.com", password: "correct horse battery", inviteCode: nil, policy: .open, on: app.db) }
                }
                return try await group.reduce(into: [User]()) { $0.append($1) }
            }
            #expect(created.count == 50)
            let admins = try await User.query(on: app.db).filter(\.$isAdmin == true).all()
            #expect(admins.count == 1, "\(admins.map(\.email))")
            #expect(created.filter(\.isAdmin).map(\.email) == admins.map(\.email), "the one told it is the one stored")
        }
    }

    /// Found by a black-box run: parallel sign-ups with one invite gave 500s (`database is locked`).
    @Test func parallelSignUpsWithOneInviteGiveOneAccountAndCleanRefusals() async throws {
        try await withTestApp(environment: ["GOMODEL_SIGNUP": "invite"]) { app in
            let accounts = AccountService(now: { Date() }, bcryptCost: 4)
            let admin = try await accounts.createUser(email: "admin@example.com", password: "correct horse battery", admin: true, on: app.db)
            let (code, _) = try await accounts.createInvite(by: admin, on: app.db)
            let answers = try await withThrowingTaskGroup(of: (UInt, String?).self) { group in
                for index in 0..<10 {
                    group.addTask {
                        do {
                            _ = try await accounts.signUp(email: "user\(index)@example.com", password: "correct horse battery", inviteCode: code, policy: .invite, on: app.db)
                            return (201, nil)
                        } catch {
                            let answer = APIErrorMiddleware.apiError(for: error)
                            return (answer.status.code, answer.headers.first(name: .retryAfter))
                        }
                    }
                }
                return try await group.reduce(into: [(UInt, String?)]()) { $0.append($1) }
            }
            #expect(answers.filter { $0.0 == 201 }.count == 1, "\(answers)")
            #expect(answers.allSatisfy { [201, 403, 503].contains($0.0) }, "refused, or asked to retry; never a 500: \(answers)")
            #expect(answers.filter { $0.0 == 503 }.allSatisfy { $0.1 != nil }, "a busy database says when to retry: \(answers)")
            #expect(try await User.query(on: app.db).count() == 2)
        }
    }

    /// SQLite keeps readers and the writer apart (write-ahead log).
    @Test func sqliteRunsWithAWriteAheadLog() async throws {
        try await withTestApp { app in
            guard let sql = app.db as? any SQLDatabase, sql.dialect.name == "sqlite" else { return }
            let mode = try await sql.raw("PRAGMA journal_mode").first()?.decode(column: "journal_mode", as: String.self)
            #expect(mode == "wal")
        }
    }

    @Test func passwordsAreStoredAsBcryptHashes() async throws {
        try await withTestApp { app in
            var ada = APIClient(app)
            try await ada.signUp("ada@example.com", password: "correct horse battery")
            let user = try #require(try await User.query(on: app.db).first())
            #expect(user.passwordHash.hasPrefix(AccountService.prehashedPrefix + "$2b$"), "bcrypt of the password's SHA-256")
            #expect(!user.passwordHash.contains("correct horse"))
        }
    }

    @Test func sessionCookiesAreSecureBehindAnHTTPSPublicURL() async throws {
        try await withTestApp(environment: ["GOMODEL_PUBLIC_URL": "https://trainer.example.com"]) { app in
            var ada = APIClient(app)
            let response = try await ada.signUp("ada@example.com")
            #expect(response.headers.setCookie?[SessionCookie.name]?.isSecure == true)
        }
    }

    @Test func signUpRefusesBadInput() async throws {
        try await withTestApp { app in
            var client = APIClient(app)
            try await client.signUp("ada@example.com")
            var other = APIClient(app)
            let taken = try await other.signUp("ADA@example.com")
            #expect(taken.status == .conflict)
            #expect(taken.errorCode == "email_taken")
            let invalid = try await other.signUp("not-an-address")
            #expect(invalid.status == .badRequest)
            #expect(invalid.errorCode == "invalid_email")
            let weak = try await other.signUp("bob@example.com", password: "short")
            #expect(weak.status == .badRequest)
            #expect(weak.errorCode == "weak_password")
            #expect(weak.errorMessage?.contains("at least 10") == true)
            #expect(other.sessionCookie == nil)
        }
    }

    @Test func closedSignUpRefusesEveryone() async throws {
        try await withTestApp(environment: ["GOMODEL_SIGNUP": "closed"]) { app in
            var client = APIClient(app)
            let response = try await client.signUp("ada@example.com")
            #expect(response.status == .forbidden)
            #expect(response.errorCode == "signup_closed")
            #expect(response.errorMessage?.contains("gomodel users create") == true)
            #expect(try await User.query(on: app.db).count() == 0)
        }
    }

    @Test func inviteSignUpNeedsAnUnusedInviteFromAnAdmin() async throws {
        try await withTestApp(environment: ["GOMODEL_SIGNUP": "invite"]) { app in
            _ = try await Administration(app: app, dependencies: .init(now: { Date() }, bcryptCost: 4))
                .createUser(email: "admin@example.com", password: "correct horse battery", admin: true)
            var admin = APIClient(app)
            try await admin.logIn("admin@example.com")
            let invite = try await admin.send(.POST, "/api/invites")
            #expect(invite.status == .created)
            let code = try #require(try invite.json["code"] as? String)

            var bob = APIClient(app)
            #expect(try await bob.signUp("bob@example.com").errorCode == "invite_required")
            #expect(try await bob.signUp("bob@example.com", inviteCode: "inv_wrong").errorCode == "invalid_invite")
            let accepted = try await bob.signUp("bob@example.com", inviteCode: code)
            #expect(accepted.status == .created)

            var carol = APIClient(app)
            let reused = try await carol.signUp("carol@example.com", inviteCode: code)
            #expect(reused.status == .forbidden)
            #expect(reused.errorCode == "invalid_invite")

            let notAdmin = try await bob.send(.POST, "/api/invites")
            #expect(notAdmin.status == .forbidden)
            #expect(notAdmin.errorCode == "admin_only")
        }
    }

    @Test func expiredInvitesAreRefused() async throws {
        let clock = TestClock()
        try await withTestApp(environment: ["GOMODEL_SIGNUP": "invite"], clock: clock) { app in
            _ = try await Administration(app: app, dependencies: .init(now: { clock.now }, bcryptCost: 4))
                .createUser(email: "admin@example.com", password: "correct horse battery", admin: true)
            var admin = APIClient(app)
            try await admin.logIn("admin@example.com")
            let code = try #require(try await admin.send(.POST, "/api/invites").json["code"] as? String)
            clock.advance(by: 8 * 24 * 3600)
            var bob = APIClient(app)
            #expect(try await bob.signUp("bob@example.com", inviteCode: code).errorCode == "invalid_invite")
        }
    }

    @Test func logInWithTheRightAndTheWrongPassword() async throws {
        try await withTestApp { app in
            var ada = APIClient(app)
            try await ada.signUp("ada@example.com")

            var browser = APIClient(app)
            let wrong = try await browser.logIn("ada@example.com", password: "wrong password!")
            #expect(wrong.status == .unauthorized)
            #expect(wrong.errorCode == "unauthorized")
            let unknown = try await browser.logIn("nobody@example.com", password: "wrong password!")
            #expect(unknown.status == .unauthorized)
            #expect(unknown.errorMessage == wrong.errorMessage, "unknown accounts must look like wrong passwords")
            #expect(browser.sessionCookie == nil)

            let right = try await browser.logIn("ADA@example.com")
            #expect(right.status == .ok)
            #expect(browser.sessionCookie != nil)
            #expect(try await browser.send(.GET, "/api/me").status == .ok)
        }
    }

    @Test func logOutEndsTheSession() async throws {
        try await withTestApp { app in
            var ada = APIClient(app)
            try await ada.signUp("ada@example.com")
            let oldCookie = try #require(ada.sessionCookie)

            let withoutCSRF = try await ada.send(.POST, "/api/auth/logout", sendCSRF: false)
            #expect(withoutCSRF.status == .forbidden)
            #expect(withoutCSRF.errorCode == "csrf_failed")

            let response = try await ada.send(.POST, "/api/auth/logout")
            #expect(response.status == .noContent)
            #expect(ada.sessionCookie == nil, "the cookie is cleared")
            #expect(try await BrowserSession.query(on: app.db).count() == 0)

            ada.sessionCookie = oldCookie
            let me = try await ada.send(.GET, "/api/me")
            #expect(me.status == .unauthorized)
        }
    }

    @Test func expiredSessionsAreRefusedAndCleared() async throws {
        let clock = TestClock()
        try await withTestApp(clock: clock) { app in
            var ada = APIClient(app)
            try await ada.signUp("ada@example.com")
            clock.advance(by: 13 * 24 * 3600)
            #expect(try await ada.send(.GET, "/api/me").status == .ok)
            clock.advance(by: 2 * 24 * 3600)
            let expired = try await ada.send(.GET, "/api/me")
            #expect(expired.status == .unauthorized)
            #expect(ada.sessionCookie == nil, "a stale cookie is cleared")
            #expect(try await BrowserSession.query(on: app.db).count() == 0)
        }
    }

    @Test func anonymousCallersAreRefused() async throws {
        try await withTestApp { app in
            var anonymous = APIClient(app)
            let me = try await anonymous.send(.GET, "/api/me")
            #expect(me.status == .unauthorized)
            #expect(me.errorMessage?.contains("Authorization: Bearer") == true)
            anonymous.sessionCookie = "forged-cookie-value"
            #expect(try await anonymous.send(.GET, "/api/me").status == .unauthorized)
            #expect(try await anonymous.send(.POST, "/api/tokens", body: #"{"name": "x"}"#).status == .unauthorized)
        }
    }
}
