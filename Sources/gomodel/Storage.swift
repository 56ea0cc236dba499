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

        @Option(help: "Host the server listens on (for the endpoint URL when GOMODEL_PUBLIC_URL is unset).") var host = "127.0.0.1"
        @Option(help: "Port the server listens on.") var port = 8080
        @Flag(help: "Print JSON instead of shell variables.") var json = false
        @OptionGroup var options: ServerOptions

        func run() async throws {
            let configuration = try Startup.configuration(options: options)
            guard case .builtIn(let bucket) = configuration.objectStore else {
                throw ValidationError("R2_BUCKET is set: this server uses that bucket, not the built-in store.")
            }
            let credentials = try StoreCredentials.loadOrCreate(dataDirectory: configuration.dataDirectory)
            let endpoint = (configuration.publicURL?.absoluteString ?? "http://\(host):\(port)") + "/s3"
            let values: [(String, String)] = [
                ("endpoint", endpoint), ("bucket", bucket), ("region", "us-east-1"),
                ("accessKeyId", credentials.accessKeyID), ("secretAccessKey", credentials.secretAccessKey.value),
            ]
            if json {
                let object = Dictionary(uniqueKeysWithValues: values)
                let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
                print(String(decoding: data, as: UTF8.self))
            } else {
                print("""
                # The built-in store (S3, path-style). For example:
                #   aws --endpoint-url "$AWS_ENDPOINT_URL" s3 ls "s3://\(bucket)/"
                export AWS_ENDPOINT_URL=\(endpoint)
                export AWS_ACCESS_KEY_ID=\(credentials.accessKeyID)
                export AWS_SECRET_ACCESS_KEY=\(credentials.secretAccessKey.value)
                export AWS_DEFAULT_REGION=us-east-1
                """)
            }
        }
    }
}
