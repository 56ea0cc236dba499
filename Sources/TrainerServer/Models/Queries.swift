import Fluent
import Foundation

// The reads the pages, the API and the CLI share: a user's own rows, newest first. Controllers call
// these instead of spelling the filter each time, so "what belongs to whom" is said once per model.

extension Job {
    static func newestFirst(of userID: UUID, on db: any Database) -> QueryBuilder<Job> {
        query(on: db).filter(\.$user.$id == userID).sort(\.$createdAt, .descending)
    }
}

extension Dataset {
    static func newestFirst(of userID: UUID, on db: any Database) -> QueryBuilder<Dataset> {
        query(on: db).filter(\.$user.$id == userID).sort(\.$createdAt, .descending)
    }
}

extension APIToken {
    static func newestFirst(of userID: UUID, on db: any Database) -> QueryBuilder<APIToken> {
        query(on: db).filter(\.$user.$id == userID).sort(\.$createdAt, .descending)
    }
}
