/// How failed requests are retried: exponential backoff with full jitter (or fixed delays),
/// honouring `Retry-After`. `run` is the one retry loop of every client: the S3 client, RunPod's
/// API, the worker protocol and the dataset push.
public struct RetryPolicy: Sendable {
    public var maxAttempts: Int
    public var baseDelay: Duration
    public var maxDelay: Duration
    /// The waits after the first, second… failure instead of the jittered backoff (the last one
    /// repeats), for a peer whose own timing a client follows.
    public var fixedDelays: [Duration]?

    public init(maxAttempts: Int = 5, baseDelay: Duration = .milliseconds(100), maxDelay: Duration = .seconds(8)) {
        self.maxAttempts = maxAttempts
        self.baseDelay = baseDelay
        self.maxDelay = maxDelay
    }

    /// Tries once, then once after each of `delays`.
    public static func fixed(_ delays: [Duration]) -> RetryPolicy {
        var policy = RetryPolicy(maxAttempts: delays.count + 1, maxDelay: delays.max() ?? .zero)
        policy.fixedDelays = delays
        return policy
    }

    public static let `default` = RetryPolicy()
    public static let none = RetryPolicy(maxAttempts: 1)

    /// Runs `operation`, and again after each failure `retryable` accepts, `maxAttempts` times in
    /// all, waiting `delay(afterAttempt:retryAfter:)` in between (the wait the failure itself asks
    /// for, `retryAfter`, when it has one). Throws the last failure; a cancellation is never retried.
    public func run<T>(retryable: (any Error) -> Bool, retryAfter: (any Error) -> Duration? = { _ in nil }, _ operation: () async throws -> T) async throws -> T {
        var attempt = 0
        while true {
            do {
                return try await operation()
            } catch {
                attempt += 1
                guard attempt < maxAttempts, !(error is CancellationError), retryable(error) else { throw error }
                try await Task.sleep(for: delay(afterAttempt: attempt, retryAfter: retryAfter(error)))
            }
        }
    }

    public func delay(afterAttempt attempt: Int, retryAfter: Duration?) -> Duration {
        if let retryAfter { return min(retryAfter, maxDelay) }
        if let fixedDelays, let last = fixedDelays.last { return attempt <= fixedDelays.count ? fixedDelays[max(attempt, 1) - 1] : last }
        let ceiling = min(baseDelay * (1 << min(attempt, 20)), maxDelay)
        let nanos = ceiling.components.seconds * 1_000_000_000 + ceiling.components.attoseconds / 1_000_000_000
        return .nanoseconds(Int64.random(in: 0...max(nanos, 1)))
    }
}
