import Foundation

/// Slows password guessing: after `maximumFailures` failed logins within `window`, the subject
/// (an account or a client address) is locked for `lockout`, even for the right password.
///
/// Pure rules over a stored record; the server keeps one record per subject in the database so that
/// every instance sees the same counts.
public struct LoginThrottle: Sendable, Equatable {
    public var maximumFailures: Int
    public var window: TimeInterval
    public var lockout: TimeInterval

    public init(maximumFailures: Int, window: TimeInterval, lockout: TimeInterval) {
        self.maximumFailures = maximumFailures
        self.window = window
        self.lockout = lockout
    }

    /// Five wrong passwords per account in 15 minutes lock it for 15 minutes.
    public static let perAccount = LoginThrottle(maximumFailures: 5, window: 15 * 60, lockout: 15 * 60)
    /// Per client address the bar is higher: several people may share one address.
    public static let perAddress = LoginThrottle(maximumFailures: 20, window: 15 * 60, lockout: 15 * 60)

    public struct Record: Sendable, Equatable {
        public var failures: Int
        public var windowStart: Date
        public var lockedUntil: Date?

        public init(failures: Int, windowStart: Date, lockedUntil: Date?) {
            self.failures = failures
            self.windowStart = windowStart
            self.lockedUntil = lockedUntil
        }
    }

    /// Seconds until the subject may try again, or nil when it may try now.
    public func retryAfter(_ record: Record?, now: Date) -> TimeInterval? {
        guard let lockedUntil = record?.lockedUntil, lockedUntil > now else { return nil }
        return lockedUntil.timeIntervalSince(now)
    }

    /// The record after one more failed attempt at `now`.
    public func recordingFailure(_ record: Record?, now: Date) -> Record {
        var next = record ?? Record(failures: 0, windowStart: now, lockedUntil: nil)
        if now.timeIntervalSince(next.windowStart) >= window || (next.lockedUntil.map { $0 <= now } ?? false) {
            next = Record(failures: 0, windowStart: now, lockedUntil: nil)
        }
        next.failures += 1
        if next.failures >= maximumFailures {
            next.lockedUntil = now.addingTimeInterval(lockout)
        }
        return next
    }
}
