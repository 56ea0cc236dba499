import Fluent
import Foundation

/// A browser or CLI that has signed in to an account before: it holds a long-lived random cookie
/// (`gomodel_device`, only its SHA-256 is stored). Login throttling does not hold it back with the
/// locks others' wrong passwords cause, so guessing cannot lock the owner out.
final class KnownDevice: Model, @unchecked Sendable {
    static let schema = "known_devices"

    @ID(key: .id) var id: UUID?
    @Parent(key: "user_id") var user: User
    @Field(key: "token_hash") var tokenHash: String
    @Field(key: "created_at") var createdAt: Date

    init() {}

    init(userID: UUID, tokenHash: String, createdAt: Date) {
        self.$user.id = userID
        self.tokenHash = tokenHash
        self.createdAt = createdAt
    }
}
