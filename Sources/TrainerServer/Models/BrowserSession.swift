import Fluent
import Foundation

/// A signed-in browser. The cookie holds a random token; only its SHA-256 is stored.
final class BrowserSession: Model, @unchecked Sendable {
    static let schema = "browser_sessions"

    @ID(key: .id) var id: UUID?
    @Parent(key: "user_id") var user: User
    @Field(key: "token_hash") var tokenHash: String
    /// Sent back in `X-CSRF-Token` on state-changing requests made with this session.
    @Field(key: "csrf_token") var csrfToken: String
    @Field(key: "created_at") var createdAt: Date
    @Field(key: "expires_at") var expiresAt: Date

    init() {}

    init(userID: UUID, tokenHash: String, csrfToken: String, createdAt: Date, expiresAt: Date) {
        self.$user.id = userID
        self.tokenHash = tokenHash
        self.csrfToken = csrfToken
        self.createdAt = createdAt
        self.expiresAt = expiresAt
    }
}
