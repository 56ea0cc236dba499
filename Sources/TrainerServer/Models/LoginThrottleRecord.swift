import Fluent
import Foundation
import TrainerCore

/// Failed-login counts for one subject (`account:<email>` or `address:<ip>`), shared by all instances.
final class LoginThrottleRecord: Model, @unchecked Sendable {
    static let schema = "login_throttles"

    @ID(key: .id) var id: UUID?
    @Field(key: "subject") var subject: String
    @Field(key: "failures") var failures: Int
    @Field(key: "window_start") var windowStart: Date
    @OptionalField(key: "locked_until") var lockedUntil: Date?

    init() {}

    var record: LoginThrottle.Record {
        LoginThrottle.Record(failures: failures, windowStart: windowStart, lockedUntil: lockedUntil)
    }

    func update(to record: LoginThrottle.Record) {
        failures = record.failures
        windowStart = record.windowStart
        lockedUntil = record.lockedUntil
    }
}
