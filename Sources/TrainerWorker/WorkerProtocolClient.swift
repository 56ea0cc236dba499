import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import TrainerCore

/// The worker's side of RunPod's protocol (reference/runpod.md §2.3–§2.9): take a job, post
/// progress and the result to job-done, poll job-stop, ping.
public struct WorkerProtocolClient: Sendable {
    public let endpoints: WorkerEndpoints
    let http: HTTPClient

    public init(endpoints: WorkerEndpoints, http: HTTPClient) {
        self.endpoints = endpoints
        self.http = http
    }

    public struct TakenJob: Sendable, Equatable {
        public let id: String
        public let input: JSONValue

        public init(id: String, input: JSONValue) {
            self.id = id
            self.input = input
        }
    }

    public enum TakeOutcome: Sendable, Equatable {
        case job(TakenJob)
        /// 204, 400 (no job "expected when FlashBoot is enabled"), or an empty or non-JSON body.
        case none
        /// 429: wait before asking again.
        case slowDown
    }

    public struct ProtocolError: Error, Sendable, CustomStringConvertible {
        public let description: String
        /// The HTTP status, when there was an answer.
        public var status: UInt?
    }

    /// The platform refused this worker's key (401/403): asking again cannot help.
    public struct KeyRefused: Error, Sendable, Equatable, CustomStringConvertible {
        public let status: UInt
        /// The server's own words, when it gave any (e.g. that the key was revoked).
        public var reason: String? = nil

        init(status: UInt, body: Data) {
            self.status = status
            reason = (try? JSONDecoder().decode(JSONValue.self, from: body))?["error"]?["message"]?.stringValue
        }

        public init(status: UInt, reason: String? = nil) {
            self.status = status
            self.reason = reason
        }

        public var description: String {
            "The queue refused this worker's key (HTTP \(status)\(reason.map { ": " + $0 } ?? ""))."
                + " Check --key (or RUNPOD_AI_API_KEY): create a key with `gomodel workers create-key` on the server."
        }
    }

    /// The runpod-python release whose protocol this client follows, sent as `runpod_version`
    /// where the SDK sends its own (pings).
    public static let followedSDKVersion = "1.12.0"

    /// One take; `inProgress` tells the platform whether this worker already runs a job.
    public func take(inProgress: Bool = false, timeout: TimeAmount = .seconds(95)) async throws -> TakeOutcome {
        let response = try await send(.GET, endpoints.jobTake + "&job_in_progress=\(inProgress ? 1 : 0)", timeout: timeout)
        switch response.status {
        case 204, 400: return .none
        case 429: return .slowDown
        case 401, 403: throw KeyRefused(status: response.status, body: response.body)
        case 200..<300:
            guard let json = try? JSONDecoder().decode(JSONValue.self, from: response.body), let id = json["id"]?.stringValue, let input = json["input"] else {
                return .none
            }
            return .job(TakenJob(id: id, input: input))
        default:
            throw ProtocolError(description: "job-take answered HTTP \(response.status)", status: response.status)
        }
    }

    /// Progress while the job runs: `{"status": "IN_PROGRESS", "output": progress}`.
    public func progress(jobID: String, _ progress: JSONValue) async throws {
        try await done(jobID: jobID, body: ["status": "IN_PROGRESS", "output": progress])
    }

    /// The result (`{"output": …}`) or the failure (`{"error": …}`), as runpod-python sends it:
    /// three tries, 2 s then 3 s apart, on a 5xx (its aiohttp_retry FibonacciRetry(attempts=3));
    /// given up at once on another refusal. Unlike the SDK, a lost connection is tried again too.
    /// Throws the last error; the caller logs it and goes on taking jobs (as the SDK does).
    public func finish(jobID: String, output: JSONValue? = nil, error: String? = nil) async throws {
        var body: [(String, JSONValue)] = []
        if let output { body.append(("output", output)) }
        if let error { body.append(("error", .string(error))) }
        try await Self.finishRetries.run(retryable: { !(($0 as? ProtocolError)?.status.map { $0 < 500 } ?? false) }) {
            try await done(jobID: jobID, body: .object(body))
        }
    }

    static let finishRetries = RetryPolicy.fixed([.seconds(2), .seconds(3)])

    /// One job-done post. Like the SDK: JSON text labelled as a form (servers that follow it expect
    /// the same), `isStream=false`, and the job's id in `X-Request-ID`.
    func done(jobID: String, body: JSONValue) async throws {
        let response = try await send(
            .POST, endpoints.jobDone(jobID) + "&isStream=false", body: Data(body.rendered().utf8), contentType: "application/x-www-form-urlencoded",
            headers: [("X-Request-ID", jobID)], timeout: .seconds(30))
        guard (200..<300).contains(response.status) else {
            throw ProtocolError(description: "job-done answered HTTP \(response.status): \(String(decoding: response.body.prefix(200), as: UTF8.self))", status: response.status)
        }
    }

    /// A post to the job's progress channel on the server (`progress_channel.url` in its input):
    /// the same body as to job-done. The URL's secret is the credential; the worker's key (RunPod's
    /// API key in its cloud) is not sent there.
    public func post(channel url: String, _ body: JSONValue) async throws {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(data: Data(body.rendered().utf8)))
        let response = try await http.execute(request, timeout: .seconds(10))
        _ = try await response.body.collect(upTo: 1 << 16)
        guard (200..<300).contains(response.status.code) else {
            throw ProtocolError(description: "the progress channel answered HTTP \(response.status.code)", status: response.status.code)
        }
    }

    /// Ids of jobs to stop; empty when there are none. Throws `KeyRefused` when the key is (no
    /// longer) accepted: a revoked key's worker learns it here within seconds, mid-job.
    public func jobsToStop() async throws -> [String] {
        let response = try await send(.GET, endpoints.jobStop, timeout: .seconds(95))
        if response.status == 401 || response.status == 403 { throw KeyRefused(status: response.status, body: response.body) }
        guard response.status == 200, let json = try? JSONDecoder().decode(JSONValue.self, from: response.body),
            case .array(let ids)? = json["jobsToStop"]
        else { return [] }
        return ids.compactMap(\.stringValue)
    }

    /// A heartbeat, for the worker's whole life: with the ids of the jobs it runs, none when idle.
    public func ping(jobIDs: [String]) async throws {
        var url = endpoints.ping
        if !jobIDs.isEmpty { url += "&job_id=" + jobIDs.joined(separator: ",") }
        url += "&runpod_version=" + Self.followedSDKVersion
        // Twice the interval, at least a second.
        let milliseconds = max(1000, 2 * (endpoints.pingInterval / .milliseconds(1)))
        _ = try await send(.GET, url, timeout: .milliseconds(Int64(milliseconds)))
    }

    struct Answer {
        let status: UInt
        let body: Data
    }

    private func send(_ method: HTTPMethod, _ url: String, body: Data? = nil, contentType: String? = nil, headers: [(String, String)] = [], timeout: TimeAmount) async throws
        -> Answer
    {
        var request = HTTPClientRequest(url: url)
        request.method = method
        request.headers.add(name: "Authorization", value: endpoints.authorization)
        request.headers.add(contentsOf: headers)
        if let contentType { request.headers.add(name: "Content-Type", value: contentType) }
        if let body { request.body = .bytes(ByteBuffer(data: body)) }
        let response = try await http.execute(request, timeout: timeout)
        return Answer(status: response.status.code, body: Data(buffer: try await response.body.collect(upTo: 64 << 20)))
    }
}
