import Fluent
import Foundation

/// A person with an account. Fluent's property wrappers make models reference types that the
/// compiler cannot prove Sendable; each instance is confined to the request that loaded it.
final class User: Model, @unchecked Sendable {
    static let schema = "users"

    @ID(key: .id) var id: UUID?
    @Field(key: "email") var email: String
    @Field(key: "password_hash") var passwordHash: String
    @Field(key: "is_admin") var isAdmin: Bool
    @Timestamp(key: "created_at", on: .create) var createdAt: Date?

    init() {}

    init(email: String, passwordHash: String, isAdmin: Bool) {
        self.email = email
        self.passwordHash = passwordHash
        self.isAdmin = isAdmin
    }
}
