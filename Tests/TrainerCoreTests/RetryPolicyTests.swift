import Foundation
import Synchronization
import Testing
import TrainerCore

@Suite struct RetryPolicyTests {
    struct Failure: Error {
        let retryable: Bool
        var retryAfter: Duration? = nil
    }

    /// Runs `policy` over failures that follow `script` (nil: success); returns the attempts made
    /// and the outcome.
    static func run(_ policy: RetryPolicy, _ script: [Failure?]) async -> (attempts: Int, succeeded: Bool, elapsed: Duration) {
        let attempts = Mutex(0)
        let started = ContinuousClock.now
        do {
            try await policy.run(retryable: { ($0 as? Failure)?.retryable ?? false }, retryAfter: { ($0 as? Failure)?.retryAfter }) {
                let index = attempts.withLock { count in
                    count += 1
                    return count - 1
                }
                if index < script.count, let failure = script[index] { throw failure }
            }
            return (attempts.withLock { $0 }, true, ContinuousClock.now - started)
        } catch {
            return (attempts.withLock { $0 }, false, ContinuousClock.now - started)
        }
    }

    static let quick = RetryPolicy(maxAttempts: 4, baseDelay: .milliseconds(1), maxDelay: .milliseconds(5))

    @Test func retriesWhatMaySucceedUpToItsAttempts() async {
        let recovered = await Self.run(Self.quick, [Failure(retryable: true), Failure(retryable: true), nil])
        #expect(recovered.attempts == 3 && recovered.succeeded)
        let exhausted = await Self.run(Self.quick, Array(repeating: Failure(retryable: true), count: 10))
        #expect(exhausted.attempts == 4 && !exhausted.succeeded)
        let final = await Self.run(Self.quick, [Failure(retryable: false), nil])
        #expect(final.attempts == 1 && !final.succeeded, "a refusal is not tried again")
    }

    @Test func waitsWhatTheFailureAsksForWithinTheCeiling() async {
        var policy = Self.quick
        policy.maxDelay = .milliseconds(300)
        let asked = await Self.run(policy, [Failure(retryable: true, retryAfter: .milliseconds(200)), nil])
        #expect(asked.succeeded && asked.elapsed >= .milliseconds(200), "Retry-After is honoured: \(asked.elapsed)")
        // But never beyond maxDelay (the delay itself: a wall-clock bound would flake on a busy machine).
        #expect(Self.quick.delay(afterAttempt: 1, retryAfter: .seconds(60)) <= .milliseconds(5))
        #expect(policy.delay(afterAttempt: 1, retryAfter: .milliseconds(200)) >= .milliseconds(200))
    }

    @Test func fixedDelaysAreFollowedInOrder() {
        let policy = RetryPolicy.fixed([.seconds(2), .seconds(3)])
        #expect(policy.maxAttempts == 3)
        #expect(policy.delay(afterAttempt: 1, retryAfter: nil) == .seconds(2))
        #expect(policy.delay(afterAttempt: 2, retryAfter: nil) == .seconds(3))
        #expect(policy.delay(afterAttempt: 5, retryAfter: nil) == .seconds(3))
    }
}
