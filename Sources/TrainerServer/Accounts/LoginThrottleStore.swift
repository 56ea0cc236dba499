import Fluent
import FluentSQL
import Foundation
import TrainerCore

/// Counts login attempts in `login_throttles`, one row per subject, with single atomic statements,
/// so that parallel guesses (and several server instances) are all counted.
struct LoginThrottleStore: Sendable {
    static let table = "login_throttles"

    /// Counts one attempt for `subject` at `now`; returns when the subject is locked until, or nil.
    func countAttempt(_ subject: String, throttle: LoginThrottle, now: Date, on db: any Database) async throws -> Date? {
        let sql = try db.sql()
        try await sql.insert(into: Self.table)
            .columns("id", "subject", "failures", "window_start", "locked_until")
            .values(SQLBind(UUID()), SQLBind(subject), SQLBind(0), SQLBind(now), SQLLiteral.null)
            .ignoringConflicts(with: "subject")
            .run()
        // A lapsed count starts over (its lock ended, or its window did without a lock).
        try await sql.update(Self.table)
            .set("failures", to: 0).set("window_start", to: now).set("locked_until", to: SQLLiteral.null)
            .where("subject", .equal, subject)
            .where { group in
                group.where { $0.where("locked_until", .isNot, SQLLiteral.null).where("locked_until", .lessThanOrEqual, now) }
                    .orWhere { $0.where("locked_until", .is, SQLLiteral.null).where("window_start", .lessThanOrEqual, throttle.windowCutoff(now: now)) }
            }
            .run()
        guard
            let row = try await sql.update(Self.table)
                .set(SQLIdentifier("failures"), to: SQLBinaryExpression(SQLIdentifier("failures"), .add, SQLLiteral.numeric("1")))
                .where("subject", .equal, subject)
                .returning("failures", "locked_until")
                .first()
        else { return nil }
        let attempts = try row.decode(column: "failures", as: Int.self)
        let lockedUntil = try row.decode(column: "locked_until", as: Date?.self)
        switch throttle.decide(attempts: attempts, lockedUntil: lockedUntil, now: now) {
        case .allow:
            return nil
        case .refuse(let until):
            if lockedUntil == nil {
                try await sql.update(Self.table).set("locked_until", to: until)
                    .where("subject", .equal, subject).where("locked_until", .is, SQLLiteral.null).run()
            }
            return until
        }
    }

    /// Takes back the attempts of a successful login: the account's own count is cleared, and this
    /// known device's, or else this account-and-address pair's; an address's count only loses this
    /// one attempt (an attacker must not reset it with an account of their own). The locks of other
    /// browsers on the account stay: they are someone else guessing, even at the same address.
    func succeeded(_ subjects: LoginThrottle.Subjects, knownDevice: String?, on db: any Database) async throws {
        let sql = try db.sql()
        try await sql.delete(from: Self.table).where("subject", .in, [subjects.account, knownDevice ?? subjects.accountFromAddress]).run()
        if knownDevice == nil {
            try await sql.update(Self.table)
                .set(SQLIdentifier("failures"), to: SQLBinaryExpression(SQLIdentifier("failures"), .subtract, SQLLiteral.numeric("1")))
                .where("subject", .equal, subjects.address).where("failures", .greaterThan, 0).run()
        }
    }

    /// Clears every count of an account: its own and those of each address it was tried from.
    func clearAccount(_ subjects: LoginThrottle.Subjects, on db: any Database) async throws {
        let sql = try db.sql()
        let pairs = subjects.account + "|from:"
        // A prefix compared as a substring: LIKE would read `_` and `%` in addresses as wildcards.
        try await sql.delete(from: Self.table)
            .where("subject", .equal, subjects.account)
            .orWhere(SQLFunction("substr", args: SQLColumn("subject"), SQLLiteral.numeric("1"), SQLLiteral.numeric(String(pairs.unicodeScalars.count))), .equal, SQLBind(pairs))
            .run()
    }
}
