import Foundation

/// The JSON API's shapes (DESIGN §7), defined once: the server encodes them, the CLI decodes
/// them, `/api/openapi.json` describes them, and the test suite checks every answer it receives
/// against that document.
public enum API {
    /// The API's one JSON format: ISO 8601 dates, sorted keys (stable output), camelCase keys.
    public static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    public static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }()

    /// The body of every error answer: `{"error": {"code", "message", "details"}}`.
    public struct ErrorBody: Codable, Sendable {
        public struct Detail: Codable, Sendable {
            /// Stable, for programs.
            public let code: String
            /// For people: what went wrong and what to do.
            public let message: String
            public var details: [Item]?

            public init(code: String, message: String, details: [Item]? = nil) {
                self.code = code
                self.message = message
                self.details = details
            }
        }

        public let error: Detail

        public init(error: Detail) { self.error = error }
    }

    /// A problem with one item of a request (a file path, a parameter), or one that was refused.
    public struct Item: Codable, Sendable, Equatable {
        public let path: String
        public let reason: String

        public init(path: String, reason: String) {
            self.path = path
            self.reason = reason
        }
    }
}
