import Crypto
import Fluent
import FluentSQL
import Foundation
import NIOPosix
import TrainerCore
import Vapor

/// Account rules that need the database: sign-up, password checks with throttling, sessions,
/// API tokens and invites. Shared by the HTTP API and the CLI so both follow the same rules.
struct AccountService: Sendable {
    let now: @Sendable () -> Date
    let bcryptCost: Int
    let sessionLifetime: TimeInterval = 14 * 24 * 3600
    let inviteLifetime: TimeInterval = 7 * 24 * 3600
    let throttles = LoginThrottleStore()

    /// What the account rules refuse; `description` says what to do (HTTPMapping gives each its status).
    enum Failure: Error, Equatable, CustomStringConvertible {
        case invalidEmail(String)
        case weakPassword(String)
        case emailTaken
        case signupClosed
        case inviteRequired
        case invalidInvite(used: Bool)
        case tooManySignIns(retryAfter: TimeInterval)
        case wrongCredentials
        case noAccount(String)
        case invalidTokenName
        case noSuchToken

        var description: String {
            switch self {
            case .invalidEmail(let text): "'\(text)' is not an e-mail address."
            case .weakPassword(let problem): problem
            case .emailTaken: "An account with this e-mail address exists already; log in instead."
            case .signupClosed: "Sign-up is closed on this server; ask an administrator to create your account (gomodel users create)."
            case .inviteRequired: "Sign-up on this server needs an invite code; ask an administrator for one."
            case .invalidInvite(let used):
                used ? "This invite code has been used; ask an administrator for a new one." : "This invite code is unknown or expired; ask an administrator for a new one."
            case .tooManySignIns(let wait):
                "Too many failed sign-ins; try again in \(Int(wait.rounded(.up) / 60) + 1) minutes. "
                    + "A browser that has signed in to this account before is not held back, and an administrator can lift the lock (`gomodel users unlock --email …`)."
            case .wrongCredentials: "The e-mail address or password is wrong."
            case .noAccount(let email): "No account has the e-mail address \(email)."
            case .invalidTokenName: "Give the token a name of 1 to 100 visible characters, e.g. 'laptop CLI'."
            case .noSuchToken: "No token with this id; GET /api/tokens lists yours."
            }
        }
    }

    // MARK: Users

    /// Creates an account. `admin: nil` makes the very first account an admin: among accounts made
    /// while there was none, the one that claims the single `first_administrator` row (a primary
    /// key, so concurrent sign-ups on a fresh server make exactly one).
    func createUser(email rawEmail: String, password: String, admin: Bool?, on db: any Database) async throws -> User {
        guard let email = AccountRules.normalizedEmail(rawEmail) else {
            throw Failure.invalidEmail(rawEmail)
        }
        if let problem = AccountRules.passwordProblem(password) {
            throw Failure.weakPassword(problem)
        }
        if try await User.query(on: db).filter(\.$email == email).first() != nil {
            throw Failure.emailTaken
        }
        var mayBeFirst = false
        if admin == nil { mayBeFirst = try await User.query(on: db).count() == 0 }
        let user = User(email: email, passwordHash: try await hash(password), isAdmin: admin ?? false)
        try await user.create(on: db)
        if mayBeFirst {
            let claimed = try await db.sql().raw(
                """
                INSERT INTO first_administrator (id, user_id) VALUES (1, \(bind: try user.requireID())) ON CONFLICT DO NOTHING RETURNING id
                """
            ).all()
            if claimed.count == 1 {
                user.isAdmin = true
                try await user.save(on: db)
            }
        }
        return user
    }

    /// Sign-up through the API, under the configured policy.
    func signUp(email: String, password: String, inviteCode: String?, policy: SignupPolicy, on db: any Database) async throws -> User {
        switch policy {
        case .open:
            return try await createUser(email: email, password: password, admin: nil, on: db)
        case .closed:
            throw Failure.signupClosed
        case .invite:
            guard let inviteCode, !inviteCode.isEmpty else {
                throw Failure.inviteRequired
            }
            return try await db.transaction { db in
                try await redeemInvite(inviteCode, on: db)
                return try await createUser(email: email, password: password, admin: nil, on: db)
            }
        }
    }

    /// Checks the password, throttled so that guessing is slow but cannot lock the owner out:
    ///
    /// - from a device that has signed in to this account before (`knownDevice`, its cookie), only
    ///   that device's own failures count;
    /// - otherwise per account and address (others' guesses from elsewhere do not lock this
    ///   address out), per account from everywhere (a wide guessing campaign), and per address.
    ///
    /// Unknown addresses and wrong passwords get the same answer and take the same time.
    func logIn(email rawEmail: String, password: String, clientAddress: String, knownDevice: String?, on db: any Database) async throws -> User {
        // Anything that is not an address still counts against the account key, capped in length.
        let email = AccountRules.normalizedEmail(rawEmail) ?? String(rawEmail.lowercased().prefix(254))
        let subjects = LoginThrottle.Subjects(email: email, address: clientAddress)
        let time = now()
        let device = try await self.knownDevice(knownDevice, email: email, on: db)
        let counted =
            device.map { [("device:" + $0.tokenHash, LoginThrottle.perKnownDevice)] }
            ?? [(subjects.accountFromAddress, .perAccountFromAddress), (subjects.account, .perAccount), (subjects.address, .perAddress)]
        var lockedUntil: [Date] = []
        for (subject, throttle) in counted {
            if let until = try await throttles.countAttempt(subject, throttle: throttle, now: time, on: db) { lockedUntil.append(until) }
        }
        if let until = lockedUntil.max() {
            let wait = until.timeIntervalSince(time)
            throw Failure.tooManySignIns(retryAfter: wait)
        }

        let user = try await User.query(on: db).filter(\.$email == email).first()
        if let user, try await verify(password, hash: user.passwordHash) {
            try await throttles.succeeded(subjects, knownDevice: device.map { "device:" + $0.tokenHash }, on: db)
            return user
        }
        if user == nil { _ = try? await verify(password, hash: dummyHash) }
        throw Failure.wrongCredentials
    }

    /// The known device whose cookie this is, if it belongs to the account with this address.
    private func knownDevice(_ cookieValue: String?, email: String, on db: any Database) async throws -> KnownDevice? {
        guard let cookieValue, !cookieValue.isEmpty,
            let device = try await KnownDevice.query(on: db).filter(\.$tokenHash == OpaqueToken.digest(cookieValue)).with(\.$user).first(),
            device.user.email == email
        else { return nil }
        return device
    }

    /// Remembers the browser that just signed in to `user` (unless it already is that account's
    /// known device); returns the cookie value to give it.
    func rememberDevice(_ presented: String?, for user: User, on db: any Database) async throws -> String? {
        if try await knownDevice(presented, email: user.email, on: db) != nil { return nil }
        let value = OpaqueToken.generate()
        try await KnownDevice(userID: try user.requireID(), tokenHash: OpaqueToken.digest(value), createdAt: now()).create(on: db)
        return value
    }

    /// Lifts every sign-in lock on the account with this address (an administrator's reset).
    func unlock(email rawEmail: String, on db: any Database) async throws {
        guard let email = AccountRules.normalizedEmail(rawEmail), try await User.query(on: db).filter(\.$email == email).first() != nil else {
            throw Failure.noAccount(rawEmail)
        }
        try await throttles.clearAccount(LoginThrottle.Subjects(email: email, address: ""), on: db)
    }

    // MARK: Sessions

    /// Starts a browser session and returns the cookie value (shown only here).
    func startSession(for user: User, on db: any Database) async throws -> (cookieValue: String, session: BrowserSession) {
        let cookieValue = OpaqueToken.generate()
        let time = now()
        let session = BrowserSession(
            userID: try user.requireID(), tokenHash: OpaqueToken.digest(cookieValue), csrfToken: OpaqueToken.generate(),
            createdAt: time, expiresAt: time.addingTimeInterval(sessionLifetime)
        )
        try await session.create(on: db)
        return (cookieValue, session)
    }

    func principal(forSessionCookie cookieValue: String, on db: any Database) async throws -> Principal? {
        guard
            let session = try await BrowserSession.query(on: db)
                .filter(\.$tokenHash == OpaqueToken.digest(cookieValue)).with(\.$user).first()
        else { return nil }
        guard session.expiresAt > now() else {
            try await session.delete(on: db)
            return nil
        }
        return Principal(user: session.user, credential: .session(session))
    }

    // MARK: API tokens

    /// Creates a token and returns its value (shown only here).
    func issueToken(for user: User, name: String, on db: any Database) async throws -> (value: String, token: APIToken) {
        guard let trimmed = VisibleName.checked(name) else {
            throw Failure.invalidTokenName
        }
        let value = OpaqueToken.generate(prefix: "gm_")
        let token = APIToken(
            userID: try user.requireID(), name: trimmed, tokenHash: OpaqueToken.digest(value),
            hint: String(value.prefix(8)), createdAt: now()
        )
        try await token.create(on: db)
        return (value, token)
    }

    /// Deletes one of the user's tokens; someone else's answers exactly like a missing one.
    func deleteToken(_ id: UUID?, userID: UUID, on db: any Database) async throws {
        guard let id, let token = try await APIToken.query(on: db).filter(\.$id == id).filter(\.$user.$id == userID).first() else {
            throw Failure.noSuchToken
        }
        try await token.delete(on: db)
    }

    func principal(forBearer value: String, on db: any Database) async throws -> Principal? {
        guard
            let token = try await APIToken.query(on: db)
                .filter(\.$tokenHash == OpaqueToken.digest(value)).with(\.$user).first()
        else { return nil }
        // Record use at most once a minute, not on every request.
        let time = now()
        if token.lastUsedAt.map({ time.timeIntervalSince($0) > 60 }) ?? true {
            token.lastUsedAt = time
            try await token.save(on: db)
        }
        return Principal(user: token.user, credential: .token(token))
    }

    // MARK: Invites

    func createInvite(by admin: User, on db: any Database) async throws -> (code: String, invite: Invite) {
        let code = OpaqueToken.generate(prefix: "inv_")
        let time = now()
        let invite = Invite(codeHash: OpaqueToken.digest(code), creatorID: try admin.requireID(), createdAt: time, expiresAt: time.addingTimeInterval(inviteLifetime))
        try await invite.create(on: db)
        return (code, invite)
    }

    /// A conditional update first, so two sign-ups racing for one invite cannot both win, and
    /// the transaction starts by writing: on SQLite, one that read first and then tried to write
    /// while another wrote would fail with "database is locked" instead of waiting its turn.
    private func redeemInvite(_ code: String, on db: any Database) async throws {
        let time = now()
        let claimed = try await db.sql().update(Invite.schema)
            .set("used_at", to: time)
            .where("code_hash", .equal, OpaqueToken.digest(code))
            .where("used_at", .is, SQLLiteral.null)
            .where("expires_at", .greaterThan, time)
            .returning("id")
            .all()
        guard claimed.isEmpty else { return }
        let invite = try await Invite.query(on: db).filter(\.$codeHash == OpaqueToken.digest(code)).first()
        throw Failure.invalidInvite(used: invite?.usedAt != nil)
    }

    // MARK: Passwords

    /// bcrypt reads at most 72 bytes of its input, so it is given the password's SHA-256 (base64,
    /// 44 bytes) instead: every character of a long passphrase counts. Such hashes carry this
    /// prefix; older ones (passwords of at most 72 bytes, hashed as they were) are checked as made.
    static let prehashedPrefix = "sha256:"

    static func prehashed(_ password: String) -> String {
        Data(SHA256.hash(data: Data(password.utf8))).base64EncodedString()
    }

    /// bcrypt is deliberately slow: run it off the event loop.
    private func hash(_ password: String) async throws -> String {
        let cost = bcryptCost
        return try await NIOThreadPool.singleton.runIfActive { try Self.prehashedPrefix + Bcrypt.hash(Self.prehashed(password), cost: cost) }
    }

    private func verify(_ password: String, hash: String) async throws -> Bool {
        try await NIOThreadPool.singleton.runIfActive {
            guard hash.hasPrefix(Self.prehashedPrefix) else { return try Bcrypt.verify(password, created: hash) }
            return try Bcrypt.verify(Self.prehashed(password), created: String(hash.dropFirst(Self.prehashedPrefix.count)))
        }
    }

    /// Checked for unknown accounts, so they take as long as wrong passwords.
    private let dummyHash: String

    init(now: @escaping @Sendable () -> Date, bcryptCost: Int) {
        self.now = now
        self.bcryptCost = bcryptCost
        self.dummyHash = Self.prehashedPrefix + ((try? Bcrypt.hash(Self.prehashed(OpaqueToken.generate()), cost: bcryptCost)) ?? "")
    }
}
