import Fluent
import Foundation

/// A key that lets a GPU worker take jobs from the built-in queue (`gomodel workers create-key`).
/// Shown once; only its SHA-256 is stored. Names are unique among keys not revoked; a revoked key
/// stays listed, refused.
final class WorkerKey: Model, @unchecked Sendable {
    static let schema = "worker_keys"

    @ID(key: .id) var id: UUID?
    @Field(key: "name") var name: String
    @Field(key: "key_hash") var keyHash: String
    @Field(key: "created_at") var createdAt: Date
    @OptionalField(key: "last_used_at") var lastUsedAt: Date?
    @OptionalField(key: "revoked_at") var revokedAt: Date?

    init() {}

    init(name: String, keyHash: String, createdAt: Date) {
        self.name = name
        self.keyHash = keyHash
        self.createdAt = createdAt
    }
}
