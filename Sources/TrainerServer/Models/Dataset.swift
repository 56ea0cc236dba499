import Fluent
import Foundation
import TrainerCore

/// A user's set of training samples; its files live under `datasets/{id}/` in the bucket.
/// The counts are a summary of the last validation, kept for listings.
final class Dataset: Model, @unchecked Sendable {
    static let schema = "datasets"

    @ID(key: .id) var id: UUID?
    @Parent(key: "user_id") var user: User
    @Field(key: "name") var name: String
    @OptionalField(key: "default_caption") var defaultCaption: String?
    /// Set while a queued or running job trains on it: its files must not change meanwhile.
    @OptionalField(key: "locked_by_job_id") var lockedByJobID: UUID?
    @Field(key: "file_count") var fileCount: Int
    @Field(key: "sample_count") var sampleCount: Int
    @Field(key: "total_bytes") var totalBytes: Int64
    @OptionalField(key: "controls_per_sample") var controlsPerSample: Int?
    @Field(key: "error_count") var errorCount: Int
    @Field(key: "warning_count") var warningCount: Int
    @Field(key: "created_at") var createdAt: Date
    @Field(key: "updated_at") var updatedAt: Date

    init() {}

    init(userID: UUID, name: String, defaultCaption: String?, now: Date) {
        self.$user.id = userID
        self.name = name
        self.defaultCaption = defaultCaption
        fileCount = 0
        sampleCount = 0
        totalBytes = 0
        errorCount = 0
        warningCount = 0
        createdAt = now
        updatedAt = now
    }

    /// The bucket prefix of its files (DESIGN §4).
    var prefix: String { StorageKeys.datasetPrefix(id!.uuidString) }
}

/// One file of a dataset. A row is made when its upload is signed (`pending…`), and becomes part
/// of the dataset when the upload is completed and checked (`bytes`, `uploadedAt`).
final class DatasetFile: Model, @unchecked Sendable {
    static let schema = "dataset_files"

    @ID(key: .id) var id: UUID?
    @Parent(key: "dataset_id") var dataset: Dataset
    /// Below the dataset prefix, e.g. `control_1/cat.png`.
    @Field(key: "key") var key: String
    @Field(key: "role") var role: String
    @Field(key: "stem") var stem: String
    @Field(key: "file_extension") var fileExtension: String
    @OptionalField(key: "bytes") var bytes: Int64?
    @OptionalField(key: "sha256") var sha256: String?
    @OptionalField(key: "uploaded_at") var uploadedAt: Date?
    @OptionalField(key: "pending_bytes") var pendingBytes: Int64?
    @OptionalField(key: "pending_sha256") var pendingSHA256: String?
    /// When the last upload URL for it was made; pending bytes count against the size limit for
    /// as long as that URL is valid.
    @OptionalField(key: "signed_at") var signedAt: Date?
    /// From the image header: format and size (`format` without a size: the header was cut short).
    @OptionalField(key: "format") var format: String?
    @OptionalField(key: "width") var width: Int?
    @OptionalField(key: "height") var height: Int?
    /// A caption file's text.
    @OptionalField(key: "caption") var caption: String?

    init() {}

    init(datasetID: UUID, placement: DatasetLayout.Placement) {
        self.$dataset.id = datasetID
        key = placement.relativeKey
        role = placement.role.name
        stem = placement.stem
        fileExtension = placement.fileExtension
    }

    var placement: DatasetLayout.Placement? {
        DatasetLayout.Role(name: role).map { DatasetLayout.Placement(role: $0, stem: stem, fileExtension: fileExtension) }
    }

    /// What the header said, for validation; nil for captions and files not probed.
    var probe: ImageProbe.Result? {
        guard role != "caption", uploadedAt != nil else { return nil }
        guard let format = format.flatMap(ImageProbe.Format.init(rawValue:)) else { return .notAnImage }
        guard let width, let height else { return .needsMoreBytes(format) }
        return .image(format, width: width, height: height)
    }
}
