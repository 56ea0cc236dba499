import Fluent
import Foundation
import Leaf
import TrainerCore
import Vapor

/// The web app's pages (DESIGN §7). Each renders a Leaf template with what the first paint needs;
/// the pages' scripts (Web/Assets/js) do the rest through the JSON API, sending the session's
/// CSRF token from the page's `<meta name="csrf-token">`.
struct WebController: Sendable {
    let datasets: DatasetService
    let jobs: JobService
    let signupPolicy: SignupPolicy
    let retention: Retention

    // MARK: Contexts

    /// What every page's layout shows.
    struct Page<Content: Encodable>: Encodable {
        let title: String
        /// The navigation entry to mark as current.
        let section: String
        let script: String?
        let email: String?
        let csrfToken: String?
        let content: Content
    }

    struct Empty: Encodable {}

    struct SignupContent: Encodable {
        let needsInvite: Bool
        let closed: Bool
    }

    struct AccountContent: Encodable {
        struct Token: Encodable {
            let id: UUID
            let name: String
            let hint: String
            let createdAt: String
            let lastUsedAt: String?
        }

        let isAdmin: Bool
        let tokens: [Token]
        let hasTokens: Bool
    }

    struct DatasetRow: Encodable {
        let id: UUID
        let name: String
        let sampleCount: Int
        let fileCount: Int
        let totalBytes: Int64
        let errorCount: Int
        let warningCount: Int
        let sound: Bool
        let locked: Bool
        let createdAt: String

        init(_ dataset: Dataset) {
            id = dataset.id!
            name = dataset.name
            sampleCount = dataset.sampleCount
            fileCount = dataset.fileCount
            totalBytes = dataset.totalBytes
            errorCount = dataset.errorCount
            warningCount = dataset.warningCount
            sound = dataset.errorCount == 0 && dataset.sampleCount > 0
            locked = dataset.lockedByJobID != nil
            createdAt = WebController.timestamp(dataset.createdAt)
        }
    }

    struct DatasetsContent: Encodable {
        let datasets: [DatasetRow]
        let isEmpty: Bool
    }

    struct DatasetContent: Encodable {
        let dataset: DatasetRow
        let maximumFilesPerBatch: Int
        let expiry: Expiry?
    }

    /// When retention deletes what a page shows; `soon` within `Retention.warning`.
    struct Expiry: Encodable {
        let at: String
        let soon: Bool

        init?(_ date: Date?, now: Date) {
            guard let date else { return nil }
            at = date.formatted(.iso8601)
            soon = date.timeIntervalSince(now) < Retention.warning
        }
    }

    struct NewJobContent: Encodable {
        struct Profile: Encodable {
            let id: String
            let label: String
            let selected: Bool
        }

        struct Preset: Encodable {
            let id: String
            let label: String
            let baseModel: String
            let selected: Bool
        }
        let datasets: [DatasetRow]
        let selectedDatasetId: UUID?
        let presets: [Preset]
        let selectedPresetLabel: String
        let steps: Int
        let learningRate: String
        let rank: Int
        let profiles: [Profile]
    }

    struct JobRow: Encodable {
        let id: UUID
        let shortId: String
        let datasetId: UUID
        let datasetName: String
        /// What it does: the model it trains, or drafting instructions.
        let kind: String
        let status: String
        let step: Int?
        let totalSteps: Int?
        let loss: String?
        let createdAt: String
    }

    struct JobsContent: Encodable {
        let jobs: [JobRow]
        let isEmpty: Bool
    }

    struct JobContent: Encodable {
        let job: JobRow
        /// A training job has a reproducibility record; a drafting job does not.
        let hasRecord: Bool
        let expiry: Expiry?
    }

    // MARK: Routes

    /// `routes` must run the authentication middleware; pages check sign-in themselves, so that a
    /// signed-out visitor is sent to the login page rather than answered with JSON.
    func register(_ routes: any RoutesBuilder) {
        routes.get(use: home)
        routes.get("login", use: logIn)
        routes.get("signup", use: signUp)
        routes.get("account", use: account)
        routes.get("datasets", use: datasetList)
        routes.get("datasets", ":id", use: dataset)
        routes.get("jobs", use: jobList)
        routes.get("jobs", "new", use: newJob)
        routes.get("jobs", ":id", use: job)
    }

    @Sendable func home(request: Request) async throws -> Response {
        request.redirect(to: Self.session(request) == nil ? "/login" : "/datasets")
    }

    @Sendable func logIn(request: Request) async throws -> Response {
        if Self.session(request) != nil { return request.redirect(to: "/datasets") }
        return try await render(request, "login", page: Page(title: "Log in", section: "login", script: "auth", email: nil, csrfToken: nil, content: Empty()))
    }

    @Sendable func signUp(request: Request) async throws -> Response {
        if Self.session(request) != nil { return request.redirect(to: "/datasets") }
        let content = SignupContent(needsInvite: signupPolicy == .invite, closed: signupPolicy == .closed)
        return try await render(request, "signup", page: Page(title: "Sign up", section: "signup", script: "auth", email: nil, csrfToken: nil, content: content))
    }

    @Sendable func account(request: Request) async throws -> Response {
        try await signedIn(request) { user, csrf in
            let tokens = try await APIToken.newestFirst(of: user.id!, on: request.db).all()
            let content = AccountContent(
                isAdmin: user.isAdmin,
                tokens: tokens.map {
                    AccountContent.Token(id: $0.id!, name: $0.name, hint: $0.hint, createdAt: Self.timestamp($0.createdAt), lastUsedAt: $0.lastUsedAt.map(Self.timestamp))
                }, hasTokens: !tokens.isEmpty)
            return try await render(request, "account", page: Page(title: "Account", section: "account", script: "account", email: user.email, csrfToken: csrf, content: content))
        }
    }

    @Sendable func datasetList(request: Request) async throws -> Response {
        try await signedIn(request) { user, csrf in
            let rows = try await Dataset.newestFirst(of: user.id!, on: request.db).all().map(DatasetRow.init)
            return try await render(
                request, "datasets",
                page: Page(
                    title: "Datasets", section: "datasets", script: "datasets", email: user.email, csrfToken: csrf, content: DatasetsContent(datasets: rows, isEmpty: rows.isEmpty))
            )
        }
    }

    @Sendable func dataset(request: Request) async throws -> Response {
        try await signedIn(request) { user, csrf in
            let dataset = try await datasets.find(request.parameters.get("id", as: UUID.self), userID: user.id!, on: request.db)
            let expires = retention.datasetExpires(dataset, lastTrained: try await Retention.lastTrained(dataset.id!, on: request.db))
            let content = DatasetContent(
                dataset: DatasetRow(dataset), maximumFilesPerBatch: UploadPlan.maximumFilesPerBatch, expiry: Expiry(expires, now: datasets.now()))
            return try await render(
                request, "dataset", page: Page(title: dataset.name, section: "datasets", script: "dataset", email: user.email, csrfToken: csrf, content: content))
        }
    }

    @Sendable func jobList(request: Request) async throws -> Response {
        try await signedIn(request) { user, csrf in
            let jobs = try await Job.newestFirst(of: user.id!, on: request.db).limit(500).all()
            let names = try await datasetNames(userID: user.id!, on: request.db)
            let content = JobsContent(jobs: jobs.map { Self.row($0, datasetName: names[$0.datasetID]) }, isEmpty: jobs.isEmpty)
            return try await render(request, "jobs", page: Page(title: "Jobs", section: "jobs", script: "jobs", email: user.email, csrfToken: csrf, content: content))
        }
    }

    @Sendable func newJob(request: Request) async throws -> Response {
        try await signedIn(request) { user, csrf in
            let rows = try await Dataset.newestFirst(of: user.id!, on: request.db).all().map(DatasetRow.init)
            let wanted = (try? request.query.get(UUID.self, at: "dataset")).flatMap { id in rows.first { $0.id == id }?.id }
            let defaults = QwenImageEdit.defaultPreset.defaults
            let content = NewJobContent(
                datasets: rows, selectedDatasetId: wanted ?? rows.first(where: \.sound)?.id,
                presets: QwenImageEdit.presets.map { .init(id: $0.id, label: $0.label, baseModel: $0.baseModel, selected: $0 == QwenImageEdit.defaultPreset) },
                selectedPresetLabel: QwenImageEdit.defaultPreset.label,
                steps: defaults.steps, learningRate: String(defaults.learningRate), rank: defaults.rank,
                profiles: QwenImageEdit.Profile.allCases.map {
                    .init(id: $0.rawValue, label: $0.label, selected: $0 == defaults.profile)
                }
            )
            return try await render(request, "job-new", page: Page(title: "New training", section: "jobs", script: "job-new", email: user.email, csrfToken: csrf, content: content))
        }
    }

    @Sendable func job(request: Request) async throws -> Response {
        try await signedIn(request) { user, csrf in
            let job = try await jobs.find(request.parameters.get("id", as: UUID.self), userID: user.id!, on: request.db)
            // Only this job's dataset name (the dataset may have been deleted since).
            let dataset = try await datasets.lookup(job.datasetID, userID: user.id!, on: request.db)
            let row = Self.row(job, datasetName: dataset?.name)
            return try await render(
                request, "job",
                page: Page(
                    title: "Job \(row.shortId)", section: "jobs", script: "job", email: user.email, csrfToken: csrf,
                    content: JobContent(job: row, hasRecord: !job.isDraftJob, expiry: Expiry(retention.outputsExpire(job), now: jobs.now()))))
        }
    }

    // MARK: Helpers

    /// The signed-in browser session's user and CSRF token; nil for visitors (and bearer tokens,
    /// which pages do not accept).
    static func session(_ request: Request) -> (User, String)? {
        guard let principal = request.auth.get(Principal.self), case .session(let session) = principal.credential else { return nil }
        return (principal.user, session.csrfToken)
    }

    /// Runs `page` for a signed-in visitor; others go to the login page, which brings them back.
    /// Another user's dataset or job answers exactly like a missing one: 404.
    private func signedIn(_ request: Request, page: (User, String) async throws -> Response) async throws -> Response {
        guard let (user, csrf) = Self.session(request) else {
            let wanted = request.url.path + (request.url.query.map { "?" + $0 } ?? "")
            return request.redirect(to: "/login?next=" + (wanted.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(.init(charactersIn: "/-_"))) ?? "/"))
        }
        do {
            return try await page(user, csrf)
        } catch let error as any APIErrorConvertible where error.status == .notFound {
            return try await render(
                request, "not-found", page: Page(title: "Not found", section: "", script: nil, email: user.email, csrfToken: csrf, content: Empty()), status: .notFound)
        }
    }

    private func render(_ request: Request, _ template: String, page: some Encodable, status: HTTPResponseStatus = .ok) async throws -> Response {
        let view = try await request.view.render(template, page)
        let response = try await view.encodeResponse(status: status, for: request)
        response.headers.replaceOrAdd(name: .cacheControl, value: "no-store")
        return response
    }

    private func datasetNames(userID: UUID, on db: any Database) async throws -> [UUID: String] {
        let all = try await Dataset.newestFirst(of: userID, on: db).all()
        return Dictionary(uniqueKeysWithValues: all.map { ($0.id!, $0.name) })
    }

    static func row(_ job: Job, datasetName: String?) -> JobRow {
        let progress = job.latestProgress
        return JobRow(
            id: job.id!, shortId: String(job.id!.uuidString.lowercased().prefix(8)), datasetId: job.datasetID,
            datasetName: datasetName ?? "(deleted dataset)",
            kind: job.isDraftJob ? "Drafting instructions" : (QwenImageEdit.preset(job.preset).map { "\($0.label) LoRA" } ?? job.preset), status: job.status.rawValue,
            step: progress?.step, totalSteps: progress?.totalSteps, loss: progress?.loss.map { String(format: "%.4f", $0) },
            createdAt: timestamp(job.createdAt)
        )
    }

    /// ISO 8601 in UTC; the pages' script shows it in the visitor's time zone.
    static func timestamp(_ date: Date) -> String {
        date.formatted(.iso8601)
    }
}
