/// What a worker's result `output` may say beyond the artifacts and figures (DESIGN §5).
public enum WorkerResult {
    /// The worker was shut down mid-job (SIGTERM: RunPod scaling down, a reclaimed machine) after
    /// uploading its newest checkpoint: the job is not done, and resumes as its next attempt.
    public static let preemptedKey = "preempted"

    public static func preempted(_ output: JSONValue) -> JSONValue {
        guard case .object(var fields) = output else { return .object([(preemptedKey, .bool(true))]) }
        fields.removeAll { $0.0 == preemptedKey }
        return .object([(preemptedKey, .bool(true))] + fields)
    }

    public static func isPreempted(_ output: JSONValue?) -> Bool {
        output?[preemptedKey] == .bool(true)
    }

    /// Another run holds this attempt (its claim was there first): this one did not train. The
    /// server follows the run named here instead.
    public static let duplicateKey = "duplicate_of"

    public static func duplicate(of runID: String) -> JSONValue {
        .object([(duplicateKey, .string(runID))])
    }

    public static func duplicateOf(_ output: JSONValue?) -> String? {
        output?[duplicateKey]?.stringValue
    }

    /// The job was cancelled before this run started: it did not train.
    public static let cancelledBeforeStartKey = "cancelled_before_start"
    public static let cancelledBeforeStart: JSONValue = .object([(cancelledBeforeStartKey, .bool(true))])
}
