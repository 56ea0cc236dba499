import Foundation

/// A training job's state on our side (DESIGN §6).
public enum JobStatus: String, Sendable, CaseIterable, Codable {
    /// Stored, not yet accepted by a runner.
    case queued
    /// A runner has it and it waits for a GPU (RunPod `IN_QUEUE`).
    case submitted
    /// On a GPU (RunPod `IN_PROGRESS`).
    case running
    case completed
    case failed
    case cancelled
    case timedOut = "timed_out"

    public var isFinal: Bool { [.completed, .failed, .cancelled, .timedOut].contains(self) }

    /// Whether a report of `next` may replace this state. Final states never change, and a job
    /// never goes back (a late or reordered report of IN_QUEUE after IN_PROGRESS is stale).
    /// A retry is a new attempt, not a transition.
    public func accepts(_ next: JobStatus) -> Bool {
        guard !isFinal, next != self else { return false }
        return next.rank > rank || next.isFinal
    }

    private var rank: Int {
        switch self {
        case .queued: 0
        case .submitted: 1
        case .running: 2
        case .completed, .failed, .cancelled, .timedOut: 3
        }
    }

    /// Our state for a RunPod status; nil for one we do not know (kept and shown, the state stays
    /// as it was).
    public init?(_ runPod: RunPodStatus) {
        switch runPod {
        case .inQueue: self = .submitted
        case .inProgress: self = .running
        case .completed: self = .completed
        case .failed: self = .failed
        case .cancelled: self = .cancelled
        case .timedOut: self = .timedOut
        case .other: return nil
        }
    }
}

/// The worker's progress (DESIGN §5: RunPod `output` while `IN_PROGRESS`), read leniently:
/// any field may be missing or of another type, and nothing here fails.
public struct JobProgress: Sendable, Equatable, Codable {
    public var phase: String?
    public var step: Int?
    public var totalSteps: Int?
    public var loss: Double?
    public var itPerSec: Double?
    public var etaSeconds: Double?
    public var message: String?

    public init(phase: String? = nil, step: Int? = nil, totalSteps: Int? = nil, loss: Double? = nil, itPerSec: Double? = nil, etaSeconds: Double? = nil, message: String? = nil) {
        self.phase = phase
        self.step = step
        self.totalSteps = totalSteps
        self.loss = loss
        self.itPerSec = itPerSec
        self.etaSeconds = etaSeconds
        self.message = message
    }

    public init(output: JSONValue) {
        phase = output["phase"]?.stringValue
        step = output["step"]?.numberValue.flatMap { $0.isFinite ? Int($0) : nil }
        totalSteps = output["total_steps"]?.numberValue.flatMap { $0.isFinite ? Int($0) : nil }
        loss = output["loss"]?.numberValue.flatMap { $0.isFinite ? $0 : nil }
        itPerSec = output["it_per_sec"]?.numberValue.flatMap { $0.isFinite ? $0 : nil }
        etaSeconds = output["eta_seconds"]?.numberValue.flatMap { $0.isFinite ? $0 : nil }
        message = output["message"]?.stringValue.map { String($0.prefix(500)) }
    }
}

/// One file a run produced, in the bucket (DESIGN §5 result `artifacts`).
public struct JobArtifact: Sendable, Equatable, Codable {
    public enum Kind: String, Sendable, Codable, CaseIterable {
        /// `optimizer`: the optimizer state saved with a checkpoint (same step), for resuming.
        case lora, checkpoint, optimizer, sample, config, log, loss
    }

    public var kind: Kind
    public var key: String
    public var bytes: Int64?
    public var sha256: String?
    public var step: Int?

    public init(kind: Kind, key: String, bytes: Int64? = nil, sha256: String? = nil, step: Int? = nil) {
        self.kind = kind
        self.key = key
        self.bytes = bytes
        self.sha256 = sha256
        self.step = step
    }

    /// As the job contract writes it in a result or progress `output` (DESIGN §5); `list` reads it.
    public var contractJSON: JSONValue {
        var fields: [(String, JSONValue)] = [("kind", .string(kind.rawValue)), ("key", .string(key))]
        if let bytes { fields.append(("bytes", .int(Int(bytes)))) }
        if let sha256 { fields.append(("sha256", .string(sha256))) }
        if let step { fields.append(("step", .int(step))) }
        return .object(fields)
    }

    /// The artifacts of a result or progress `output`, keeping only well-formed ones whose key
    /// lies under `prefix` (a worker must not point us at other jobs' or users' objects).
    /// The job's result: the checkpoint promoted to it, else the final LoRA.
    public static func result(of artifacts: [JobArtifact], promotedStep: Int?) -> JobArtifact? {
        if let promotedStep, let checkpoint = artifacts.first(where: { $0.kind == .checkpoint && $0.step == promotedStep }) { return checkpoint }
        return artifacts.first { $0.kind == .lora }
    }

    public static func list(in output: JSONValue?, prefix: String) -> [JobArtifact] {
        guard case .array(let items)? = output?["artifacts"] else { return [] }
        return items.compactMap { item in
            guard let kind = item["kind"]?.stringValue.flatMap(Kind.init(rawValue:)), let key = item["key"]?.stringValue,
                key.hasPrefix(prefix), !key.contains(".."), key.count > prefix.count
            else { return nil }
            return JobArtifact(
                kind: kind, key: key, bytes: item["bytes"]?.numberValue.map { Int64($0) },
                sha256: item["sha256"]?.stringValue, step: item["step"]?.numberValue.map { Int($0) }
            )
        }
    }
}

/// The first line of a RunPod error for people; the rest (the log tail) is kept beside it.
public enum JobError {
    /// A runner's error as people read it. runpod-python reports a handler's exception as JSON
    /// text (`error_type` "<class 'ValueError'>", `error_message`, `error_traceback`, …): that
    /// becomes "ValueError: message" and its traceback; anything else stays as it is.
    public static func readable(_ error: String) -> String {
        guard error.hasPrefix("{"), let json = try? JSONDecoder().decode(JSONValue.self, from: Data(error.utf8)),
            let message = json["error_message"]?.stringValue
        else { return error }
        let type = json["error_type"]?.stringValue.map { raw in
            raw.hasPrefix("<class '") && raw.hasSuffix("'>") ? String(raw.dropFirst(8).dropLast(2)) : raw
        }
        let headline = type.map { "\($0): \(message)" } ?? message
        return json["error_traceback"]?.stringValue.map { headline + "\n" + $0 } ?? headline
    }

    public static func headline(_ error: String) -> String {
        let firstLine = error.split(whereSeparator: \.isNewline).first.map(String.init) ?? error
        return String(firstLine.prefix(300))
    }
}
