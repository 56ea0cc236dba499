import Foundation

/// Where `gomodel login` keeps the server and token: `$XDG_CONFIG_HOME/gomodel/login.json`
/// (else `~/.config/gomodel/login.json`), readable by the owner only (0600, folder 0700).
public struct ClientLogin: Codable, Sendable, Equatable {
    public var server: URL
    public var token: String

    public init(server: URL, token: String) {
        self.server = server
        self.token = token
    }

    public static func defaultPath(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        let base = environment["XDG_CONFIG_HOME"].flatMap { $0.isEmpty ? nil : $0 }
            ?? (environment["HOME"] ?? NSHomeDirectory()) + "/.config"
        return base + "/gomodel/login.json"
    }

    public static func load(from path: String = defaultPath()) throws -> ClientLogin {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw LoginError("Not logged in: run `gomodel login --server URL --token TOKEN` first (create a token on the account page or with `gomodel tokens create`).")
        }
        do {
            return try JSONDecoder().decode(ClientLogin.self, from: data)
        } catch {
            throw LoginError("\(path) could not be read (\(error)); run `gomodel login` again.")
        }
    }

    /// Written to a private temporary file, then renamed: the token is never readable by others,
    /// not even for a moment, and an interrupted write leaves the old login intact.
    public func save(to path: String = defaultPath()) throws {
        let folder = (path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let temporary = path + ".\(UUID().uuidString).tmp"
        guard FileManager.default.createFile(atPath: temporary, contents: try encoder.encode(self), attributes: [.posixPermissions: 0o600]) else {
            throw LoginError("Could not write \(temporary); check that \(folder) is writable.")
        }
        guard rename(temporary, path) == 0 else {
            let error = String(cString: strerror(errno))
            unlink(temporary)
            throw LoginError("Could not save \(path): \(error).")
        }
    }
}

public struct LoginError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
