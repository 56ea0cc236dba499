import ArgumentParser
import AsyncHTTPClient
import Foundation
import Logging
import ObjectStorage
import TrainerCore
import TrainerServer
import TrainerWorker
import Vapor

#if canImport(Glibc)
    import Glibc
#endif

struct Worker: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run training jobs on this GPU machine: from RunPod (inside a RunPod worker), or from `gomodel serve`'s built-in queue.",
        discussion: """
            The bucket comes from R2_BUCKET, R2_ENDPOINT, R2_ACCESS_KEY_ID and R2_SECRET_ACCESS_KEY; from a \
            server running its built-in store, `--server` and `--key` are enough: each job brings a store key \
            scoped to it (its dataset to read, its outputs to write). The trainer is \
            `python run.py <config>` in AI_TOOLKIT_DIR, or GOMODEL_TRAINER_COMMAND. SIGTERM (or SIGINT) stops the \
            trainer, uploads its newest checkpoint and reports the job as preempted: the server queues it again \
            at once, resuming from that checkpoint. Logs go to standard error (LOG_LEVEL). Exits with status \
            \(Worker.keyRefusedStatus) when the queue refuses the worker's key.
            """
    )

    @ArgumentParser.Option(help: "The gomodel server whose built-in queue to serve, e.g. http://10.0.0.2:8080.") var server: String?
    @ArgumentParser.Option(help: "A worker key from `gomodel workers create-key` (or '-' to read it from standard input).") var key: String?
    @ArgumentParser.Option(help: "Run the job input in this JSON file once and print the result (like RunPod's --test_input).") var testInput: String?
    @ArgumentParser.Option(help: "This worker's name in job events (default: the host name).") var name: String?
    @OptionGroup var options: ServerOptions

    /// EX_NOPERM: a supervisor should not restart a worker whose key was refused.
    static let keyRefusedStatus: Int32 = 77

    func run() async throws {
        // Info by default (what it takes, finishes, cannot post), unlike the server's notice.
        let level = ProcessInfo.processInfo.environment["LOG_LEVEL"].flatMap { $0.isEmpty ? nil : $0 } ?? "info"
        var loggingEnvironment = Environment(name: "production", arguments: ["gomodel", "--log", level])
        try GomodelLogging.bootstrap(from: &loggingEnvironment)
        let configuration = try Startup.configuration(options: options, ignoring: ["RUNPOD_ENDPOINT_ID", "RUNPOD_API_KEY", "RUNPOD_BASE_URL"])
        let serverURL = try server.map { text in
            guard let url = URL(string: text), url.host != nil, ["http", "https"].contains(url.scheme) else { throw ValidationError("--server must be an http(s) address.") }
            return url
        }
        // The bucket's settings, or the server's built-in store with each job's own key.
        enum Store {
            case bucket(S3Endpoint)
            case builtIn(URL)
        }
        let store: Store =
            switch (configuration.objectStore, serverURL) {
            case (.s3(let bucket), _):
                .bucket(
                    S3Endpoint(
                        url: bucket.endpoint, bucket: bucket.bucket, region: bucket.region,
                        credentials: S3Credentials(accessKeyID: bucket.accessKeyID, secretAccessKey: bucket.secretAccessKey)))
            case (.builtIn, let serverURL?):
                .builtIn(serverURL.appendingPathComponent("s3"))
            case (.builtIn, nil):
                throw ValidationError(
                    "The worker needs the bucket: set R2_BUCKET, R2_ENDPOINT, R2_ACCESS_KEY_ID and R2_SECRET_ACCESS_KEY. (With `--server`, a server running the built-in store gives each job a key of its own.)"
                )
            }
        let command: [String]
        if let words = configuration.worker.trainerCommand {
            command = words
        } else if configuration.worker.aiToolkitDirectory != nil {
            command = ["python", "run.py"]
        } else {
            throw ValidationError("Set AI_TOOLKIT_DIR to an ai-toolkit checkout (the trainer runs `python run.py <config>` there), or GOMODEL_TRAINER_COMMAND.")
        }
        var httpConfiguration = HTTPClient.Configuration()
        httpConfiguration.timeout.connect = .seconds(10)
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: httpConfiguration)
        // Patient: a refused final upload costs the whole training (8 tries over about 2 minutes).
        let retry = RetryPolicy(maxAttempts: 8, baseDelay: .seconds(1), maxDelay: .seconds(30))
        let bucket: JobBucket =
            switch store {
            case .bucket(let endpoint): .configured(S3Client(endpoint: endpoint, httpClient: http, retry: retry))
            case .builtIn(let url): .builtInStore(url: url, http: http, retry: retry)
            }
        var environment: [String: String] = [:]
        if let token = configuration.worker.huggingFaceToken { environment["HF_TOKEN"] = token.value }
        let handler = TaskHandler(
            training: TrainingHandler(
                bucket: bucket,
                workRoot: configuration.worker.workDirectory,
                trainerCommand: command, trainerDirectory: configuration.worker.aiToolkitDirectory, trainerEnvironment: environment
            ),
            drafting: DraftHandler(
                bucket: bucket, workRoot: configuration.worker.workDirectory, command: configuration.worker.captionCommand,
                environment: environment))
        do {
            try await work(handler: handler, http: http, server: serverURL)
            try await http.shutdown()
        } catch {
            try? await http.shutdown()
            throw error
        }
    }

    /// `server`: the checked --server address.
    private func work(handler: TaskHandler, http: HTTPClient, server: URL?) async throws {
        if let testInput {
            guard let data = FileManager.default.contents(atPath: testInput), let input = try? JSONDecoder().decode(JSONValue.self, from: data) else {
                throw ValidationError("\(testInput) is not a JSON file.")
            }
            // RunPod's test input files hold {"input": {...}}.
            let job = WorkerProtocolClient.TakenJob(id: "local-test", input: input["input"] ?? input)
            let reporter = ProgressReporter(interval: .seconds(1)) { print("progress: " + $0.rendered().replacingOccurrences(of: "\n", with: " ")) }
            do {
                let output = try await handler.run(job, progress: reporter)
                await reporter.drain()
                print(output.rendered())
                return
            } catch let failure as JobFailure {
                await reporter.drain()
                FileHandle.standardError.write(Data("The job failed: \(failure.message)\n\(failure.detail.map { $0 + "\n" } ?? "")".utf8))
                throw ExitCode.failure
            }
        }
        let endpoints: WorkerEndpoints
        if let server {
            guard let key = try key.map({ $0 == "-" ? try readLineFromInput(prompt: "Worker key: ") : $0 }) else {
                throw ValidationError("--key is required with --server (create one with `gomodel workers create-key`).")
            }
            endpoints = .builtInQueue(server: server, key: key, workerID: name ?? ProcessInfo.processInfo.hostName)
        } else {
            do {
                endpoints = try WorkerEndpoints.fromRunPod(environment: ProcessInfo.processInfo.environment)
            } catch {
                throw ValidationError("\(error.description)")
            }
        }
        var logger = Logger(label: "gomodel.worker")
        logger[metadataKey: "worker"] = "\(endpoints.workerID)"
        let runtime = WorkerRuntime(client: WorkerProtocolClient(endpoints: endpoints, http: http), handler: handler, logger: logger)
        let running = Task { try await runtime.run() }
        // SIGTERM and SIGINT end the worker: the trainer stops, checkpoints stay, the job resumes elsewhere.
        var sources: [any DispatchSourceSignal] = []
        for signalNumber in [SIGTERM, SIGINT] {
            signal(signalNumber, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
            source.setEventHandler { running.cancel() }
            source.resume()
            sources.append(source)
        }
        defer { for source in sources { source.cancel() } }
        logger.info("taking jobs", metadata: ["queue": "\(endpoints.jobTake.split(separator: "?").first ?? "")"])
        do {
            try await running.value
        } catch is CancellationError {
            logger.info("stopped")
        } catch let refused as WorkerProtocolClient.KeyRefused {
            FileHandle.standardError.write(Data("gomodel worker: \(refused.description)\n".utf8))
            throw ExitCode(Self.keyRefusedStatus)
        }
    }
}
