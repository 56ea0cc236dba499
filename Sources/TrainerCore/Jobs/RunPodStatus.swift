/// A RunPod job status string, as RunPod's API and its workers' reports use it: the one place its
/// vocabulary is read. Unknown ones (the docs also list `RUNNING`) are kept, never fatal.
public enum RunPodStatus: Sendable, Equatable, Codable, CustomStringConvertible {
    case inQueue, inProgress, completed, failed, cancelled, timedOut
    case other(String)

    public init(_ raw: String) {
        switch raw.uppercased() {
        case "IN_QUEUE": self = .inQueue
        case "IN_PROGRESS": self = .inProgress
        case "COMPLETED": self = .completed
        case "FAILED": self = .failed
        case "CANCELLED": self = .cancelled
        case "TIMED_OUT": self = .timedOut
        default: self = .other(raw)
        }
    }

    public var rawValue: String {
        switch self {
        case .inQueue: "IN_QUEUE"
        case .inProgress: "IN_PROGRESS"
        case .completed: "COMPLETED"
        case .failed: "FAILED"
        case .cancelled: "CANCELLED"
        case .timedOut: "TIMED_OUT"
        case .other(let raw): raw
        }
    }

    /// Whether it is one of the statuses RunPod documents.
    public var isKnown: Bool {
        if case .other = self { false } else { true }
    }

    /// RunPod keeps a final job's result for 30 minutes; nothing changes after this.
    public var isFinal: Bool { [.completed, .failed, .cancelled, .timedOut].contains(self) }

    public var description: String { rawValue }

    public init(from decoder: any Decoder) throws { self.init(try decoder.singleValueContainer().decode(String.self)) }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}
