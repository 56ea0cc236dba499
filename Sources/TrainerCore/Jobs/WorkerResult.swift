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
}
