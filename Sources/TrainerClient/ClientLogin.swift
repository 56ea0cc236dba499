import Foundation

#if canImport(Glibc)
    import Glibc
#endif

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
        let base =
            environment["XDG_CONFIG_HOME"].flatMap { $0.isEmpty ? nil : $0 }
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

    /// Written to a temporary file created with mode 0600 (never readable by others, not even
    /// for a moment), then renamed over the old one: an interrupted write leaves the old login.
    public func save(to path: String = defaultPath()) throws {
        let folder = (path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        chmod(folder, 0o700)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let data = try encoder.encode(self)
        let temporary = path + ".\(UUID().uuidString).tmp"
        let descriptor = open(temporary, O_CREAT | O_EXCL | O_WRONLY, 0o600)
        guard descriptor >= 0 else {
            throw LoginError("Could not write \(temporary): \(String(cString: strerror(errno))); check that \(folder) is writable.")
        }
        let written = data.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        let synced = fsync(descriptor)
        close(descriptor)
        guard written == data.count, synced == 0, rename(temporary, path) == 0 else {
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
