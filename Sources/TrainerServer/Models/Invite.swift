import Fluent
import Foundation

/// A single-use sign-up code made by an admin (for `GOMODEL_SIGNUP=invite`). Only its SHA-256 is stored.
final class Invite: Model, @unchecked Sendable {
    static let schema = "invites"

    @ID(key: .id) var id: UUID?
    @Field(key: "code_hash") var codeHash: String
    @Parent(key: "created_by") var creator: User
    @Field(key: "created_at") var createdAt: Date
    @Field(key: "expires_at") var expiresAt: Date
    @OptionalField(key: "used_at") var usedAt: Date?

    init() {}

    init(codeHash: String, creatorID: UUID, createdAt: Date, expiresAt: Date) {
        self.codeHash = codeHash
        self.$creator.id = creatorID
        self.createdAt = createdAt
        self.expiresAt = expiresAt
    }
}
