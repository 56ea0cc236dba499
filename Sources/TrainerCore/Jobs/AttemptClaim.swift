import Foundation

/// How an attempt of a job is trained exactly once, whatever happened to its submissions
/// (docs/architecture.md, "Exactly one training per attempt").
///
/// A run of a job writes its claim to the bucket before it trains — `outputs/{job}/claims/
/// attempt-{n}.json`, created only if absent (`If-None-Match: *`) — naming its RunPod job id. Of
/// two runs of one attempt (a submission whose answer was lost, then submitted again) exactly one
/// creates the claim and trains; the other sees it and ends at once without training, naming the
/// holder (`WorkerResult.duplicate(of:)`). The server reads the claim to find a run it does not
/// know the id of, and so can track and cancel it. A cancel of a job whose run is unknown leaves
/// `attempt-{n}.cancelled` beside it: a run that starts later reads it after claiming and stops.
public struct AttemptClaim: Codable, Sendable, Equatable {
    /// The run's id at RunPod (the built-in queue's runner id there).
    public var runID: String
    public var claimedAt: Date

    enum CodingKeys: String, CodingKey {
        case runID = "runpod_job_id"
        case claimedAt = "claimed_at"
    }

    public init(runID: String, claimedAt: Date) {
        self.runID = runID
        self.claimedAt = claimedAt
    }

    public static func key(outputPrefix: String, attempt: Int) -> String { outputPrefix + "claims/attempt-\(attempt).json" }
    public static func cancelledKey(outputPrefix: String, attempt: Int) -> String { outputPrefix + "claims/attempt-\(attempt).cancelled" }

    public func encoded() -> Data {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        return (try? encoder.encode(self)) ?? Data()
    }

    public static func decode(_ data: Data) -> AttemptClaim? {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return try? decoder.decode(Self.self, from: data)
    }
}
