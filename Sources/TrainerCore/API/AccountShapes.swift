import Foundation

extension API {
    public struct User: Codable, Sendable {
        public let id: UUID
        public let email: String
        public let isAdmin: Bool
        public let createdAt: Date?

        public init(id: UUID, email: String, isAdmin: Bool, createdAt: Date?) {
            self.id = id
            self.email = email
            self.isAdmin = isAdmin
            self.createdAt = createdAt
        }
    }

    /// The signed-in user (`GET /api/me`, sign-up, login), and for cookie sessions the token to
    /// send as `X-CSRF-Token`.
    public struct Session: Codable, Sendable {
        public let user: User
        public let csrfToken: String?

        public init(user: User, csrfToken: String?) {
            self.user = user
            self.csrfToken = csrfToken
        }
    }
}

extension API {
    /// `POST /api/auth/signup`.
    public struct Signup: Codable, Sendable {
        public let email: String
        public let password: String
        public let inviteCode: String?

        public init(email: String, password: String, inviteCode: String?) {
            self.email = email
            self.password = password
            self.inviteCode = inviteCode
        }
    }

    /// `POST /api/auth/login`.
    public struct Login: Codable, Sendable {
        public let email: String
        public let password: String

        public init(email: String, password: String) {
            self.email = email
            self.password = password
        }
    }

    /// `POST /api/tokens` and `POST /api/worker-keys`: what to call the new credential.
    public struct NamedCreate: Codable, Sendable {
        public let name: String

        public init(name: String) { self.name = name }
    }

    public struct Token: Codable, Sendable {
        public let id: UUID
        public let name: String
        /// The value's first characters, to tell tokens apart.
        public let hint: String
        public let createdAt: Date
        public let lastUsedAt: Date?
        /// Present only in the answer that created it.
        public let token: String?

        public init(id: UUID, name: String, hint: String, createdAt: Date, lastUsedAt: Date?, token: String?) {
            self.id = id
            self.name = name
            self.hint = hint
            self.createdAt = createdAt
            self.lastUsedAt = lastUsedAt
            self.token = token
        }
    }

    public struct TokenList: Codable, Sendable {
        public let tokens: [Token]

        public init(tokens: [Token]) { self.tokens = tokens }
    }

    /// A single-use sign-up code (`POST /api/invites`).
    public struct Invite: Codable, Sendable {
        public let code: String
        public let expiresAt: Date

        public init(code: String, expiresAt: Date) {
            self.code = code
            self.expiresAt = expiresAt
        }
    }

    public struct WorkerKey: Codable, Sendable {
        public let id: UUID
        public let name: String
        public let createdAt: Date
        public let lastUsedAt: Date?
        public let revokedAt: Date?
        /// Jobs its workers hold now.
        public let runningJobs: Int
        /// Present only in the answer that created it.
        public let key: String?

        public init(id: UUID, name: String, createdAt: Date, lastUsedAt: Date?, revokedAt: Date?, runningJobs: Int, key: String?) {
            self.id = id
            self.name = name
            self.createdAt = createdAt
            self.lastUsedAt = lastUsedAt
            self.revokedAt = revokedAt
            self.runningJobs = runningJobs
            self.key = key
        }
    }

    public struct WorkerKeyList: Codable, Sendable {
        public let workerKeys: [WorkerKey]

        public init(workerKeys: [WorkerKey]) { self.workerKeys = workerKeys }
    }
}
