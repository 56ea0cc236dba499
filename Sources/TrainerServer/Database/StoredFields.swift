import FluentKit
import Foundation

extension Fields {
    /// Takes every stored field of `source`, as loading its row would: a column added to the
    /// model comes along with nothing to remember.
    func takeStoredFields(of source: Self) throws {
        let fields = StoredFields()
        source.input(to: fields)
        try output(from: fields)
    }
}

/// A model's fields as FluentKit hands them to a database, read back as a row.
private final class StoredFields: DatabaseInput, DatabaseOutput, @unchecked Sendable {
    private var values: [FieldKey: DatabaseQuery.Value] = [:]

    var wantsUnmodifiedKeys: Bool { true }
    func set(_ value: DatabaseQuery.Value, at key: FieldKey) { values[key] = value }

    func schema(_ schema: String) -> any DatabaseOutput { self }
    func contains(_ key: FieldKey) -> Bool { values[key] != nil }

    func decodeNil(_ key: FieldKey) throws -> Bool {
        if case .null? = values[key] { return true }
        return false
    }

    func decode<T: Decodable>(_ key: FieldKey, as type: T.Type) throws -> T {
        switch values[key] {
        case .bind(let value as T): return value
        case .enumCase(let name): return try JSONDecoder().decode(T.self, from: JSONEncoder().encode(name))
        default: throw DecodingError.valueNotFound(T.self, .init(codingPath: [], debugDescription: "no stored value for \(key)"))
        }
    }

    var description: String { "\(values.keys.map(\.description).sorted())" }
}
