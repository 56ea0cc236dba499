import Foundation
import Testing
import TrainerCore

@Suite struct OutgoingWebhookTests {
    @Test func onlyPublicAddressesAreReachable() {
        let refused: [[UInt8]] = [
            [127, 0, 0, 1], [10, 0, 0, 5], [172, 16, 0, 1], [172, 31, 255, 255], [192, 168, 1, 1], [169, 254, 169, 254], [100, 64, 0, 1], [0, 0, 0, 0],
            [224, 0, 0, 1], [255, 255, 255, 255], [198, 18, 0, 1], [192, 0, 2, 1],
            // ::1, ::, fc00::1, fe80::1, ff02::1, ::ffff:127.0.0.1, 64:ff9b::10.0.0.1, 2002:0a00:0001:: (6to4 of 10.0.0.1)
            [UInt8](repeating: 0, count: 15) + [1], [UInt8](repeating: 0, count: 16), [0xFC] + [UInt8](repeating: 0, count: 14) + [1],
            [0xFE, 0x80] + [UInt8](repeating: 0, count: 13) + [1], [0xFF, 0x02] + [UInt8](repeating: 0, count: 13) + [1],
            [UInt8](repeating: 0, count: 10) + [0xFF, 0xFF, 127, 0, 0, 1], [0, 0x64, 0xFF, 0x9B] + [UInt8](repeating: 0, count: 8) + [10, 0, 0, 1],
            [0x20, 0x02, 10, 0, 0, 1] + [UInt8](repeating: 0, count: 10), [1, 2, 3], [192, 88, 99, 1],
            [UInt8](repeating: 0, count: 8) + [0xFF, 0xFF, 0, 0, 10, 0, 0, 1], [0, 0x64, 0xFF, 0x9B, 0, 1] + [UInt8](repeating: 0, count: 9) + [1],
            [1] + [UInt8](repeating: 0, count: 14) + [1], [0x20, 0x01, 0, 0] + [UInt8](repeating: 0, count: 11) + [1],
        ]
        for address in refused { #expect(!NetworkAddress.isPublic(address), "\(address)") }
        let allowed: [[UInt8]] = [
            [93, 184, 215, 14], [8, 8, 8, 8], [172, 32, 0, 1], [100, 128, 0, 1], [UInt8](repeating: 0, count: 10) + [0xFF, 0xFF, 8, 8, 8, 8],
            [0x26, 0x06, 0x47, 0x00] + [UInt8](repeating: 0, count: 11) + [1],
        ]
        for address in allowed { #expect(NetworkAddress.isPublic(address), "\(address)") }
    }

    @Test func aTargetIsAnHTTPURLWithoutCredentials() {
        #expect((try? OutgoingWebhook.target("https://hooks.example.com/gomodel?tag=1").get())?.host == "hooks.example.com")
        #expect((try? OutgoingWebhook.target("HTTPS://hooks.example.com:8443/x").get())?.absoluteString == "https://hooks.example.com:8443/x")
        for bad in [
            "ftp://example.com/", "example.com/hook", "https://", "https://u:p@example.com/", "https://example.com/#x", "http://1.1.1.1:99999/", "http://1.1.1.1:0/",
            "http://localhost:70000/", "http://1.1.1.1:99999999999999999999/",
            "https://example.com/" + String(repeating: "a", count: 2001),
        ] {
            #expect((try? OutgoingWebhook.target(bad).get()) == nil, "\(bad)")
        }
    }

    @Test func retriesBackOffForADay() {
        let created = Date(timeIntervalSince1970: 1_800_000_000)
        var now = created
        var delays: [TimeInterval] = []
        var failures = 1
        while let next = OutgoingWebhook.nextAttempt(afterFailures: failures, created: created, now: now) {
            delays.append(next.timeIntervalSince(now))
            now = next
            failures += 1
        }
        #expect(Array(delays.prefix(4)) == [5, 20, 80, 320])
        #expect(delays.max() == OutgoingWebhook.maximumRetryDelay)
        #expect(now.timeIntervalSince(created) <= OutgoingWebhook.retryWindow && now.timeIntervalSince(created) > OutgoingWebhook.retryWindow - OutgoingWebhook.maximumRetryDelay)
    }

    @Test func eventsHaveOneKeyPerAttemptOrStep() {
        let job = UUID()
        #expect(OutgoingWebhook.eventKey(.jobStarted, job: job, attempt: 1) != OutgoingWebhook.eventKey(.jobStarted, job: job, attempt: 2))
        #expect(OutgoingWebhook.eventKey(.checkpointSaved, job: job, attempt: 1, step: 50) == OutgoingWebhook.eventKey(.checkpointSaved, job: job, attempt: 2, step: 50))
        #expect(OutgoingWebhook.event(for: .timedOut) == .jobFailed && OutgoingWebhook.event(for: .submitted) == nil)
        #expect(OutgoingWebhook.signingKey(of: OutgoingWebhook.secret(from: [1, 2, 3])) == [1, 2, 3])
    }
}
