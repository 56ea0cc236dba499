import Foundation

/// What the server takes from its surroundings besides configuration; tests replace these.
public struct ServerDependencies: Sendable {
    public var now: @Sendable () -> Date
    /// bcrypt work factor: 12 in production (about 0.25 s per hash); tests use the minimum.
    public var bcryptCost: Int

    public init(now: @escaping @Sendable () -> Date, bcryptCost: Int) {
        self.now = now
        self.bcryptCost = bcryptCost
    }

    public static let live = ServerDependencies(now: { Date() }, bcryptCost: 12)
}
