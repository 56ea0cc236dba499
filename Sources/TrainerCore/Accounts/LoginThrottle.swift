import Foundation

/// Slows password guessing: every login attempt is counted per subject (an account or a client
/// address) before the password is checked; once more than `maximumFailures` attempts fall in one
/// `window`, the subject is locked for `lockout`, even for the right password. A successful login
/// takes its attempt back.
///
/// Counting before checking is what makes this hold under concurrency: a burst of parallel
/// guesses is counted in full, because the count is one atomic database update (see the server's
/// `LoginThrottleStore`); these are the rules it applies.
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

    public enum Decision: Sendable, Equatable {
        /// Check the password.
        case allow
        /// Refuse without checking; the lock lasts until the date.
        case refuse(until: Date)
    }

    /// A stored count starts over when its lock has ended, or, with no lock, when its window began
    /// at or before this moment.
    public func windowCutoff(now: Date) -> Date {
        now.addingTimeInterval(-window)
    }

    /// The decision once this attempt is counted (`attempts` includes it).
    public func decide(attempts: Int, lockedUntil: Date?, now: Date) -> Decision {
        if let lockedUntil, lockedUntil > now { return .refuse(until: lockedUntil) }
        if attempts > maximumFailures { return .refuse(until: now.addingTimeInterval(lockout)) }
        return .allow
    }
}
