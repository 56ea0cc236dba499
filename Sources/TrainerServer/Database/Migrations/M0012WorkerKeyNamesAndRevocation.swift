import Fluent
import Foundation
import SQLKit

/// Worker keys get a revocation date and names unique among keys not revoked. Keys that shared a
/// name are renamed `name (2)`, `name (3)`… by age, so each can be told apart and revoked. Leases
/// name a worker by its key's id from now on (`worker:{key id}/{worker}`): a running job of a key
/// whose name was unique keeps its lease; one of a shared name cannot be told apart and is taken
/// back when its lease runs out, as if its worker had gone quiet.
struct M0012WorkerKeyNamesAndRevocation: AsyncMigration {
    var name: String { "0012_worker_key_names_and_revocation" }

    func prepare(on database: any Database) async throws {
        guard let sql = database as? any SQLDatabase else { return }
        try await database.schema("worker_keys").field("revoked_at", .datetime).update()
        struct Key: Decodable {
            let id: UUID
            let name: String
        }
        let keys = try await sql.select().columns("id", "name").from("worker_keys").orderBy("created_at").all(decoding: Key.self)
        let counts = Dictionary(keys.map { ($0.name, 1) }, uniquingKeysWith: +)
        var taken = Set<String>()
        for key in keys {
            var name = key.name
            var number = 2
            while taken.contains(name) {
                name = "\(key.name) (\(number))"
                number += 1
            }
            taken.insert(name)
            if name != key.name { try await sql.update("worker_keys").set("name", to: name).where("id", .equal, key.id).run() }
        }
        try await sql.raw("CREATE UNIQUE INDEX worker_keys_active_name ON worker_keys (name) WHERE revoked_at IS NULL").run()

        struct Lease: Decodable {
            let id: UUID
            let lease_owner: String
        }
        let leases = try await sql.select().columns("id", "lease_owner").from("jobs").where("lease_owner", .like, "worker:%").all(decoding: Lease.self)
        for key in keys where counts[key.name] == 1 {
            let old = "worker:\(key.name)/"
            for lease in leases where lease.lease_owner.hasPrefix(old) {
                let owner = "worker:\(key.id.uuidString.lowercased())/" + lease.lease_owner.dropFirst(old.count)
                try await sql.update("jobs").set("lease_owner", to: owner).where("id", .equal, lease.id).run()
            }
        }
    }

    func revert(on database: any Database) async throws {
        guard let sql = database as? any SQLDatabase else { return }
        try await sql.raw("DROP INDEX worker_keys_active_name").run()
        try await database.schema("worker_keys").deleteField("revoked_at").update()
    }
}
