import Foundation

/// What the server takes from its surroundings besides configuration; tests replace these.
public struct ServerDependencies: Sendable {
    public var now: @Sendable () -> Date
    /// bcrypt work factor: 12 in production (about 0.25 s per hash); tests use the minimum.
    public var bcryptCost: Int
    /// Whether `serve` runs the job runner's loop; tests drive `JobRunner.tick` by hand.
    public var runsBackgroundServices: Bool
    /// How long the built-in queue's job-take waits for a job before answering 204.
    public var jobTakeWait: Duration

    public init(now: @escaping @Sendable () -> Date, bcryptCost: Int, runsBackgroundServices: Bool = true, jobTakeWait: Duration = .seconds(20)) {
        self.now = now
        self.bcryptCost = bcryptCost
        self.runsBackgroundServices = runsBackgroundServices
        self.jobTakeWait = jobTakeWait
    }

    public static let live = ServerDependencies(now: { Date() }, bcryptCost: 12)
}
