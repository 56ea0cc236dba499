import TrainerCore
import Vapor

/// A JSON value, for writing OpenAPI schemas as literals.
indirect enum SchemaValue: Encodable, Sendable, ExpressibleByStringLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral
{
    case string(String)
    case bool(Bool)
    case int(Int)
    case double(Double)
    case array([SchemaValue])
    case object([String: SchemaValue])
    case null

    init(stringLiteral value: String) { self = .string(value) }
    init(booleanLiteral value: Bool) { self = .bool(value) }
    init(integerLiteral value: Int) { self = .int(value) }
    init(floatLiteral value: Double) { self = .double(value) }
    init(arrayLiteral elements: SchemaValue...) { self = .array(elements) }
    init(dictionaryLiteral elements: (String, SchemaValue)...) { self = .object(Dictionary(uniqueKeysWithValues: elements)) }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .string(let value): try container.encode(value)
        case .bool(let value): try container.encode(value)
        case .int(let value): try container.encode(value)
        case .double(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        case .null: try container.encodeNil()
        }
    }

    static func ref(_ schema: String) -> SchemaValue { ["$ref": .string("#/components/schemas/\(schema)")] }

    /// A name people read (datasets, tokens, worker keys), as `VisibleName` checks it.
    static let visibleName: SchemaValue = ["type": "string", "minLength": 1, "maxLength": .int(VisibleName.maximumLength), "pattern": .string(VisibleName.pattern)]

    /// This object with `other`'s keys added or replaced.
    func merging(_ other: SchemaValue) -> SchemaValue {
        guard case .object(let fields) = self, case .object(let more) = other else { return other }
        return .object(fields.merging(more) { _, new in new })
    }
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
    /// Query parameters: name → (schema, required).
    var query: [String: (SchemaValue, Bool)] = [:]
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
                "description":
                    "Train Qwen-Image-Edit-2509 LoRAs. Authenticate with `Authorization: Bearer <token>` (POST /api/tokens) or a session cookie; cookie-authenticated requests that change data also send `X-CSRF-Token`. Errors are `{\"error\": {\"code\", \"message\"}}`.",
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
            if let schema { response["content"] = [.init((200..<300).contains(status) ? operation.produces : "application/json"): ["schema": schema]] }
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
        let parameters =
            operation.path.split(separator: "/").filter { $0.hasPrefix("{") }.map { name -> SchemaValue in
                ["name": .string(String(name.dropFirst().dropLast())), "in": "path", "required": true, "schema": ["type": "string"]]
            }
            + operation.query.sorted { $0.key < $1.key }.map { name, parameter -> SchemaValue in
                ["name": .string(name), "in": "query", "required": .bool(parameter.1), "schema": parameter.0]
            }
        if !parameters.isEmpty { result["parameters"] = .array(parameters) }
        if let schema = operation.requestSchema {
            result["requestBody"] = ["required": true, "content": ["application/json": ["schema": nullableOptionals(schema)]]]
        }
        return .object(result)
    }

    /// Swift's decoders read a JSON null as an absent optional field, so every optional property
    /// of a request (of a schema with `"type": "object"`) takes null too, and the document says so.
    static func nullableOptionals(_ schema: SchemaValue) -> SchemaValue {
        switch schema {
        case .array(let items):
            return .array(items.map(nullableOptionals))
        case .object(var fields):
            for (key, value) in fields where key != "properties" { fields[key] = nullableOptionals(value) }
            guard case .string("object")? = fields["type"], case .object(var properties)? = fields["properties"] else { return .object(fields) }
            var required: Set<String> = []
            if case .array(let names)? = fields["required"] { required = Set(names.compactMap { if case .string(let name) = $0 { name } else { nil } }) }
            for (name, property) in properties {
                properties[name] = required.contains(name) ? nullableOptionals(property) : allowingNull(nullableOptionals(property))
            }
            fields["properties"] = .object(properties)
            return .object(fields)
        default:
            return schema
        }
    }

    private static func allowingNull(_ schema: SchemaValue) -> SchemaValue {
        guard case .object(var fields) = schema else { return schema }
        switch fields["type"] {
        case .string(let type)?:
            fields["type"] = [.string(type), "null"]
        case .array(let types)? where !types.contains(where: { if case .string("null") = $0 { true } else { false } }):
            fields["type"] = .array(types + ["null"])
        case nil:
            if case .array(let choices)? = fields["anyOf"] { fields["anyOf"] = .array(choices + [["type": "null"]]) }
        default:
            break
        }
        if case .array(let values)? = fields["enum"] { fields["enum"] = .array(values + [.null]) }
        return .object(fields)
    }

    private static func standardErrors(_ operation: APIOperation) -> [(Int, String)] {
        var errors: [(Int, String)] = []
        if operation.requestSchema != nil {
            errors.append((400, "The body is not valid JSON or a field is invalid."))
            errors.append((415, "The body is not sent as Content-Type: application/json."))
        }
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
                    "details": [
                        "type": "array", "description": "Per-item problems, e.g. each refused file.",
                        "items": [
                            "type": "object", "properties": ["path": ["type": "string"], "reason": ["type": "string"]],
                        ],
                    ],
                ],
            ]
        ],
    ]
}

/// Answers a documented path asked with a method it does not have with 405 and `Allow` (and
/// OPTIONS with 204 and `Allow`), from the same operations the OpenAPI document lists, instead of
/// the router's 404: the path exists, the method is what is wrong.
struct MethodNotAllowedMiddleware: AsyncMiddleware {
    /// Each documented path as its segments (`nil` for a `{parameter}`), with its methods.
    private let paths: [(segments: [String?], methods: [String])]

    init(operations: [APIOperation]) {
        let grouped = Dictionary(grouping: operations, by: \.path)
        paths = grouped.map { path, operations in
            let segments = path.split(separator: "/").map { $0.hasPrefix("{") ? nil : String($0) }
            return (segments, operations.map(\.method.rawValue).sorted())
        }
    }

    func respond(to request: Request, chainingTo next: any AsyncResponder) async throws -> Response {
        let segments = request.url.path.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map(String.init)
        guard let documented = paths.first(where: { Self.matches($0.segments, segments) }),
            !documented.methods.contains(request.method.rawValue), !(request.method == .HEAD && documented.methods.contains("GET"))
        else { return try await next.respond(to: request) }
        let allow = (documented.methods.contains("GET") ? documented.methods + ["HEAD"] : documented.methods).joined(separator: ", ")
        if request.method == .OPTIONS { return Response(status: .noContent, headers: ["Allow": allow]) }
        throw APIError(
            status: .methodNotAllowed, code: "method_not_allowed",
            message: "\(request.url.path) does not take \(request.method.rawValue); it takes \(allow) (see /api/openapi.json).", headers: ["Allow": allow])
    }

    private static func matches(_ template: [String?], _ segments: [String]) -> Bool {
        template.count == segments.count && zip(template, segments).allSatisfy { expected, segment in expected.map { $0 == segment } ?? !segment.isEmpty }
    }
}
