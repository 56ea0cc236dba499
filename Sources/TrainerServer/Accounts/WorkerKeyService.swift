import Fluent
import Foundation
import TrainerCore

/// The keys GPU workers of the built-in queue present: made, listed and revoked by administrators
/// (`gomodel workers`, `/api/worker-keys`, the account page), and checked on every worker call.
///
/// A worker is known by its key's id and its own worker id: leases, job events and the store keys
/// handed out with jobs are bound to that, so a worker cannot act for another key's jobs whatever
/// names it uses, and revoking a key cuts off all of its workers at once.
struct WorkerKeyService: Sendable {
    let now: @Sendable () -> Date

    /// What the worker-key rules refuse; `description` says what to do (HTTPMapping gives each its status).
    enum Failure: Error, Equatable, CustomStringConvertible {
        case invalidName
        case nameTaken(String)
        case notFound(String)
        case noSuchID
        case keyRequired
        case revoked(name: String, at: Date)

        var description: String {
            switch self {
            case .invalidName: "Give the worker key a name of 1 to 100 visible characters, e.g. 'gpu-box-1'."
            case .nameTaken(let name): "A worker key named '\(name)' exists; pick another name, or revoke that key first (`gomodel workers revoke \(name)`)."
            case .notFound(let reference): "No worker key has the id or name '\(reference)'; `gomodel workers list` shows them."
            case .noSuchID: "No worker key with this id; GET /api/worker-keys lists them."
            case .keyRequired: "A worker key is required: create one with `gomodel workers create-key` and give it to the worker (--key, or RUNPOD_AI_API_KEY)."
            case .revoked(let name, let date): "This worker key ('\(name)') was revoked on \(date.formatted(.iso8601)); create a new one with `gomodel workers create-key`."
            }
        }
    }

    /// The worker behind a call: its key and the worker id from the path.
    struct Worker: Sendable, Equatable {
        let keyID: UUID
        let keyName: String
        let id: String

        /// What a job's `lease_owner` holds while this worker runs it.
        var leaseOwner: String { Self.leaseOwnerPrefix(keyID: keyID) + id }
        /// How job events name it.
        var label: String { "\(keyName)/\(id)" }

        static func leaseOwnerPrefix(keyID: UUID) -> String { "worker:\(keyID.uuidString.lowercased())/" }

        /// The key id in a lease owner written by `leaseOwner`.
        static func keyID(inLeaseOwner owner: String) -> UUID? {
            guard owner.hasPrefix("worker:") else { return nil }
            return UUID(uuidString: String(owner.dropFirst(7).prefix(36)))
        }
    }

    func create(name: String, on db: any Database) async throws -> (value: String, key: WorkerKey) {
        guard let trimmed = VisibleName.checked(name) else {
            throw Failure.invalidName
        }
        let taken = Failure.nameTaken(trimmed)
        guard try await active(named: trimmed, on: db) == nil else { throw taken }
        let value = OpaqueToken.generate(prefix: "gmw_")
        let key = WorkerKey(name: trimmed, keyHash: OpaqueToken.digest(value), createdAt: now())
        do {
            try await key.create(on: db)
        } catch let error as any DatabaseError where error.isConstraintFailure {
            throw taken  // made at the same moment by another request
        }
        return (value, key)
    }

    /// Every key, newest first, revoked ones included.
    func list(on db: any Database) async throws -> [WorkerKey] {
        try await WorkerKey.query(on: db).sort(\.$createdAt, .descending).all()
    }

    /// How many running jobs the workers of each key hold.
    func runningJobs(on db: any Database) async throws -> [UUID: Int] {
        let owners = try await Job.query(on: db).filter(\.$status == .running).filter(\.$leaseOwner =~ "worker:").all(\.$leaseOwner)
        return Dictionary(owners.compactMap { $0.flatMap(Worker.keyID(inLeaseOwner:)) }.map { ($0, 1) }, uniquingKeysWith: +)
    }

    /// A key by its id (the API's way).
    func find(id: UUID?, on db: any Database) async throws -> WorkerKey {
        guard let id, let key = try await WorkerKey.find(id, on: db) else { throw Failure.noSuchID }
        return key
    }

    /// A key by its id, or by the name of a key not revoked (the CLI's way).
    func find(_ reference: String, on db: any Database) async throws -> WorkerKey {
        if let id = UUID(uuidString: reference), let key = try await WorkerKey.find(id, on: db) { return key }
        if let key = try await active(named: reference.trimmingCharacters(in: .whitespacesAndNewlines), on: db) { return key }
        throw Failure.notFound(reference)
    }

    /// Revokes `key`: its workers are refused from their next call, and the jobs they run go back
    /// to the queue at once (the queue's next round sees their leases ended), resuming from their
    /// last checkpoint without counting as a failed attempt. Revoking twice changes nothing.
    func revoke(_ key: WorkerKey, on db: any Database) async throws {
        guard key.revokedAt == nil else { return }
        let time = now()
        key.revokedAt = time
        try await key.save(on: db)
        try await Job.query(on: db).filter(\.$leaseOwner =~ Worker.leaseOwnerPrefix(keyID: key.requireID()))
            .filter(\.$leaseUntil > time).set(\.$leaseUntil, to: time).update()
    }

    /// Whether the key with this id may no longer be used (revoked or gone).
    func isRevoked(_ keyID: UUID, on db: any Database) async throws -> Bool {
        guard let key = try await WorkerKey.find(keyID, on: db) else { return true }
        return key.revokedAt != nil
    }

    /// The worker presenting `secret` in `Authorization`, for its id `workerID`.
    func authenticate(secret: String, workerID: String, on db: any Database) async throws -> Worker {
        guard !secret.isEmpty, let key = try await WorkerKey.query(on: db).filter(\.$keyHash == OpaqueToken.digest(secret)).first() else {
            throw Failure.keyRequired
        }
        if let revokedAt = key.revokedAt {
            throw Failure.revoked(name: key.name, at: revokedAt)
        }
        let time = now()
        if key.lastUsedAt.map({ time.timeIntervalSince($0) > 60 }) ?? true {
            key.lastUsedAt = time
            try await key.save(on: db)
        }
        return Worker(keyID: try key.requireID(), keyName: key.name, id: workerID)
    }

    private func active(named name: String, on db: any Database) async throws -> WorkerKey? {
        try await WorkerKey.query(on: db).filter(\.$name == name).filter(\.$revokedAt == nil).first()
    }
}
