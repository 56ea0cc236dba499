/// A value that must never reach a log line, an error message, `/metrics` or an API response.
///
/// Every textual representation is redacted; only `.value` reveals it, so each use is explicit.
public struct Secret: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible,
    CustomReflectable
{
    public let value: String

    public init(_ value: String) { self.value = value }

    public var description: String { "<redacted>" }
    public var debugDescription: String { "<redacted>" }
    public var customMirror: Mirror { Mirror(self, children: []) }
}
