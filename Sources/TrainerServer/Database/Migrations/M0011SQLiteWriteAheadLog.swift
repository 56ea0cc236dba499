import Fluent
import SQLKit

/// SQLite only: write-ahead logging, so readers never wait for a writer (and a writer for them).
/// The mode is kept in the database file; PostgreSQL needs nothing.
struct M0011SQLiteWriteAheadLog: AsyncMigration {
    var name: String { "0011_sqlite_write_ahead_log" }

    func prepare(on database: any Database) async throws {
        guard let sql = database as? any SQLDatabase, sql.dialect.name == "sqlite" else { return }
        try await sql.raw("PRAGMA journal_mode=WAL").run()
    }

    func revert(on database: any Database) async throws {
        guard let sql = database as? any SQLDatabase, sql.dialect.name == "sqlite" else { return }
        try await sql.raw("PRAGMA journal_mode=DELETE").run()
    }
}
