import Foundation
import Testing
import TrainerCore

@Suite struct AccountRulesTests {
    @Test func emailsAreNormalised() {
        #expect(AccountRules.normalizedEmail("  Ada@Example.COM ") == "ada@example.com")
        for bad in ["", "ada", "ada@", "@example.com", "ada@example", "a b@example.com", "ada@@example.com", "ada@.example.com", "ada@example.com\u{0}"] {
            #expect(AccountRules.normalizedEmail(bad) == nil, "\(bad) was accepted")
        }
    }

    @Test func passwordsNeedTenCharactersAndAtMost72Bytes() {
        #expect(AccountRules.passwordProblem("short") != nil)
        #expect(AccountRules.passwordProblem("long enough") == nil)
        #expect(AccountRules.passwordProblem(String(repeating: "é", count: 37))?.contains("72 bytes") == true)
        #expect(AccountRules.passwordProblem(String(repeating: "x", count: 72)) == nil)
    }
}

@Suite struct LoginThrottleTests {
    let start = Date(timeIntervalSince1970: 1_800_000_000)
    let throttle = LoginThrottle(maximumFailures: 3, window: 600, lockout: 900)

    @Test func locksAfterTheMaximumWithinTheWindow() {
        var record: LoginThrottle.Record?
        for attempt in 0..<2 {
            record = throttle.recordingFailure(record, now: start.addingTimeInterval(Double(attempt)))
            #expect(throttle.retryAfter(record, now: start.addingTimeInterval(Double(attempt))) == nil)
        }
        record = throttle.recordingFailure(record, now: start.addingTimeInterval(2))
        #expect(throttle.retryAfter(record, now: start.addingTimeInterval(2)) == 900)
        #expect(throttle.retryAfter(record, now: start.addingTimeInterval(902)) == nil)
    }

    @Test func failuresOutsideTheWindowStartAFreshCount() {
        var record = throttle.recordingFailure(nil, now: start)
        record = throttle.recordingFailure(record, now: start.addingTimeInterval(1))
        record = throttle.recordingFailure(record, now: start.addingTimeInterval(601))
        #expect(record.failures == 1)
        #expect(throttle.retryAfter(record, now: start.addingTimeInterval(601)) == nil)
    }

    @Test func aFailureAfterALockExpiresCountsFromOne() {
        var record: LoginThrottle.Record?
        for _ in 0..<3 { record = throttle.recordingFailure(record, now: start) }
        let after = start.addingTimeInterval(901)
        let next = throttle.recordingFailure(record, now: after)
        #expect(next.failures == 1)
        #expect(next.lockedUntil == nil)
    }
}
