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
