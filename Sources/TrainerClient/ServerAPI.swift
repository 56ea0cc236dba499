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

    // MARK: Shapes (DESIGN §7)

    public struct Me: Decodable, Sendable {
        public struct User: Decodable, Sendable { public let email: String }
        public let user: User
    }

    public struct Dataset: Decodable, Sendable {
        public let id: UUID
        public let name: String
        public let defaultCaption: String?
        public let fileCount: Int
        public let sampleCount: Int
        public let totalBytes: Int64
        public let controlsPerSample: Int?
        public let errorCount: Int
        public let warningCount: Int
        public let sound: Bool
        public let lockedByJobId: UUID?
        public let validation: Validation?
        public let files: [File]?
        public let failures: [Item]?
    }

    public struct Validation: Decodable, Sendable {
        public struct Finding: Decodable, Sendable {
            public let severity: String
            public let code: String
            public let file: String
            public let message: String
        }

        public let sound: Bool
        public let samples: Int
        public let controlsPerSample: Int?
        public let totalBytes: Int64
        public let findings: [Finding]
    }

    public struct File: Decodable, Sendable {
        public let key: String
        public let role: String
        public let stem: String
        public let bytes: Int64
        public let sha256: String?
    }

    public struct Item: Codable, Sendable {
        public let path: String
        public let reason: String
    }

    public struct UploadFile: Encodable, Sendable {
        public let path: String
        public let size: Int64
        public let contentType: String
        public let sha256: String?
    }

    public struct SignedUploads: Decodable, Sendable {
        public struct Upload: Decodable, Sendable {
            public let path: String
            public let key: String
            public let url: URL
            public let method: String
            public let headers: [String: String]
        }

        public let uploads: [Upload]
        public let skipped: [String]
    }

    public struct Job: Decodable, Sendable {
        public struct Progress: Decodable, Sendable {
            public let phase: String?
            public let step: Int?
            public let totalSteps: Int?
            public let loss: Double?
            public let itPerSec: Double?
            public let etaSeconds: Double?
            public let message: String?
        }

        public struct Artifact: Decodable, Sendable {
            public let id: String
            public let kind: String
            public let key: String
            public let bytes: Int64?
            public let step: Int?
        }

        public struct Event: Decodable, Sendable {
            public let status: String
            public let message: String
        }

        public let id: UUID
        public let datasetId: UUID
        public let status: String
        public let runnerStatus: String?
        public let attempt: Int
        public let progress: Progress?
        public let runpodJobId: String?
        public let artifacts: [Artifact]
        public let error: String?
        public let errorDetail: String?
        public let cancelRequested: Bool
        public let queueSeconds: Double?
        public let executionSeconds: Double?
        public let cost: Double?
        public let events: [Event]?

        public var isFinal: Bool { ["completed", "failed", "cancelled", "timed_out"].contains(status) }
    }

    // MARK: Calls

    public func me() async throws -> Me { try await call(.GET, "api/me") }

    public func datasets() async throws -> [Dataset] {
        struct List: Decodable { let datasets: [Dataset] }
        return try await (call(.GET, "api/datasets") as List).datasets
    }

    public func createDataset(name: String, defaultCaption: String? = nil) async throws -> Dataset {
        struct Create: Encodable {
            let name: String
            let defaultCaption: String?
        }
        return try await call(.POST, "api/datasets", body: Create(name: name, defaultCaption: defaultCaption))
    }

    public func dataset(_ id: UUID) async throws -> Dataset { try await call(.GET, "api/datasets/\(id.uuidString.lowercased())") }

    public func deleteDataset(_ id: UUID) async throws {
        let _: Empty = try await call(.DELETE, "api/datasets/\(id.uuidString.lowercased())")
    }

    public func signUploads(_ id: UUID, files: [UploadFile]) async throws -> SignedUploads {
        struct Request: Encodable { let files: [UploadFile] }
        return try await call(.POST, "api/datasets/\(id.uuidString.lowercased())/uploads", body: Request(files: files))
    }

    public func completeUploads(_ id: UUID, paths: [String]) async throws -> Dataset {
        struct Request: Encodable { let paths: [String] }
        return try await call(.POST, "api/datasets/\(id.uuidString.lowercased())/uploads/complete", body: Request(paths: paths))
    }

    public func createJob(datasetID: UUID, params: [String: JSONValue]) async throws -> Job {
        struct Create: Encodable {
            let datasetId: UUID
            let preset: String
            let params: JSONValue
        }
        return try await call(.POST, "api/jobs", body: Create(datasetId: datasetID, preset: "qwen-image-edit-2509", params: .object(params.sorted { $0.key < $1.key })))
    }

    public func jobs() async throws -> [Job] {
        struct List: Decodable { let jobs: [Job] }
        return try await (call(.GET, "api/jobs") as List).jobs
    }

    public func job(_ id: UUID) async throws -> Job { try await call(.GET, "api/jobs/\(id.uuidString.lowercased())") }

    public func cancelJob(_ id: UUID) async throws -> Job { try await call(.POST, "api/jobs/\(id.uuidString.lowercased())/cancel") }

    public func retryJob(_ id: UUID) async throws -> Job { try await call(.POST, "api/jobs/\(id.uuidString.lowercased())/retry") }

    /// Follows `GET /api/jobs/{id}/events` (server-sent events), calling `update` with each state
    /// until the job ends. A dropped stream, a restarting server or a silent connection (the
    /// server sends something at least every 15 s) leads to a reconnect after a short pause.
    public func watchJob(_ id: UUID, update: @Sendable (Job) -> Void) async throws -> Job {
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
            let current = try await job(id)
            if current.isFinal {
                update(current)
                return current
            }
        }
    }

    /// One connection to the event stream; the final job, or nil when the stream ended before it.
    private func followEvents(_ id: UUID, update: @Sendable (Job) -> Void) async throws -> Job? {
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
                guard !data.isEmpty, let job = try? JSONDecoder().decode(Job.self, from: Data(data.utf8)) else { continue }
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
    public func findDataset(_ idOrName: String) async throws -> Dataset {
        if let id = UUID(uuidString: idOrName) { return try await dataset(id) }
        guard let match = try await datasets().first(where: { $0.name == idOrName }) else {
            throw ServerAPIError(status: 404, code: "not_found", message: "You have no dataset named '\(idOrName)'; `gomodel datasets list` shows yours.")
        }
        return try await dataset(match.id)
    }

    struct Empty: Decodable {}

    func call<Response: Decodable>(_ method: HTTPMethod, _ path: String, body: (some Encodable)? = Optional<Int>.none) async throws -> Response {
        var request = HTTPClientRequest(url: baseURL.appendingPathComponent(path).absoluteString)
        request.method = method
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        request.headers.add(name: "Accept", value: "application/json")
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(data: try JSONEncoder().encode(body)))
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
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        do {
            return try decoder.decode(Response.self, from: data)
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
    public var details: [ServerAPI.Item] = []

    init(status: Int, code: String, message: String) {
        self.status = status
        self.code = code
        self.message = message
    }

    init(status: Int, body: Data) {
        struct Body: Decodable {
            struct Detail: Decodable {
                let code: String
                let message: String
                let details: [ServerAPI.Item]?
            }
            let error: Detail
        }
        if let decoded = try? JSONDecoder().decode(Body.self, from: body) {
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
