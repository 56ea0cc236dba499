import Fluent
import Foundation
import TrainerCore

/// A zip being imported into a dataset: uploaded to the bucket as one object
/// (`imports/{dataset}/{import}.zip`), then unpacked by the server into the dataset's layout.
final class DatasetImport: Model, @unchecked Sendable {
    static let schema = "dataset_imports"

    enum State: String, Codable, Sendable {
        case awaitingUpload = "awaiting_upload"
        case unpacking
        case done
        case failed
    }

    @ID(key: .id) var id: UUID?
    @Parent(key: "dataset_id") var dataset: Dataset
    @Field(key: "file_name") var fileName: String
    @Field(key: "size") var size: Int64
    @Field(key: "state") var state: State
    @Field(key: "entries_total") var entriesTotal: Int
    @Field(key: "entries_done") var entriesDone: Int
    /// The checked files' bytes, and how many of them are in the dataset so far.
    @Field(key: "bytes_total") var bytesTotal: Int64
    @Field(key: "bytes_written") var bytesWritten: Int64
    @Field(key: "placed") var placed: Int
    @Field(key: "ignored") var ignored: Int
    @OptionalField(key: "error_code") var errorCode: String?
    @OptionalField(key: "error_message") var errorMessage: String?
    @Field(key: "created_at") var createdAt: Date
    @Field(key: "updated_at") var updatedAt: Date

    init() {}

    init(datasetID: UUID, fileName: String, size: Int64, now: Date) {
        self.$dataset.id = datasetID
        self.fileName = fileName
        self.size = size
        state = .awaitingUpload
        entriesTotal = 0
        entriesDone = 0
        bytesTotal = 0
        bytesWritten = 0
        placed = 0
        ignored = 0
        createdAt = now
        updatedAt = now
    }

    /// Where the zip itself is uploaded; outside the dataset's prefix, so workers never sync it.
    var objectKey: String { "imports/\($dataset.id.uuidString.lowercased())/\(id!.uuidString.lowercased()).zip" }

    /// Every zip of a dataset's imports.
    static func prefix(of dataset: Dataset) -> String { "imports/\(dataset.id!.uuidString.lowercased())/" }
}
