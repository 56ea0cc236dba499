import Foundation
import Testing
import TrainerCore

@Suite struct LoginThrottleTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)
    let throttle = LoginThrottle(maximumFailures: 3, window: 600, lockout: 900)

    @Test func attemptsUpToTheMaximumAreChecked() {
        for attempts in 1...3 {
            #expect(throttle.decide(attempts: attempts, lockedUntil: nil, now: now) == .allow)
        }
        #expect(throttle.decide(attempts: 4, lockedUntil: nil, now: now) == .refuse(until: now.addingTimeInterval(900)))
    }

    @Test func aLockHoldsUntilItEnds() {
        let until = now.addingTimeInterval(60)
        #expect(throttle.decide(attempts: 1, lockedUntil: until, now: now) == .refuse(until: until))
        #expect(throttle.decide(attempts: 1, lockedUntil: until, now: until) == .allow)
    }

    @Test func theWindowCutoffIsOneWindowAgo() {
        #expect(throttle.windowCutoff(now: now) == now.addingTimeInterval(-600))
    }
}
