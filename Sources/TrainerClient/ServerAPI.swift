import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import TrainerCore

/// The gomodel server's JSON API as the CLI uses it, with a bearer token.
public struct ServerAPI: Sendable {
    public let baseURL: URL
    let token: String
    let http: HTTPClient

    public init(baseURL: URL, token: String, http: HTTPClient) {
        self.baseURL = baseURL
        self.token = token
        self.http = http
    }

    // The shapes are TrainerCore's `API`, the same the server encodes.

    // MARK: Calls

    public func me() async throws -> API.Session { try await call(.GET, "api/me") }

    public func datasets() async throws -> [API.Dataset] {
        try await (call(.GET, "api/datasets") as API.DatasetList).datasets
    }

    public func createDataset(name: String, defaultCaption: String? = nil) async throws -> API.Dataset {
        try await call(.POST, "api/datasets", body: API.DatasetCreate(name: name, defaultCaption: defaultCaption))
    }

    public func dataset(_ id: UUID) async throws -> API.Dataset { try await call(.GET, "api/datasets/\(id.uuidString.lowercased())") }

    public func deleteDataset(_ id: UUID) async throws {
        let _: Empty = try await call(.DELETE, "api/datasets/\(id.uuidString.lowercased())")
    }

    public func signUploads(_ id: UUID, files: [API.UploadRequest.File]) async throws -> API.SignedUploads {
        try await call(.POST, "api/datasets/\(id.uuidString.lowercased())/uploads", body: API.UploadRequest(files: files))
    }

    public func completeUploads(_ id: UUID, paths: [String]) async throws -> API.Dataset {
        try await call(.POST, "api/datasets/\(id.uuidString.lowercased())/uploads/complete", body: API.CompleteRequest(paths: paths))
    }

    public func createImport(_ id: UUID, fileName: String, size: Int64) async throws -> API.CreatedImport {
        try await call(.POST, "api/datasets/\(id.uuidString.lowercased())/imports", body: API.ImportCreate(fileName: fileName, size: size))
    }

    public func unpackImport(_ id: UUID, importID: UUID) async throws -> API.DatasetImport {
        try await call(.POST, "api/datasets/\(id.uuidString.lowercased())/imports/\(importID.uuidString.lowercased())/unpack")
    }

    public func datasetImport(_ id: UUID, importID: UUID) async throws -> API.DatasetImport {
        try await call(.GET, "api/datasets/\(id.uuidString.lowercased())/imports/\(importID.uuidString.lowercased())")
    }

    public func startDrafts(_ id: UUID, stems: [String]?) async throws -> API.DraftRun {
        try await call(.POST, "api/datasets/\(id.uuidString.lowercased())/drafts", body: API.DraftStart(stems: stems))
    }

    public func drafts(_ id: UUID) async throws -> API.Drafts {
        try await call(.GET, "api/datasets/\(id.uuidString.lowercased())/drafts")
    }

    public func acceptDraft(_ id: UUID, stem: String) async throws -> API.Dataset {
        try await call(.POST, "api/datasets/\(id.uuidString.lowercased())/drafts/\(stem)/accept", body: API.DraftAccept(caption: nil))
    }

    /// `preset` nil: the server's default.
    public func createJob(datasetID: UUID, preset: String?, parameters: API.JobParameters) async throws -> API.Job {
        try await call(.POST, "api/jobs", body: API.JobCreate(datasetId: datasetID, preset: preset, params: parameters))
    }

    public func jobs() async throws -> [API.Job] {
        try await (call(.GET, "api/jobs") as API.JobList).jobs
    }

    public func job(_ id: UUID) async throws -> API.Job { try await call(.GET, "api/jobs/\(id.uuidString.lowercased())") }

    public func cancelJob(_ id: UUID) async throws -> API.Job { try await call(.POST, "api/jobs/\(id.uuidString.lowercased())/cancel") }

    public func retryJob(_ id: UUID) async throws -> API.Job { try await call(.POST, "api/jobs/\(id.uuidString.lowercased())/retry") }

    /// Follows `GET /api/jobs/{id}/events` (server-sent events), calling `update` with each state
    /// until the job ends. A dropped stream, a restarting server or a silent connection (the
    /// server sends something at least every 15 s) leads to a reconnect after a short pause.
    public func watchJob(_ id: UUID, update: @Sendable (API.Job) -> Void) async throws -> API.Job {
        var pause: Duration = .seconds(1)
        while true {
            do {
                if let final = try await followEvents(id, update: update) { return final }
                pause = .seconds(1)
            } catch let error as ServerAPIError where (400..<500).contains(error.status) {
                throw error
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                try await Task.sleep(for: pause)
                pause = min(pause * 2, .seconds(15))
            }
            // The stream ended or failed before the job did (a stopping server ends it; a proxy may
            // refuse long answers): the job may have ended meanwhile. A server that does not answer
            // now is waited for like a dropped stream.
            if let current = try? await job(id), current.isFinal {
                update(current)
                return current
            }
        }
    }

    /// One connection to the event stream; the final job, or nil when the stream ended before it.
    private func followEvents(_ id: UUID, update: @Sendable (API.Job) -> Void) async throws -> API.Job? {
        var request = HTTPClientRequest(url: baseURL.appendingPathComponent("api/jobs/\(id.uuidString.lowercased())/events").absoluteString)
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        request.headers.add(name: "Accept", value: "text/event-stream")
        // Each chunk must come within 45 s (the server's keep-alive is every 15 s).
        let response = try await http.execute(request, timeout: .seconds(45))
        guard response.status == .ok else {
            throw ServerAPIError(status: Int(response.status.code), body: Data(buffer: try await response.body.collect(upTo: 1 << 20)))
        }
        // Bytes, not strings: a chunk may end inside a UTF-8 character.
        var pending: [UInt8] = []
        for try await chunk in response.body {
            pending += chunk.readableBytesView
            while let end = Self.messageEnd(in: pending) {
                let message = String(decoding: pending[..<end], as: UTF8.self)
                pending.removeFirst(end + 2)
                let data = message.split(separator: "\n").filter { $0.hasPrefix("data: ") }.map { $0.dropFirst(6) }.joined(separator: "\n")
                guard !data.isEmpty, let job = try? API.decoder.decode(API.Job.self, from: Data(data.utf8)) else { continue }
                update(job)
                if job.isFinal { return job }
            }
        }
        return nil
    }

    static func messageEnd(in bytes: [UInt8]) -> Int? {
        guard bytes.count >= 2 else { return nil }
        for index in 0..<(bytes.count - 1) where bytes[index] == 10 && bytes[index + 1] == 10 { return index }
        return nil
    }

    /// The dataset with this id, or else the one with this exact name.
    public func findDataset(_ idOrName: String) async throws -> API.Dataset {
        if let id = UUID(uuidString: idOrName) { return try await dataset(id) }
        guard let match = try await datasets().first(where: { $0.name == idOrName }) else {
            throw ServerAPIError(status: 404, code: "not_found", message: "You have no dataset named '\(idOrName)'; `gomodel datasets list` shows yours.")
        }
        return try await dataset(match.id)
    }

    struct Empty: Decodable {}

    public func promote(_ id: UUID, step: Int?) async throws -> API.Job {
        try await call(.POST, "api/jobs/\(id.uuidString.lowercased())/promote", body: API.Promotion(step: step))
    }

    public func deleteJob(_ id: UUID) async throws {
        let _: Empty = try await call(.DELETE, "api/jobs/\(id.uuidString.lowercased())")
    }

    public func usage() async throws -> API.Usage { try await call(.GET, "api/usage") }

    public func record(_ id: UUID) async throws -> API.JobRecord { try await call(.GET, "api/jobs/\(id.uuidString.lowercased())/record") }

    public func estimate(preset: String?, profile: String?, steps: Int) async throws -> API.Estimate {
        var query = "api/estimate?steps=\(steps)"
        if let preset { query += "&preset=" + (preset.addingPercentEncoding(withAllowedCharacters: .urlQueryAllowed) ?? preset) }
        if let profile { query += "&profile=" + (profile.addingPercentEncoding(withAllowedCharacters: .urlQueryAllowed) ?? profile) }
        return try await call(.GET, query)
    }

    public func createWebhook(_ body: API.WebhookCreate) async throws -> API.WebhookEndpoint { try await call(.POST, "api/webhooks", body: body) }

    public func webhooks() async throws -> [API.WebhookEndpoint] {
        let list: API.WebhookEndpointList = try await call(.GET, "api/webhooks")
        return list.webhooks
    }

    public func deleteWebhook(_ id: UUID) async throws {
        let _: Empty = try await call(.DELETE, "api/webhooks/\(id.uuidString.lowercased())")
    }

    public func testWebhook(_ id: UUID) async throws -> API.WebhookDelivery { try await call(.POST, "api/webhooks/\(id.uuidString.lowercased())/test") }

    public func webhookDeliveries(_ id: UUID) async throws -> [API.WebhookDelivery] {
        let list: API.WebhookDeliveryList = try await call(.GET, "api/webhooks/\(id.uuidString.lowercased())/deliveries")
        return list.deliveries
    }

    /// Where an artifact of a job (nil: its result) downloads from: the presigned URL the server
    /// redirects to, valid 15 minutes.
    public func downloadURL(job id: UUID, artifactID: String?) async throws -> URL {
        let path = "api/jobs/\(id.uuidString.lowercased())/" + (artifactID.map { "artifacts/\($0)" } ?? "result")
        var request = HTTPClientRequest(url: baseURL.appendingPathComponent(path).absoluteString)
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        let response: HTTPClientResponse
        do {
            response = try await http.execute(request, timeout: .seconds(60))
        } catch {
            throw ServerAPIError(status: 0, code: "unreachable", message: "Could not reach the server at \(baseURL.absoluteString): \(error).")
        }
        let data = Data(buffer: try await response.body.collect(upTo: 1 << 20))
        guard (300..<400).contains(response.status.code), let location = response.headers.first(name: "Location"), let url = URL(string: location) else {
            throw ServerAPIError(status: Int(response.status.code), body: data)
        }
        return url
    }

    /// `path` may end in a query (`api/estimate?steps=3000`), already encoded.
    func call<Response: Decodable>(_ method: HTTPMethod, _ path: String, body: (some Encodable)? = Optional<Int>.none) async throws -> Response {
        let parts = path.split(separator: "?", maxSplits: 1).map(String.init)
        var request = HTTPClientRequest(url: baseURL.appendingPathComponent(parts[0]).absoluteString + (parts.count > 1 ? "?" + parts[1] : ""))
        request.method = method
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        request.headers.add(name: "Accept", value: "application/json")
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(data: try API.encoder.encode(body)))
        }
        let response: HTTPClientResponse
        do {
            response = try await http.execute(request, timeout: .seconds(120))
        } catch {
            throw ServerAPIError(
                status: 0, code: "unreachable",
                message: "Could not reach the server at \(baseURL.absoluteString): \(error). Check the URL given to `gomodel login` and that the server runs.")
        }
        let data = Data(buffer: try await response.body.collect(upTo: 64 << 20))
        guard (200..<300).contains(response.status.code) else { throw ServerAPIError(status: Int(response.status.code), body: data) }
        if Response.self == Empty.self { return Empty() as! Response }
        do {
            return try API.decoder.decode(Response.self, from: data)
        } catch {
            throw ServerAPIError(
                status: Int(response.status.code), code: "unexpected_response",
                message: "The server's answer to \(method) /\(path) could not be read (\(error)); is \(baseURL.absoluteString) a gomodel server of the same version?")
        }
    }
}

/// An error answered by the server (`{"error": {"code", "message", "details"}}`), or no answer.
public struct ServerAPIError: Error, Sendable, CustomStringConvertible {
    public let status: Int
    public let code: String
    public let message: String
    public var details: [API.Item] = []

    init(status: Int, code: String, message: String) {
        self.status = status
        self.code = code
        self.message = message
    }

    init(status: Int, body: Data) {
        if let decoded = try? API.decoder.decode(API.ErrorBody.self, from: body) {
            self.init(status: status, code: decoded.error.code, message: decoded.error.message)
            details = decoded.error.details ?? []
        } else {
            self.init(status: status, code: "http_\(status)", message: "The server answered HTTP \(status): \(String(decoding: body.prefix(300), as: UTF8.self))")
        }
    }

    public var description: String {
        status == 401 ? "\(message) Then run `gomodel login` with the new token." : message
    }
}
