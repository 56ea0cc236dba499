import Foundation

/// What the server takes from its surroundings besides configuration; tests replace these.
public struct ServerDependencies: Sendable {
    /// The time of day, for what is stored and compared with stored times (leases, expiries,
    /// throttles).
    public var now: @Sendable () -> Date
    /// What every wait runs on: the background loops, job-take long polls, event streams.
    public var clock: any Clock<Duration>
    /// bcrypt work factor: 12 in production (about 0.25 s per hash); tests use the minimum.
    public var bcryptCost: Int
    /// Whether `serve` runs the job runner's loop; tests drive `JobRunner.tick` by hand.
    public var runsBackgroundServices: Bool
    /// How long the built-in queue's job-take waits for a job before answering 204.
    public var jobTakeWait: Duration

    public init(
        now: @escaping @Sendable () -> Date, clock: any Clock<Duration> = ContinuousClock(), bcryptCost: Int, runsBackgroundServices: Bool = true,
        jobTakeWait: Duration = .seconds(20)
    ) {
        self.now = now
        self.clock = clock
        self.bcryptCost = bcryptCost
        self.runsBackgroundServices = runsBackgroundServices
        self.jobTakeWait = jobTakeWait
    }

    public static let live = ServerDependencies(now: { Date() }, bcryptCost: 12)
}
