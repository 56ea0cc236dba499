import AsyncHTTPClient
import Fluent
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import ObjectStorage
import SQLKit
import TrainerCore

/// "Draft instructions": a vision model writes an edit instruction for each sample that has
/// none, from its control images and target. With `GOMODEL_CAPTION_URL` the server asks an
/// OpenAI-compatible endpoint itself; otherwise a drafting job goes to the GPU workers through
/// the queue. Drafts are kept apart from captions and train nothing until accepted.
struct DraftService: Sendable {
    let datasets: DatasetService
    let jobs: JobService
    let settings: CaptionSettings
    let http: HTTPClient
    /// Requests to the endpoint at once.
    var concurrency = 4
    /// Throttling and server errors from the endpoint are retried (OpenAI answers 429 under load).
    var retry = RetryPolicy(maxAttempts: 4)

    var now: @Sendable () -> Date { datasets.now }

    enum Failure: Error, Equatable, CustomStringConvertible {
        case nothingToDraft
        case noStems
        case noSuchSample(String)
        case alreadyRunning
        case noSuchDraft(String)

        var description: String {
            switch self {
            case .nothingToDraft: "Every sample has an instruction or a draft already; reject a draft to draft it again, or name samples in `stems`."
            case .noStems: "`stems` names no sample; leave it out to draft every sample without an instruction."
            case .noSuchSample(let stem): "The dataset has no sample '\(stem)' with a target image and its controls."
            case .alreadyRunning: "Instructions are being drafted for this dataset; wait until that run ends."
            case .noSuchDraft(let stem): "Sample '\(stem)' has no draft; GET /api/datasets/{id}/drafts lists them."
            }
        }
    }

    // MARK: Starting

    /// Drafts instructions for `stems` (nil: every sample without a caption or a draft).
    func start(_ dataset: Dataset, userID: UUID, stems: [String]?, on db: any Database) async throws -> DraftRun {
        if let running = try await DraftRun.query(on: db).filter(\.$dataset.$id == dataset.id!).filter(\.$state == .running).first() {
            let ended =
                switch running.mode {
                case .worker: try await Job.find(running.jobID, on: db)?.status.isFinal ?? true
                case .endpoint: running.updatedAt < now().addingTimeInterval(-Self.staleAfter)
                }
            if !ended { throw Failure.alreadyRunning }
        }
        let items = try await items(of: dataset, stems: stems, on: db)
        if let endpoint = settings.endpoint {
            let run = DraftRun(datasetID: dataset.id!, mode: .endpoint, samples: items.count, now: now())
            try await run.create(on: db)
            let runID = run.id!
            Task { await draft(items, through: endpoint, runID: runID, dataset: dataset, on: db) }
            return run
        }
        let job = try await jobs.createDraftJob(userID: userID, dataset: dataset, request: InstructionDraft.WorkerRequest(model: settings.workerModel, items: items), on: db)
        let run = DraftRun(datasetID: dataset.id!, mode: .worker, samples: items.count, now: now())
        run.jobID = job.id
        try await run.create(on: db)
        return run
    }

    /// An endpoint run whose progress has not moved for this long was cut off (a restart): one
    /// sample may take 4 tries of up to 2 minutes.
    static let staleAfter: TimeInterval = 900

    /// The samples to draft: each with its controls (in order) and target.
    private func items(of dataset: Dataset, stems: [String]?, on db: any Database) async throws -> [InstructionDraft.Item] {
        let files = try await datasets.files(of: dataset, on: db)
        let byStem = Dictionary(grouping: files, by: \.stem)
        let drafted = try await datasets.draftStems(of: dataset, on: db)
        func item(_ stem: String) -> InstructionDraft.Item? {
            guard let group = byStem[stem], let target = group.first(where: { $0.role == "target" }) else { return nil }
            let controls = (1...DatasetLayout.maximumControls).compactMap { index in group.first { $0.role == "control_\(index)" }?.key }
            return controls.isEmpty ? nil : InstructionDraft.Item(stem: stem, controls: controls, target: target.key)
        }
        if let stems {
            // Named samples are drafted again even if they have a draft; each once.
            if stems.isEmpty { throw Failure.noStems }
            var seen = Set<String>()
            return try stems.filter { seen.insert($0).inserted }.map { stem in
                guard let found = item(stem) else { throw Failure.noSuchSample(stem) }
                return found
            }
        }
        let wanted = byStem.keys.sorted().filter { stem in !drafted.contains(stem) && !(byStem[stem]!.contains { $0.role == "caption" }) }
        let items = wanted.compactMap(item)
        if items.isEmpty { throw Failure.nothingToDraft }
        return items
    }

    // MARK: Through an endpoint

    /// Runs on its own: the run's row is changed only by SQL here (the request that started it
    /// answers with its own copy), progress at most twice a second.
    private func draft(_ items: [InstructionDraft.Item], through endpoint: CaptionSettings.Endpoint, runID: UUID, dataset: Dataset, on db: any Database) async {
        let counts = DraftCounts()
        let source = "endpoint:\(endpoint.model)"
        @Sendable func save(state: DraftRun.State = .running, error: String? = nil) async {
            let (done, drafted, _) = counts.snapshot
            _ = try? await db.sql().raw(
                """
                UPDATE draft_runs SET samples_done = \(bind: done), drafted = \(bind: drafted), state = \(bind: state.rawValue), error = \(bind: error),
                updated_at = \(bind: now()) WHERE id = \(bind: runID)
                """
            ).run()
        }
        var state = DraftRun.State.done
        var message: String?
        do {
            try await items.concurrentMap(limit: concurrency) { item in
                do {
                    let reply = try await ask(endpoint, about: item, in: dataset)
                    if let text = InstructionDraft.parse(reply) {
                        try await Self.store(text, for: item.stem, source: source, in: dataset.id!, at: now(), on: db)
                        counts.drafted()
                    } else {
                        counts.failed("\(item.stem): the model's answer held no instruction")
                    }
                } catch let error as EndpointError where error.stopsTheRun {
                    throw error
                } catch {
                    counts.failed("\(item.stem): \(error)")
                }
                if counts.progressDue(now: now()) { await save() }
            }
            let (_, drafted, failures) = counts.snapshot
            state = drafted > 0 || failures.isEmpty ? .done : .failed
            message = failures.isEmpty ? nil : "\(failures.count) sample(s) got no draft: " + DatasetService.list(failures, limit: 5)
        } catch {
            state = .failed
            message = "\(error)"
        }
        await save(state: state, error: message)
        _ = try? await datasets.refresh(dataset, on: db)
    }

    struct EndpointError: Error, CustomStringConvertible {
        let status: UInt
        let message: String
        var description: String { message }
        /// A refused key or an unknown model fails every sample alike: the run stops.
        var stopsTheRun: Bool { [401, 403, 404].contains(status) }
        var isRetryable: Bool { status == 429 || status >= 500 || status == 0 }
    }

    /// One chat completion for one sample, with its images inline.
    private func ask(_ endpoint: CaptionSettings.Endpoint, about item: InstructionDraft.Item, in dataset: Dataset) async throws -> String {
        var images: [InstructionDraft.Image] = []
        for key in item.images {
            guard let (info, bytes) = try await datasets.bucket.fetchPrefix(key: dataset.prefix + key, count: Self.maximumImageBytes + 1) else {
                throw EndpointError(status: 0, message: "\(key) is not in the bucket")
            }
            guard bytes.count <= Self.maximumImageBytes else {
                throw EndpointError(status: 413, message: "\(key) has over 20 MB, more than chat endpoints take; draft its instruction by hand or on a GPU worker")
            }
            images.append(InstructionDraft.Image(mediaType: info.contentType ?? "image/png", bytes: bytes))
        }
        let body = InstructionDraft.chatCompletionBody(model: endpoint.model, images: images, prompt: item.prompt).rendered()
        return try await retry.run(retryable: { ($0 as? EndpointError)?.isRetryable ?? false }) {
            var request = HTTPClientRequest(url: endpoint.baseURL.appendingPathComponent("chat/completions").absoluteString)
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "application/json")
            if let key = endpoint.apiKey { request.headers.add(name: "Authorization", value: "Bearer \(key.value)") }
            request.body = .bytes(ByteBuffer(string: body))
            let response: HTTPClientResponse
            do {
                response = try await http.execute(request, timeout: .seconds(120))
            } catch {
                throw EndpointError(status: 0, message: "the caption endpoint could not be reached (\(error))")
            }
            let answer = try await response.body.collect(upTo: 4 << 20)
            let json = try? JSONDecoder().decode(JSONValue.self, from: Data(buffer: answer))
            guard response.status == .ok else {
                let detail = json?["error"]?["message"]?.stringValue ?? String(buffer: answer).prefix(300).description
                let hint =
                    switch response.status.code {
                    case 401, 403: " (check GOMODEL_CAPTION_API_KEY)"
                    case 404: " (check GOMODEL_CAPTION_URL and GOMODEL_CAPTION_MODEL)"
                    default: ""
                    }
                throw EndpointError(status: response.status.code, message: "the caption endpoint answered \(response.status.code): \(detail)\(hint)")
            }
            guard let json, let text = InstructionDraft.replyText(json) else {
                throw EndpointError(status: 200, message: "the caption endpoint's answer is not a chat completion")
            }
            return text
        }
    }

    /// OpenAI's limit for one image in a chat request.
    static let maximumImageBytes = 20 << 20

    // MARK: Drafts

    /// Replaces the sample's draft, if any.
    static func store(_ text: String, for stem: String, source: String, in datasetID: UUID, at time: Date, on db: any Database) async throws {
        try await db.transaction { db in
            try await CaptionDraft.query(on: db).filter(\.$dataset.$id == datasetID).filter(\.$stem == stem).delete()
            try await CaptionDraft(datasetID: datasetID, stem: stem, text: text, source: source, now: time).create(on: db)
        }
    }

    /// A drafting job ended (in the transaction that ends it): its drafts are stored and its run
    /// closed. `output` is the worker's result (`{"drafts": [{"stem", "text"} or {"stem", "error"}]}`).
    static func finish(_ job: Job, output: JSONValue?, datasets: DatasetService, on db: any Database) async throws {
        let time = datasets.now()
        guard let run = try await DraftRun.query(on: db).filter(\.$jobID == job.id).first() else { return }
        var drafted = 0
        var failures: [String] = []
        if job.status == .completed, case .array(let results)? = output?["drafts"] {
            let model = output?["model"]?.stringValue ?? (try? JSONDecoder().decode(JSONValue.self, from: Data(job.parameters.utf8)))?["model"]?.stringValue ?? "?"
            for result in results {
                guard let stem = result["stem"]?.stringValue else { continue }
                if let text = result["text"]?.stringValue.flatMap(InstructionDraft.parse) {
                    try await CaptionDraft.query(on: db).filter(\.$dataset.$id == job.datasetID).filter(\.$stem == stem).delete()
                    try await CaptionDraft(datasetID: job.datasetID, stem: stem, text: text, source: "worker:\(model)", now: time).create(on: db)
                    drafted += 1
                } else {
                    failures.append("\(stem): \(result["error"]?.stringValue ?? "the model's answer held no instruction")")
                }
            }
        }
        run.drafted = drafted
        run.samplesDone = drafted + failures.count
        run.state = job.status == .completed && (drafted > 0 || failures.isEmpty) ? .done : .failed
        run.error =
            job.status == .completed
            ? (failures.isEmpty ? nil : "\(failures.count) sample(s) got no draft: " + DatasetService.list(failures, limit: 5))
            : "The drafting job ended \(job.status.rawValue)" + (job.error.map { ": \($0)" } ?? ".")
        run.updatedAt = time
        try await run.save(on: db)
        // The dataset's summary counts samples waiting for review as not ready.
        if let dataset = try await Dataset.find(job.datasetID, on: db) { _ = try await datasets.refresh(dataset, on: db) }
    }

    /// A retried drafting job: its run is running again.
    static func reopen(runOf job: Job, at time: Date, on db: any Database) async throws {
        guard let run = try await DraftRun.query(on: db).filter(\.$jobID == job.id).first() else { return }
        run.state = .running
        run.error = nil
        run.samplesDone = 0
        run.drafted = 0
        run.updatedAt = time
        try await run.save(on: db)
    }

    func list(_ dataset: Dataset, on db: any Database) async throws -> (run: DraftRun?, drafts: [CaptionDraft]) {
        let run = try await DraftRun.query(on: db).filter(\.$dataset.$id == dataset.id!).sort(\.$createdAt, .descending).first()
        let drafts = try await CaptionDraft.query(on: db).filter(\.$dataset.$id == dataset.id!).sort(\.$stem).all()
        return (run, drafts)
    }

    /// The draft (or the person's edit of it) becomes the sample's caption.
    func accept(_ dataset: Dataset, stem: String, editedText: String?, on db: any Database) async throws -> DatasetValidation.Report {
        guard let draft = try await CaptionDraft.query(on: db).filter(\.$dataset.$id == dataset.id!).filter(\.$stem == stem).first() else {
            throw Failure.noSuchDraft(stem)
        }
        // setCaption removes the draft with the caption it sets.
        return try await datasets.setCaption(dataset, stem: stem, caption: editedText ?? draft.text, on: db)
    }

    func reject(_ dataset: Dataset, stem: String, on db: any Database) async throws -> DatasetValidation.Report {
        guard let draft = try await CaptionDraft.query(on: db).filter(\.$dataset.$id == dataset.id!).filter(\.$stem == stem).first() else {
            throw Failure.noSuchDraft(stem)
        }
        try await draft.delete(on: db)
        return try await datasets.refresh(dataset, on: db)
    }
}

/// Progress of an endpoint run's concurrent requests.
private final class DraftCounts: @unchecked Sendable {
    private let lock = NSLock()
    private var done = 0
    private var draftedCount = 0
    private var failures: [String] = []
    private var reported = Date.distantPast

    func drafted() {
        lock.withLock {
            done += 1
            draftedCount += 1
        }
    }
    func failed(_ reason: String) {
        lock.withLock {
            done += 1
            failures.append(reason)
        }
    }
    var snapshot: (Int, Int, [String]) { lock.withLock { (done, draftedCount, failures) } }

    /// Whether to save the progress now (at most twice a second).
    func progressDue(now: Date) -> Bool {
        lock.withLock {
            guard now.timeIntervalSince(reported) >= 0.5 else { return false }
            reported = now
            return true
        }
    }
}
