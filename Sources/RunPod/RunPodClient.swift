import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import NIOPosix
import TrainerCore

/// RunPod Serverless's queue API for one endpoint (reference/runpod.md §1): `/run`, `/status`,
/// `/cancel`, `/retry`, `/health`, `/purge-queue`, with `Authorization: Bearer`.
///
/// Calls that are safe to repeat are retried with jittered backoff on 429, 5xx and transport
/// errors. `/run` is not: a second one would start a second paid job, so it is retried only when
/// RunPod cannot have seen it (429, or no connection was made); otherwise the error says the job
/// may exist (`mayHaveArrived`) and the caller must find out before submitting again.
public struct RunPodClient: Sendable {
    public let baseURL: URL
    public let endpointID: String
    let apiKey: Secret
    let http: HTTPClient
    let retry: RetryPolicy
    /// Each attempt's limit: short, so a hung call is given up and retried (or left to the next
    /// round) instead of holding its job. `/run` gets a little more: a lost answer to it is costly.
    let timeout: TimeAmount
    let runTimeout: TimeAmount

    public init(
        baseURL: URL, endpointID: String, apiKey: Secret, http: HTTPClient, retry: RetryPolicy = .default,
        timeout: TimeAmount = .seconds(10), runTimeout: TimeAmount = .seconds(20)
    ) {
        self.baseURL = baseURL
        self.endpointID = endpointID
        self.apiKey = apiKey
        self.http = http
        self.retry = retry
        self.timeout = timeout
        self.runTimeout = runTimeout
    }

    struct RunRequest<Input: Encodable & Sendable>: Encodable, Sendable {
        let input: Input
        let webhook: String?
        let policy: RunPodPolicy
    }

    public func run(input: some Encodable & Sendable, webhook: URL?, policy: RunPodPolicy) async throws -> RunPodJob {
        let body = try JSONEncoder().encode(RunRequest(input: input, webhook: webhook?.absoluteString, policy: policy))
        return try await call(.POST, "run", body: body, repeatable: false, timeout: runTimeout)
    }

    public func status(_ jobID: String) async throws -> RunPodJob {
        try await call(.GET, "status/\(Self.escaped(jobID))", repeatable: true)
    }

    public func cancel(_ jobID: String) async throws -> RunPodJob {
        try await call(.POST, "cancel/\(Self.escaped(jobID))", repeatable: true)
    }

    /// Re-queues a FAILED or TIMED_OUT job under the same id (only while RunPod still has it).
    public func retry(_ jobID: String) async throws -> RunPodJob {
        try await call(.POST, "retry/\(Self.escaped(jobID))", repeatable: false)
    }

    public func health() async throws -> RunPodHealth {
        try await call(.GET, "health", repeatable: true)
    }

    /// Removes queued jobs (running ones continue); returns how many were removed.
    public func purgeQueue() async throws -> Int {
        struct Purged: Decodable { let removed: Int? }
        return try await (call(.POST, "purge-queue", repeatable: true) as Purged).removed ?? 0
    }

    // MARK: Transport

    func call<Response: Decodable>(_ method: HTTPMethod, _ path: String, body: Data? = nil, repeatable: Bool, timeout: TimeAmount? = nil) async throws -> Response {
        try await retry.run(
            retryable: { failure in
                guard let error = failure as? RunPodError else { return false }
                return error.status == 429 || (repeatable && (error.status >= 500 || error.status == 0)) || (error.status == 0 && !error.mayHaveArrived)
            }, retryAfter: { ($0 as? RunPodError)?.retryAfter }
        ) {
            try await send(method, path, body: body, timeout: timeout ?? self.timeout)
        }
    }

    func send<Response: Decodable>(_ method: HTTPMethod, _ path: String, body: Data?, timeout: TimeAmount) async throws -> Response {
        var request = HTTPClientRequest(url: baseURL.appendingPathComponent(endpointID).appendingPathComponent(path).absoluteString)
        request.method = method
        request.headers.add(name: "Authorization", value: "Bearer \(apiKey.value)")
        request.headers.add(name: "Accept", value: "application/json")
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(data: body))
        }
        let data: Data
        let status: UInt
        var retryAfter: Duration?
        do {
            let response = try await http.execute(request, timeout: timeout)
            status = response.status.code
            retryAfter = response.headers.first(name: "retry-after").flatMap(Int64.init).map { .seconds($0) }
            data = Data(buffer: try await response.body.collect(upTo: 16 << 20))
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            throw RunPodError(status: 0, message: "\(error)", mayHaveArrived: !Self.neverSent(error))
        }
        guard (200..<300).contains(status) else {
            let text = String(decoding: data.prefix(500), as: UTF8.self)
            throw RunPodError(status: Int(status), message: text.isEmpty ? "HTTP \(status)" : text, mayHaveArrived: status >= 500, retryAfter: retryAfter)
        }
        do {
            return try JSONDecoder().decode(Response.self, from: data)
        } catch {
            throw RunPodError(status: Int(status), message: "unreadable answer to \(method) \(path): \(error)", mayHaveArrived: true)
        }
    }

    /// Errors that happen before a request leaves: no connection was made.
    static func neverSent(_ error: any Error) -> Bool {
        switch error {
        case let error as HTTPClientError: [.connectTimeout, .getConnectionFromPoolTimeout].contains(error)
        case is NIOConnectionError: true
        case let error as IOError: error.errnoCode == ECONNREFUSED
        default: false
        }
    }

    static func escaped(_ id: String) -> String {
        id.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-_."))) ?? id
    }
}
