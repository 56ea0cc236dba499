import Foundation

/// Slows password guessing: every login attempt is counted per subject (an account from an
/// address, an account, an address, or a known device) before the password is checked; once more than `maximumFailures` attempts fall in one
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

    /// Five wrong passwords for one account from one address in 15 minutes lock that pair for 15
    /// minutes: the guesser, not the owner elsewhere.
    public static let perAccountFromAddress = LoginThrottle(maximumFailures: 5, window: 15 * 60, lockout: 15 * 60)
    /// Guessing one account from many addresses: a higher bar, across all of them (devices that
    /// signed in to the account before are not held back by it).
    public static let perAccount = LoginThrottle(maximumFailures: 50, window: 15 * 60, lockout: 15 * 60)
    /// Per client address the bar is higher: several people may share one address.
    public static let perAddress = LoginThrottle(maximumFailures: 20, window: 15 * 60, lockout: 15 * 60)
    /// A known device counts only its own failures (a stolen device cookie still guesses slowly).
    public static let perKnownDevice = LoginThrottle(maximumFailures: 10, window: 15 * 60, lockout: 15 * 60)

    /// The counters one sign-in touches, by name.
    public struct Subjects: Sendable, Equatable {
        public let account: String
        public let accountFromAddress: String
        public let address: String

        public init(email: String, address: String) {
            account = "account:" + email
            accountFromAddress = "account:" + email + "|from:" + address
            self.address = "address:" + address
        }
    }

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
