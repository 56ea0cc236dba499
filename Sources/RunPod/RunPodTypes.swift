import Foundation
import TrainerCore

/// What `/run`, `/status`, `/cancel` and `/retry` answer. Extra fields are ignored; missing
/// optional ones are nil.
public struct RunPodJob: Sendable, Equatable, Decodable {
    public let id: String
    public let status: RunPodStatus
    /// Milliseconds spent in the queue.
    public let delayTime: Int?
    /// Milliseconds of execution.
    public let executionTime: Int?
    /// The worker's latest progress while `IN_PROGRESS`, its result when `COMPLETED`.
    public let output: JSONValue?
    public let error: String?

    public init(id: String, status: RunPodStatus, delayTime: Int? = nil, executionTime: Int? = nil, output: JSONValue? = nil, error: String? = nil) {
        self.id = id
        self.status = status
        self.delayTime = delayTime
        self.executionTime = executionTime
        self.output = output
        self.error = error
    }

    enum CodingKeys: String, CodingKey { case id, status, delayTime, executionTime, output, error }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        id = try container.decode(String.self, forKey: .id)
        status = try container.decode(RunPodStatus.self, forKey: .status)
        delayTime = try? container.decodeIfPresent(Int.self, forKey: .delayTime)
        executionTime = try? container.decodeIfPresent(Int.self, forKey: .executionTime)
        output = try container.decodeIfPresent(JSONValue.self, forKey: .output)
        // `error` is a string in practice; anything else is kept as its JSON text.
        if let text = try? container.decodeIfPresent(String.self, forKey: .error) {
            error = text
        } else if let value = try? container.decodeIfPresent(JSONValue.self, forKey: .error) {
            error = value.rendered().trimmingCharacters(in: .whitespacesAndNewlines)
        } else {
            error = nil
        }
    }
}

/// `/health`: every field optional (the JS SDK knows more worker states than the docs).
public struct RunPodHealth: Sendable, Equatable, Decodable {
    public struct Jobs: Sendable, Equatable, Decodable {
        public let completed: Int?
        public let failed: Int?
        public let inProgress: Int?
        public let inQueue: Int?
        public let retried: Int?
    }

    public struct Workers: Sendable, Equatable, Decodable {
        public let idle: Int?
        public let running: Int?
        public let initializing: Int?
        public let ready: Int?
        public let throttled: Int?
        public let unhealthy: Int?
    }

    public let jobs: Jobs?
    public let workers: Workers?
}

/// `policy` of `/run`: long trainings need far more than the 10-minute default timeout, and a
/// TTL that covers queue time plus execution (reference §1.3).
public struct RunPodPolicy: Sendable, Equatable, Encodable {
    /// Milliseconds; at most 7 days.
    public var executionTimeout: Int
    /// Milliseconds from submission, queue time included; at most 7 days.
    public var ttl: Int

    public static let sevenDays = 7 * 24 * 3_600_000

    public init(executionTimeout: Int, ttl: Int) {
        self.executionTimeout = min(max(executionTimeout, 5000), Self.sevenDays)
        self.ttl = min(max(ttl, 10_000), Self.sevenDays)
    }

    /// For a training expected to take `expected` seconds: twice that to run (at least 2 h), and
    /// a day of queueing on top.
    public static func training(expectedSeconds expected: Int) -> RunPodPolicy {
        let execution = max(2 * expected, 7200) * 1000
        return RunPodPolicy(executionTimeout: execution, ttl: execution + 24 * 3_600_000)
    }
}

/// An answer other than 2xx, or no answer.
public struct RunPodError: Error, Sendable, Equatable, CustomStringConvertible {
    /// HTTP status; 0 when there was no answer (connection refused or dropped, timeout).
    public let status: Int
    public let message: String
    /// The request may have reached RunPod even though no answer came back.
    public let mayHaveArrived: Bool
    /// How long RunPod asked to wait (`Retry-After`), when it did.
    public var retryAfter: Duration? = nil

    public var description: String {
        status == 0 ? "RunPod could not be reached: \(message)" : "RunPod answered \(status): \(message)"
    }
}
