import AsyncHTTPClient
import Fluent
import FluentPostgresDriver
import FluentSQLiteDriver
import Foundation
import Leaf
import LeafKit
import ObjectStorage
import Prometheus
import RunPod
import TrainerCore
import Vapor

/// Builds the whole server from its configuration: database, middleware and routes.
/// Migrations are not run here: `gomodel serve` and `gomodel migrate` run them explicitly.
public func configure(_ app: Application, configuration: Configuration, dependencies: ServerDependencies = .live) throws {
    try useDatabase(app, configuration: configuration)

    let shutdown = ServerShutdown()
    app.storage[ServerShutdown.Key.self] = shutdown
    let registry = PrometheusCollectorRegistry()
    app.middleware = Middlewares()
    app.middleware.use(RequestObservationMiddleware(registry: registry))
    app.middleware.use(APIErrorMiddleware())
    app.middleware.use(HeaderLimitMiddleware())
    app.middleware.use(MethodNotAllowedMiddleware(operations: APIDescription.operations))
    // JSON bodies of the API are small; uploads go straight to the object store.
    app.routes.defaultMaxBodySize = "1mb"

    let accounts = AccountService(now: dependencies.now, bcryptCost: dependencies.bcryptCost)
    let cookie = SessionCookie(secure: configuration.usesSecureCookies, lifetime: accounts.sessionLifetime)

    let api = app.grouped("api").grouped(AuthenticationMiddleware(accounts: accounts, cookie: cookie))
    let signedIn = api.grouped(RequireSignIn())
    AuthController(accounts: accounts, cookie: cookie, signupPolicy: configuration.signupPolicy, clientAddress: ClientAddress(trustProxy: configuration.trustProxy))
        .register(public: api, signedIn: signedIn)
    TokenController(accounts: accounts).register(signedIn: signedIn)
    InviteController(accounts: accounts).register(signedIn: signedIn)
    let workerKeys = WorkerKeyService(now: dependencies.now)
    WorkerKeyController(workerKeys: workerKeys).register(signedIn: signedIn)

    var builtInStore: (BuiltInStore, S3Credentials)?
    if case .builtIn(let bucket) = configuration.objectStore {
        let store = try BuiltInStore(root: configuration.dataDirectory + "/store", bucket: bucket, now: dependencies.now)
        let credentials = try StoreCredentials.loadOrCreate(dataDirectory: configuration.dataDirectory)
        BuiltInStoreController(store: store, authenticator: S3RequestAuthenticator(credentials: credentials), now: dependencies.now) { holder in
            guard let keyID = UUID(uuidString: holder) else { return true }
            return try await workerKeys.isRevoked(keyID, on: app.db)
        }.register(app)
        builtInStore = (store, credentials)
    }
    let bucket = Bucket.make(configuration.objectStore, builtIn: builtInStore, publicURL: configuration.publicURL, http: app.http.client.shared, now: dependencies.now)
    var datasets = DatasetService(bucket: bucket, limits: configuration.datasetLimits, now: dependencies.now)
    datasets.storageQuota = configuration.storageQuota
    let retention = Retention(days: configuration.retentionDays, datasets: datasets, bucket: bucket, registry: registry, now: dependencies.now)
    app.storage[RetentionKey.self] = retention
    if dependencies.runsBackgroundServices {
        app.lifecycle.use(BackgroundLoop(name: "retention", wakeup: Wakeup(), clock: dependencies.clock, interval: .seconds(60)) { try await retention.sweep(on: $0) })
    }
    let importer = DatasetImporter(datasets: datasets, threadPool: app.threadPool, workDirectory: configuration.dataDirectory + "/imports")
    DatasetController(
        datasets: datasets, importer: importer, bucket: bucket, publicURL: configuration.publicURL, trustProxy: configuration.trustProxy, retention: retention
    )
    .register(signedIn: signedIn)
    let wakeup = Wakeup()
    let jobs = JobService(datasets: datasets, now: dependencies.now, created: { wakeup.signal() })
    JobController(
        jobs: jobs, datasets: datasets, bucket: bucket, publicURL: configuration.publicURL, trustProxy: configuration.trustProxy,
        gpuPricePerSecond: configuration.gpuPricePerSecond, retention: retention, clock: dependencies.clock, shutdown: shutdown
    ).register(signedIn: signedIn)
    DraftController(drafts: DraftService(datasets: datasets, jobs: jobs, settings: configuration.captions, http: app.http.client.shared)).register(signedIn: signedIn)
    RunPodWebhookController(jobs: jobs, now: dependencies.now).register(public: api)
    let webhookWakeup = Wakeup()
    // Its own client: redirects are not followed (a receiver must not bounce us to a private address).
    let webhookHTTP = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(redirectConfiguration: .disallow, timeout: .init(connect: .seconds(5))))
    app.lifecycle.use(HTTPClientShutdown(client: webhookHTTP))
    let webhooks = WebhookService(now: dependencies.now, allowPrivateTargets: configuration.webhooksAllowPrivate, http: webhookHTTP, wakeup: webhookWakeup)
    app.storage[WebhookServiceKey.self] = webhooks
    WebhookController(webhooks: webhooks).register(signedIn: signedIn)
    if dependencies.runsBackgroundServices {
        app.lifecycle.use(
            BackgroundLoop(name: "webhooks", wakeup: webhookWakeup, clock: dependencies.clock, drain: { await webhooks.sends.drain() }) {
                try await webhooks.deliverDue(on: $0, waitForSends: false)
            })
    }
    if let runPod = configuration.runPod {
        let client = RunPodClient(baseURL: runPod.baseURL, endpointID: runPod.endpointID, apiKey: runPod.apiKey, http: app.http.client.shared)
        let runner = JobRunner(
            jobs: jobs, runPod: client, webhookBase: configuration.publicURL, bucket: bucket.name, store: bucket,
            instanceID: UUID().uuidString.lowercased(), now: dependencies.now
        )
        app.storage[JobRunnerKey.self] = runner
        if dependencies.runsBackgroundServices {
            app.lifecycle.use(
                BackgroundLoop(name: "job runner", wakeup: wakeup, clock: dependencies.clock, drain: { await runner.calls.drain() }) {
                    try await runner.tick(on: $0, waitForCalls: false)
                })
        }
    } else {
        let queue = BuiltInQueue(jobs: jobs, bucket: bucket.name, storeCredentials: builtInStore?.1, now: dependencies.now)
        app.storage[BuiltInQueueKey.self] = queue
        let waitingTakes = registry.makeGauge(
            descriptor: .init(namespace: "gomodel", metricName: "job_takes_waiting", helpText: "Workers of the built-in queue waiting in a job-take for a job."))
        WorkerQueueController(queue: queue, workerKeys: workerKeys, longPoll: dependencies.jobTakeWait, clock: dependencies.clock, waitingTakes: waitingTakes, shutdown: shutdown)
            .register(app)
        if dependencies.runsBackgroundServices {
            app.lifecycle.use(
                BackgroundLoop(name: "built-in queue", wakeup: Wakeup(), clock: dependencies.clock) {
                    try await queue.reclaimLost(on: $0)
                    return false
                })
        }
    }

    // The web app: Leaf pages and their assets, from this target's resources.
    app.views.use(.leaf)
    let views = WebResources.viewsDirectory
    app.leaf.configuration = LeafConfiguration(rootDirectory: views)
    // Sandboxed to the views folder; dot-folders on the way there (.build) are allowed.
    app.leaf.sources = .singleSource(
        NIOLeafFiles(fileio: app.fileio, limits: [.toSandbox, .requireExtensions, .onlyLeafExtensions], sandboxDirectory: views, viewDirectory: views))
    let web = app.grouped(WebSecurityHeaders(storeOrigin: bucket.browserOrigin))
    web.get("assets", "**", use: WebResources.serveAsset)
    WebController(datasets: datasets, jobs: jobs, signupPolicy: configuration.signupPolicy, retention: retention)
        .register(web.grouped(AuthenticationMiddleware(accounts: accounts, cookie: cookie)))

    let document = OpenAPIDocument.make(operations: APIDescription.operations, schemas: APIDescription.schemas)
    SystemController(registry: registry, openAPIDocument: try API.encoder.encode(document)).register(app)
    // Last, so that it shuts down first (see ServerShutdown).
    app.lifecycle.use(shutdown)
}

/// Every documented operation and schema, gathered from the controllers that own them.
enum APIDescription {
    static let operations =
        AuthController.operations + TokenController.operations + InviteController.operations + WorkerKeyController.operations
        + DatasetController.operations + DraftController.operations + JobController.operations + WebhookController.operations + RunPodWebhookController.operations
        + SystemController.operations
    static let schemas = AuthController.schemas.merging(TokenController.schemas) { current, _ in current }
        .merging(WorkerKeyController.schemas) { current, _ in current }
        .merging(DatasetController.schemas) { current, _ in current }
        .merging(DraftController.schemas) { current, _ in current }
        .merging(JobController.schemas) { current, _ in current }
        .merging(WebhookController.schemas) { current, _ in current }
}

func useDatabase(_ app: Application, configuration: Configuration) throws {
    switch configuration.database {
    case .sqlite:
        let directory = URL(fileURLWithPath: configuration.dataDirectory, isDirectory: true)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        // Each libsqlite3 call holds a thread of the app's pool, and a connection that meets a lock
        // retries until it is free (SQLiteNIO's busy handler never gives up): the connection that
        // holds the lock must always find a thread to finish on. So the app gets a pool of its own
        // (not the process-wide one that other apps in the process, as in the tests, and blocking work
        // share), with more threads than it has connections (one per event loop). Set before
        // `app.databases` is first used: Fluent takes the pool then.
        let connections = Array(app.eventLoopGroup.makeIterator()).count
        app.threadPool = NIOThreadPool(numberOfThreads: connections + 2)
        app.databases.use(.sqlite(.file(directory.appendingPathComponent("gomodel.sqlite").path)), as: .sqlite)
    case .postgres(let url):
        let postgres: SQLPostgresConfiguration
        do {
            postgres = try SQLPostgresConfiguration(url: url.value)
        } catch {
            throw ConfigurationError(problems: [.init(variable: "DATABASE_URL", message: "could not be read as a PostgreSQL URL such as postgres://user:password@host:5432/dbname")]
            )
        }
        app.databases.use(.postgres(configuration: postgres), as: .psql)
    }
    app.migrations.add(Migrations.all)
}
