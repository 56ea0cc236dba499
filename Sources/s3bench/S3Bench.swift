import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore
import ObjectStorage
import TrainerCore
import TrainerWorker

/// Drives `ObjectStorage.S3Client` for the benchmarks in `bench/` (see docs/benchmarks.md).
@main
struct S3Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "s3bench",
        abstract: "Benchmark driver for the S3 client.",
        subcommands: [Download.self, Upload.self, Sync.self]
    )

    struct Endpoint: ParsableArguments {
        @Option var endpoint: String
        @Option var bucket: String
        @Option var accessKey: String
        @Option var secretKey: String
        @Option var region = "us-east-1"

        func client(_ http: HTTPClient) -> S3Client {
            S3Client(
                endpoint: S3Endpoint(
                    url: URL(string: endpoint)!, bucket: bucket, region: region,
                    credentials: S3Credentials(accessKeyID: accessKey, secretAccessKey: Secret(secretKey))
                ), httpClient: http)
        }
    }

    /// Downloads every object under a prefix into a folder, `--concurrency` at a time.
    struct Download: AsyncParsableCommand {
        @OptionGroup var endpoint: Endpoint
        @Option var prefix = ""
        @Option var destination: String
        @Option var concurrency = 16

        func run() async throws {
            let http = HTTPClient(
                eventLoopGroupProvider: .singleton, configuration: .init(connectionPool: .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: concurrency)))
            do {
                let client = endpoint.client(http)
                let start = ContinuousClock.now
                let objects = try await client.listAllObjects(prefix: prefix)
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for (index, object) in objects.enumerated() {
                        if index >= concurrency { try await group.next() }
                        let path = destination + "/" + object.key.dropFirst(prefix.count)
                        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                        group.addTask { try await client.getObject(key: object.key, to: path) }
                    }
                    try await group.waitForAll()
                }
                let seconds = (ContinuousClock.now - start) / .seconds(1)
                print(String(format: "downloaded %d objects in %.3f s", objects.count, seconds))
            } catch {
                try await http.shutdown()
                throw error
            }
            try await http.shutdown()
        }
    }

    /// The worker's dataset sync (`TrainerWorker.DatasetSync`, as a job runs it) of a prefix.
    struct Sync: AsyncParsableCommand {
        @OptionGroup var endpoint: Endpoint
        @Option var prefix = ""
        @Option var destination: String

        func run() async throws {
            let http = HTTPClient(eventLoopGroupProvider: .singleton)
            do {
                let start = ContinuousClock.now
                let summary = try await DatasetSync(bucket: endpoint.client(http)).sync(prefix: prefix, into: destination)
                print(
                    String(
                        format: "synced %d objects (%lld bytes, %d skipped) in %.3f s", summary.downloaded, summary.bytes, summary.skipped,
                        (ContinuousClock.now - start) / .seconds(1)))
            } catch {
                try await http.shutdown()
                throw error
            }
            try await http.shutdown()
        }
    }

    /// Uploads one file (multipart above the client's threshold).
    struct Upload: AsyncParsableCommand {
        @OptionGroup var endpoint: Endpoint
        @Option var file: String
        @Option var key: String

        func run() async throws {
            let http = HTTPClient(eventLoopGroupProvider: .singleton)
            do {
                let start = ContinuousClock.now
                try await endpoint.client(http).putObject(key: key, file: file)
                print(String(format: "uploaded in %.3f s", (ContinuousClock.now - start) / .seconds(1)))
            } catch {
                try await http.shutdown()
                throw error
            }
            try await http.shutdown()
        }
    }
}
