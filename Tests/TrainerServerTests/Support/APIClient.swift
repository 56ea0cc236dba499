import Foundation
import NIOConcurrencyHelpers
import NIOFoundationCompat
import Testing
import VaporTesting

@testable import TrainerServer

/// Talks to a test app like a browser (keeps the session cookie, sends the CSRF token) or like the
/// CLI (a bearer token).
struct APIClient {
    let app: Application
    var sessionCookie: String?
    /// The known-device cookie a sign-in gave this client, sent back like a browser does.
    var deviceCookie: String?
    var csrfToken: String?
    var bearerToken: String?
    /// Sent as `X-Forwarded-For` (the tests turn on GOMODEL_TRUST_PROXY where it matters).
    var forwardedFor: String?
    /// Sent as `Host`: presigned URLs of the built-in store point where the client reached us.
    var host: String?

    init(_ app: Application) { self.app = app }

    @discardableResult
    mutating func send(
        _ method: HTTPMethod, _ path: String, body: String? = nil, contentType: String? = "application/json",
        sendCSRF: Bool = true, headers extra: HTTPHeaders = [:]
    ) async throws -> TestingHTTPResponse {
        var headers = extra
        let cookies = [sessionCookie.map { "\(SessionCookie.name)=\($0)" }, deviceCookie.map { "\(DeviceCookie.name)=\($0)" }].compactMap { $0 }
        if !cookies.isEmpty { headers.add(name: .cookie, value: cookies.joined(separator: "; ")) }
        if let csrfToken, sendCSRF { headers.add(name: "X-CSRF-Token", value: csrfToken) }
        if let bearerToken { headers.bearerAuthorization = .init(token: bearerToken) }
        if let forwardedFor { headers.add(name: .xForwardedFor, value: forwardedFor) }
        if let host { headers.replaceOrAdd(name: .host, value: host) }
        if body != nil, let contentType { headers.add(name: .contentType, value: contentType) }
        let response = try await app.testing().sendRequest(method, path, headers: headers, body: body.map { ByteBuffer(string: $0) })
        ResponseLog.shared?.record(method: method, path: path, response: response)
        if let cookie = response.headers.setCookie?[SessionCookie.name] {
            sessionCookie = cookie.string.isEmpty ? nil : cookie.string
        }
        if let cookie = response.headers.setCookie?[DeviceCookie.name] { deviceCookie = cookie.string }
        if let token = (try? response.json)?["csrfToken"] as? String { csrfToken = token }
        return response
    }

    /// Signs up (or logs in when `login` is true) and keeps the session.
    @discardableResult
    mutating func signUp(_ email: String, password: String = "correct horse battery", inviteCode: String? = nil) async throws -> TestingHTTPResponse {
        let invite = inviteCode.map { #", "inviteCode": "\#($0)""# } ?? ""
        return try await send(.POST, "/api/auth/signup", body: #"{"email": "\#(email)", "password": "\#(password)"\#(invite)}"#)
    }

    @discardableResult
    mutating func logIn(_ email: String, password: String = "correct horse battery") async throws -> TestingHTTPResponse {
        try await send(.POST, "/api/auth/login", body: #"{"email": "\#(email)", "password": "\#(password)"}"#)
    }

    /// Creates an API token with the current session and returns its value.
    mutating func createToken(name: String = "cli") async throws -> String {
        let response = try await send(.POST, "/api/tokens", body: #"{"name": "\#(name)"}"#)
        #expect(response.status == .created)
        return try #require(try response.json["token"] as? String)
    }
}

extension TestingHTTPResponse {
    var json: [String: Any] {
        get throws {
            let object = try JSONSerialization.jsonObject(with: Data(buffer: body))
            return try #require(object as? [String: Any], "expected a JSON object, got \(body.string)")
        }
    }

    /// The `error.code` of an error response.
    var errorCode: String? {
        ((try? json)?["error"] as? [String: Any])?["code"] as? String
    }

    var errorMessage: String? {
        ((try? json)?["error"] as? [String: Any])?["message"] as? String
    }
}

/// With API_RESPONSE_LOG set, every answer the API gives the test suite is appended there as one
/// JSON line (method, path, status, content type, body), for `Tests/Clients/api_responses_check.py`
/// to hold against the OpenAPI document: an undocumented status or field fails the suite.
final class ResponseLog: Sendable {
    static let shared = ProcessInfo.processInfo.environment["API_RESPONSE_LOG"].flatMap(ResponseLog.init)
    private let file: NIOLockedValueBox<FileHandle>

    init?(path: String) {
        if !FileManager.default.fileExists(atPath: path) { FileManager.default.createFile(atPath: path, contents: nil) }
        guard let handle = FileHandle(forWritingAtPath: path) else { return nil }
        handle.seekToEndOfFile()
        file = NIOLockedValueBox(handle)
    }

    func record(method: HTTPMethod, path: String, response: TestingHTTPResponse) {
        let line: [String: Any] = [
            "method": method.rawValue, "path": String(path.split(separator: "?", maxSplits: 1).first ?? ""), "status": Int(response.status.code),
            "contentType": response.headers.first(name: .contentType) ?? "", "body": response.body.string,
        ]
        guard let data = try? JSONSerialization.data(withJSONObject: line) else { return }
        file.withLockedValue { $0.write(data + Data("\n".utf8)) }
    }
}
