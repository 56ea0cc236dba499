import Foundation
import NIOFoundationCompat
import TrainerCore
import Vapor

/// Answers and request bodies in the API's one JSON format (`API.encoder`, `API.decoder`).
enum JSON {
    static func response(_ value: some Encodable, status: HTTPResponseStatus = .ok, headers: HTTPHeaders = [:]) throws -> Response {
        var headers = headers
        headers.contentType = .json
        return Response(status: status, headers: headers, body: .init(data: try API.encoder.encode(value)))
    }
}

extension Request {
    /// Decodes a JSON body. Only `application/json` is accepted: an HTML form on another site cannot
    /// send it without a CORS preflight, which this server never grants.
    func decodeJSON<T: Decodable>(_ type: T.Type = T.self) throws -> T {
        guard headers.contentType == .json else {
            throw APIError(
                status: .unsupportedMediaType, code: "unsupported_media_type",
                message: "Send the request body as JSON with the header Content-Type: application/json."
            )
        }
        guard let body = body.data, body.readableBytes > 0 else {
            throw APIError.badRequest("invalid_json", "The request body is empty; send a JSON object.")
        }
        do {
            return try API.decoder.decode(T.self, from: body)
        } catch let error as DecodingError {
            throw APIError.badRequest("invalid_json", Self.explain(error))
        }
    }

    /// Decodes a JSON object whose fields must be among `fields` (the schema's
    /// `additionalProperties: false`): a misspelt field is refused, not ignored.
    func decodeJSON<T: Decodable>(_ type: T.Type = T.self, fields: Set<String>) throws -> T {
        let value = try decodeJSON(T.self)
        if let data = body.data, let object = try? JSONSerialization.jsonObject(with: Data(buffer: data)) as? [String: Any],
            let unknown = object.keys.sorted().first(where: { !fields.contains($0) })
        {
            throw APIError.badRequest("invalid_parameter", "'\(unknown)' is not a field of this request; send only \(fields.sorted().joined(separator: ", ")).")
        }
        return value
    }

    private static func explain(_ error: DecodingError) -> String {
        func field(_ path: [any CodingKey]) -> String {
            path.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
        }
        switch error {
        case .keyNotFound(let key, let context):
            return "The field '\(field(context.codingPath + [key]))' is required."
        case .typeMismatch(let type, let context), .valueNotFound(let type, let context):
            return "The field '\(field(context.codingPath))' must be \(describe(type))."
        case .dataCorrupted(let context) where context.codingPath.isEmpty:
            return "The request body is not valid JSON."
        case .dataCorrupted(let context):
            return "The field '\(field(context.codingPath))' has an invalid value."
        @unknown default:
            return "The request body does not have the expected shape."
        }
    }

    private static func describe(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: "a string"
        case is Bool.Type: "true or false"
        case is Int.Type, is Double.Type: "a number"
        default: "of a different type"
        }
    }
}
