import Vapor

/// A JSON value, for writing OpenAPI schemas as literals.
indirect enum SchemaValue: Encodable, Sendable, ExpressibleByStringLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByIntegerLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral
{
    case string(String), bool(Bool), int(Int), array([SchemaValue]), object([String: SchemaValue])

    init(stringLiteral value: String) { self = .string(value) }
    init(booleanLiteral value: Bool) { self = .bool(value) }
    init(integerLiteral value: Int) { self = .int(value) }
    init(arrayLiteral elements: SchemaValue...) { self = .array(elements) }
    init(dictionaryLiteral elements: (String, SchemaValue)...) { self = .object(Dictionary(uniqueKeysWithValues: elements)) }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .string(let value): try container.encode(value)
        case .bool(let value): try container.encode(value)
        case .int(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }

    static func ref(_ schema: String) -> SchemaValue { ["$ref": .string("#/components/schemas/\(schema)")] }
}

/// One documented API operation. Each controller lists its own beside its routes.
struct APIOperation: Sendable {
    enum Access: Sendable { case anyone, signedIn, admin }

    let method: HTTPMethod
    /// OpenAPI form, e.g. `/api/tokens/{id}`.
    let path: String
    let summary: String
    var access: Access = .signedIn
    var requestSchema: SchemaValue? = nil
    /// Status → (description, schema of the JSON body or nil for none).
    var responses: [Int: (String, SchemaValue?)]
    var produces: String = "application/json"
}

/// The OpenAPI 3.1 document served at `/api/openapi.json`.
enum OpenAPIDocument {
    static func make(operations: [APIOperation], schemas: [String: SchemaValue]) -> SchemaValue {
        var paths: [String: [String: SchemaValue]] = [:]
        for operation in operations {
            paths[operation.path, default: [:]][operation.method.rawValue.lowercased()] = describe(operation)
        }
        return [
            "openapi": "3.1.0",
            "info": [
                "title": "GoModel Trainer API",
                "version": "1",
                "description": "Train Qwen-Image-Edit-2509 LoRAs. Authenticate with `Authorization: Bearer <token>` (POST /api/tokens) or a session cookie; cookie-authenticated requests that change data also send `X-CSRF-Token`. Errors are `{\"error\": {\"code\", \"message\"}}`.",
            ],
            "paths": .object(paths.mapValues { .object($0) }),
            "components": [
                "schemas": .object(schemas.merging(["Error": errorSchema]) { current, _ in current }),
                "securitySchemes": [
                    "bearer": ["type": "http", "scheme": "bearer"],
                    "session": ["type": "apiKey", "in": "cookie", "name": .string(SessionCookie.name)],
                ],
            ],
        ]
    }

    private static func describe(_ operation: APIOperation) -> SchemaValue {
        var responses: [String: SchemaValue] = [:]
        for (status, (description, schema)) in operation.responses {
            var response: [String: SchemaValue] = ["description": .string(description)]
            if let schema { response["content"] = [.init(operation.produces): ["schema": schema]] }
            responses[String(status)] = .object(response)
        }
        for (status, description) in standardErrors(operation) where responses[String(status)] == nil {
            responses[String(status)] = ["description": .string(description), "content": ["application/json": ["schema": .ref("Error")]]]
        }
        var result: [String: SchemaValue] = [
            "summary": .string(operation.summary),
            "operationId": .string(operationID(operation)),
            "responses": .object(responses),
            "security": operation.access == .anyone ? [] : [["bearer": []], ["session": []]],
        ]
        let parameters = operation.path.split(separator: "/").filter { $0.hasPrefix("{") }.map { name -> SchemaValue in
            ["name": .string(String(name.dropFirst().dropLast())), "in": "path", "required": true, "schema": ["type": "string"]]
        }
        if !parameters.isEmpty { result["parameters"] = .array(parameters) }
        if let schema = operation.requestSchema {
            result["requestBody"] = ["required": true, "content": ["application/json": ["schema": schema]]]
        }
        return .object(result)
    }

    private static func standardErrors(_ operation: APIOperation) -> [(Int, String)] {
        var errors: [(Int, String)] = []
        if operation.requestSchema != nil { errors.append((400, "The body is not valid JSON or a field is invalid.")) }
        if operation.access != .anyone { errors.append((401, "Not signed in, or the token is unknown or revoked.")) }
        if operation.access != .anyone, operation.method != .GET { errors.append((403, "Missing CSRF token for a cookie-authenticated request.")) }
        return errors
    }

    private static func operationID(_ operation: APIOperation) -> String {
        let words = operation.path.split(separator: "/").dropFirst().map { $0.replacingOccurrences(of: "{", with: "by_").replacingOccurrences(of: "}", with: "") }
        return ([operation.method.rawValue.lowercased()] + words).joined(separator: "_")
    }

    private static let errorSchema: SchemaValue = [
        "type": "object",
        "required": ["error"],
        "properties": [
            "error": [
                "type": "object",
                "required": ["code", "message"],
                "properties": [
                    "code": ["type": "string"], "message": ["type": "string"],
                    "details": ["type": "array", "description": "Per-item problems, e.g. each refused file.", "items": [
                        "type": "object", "properties": ["path": ["type": "string"], "reason": ["type": "string"]],
                    ]],
                ],
            ],
        ],
    ]
}
