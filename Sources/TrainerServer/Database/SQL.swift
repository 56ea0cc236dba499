import Fluent
import SQLKit

extension Database {
    /// The database as SQLKit sees it, for the statements Fluent's query builder cannot say
    /// (compare-and-set updates with RETURNING, batch inserts). Both drivers the server uses
    /// (SQLite, PostgreSQL) are SQL databases; another would be refused here, saying so.
    func sql() throws -> any SQLDatabase {
        guard let sql = self as? any SQLDatabase else { throw SQLRequired() }
        return sql
    }

    /// Throws when the database does not answer (readiness).
    func ping() async throws {
        try await sql().raw("SELECT 1").run()
    }
}

struct SQLRequired: Error, CustomStringConvertible {
    var description: String { "the server needs an SQL database (SQLite or PostgreSQL)" }
}
