import Fluent
import Foundation

/// An edit instruction a vision model proposed for a sample without one. It trains nothing
/// until a person accepts it (it then becomes the sample's caption) or rejects it.
final class CaptionDraft: Model, @unchecked Sendable {
    static let schema = "caption_drafts"

    @ID(key: .id) var id: UUID?
    @Parent(key: "dataset_id") var dataset: Dataset
    @Field(key: "stem") var stem: String
    @Field(key: "text") var text: String
    /// Which model wrote it, e.g. `worker:Qwen/Qwen2.5-VL-7B-Instruct` or `endpoint:gpt-4o-mini`.
    @Field(key: "source") var source: String
    @Field(key: "created_at") var createdAt: Date

    init() {}

    init(datasetID: UUID, stem: String, text: String, source: String, now: Date) {
        self.$dataset.id = datasetID
        self.stem = stem
        self.text = text
        self.source = source
        createdAt = now
    }
}

/// One "draft instructions" request: on a GPU worker (a job of the queue) or through an
/// OpenAI-compatible endpoint (run by the server).
final class DraftRun: Model, @unchecked Sendable {
    static let schema = "draft_runs"

    enum Mode: String, Codable, Sendable {
        case worker
        case endpoint
    }

    enum State: String, Codable, Sendable {
        case running
        case done
        case failed
    }

    @ID(key: .id) var id: UUID?
    @Parent(key: "dataset_id") var dataset: Dataset
    @Field(key: "mode") var mode: Mode
    /// The queue's job that drafts them (worker mode).
    @OptionalField(key: "job_id") var jobID: UUID?
    @Field(key: "state") var state: State
    @Field(key: "samples_total") var samplesTotal: Int
    @Field(key: "samples_done") var samplesDone: Int
    @Field(key: "drafted") var drafted: Int
    @OptionalField(key: "error") var error: String?
    @Field(key: "created_at") var createdAt: Date
    @Field(key: "updated_at") var updatedAt: Date

    init() {}

    init(datasetID: UUID, mode: Mode, samples: Int, now: Date) {
        self.$dataset.id = datasetID
        self.mode = mode
        state = .running
        samplesTotal = samples
        samplesDone = 0
        drafted = 0
        createdAt = now
        updatedAt = now
    }
}
