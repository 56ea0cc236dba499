import ArgumentParser
import Foundation
import ObjectStorage
import TrainerCore

struct Storage: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The object store.", subcommands: [Credentials.self])

    struct Credentials: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the built-in store's endpoint and keys, to point any S3 tool (aws, rclone, boto3) at it."
        )

        @Option(help: "Host the server listens on (default: where `gomodel serve` last started with this data folder, else 127.0.0.1).") var host: String?
        @Option(help: "Port the server listens on (default: as for --host, else 8080).") var port: Int?
        @Flag(help: "Print JSON instead of shell variables.") var json = false
        @OptionGroup var options: ServerOptions

        func run() async throws {
            let configuration = try Startup.configuration(options: options)
            guard case .builtIn(let bucket) = configuration.objectStore else {
                throw ValidationError("R2_BUCKET is set: this server uses that bucket, not the built-in store.")
            }
            let credentials = try StoreCredentials.loadOrCreate(dataDirectory: configuration.dataDirectory)
            let endpoint = (configuration.publicURL?.absoluteString ?? serverAddress(dataDirectory: configuration.dataDirectory)) + "/s3"
            let values: [(String, String)] = [
                ("endpoint", endpoint), ("bucket", bucket), ("region", Self.region),
                ("accessKeyId", credentials.accessKeyID), ("secretAccessKey", credentials.secretAccessKey.value),
            ]
            if json {
                let object = Dictionary(uniqueKeysWithValues: values)
                let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
                print(String(decoding: data, as: UTF8.self))
            } else {
                print(
                    """
                    # The built-in store (S3, path-style). For example:
                    #   aws --endpoint-url "$AWS_ENDPOINT_URL" s3 ls "s3://\(bucket)/"
                    export AWS_ENDPOINT_URL=\(endpoint)
                    export AWS_ACCESS_KEY_ID=\(credentials.accessKeyID)
                    export AWS_SECRET_ACCESS_KEY=\(credentials.secretAccessKey.value)
                    export AWS_DEFAULT_REGION=\(Self.region)
                    """)
            }
        }

        /// Any region is accepted (the store takes it from the request's scope); `auto`, as R2's,
        /// because boto3 presigns with Signature Version 2 for `us-east-1` by default, which no
        /// S3-compatible store without AWS's legacy endpoints accepts, and with Version 4 elsewhere.
        static let region = "auto"

        static func addressFile(dataDirectory: String) -> String { dataDirectory + "/serve-address" }

        /// --host/--port as given, or where `gomodel serve` last started with this data folder.
        func serverAddress(dataDirectory: String) -> String {
            let recorded = (try? String(contentsOfFile: Self.addressFile(dataDirectory: dataDirectory), encoding: .utf8))
                .flatMap { URL(string: $0.trimmingCharacters(in: .whitespacesAndNewlines)) }
            let chosenHost = host ?? recorded?.host ?? "127.0.0.1"
            let chosenPort = port ?? (host == nil ? recorded?.port : nil) ?? 8080
            return "http://\(chosenHost):\(chosenPort)"
        }
    }
}
