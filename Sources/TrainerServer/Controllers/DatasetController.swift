import Fluent
import ObjectStorage
import TrainerCore
import Vapor

/// Datasets (DESIGN §7): CRUD, batch upload signing and completion, validation, captions.
/// Image bytes never pass through here: clients PUT them to presigned URLs.
struct DatasetController: Sendable {
    let datasets: DatasetService
    let importer: DatasetImporter
    let bucket: Bucket
    /// GOMODEL_PUBLIC_URL, when set, is where clients reach us (and the built-in store).
    let publicURL: URL?
    let trustProxy: Bool
    let retention: Retention

    // MARK: Routes

    func register(signedIn routes: any RoutesBuilder) {
        routes.get("usage", use: usage)
        let datasets = routes.grouped("datasets")
        datasets.post(use: create)
        datasets.get(use: list)
        datasets.get(":id", use: show)
        datasets.patch(":id", use: update)
        datasets.delete(":id", use: delete)
        datasets.post(":id", "uploads", use: signUploads)
        datasets.post(":id", "uploads", "complete", use: completeUploads)
        datasets.get(":id", "validation", use: validation)
        datasets.patch(":id", "samples", ":stem", use: setCaption)
        datasets.delete(":id", "samples", ":stem", use: deleteSample)
        datasets.get(":id", "samples", ":stem", ":role", use: file)
        datasets.post(":id", "imports", use: createImport)
        datasets.get(":id", "imports", ":importId", use: showImport)
        datasets.post(":id", "imports", ":importId", "unpack", use: unpackImport)
    }

    // MARK: Zip imports

    @Sendable func createImport(request: Request) async throws -> Response {
        let dataset = try await find(request)
        let body = try request.decodeJSON(API.ImportCreate.self, fields: ["fileName", "size"])
        let (record, upload) = try await importer.create(
            dataset, fileName: body.fileName, size: body.size, origin: request.origin(publicURL: publicURL, trustProxy: trustProxy), on: request.db)
        let signed = API.SignedUploads.Upload(path: record.fileName, key: record.objectKey, url: upload.url, method: upload.method, headers: upload.headers)
        return try JSON.response(
            API.CreatedImport(import: record.shape(now: datasets.now()), upload: signed, expiresAt: datasets.now().addingTimeInterval(DatasetService.uploadWindow)),
            status: .created)
    }

    @Sendable func showImport(request: Request) async throws -> Response {
        let dataset = try await find(request)
        return try JSON.response(try await importer.find(request.parameters.get("importId", as: UUID.self), of: dataset, on: request.db).shape(now: datasets.now()))
    }

    @Sendable func unpackImport(request: Request) async throws -> Response {
        let dataset = try await find(request)
        let record = try await importer.find(request.parameters.get("importId", as: UUID.self), of: dataset, on: request.db)
        // The unpacking outlives this request: it runs on the application's database.
        try await importer.startUnpacking(record, of: dataset, on: request.application.db)
        return try JSON.response(record.shape(now: datasets.now()), status: .accepted)
    }

    @Sendable func create(request: Request) async throws -> Response {
        let body = try request.decodeJSON(API.DatasetCreate.self)
        let dataset = try await datasets.create(userID: try request.principal.userID, name: body.name, defaultCaption: body.defaultCaption, on: request.db)
        return try JSON.response(dataset.shape, status: .created)
    }

    @Sendable func list(request: Request) async throws -> Response {
        let all = try await Dataset.newestFirst(of: request.principal.userID, on: request.db).all()
        return try JSON.response(API.DatasetList(datasets: all.map(\.shape)))
    }

    @Sendable func show(request: Request) async throws -> Response {
        let dataset = try await find(request)
        let (files, report) = try await datasets.currentReport(dataset, on: request.db)
        var response = dataset.shape
        response.validation = API.Validation(report)
        response.files = files.map(\.shape)
        response.contentSha256 = DatasetService.content(of: files).sha256
        response.expiresAt = retention.datasetExpires(dataset, lastTrained: try await Retention.lastTrained(dataset.id!, on: request.db))
        return try JSON.response(response)
    }

    /// What the user holds, against their quota and the server's retention.
    @Sendable func usage(request: Request) async throws -> Response {
        let usage = try await datasets.usage(of: try request.principal.userID, on: request.db)
        return try JSON.response(
            API.Usage(
                datasetBytes: usage.datasets, outputBytes: usage.outputs, usedBytes: usage.datasets + usage.outputs, quotaBytes: datasets.storageQuota,
                retentionDays: retention.days))
    }

    @Sendable func update(request: Request) async throws -> Response {
        let dataset = try await find(request)
        let body = try request.decodeJSON(API.DatasetUpdate.self)
        try await datasets.update(dataset, name: body.name, defaultCaption: body.defaultCaption, on: request.db)
        return try JSON.response(dataset.shape)
    }

    @Sendable func delete(request: Request) async throws -> Response {
        try await datasets.delete(try await find(request), on: request.db)
        return Response(status: .noContent)
    }

    @Sendable func signUploads(request: Request) async throws -> Response {
        let dataset = try await find(request)
        let body = try request.decodeJSON(API.UploadRequest.self)
        let files = body.files.map { UploadPlan.File(path: $0.path, size: $0.size, sha256: $0.sha256) }
        let (signed, skipped) = try await datasets.signUploads(dataset, files: files, origin: request.origin(publicURL: publicURL, trustProxy: trustProxy), on: request.db)
        let uploads = signed.map {
            API.SignedUploads.Upload(path: $0.path, key: $0.key, url: $0.request.url, method: $0.request.method, headers: $0.request.headers)
        }
        return try JSON.response(API.SignedUploads(uploads: uploads, skipped: skipped, expiresAt: datasets.now().addingTimeInterval(DatasetService.uploadWindow)))
    }

    @Sendable func completeUploads(request: Request) async throws -> Response {
        let dataset = try await find(request)
        let body = try request.decodeJSON(API.CompleteRequest.self)
        let (failures, report) = try await datasets.complete(dataset, paths: body.paths, on: request.db)
        var response = dataset.shape
        response.validation = API.Validation(report)
        response.failures = failures.map { API.Item(path: $0.path, reason: $0.reason) }
        return try JSON.response(response)
    }

    @Sendable func validation(request: Request) async throws -> Response {
        let dataset = try await find(request)
        return try JSON.response(API.Validation(try await datasets.currentReport(dataset, on: request.db).report))
    }

    @Sendable func setCaption(request: Request) async throws -> Response {
        let dataset = try await find(request)
        guard let stem = request.parameters.get("stem") else { throw APIError.notFound("Name the sample: /api/datasets/{id}/samples/{stem}.") }
        let body = try request.decodeJSON(API.CaptionUpdate.self)
        let report = try await datasets.setCaption(dataset, stem: stem, caption: body.caption, on: request.db)
        return try JSON.response(dataset.shape(validation: report))
    }

    @Sendable func deleteSample(request: Request) async throws -> Response {
        let dataset = try await find(request)
        let report = try await datasets.deleteSample(dataset, stem: request.parameters.get("stem") ?? "", on: request.db)
        return try JSON.response(dataset.shape(validation: report))
    }

    /// A redirect to a presigned GET of a sample's image (`target`, `control_1`…): the web app's thumbnails.
    @Sendable func file(request: Request) async throws -> Response {
        let dataset = try await find(request)
        let file = try await datasets.image(of: dataset, stem: request.parameters.get("stem") ?? "", role: request.parameters.get("role") ?? "", on: request.db)
        let url = bucket.presignedGet(key: dataset.prefix + file.key, downloadName: nil, origin: try request.origin(publicURL: publicURL, trustProxy: trustProxy)).url
        // Valid 15 minutes: the browser may reuse the redirect for a while instead of asking again.
        return Response(status: .seeOther, headers: ["Location": url.absoluteString, "Cache-Control": "private, max-age=300"])
    }

    // MARK: Helpers

    private func find(_ request: Request) async throws -> Dataset {
        try await datasets.find(request.parameters.get("id", as: UUID.self), userID: try request.principal.userID, on: request.db)
    }

    // MARK: OpenAPI

    private static let caption = SchemaValue.int(DatasetService.maximumCaptionLength)

    static let operations: [APIOperation] = [
        APIOperation(
            method: .POST, path: "/api/datasets", summary: "Create a dataset.",
            requestSchema: [
                "type": "object", "required": ["name"],
                "properties": [
                    "name": .visibleName, "defaultCaption": ["type": ["string", "null"], "maxLength": caption, "description": "Used for samples without a caption file."],
                ],
            ],
            responses: [201: ("The new dataset.", .ref("Dataset")), 409: ("You already have a dataset of that name.", .ref("Error"))]
        ),
        APIOperation(
            method: .GET, path: "/api/datasets", summary: "List your datasets with their counts and validation state.",
            responses: [200: ("Your datasets.", ["type": "object", "properties": ["datasets": ["type": "array", "items": .ref("Dataset")]]])]),
        APIOperation(
            method: .GET, path: "/api/datasets/{id}", summary: "A dataset with its files and validation.",
            responses: [200: ("The dataset.", .ref("Dataset")), 404: ("No such dataset of yours.", .ref("Error"))]),
        APIOperation(
            method: .PATCH, path: "/api/datasets/{id}", summary: "Rename a dataset or change its default caption.",
            requestSchema: [
                "type": "object",
                "properties": [
                    "name": SchemaValue.visibleName.merging(["type": ["string", "null"], "description": "Absent or null: unchanged."]),
                    "defaultCaption": ["type": ["string", "null"], "maxLength": caption, "description": "Absent: unchanged; null or empty: removed."],
                ],
            ],
            responses: [200: ("The dataset.", .ref("Dataset")), 404: ("No such dataset of yours.", .ref("Error")), 409: ("Name taken, or a job uses the dataset.", .ref("Error"))]
        ),
        APIOperation(
            method: .DELETE, path: "/api/datasets/{id}", summary: "Delete a dataset and every file of it in the bucket.",
            responses: [204: ("Deleted.", nil), 404: ("No such dataset of yours.", .ref("Error")), 409: ("A job uses the dataset.", .ref("Error"))]),
        APIOperation(
            method: .POST, path: "/api/datasets/{id}/uploads",
            summary: "Sign up to 500 uploads: one presigned PUT per file, bound to key, size, type and (with sha256) content, valid 15 minutes.",
            requestSchema: [
                "type": "object", "required": ["files"],
                "properties": [
                    "files": [
                        "type": "array", "minItems": 1, "maxItems": .int(UploadPlan.maximumFilesPerBatch),
                        "items": [
                            "type": "object", "required": ["path", "size"],
                            "properties": [
                                "path": [
                                    "type": "string", "minLength": 1,
                                    "description":
                                        "Relative path in the user's folder, e.g. control/cat.png or cat_start.png; the layout rules (422 when broken) are in the README.",
                                ],
                                "size": ["type": "integer", "minimum": 0, "maximum": .int(Int(UploadPlan.maximumFileBytes))], "contentType": ["type": "string"],
                                "sha256": ["type": "string", "pattern": "^[0-9a-fA-F]{64}$", "description": "Hex SHA-256; the store refuses other content."],
                            ],
                        ],
                    ]
                ],
            ],
            responses: [
                200: (
                    "The uploads to make.",
                    [
                        "type": "object",
                        "properties": [
                            "uploads": [
                                "type": "array",
                                "items": [
                                    "type": "object",
                                    "properties": [
                                        "path": ["type": "string"], "key": ["type": "string"], "url": ["type": "string"], "method": ["type": "string"],
                                        "headers": ["type": "object", "description": "Send exactly these headers."],
                                    ],
                                ],
                            ],
                            "skipped": ["type": "array", "items": ["type": "string"]], "expiresAt": ["type": "string", "format": "date-time"],
                        ],
                    ]
                ),
                422: ("Refused paths (each in error.details), the dataset would be too large, or your storage quota would be passed (quota_exceeded).", .ref("Error")),
                404: ("No such dataset of yours.", .ref("Error")), 409: ("A job uses the dataset.", .ref("Error")),
            ]
        ),
        APIOperation(
            method: .POST, path: "/api/datasets/{id}/uploads/complete",
            summary: "Record uploaded files after checking each in the bucket (exists, size, checksum); repeating it is harmless.",
            requestSchema: [
                "type": "object", "required": ["paths"],
                "properties": ["paths": ["type": "array", "minItems": 1, "maxItems": .int(UploadPlan.maximumFilesPerBatch), "items": ["type": "string"]]],
            ],
            responses: [
                200: ("The dataset with its validation; `failures` lists paths not recorded.", .ref("Dataset")), 404: ("No such dataset of yours.", .ref("Error")),
                409: ("A job uses the dataset.", .ref("Error")),
            ]
        ),
        APIOperation(
            method: .POST, path: "/api/datasets/{id}/imports",
            summary: "Import a zip (fal-style X_start.png/X_end.png/X.txt, or control/ and target/ folders): a presigned PUT for the zip, valid 15 minutes; then ask to unpack it.",
            requestSchema: [
                "type": "object", "required": ["fileName", "size"], "additionalProperties": false,
                "properties": [
                    "fileName": [
                        "type": "string", "minLength": 5, "maxLength": .int(VisibleName.maximumLength),
                        "allOf": [["pattern": .string(VisibleName.pattern)], ["pattern": "\\.[zZ][iI][pP]$"]],
                    ],
                    "size": ["type": "integer", "minimum": 1, "description": "The zip's size in bytes; at most the dataset's size limit."],
                ],
            ],
            responses: [
                201: (
                    "The import, and the PUT that uploads the zip.",
                    [
                        "type": "object", "required": ["import", "upload", "expiresAt"],
                        "properties": [
                            "import": .ref("DatasetImport"),
                            "upload": [
                                "type": "object",
                                "properties": [
                                    "path": ["type": "string"], "key": ["type": "string"], "url": ["type": "string"], "method": ["type": "string"],
                                    "headers": ["type": "object", "description": "Send exactly these headers."],
                                ],
                            ],
                            "expiresAt": ["type": "string", "format": "date-time"],
                        ],
                    ]
                ),
                400: ("Not a .zip name, or a size out of range.", .ref("Error")), 404: ("No such dataset of yours.", .ref("Error")),
                409: ("A job uses the dataset.", .ref("Error")), 422: ("The zip would pass your storage quota (quota_exceeded).", .ref("Error")),
            ]
        ),
        APIOperation(
            method: .GET, path: "/api/usage", summary: "What your datasets and job outputs hold, your storage quota, and how long the server keeps data.",
            responses: [
                200: (
                    "Your usage.",
                    [
                        "type": "object", "required": ["datasetBytes", "outputBytes", "usedBytes"],
                        "properties": [
                            "datasetBytes": ["type": "integer", "minimum": 0], "outputBytes": ["type": "integer", "minimum": 0], "usedBytes": ["type": "integer", "minimum": 0],
                            "quotaBytes": ["type": "integer", "description": "GOMODEL_STORAGE_QUOTA; absent without a quota."],
                            "retentionDays": ["type": "integer", "description": "GOMODEL_RETENTION_DAYS; absent when data is kept."],
                        ],
                    ]
                )
            ]),
        APIOperation(
            method: .GET, path: "/api/datasets/{id}/imports/{importId}", summary: "A zip import: its state and progress, and why it was refused.",
            responses: [200: ("The import.", .ref("DatasetImport")), 404: ("No such import of this dataset of yours.", .ref("Error"))]),
        APIOperation(
            method: .POST, path: "/api/datasets/{id}/imports/{importId}/unpack",
            summary:
                "Unpack the uploaded zip into the dataset in the background: every entry is checked (layout, images, sizes, zip bombs, links, '..') before anything is written; a refused zip changes nothing.",
            responses: [
                202: ("Unpacking; follow GET …/imports/{importId}.", .ref("DatasetImport")), 404: ("No such import of this dataset of yours.", .ref("Error")),
                409: ("The zip is not uploaded yet, the import already started or ended, or a job uses the dataset.", .ref("Error")),
                422: ("The uploaded zip's size is not the declared one.", .ref("Error")),
            ]
        ),
        APIOperation(
            method: .GET, path: "/api/datasets/{id}/validation", summary: "Check the dataset: every finding names the file and the fix.",
            responses: [200: ("The report.", .ref("Validation")), 404: ("No such dataset of yours.", .ref("Error"))]),
        APIOperation(
            method: .DELETE, path: "/api/datasets/{id}/samples/{stem}", summary: "Remove a sample: its control images, target and caption.",
            responses: [
                200: ("The dataset with its validation.", .ref("Dataset")), 404: ("No such dataset or sample of yours.", .ref("Error")),
                409: ("A job uses the dataset.", .ref("Error")),
            ]),
        APIOperation(
            method: .GET, path: "/api/datasets/{id}/samples/{stem}/{role}",
            summary: "View a sample's image (role target, control_1, control_2 or control_3): a redirect to a presigned URL valid 15 minutes.",
            responses: [303: ("To the image.", nil), 404: ("No such dataset, sample or image of yours.", .ref("Error"))]),
        APIOperation(
            method: .PATCH, path: "/api/datasets/{id}/samples/{stem}", summary: "Set a sample's caption (empty: use the default caption).",
            requestSchema: ["type": "object", "required": ["caption"], "properties": ["caption": ["type": "string", "maxLength": caption]]],
            responses: [
                200: ("The dataset with its validation.", .ref("Dataset")), 404: ("No such dataset or sample of yours.", .ref("Error")),
                409: ("A job uses the dataset.", .ref("Error")),
            ]
        ),
    ]

    static let schemas: [String: SchemaValue] = [
        "DatasetImport": [
            "type": "object",
            "required": [
                "id", "datasetId", "fileName", "size", "state", "entriesTotal", "entriesDone", "bytesTotal", "bytesWritten", "placed", "ignored", "createdAt", "updatedAt",
            ],
            "properties": [
                "id": ["type": "string", "format": "uuid"], "datasetId": ["type": "string", "format": "uuid"], "fileName": ["type": "string"], "size": ["type": "integer"],
                "state": ["type": "string", "enum": ["awaiting_upload", "unpacking", "done", "failed"]],
                "entriesTotal": ["type": "integer", "description": "Files the zip becomes (litter and folders not counted)."],
                "entriesDone": ["type": "integer", "description": "Files unpacked and checked so far."],
                "bytesTotal": ["type": "integer", "description": "What the files add up to, unpacked."],
                "bytesWritten": ["type": "integer", "description": "How much of it is in the dataset so far (written once every entry is checked)."],
                "placed": ["type": "integer", "description": "Files added to the dataset (when done)."],
                "ignored": ["type": "integer", "description": "Folders and system litter (.DS_Store, __MACOSX/) skipped."],
                "error": [
                    "type": "object", "required": ["code", "message"],
                    "properties": [
                        "code": [
                            "type": "string",
                            "enum": [
                                "zip_bomb", "too_large", "path_traversal", "symlink", "duplicate_name", "not_an_image", "unreadable_zip", "layout", "empty", "storage",
                                "interrupted",
                            ],
                        ],
                        "message": ["type": "string"],
                    ],
                ],
                "createdAt": ["type": "string", "format": "date-time"], "updatedAt": ["type": "string", "format": "date-time"],
            ],
        ],
        "Dataset": [
            "type": "object", "required": ["id", "name", "fileCount", "sampleCount", "totalBytes", "sound"],
            "properties": [
                "id": ["type": "string", "format": "uuid"], "name": ["type": "string"], "defaultCaption": ["type": "string"],
                "fileCount": ["type": "integer"], "sampleCount": ["type": "integer"], "totalBytes": ["type": "integer"],
                "controlsPerSample": ["type": "integer", "description": "The most control images a sample has (1–3); samples may have fewer."],
                "errorCount": ["type": "integer"], "warningCount": ["type": "integer"],
                "sound": ["type": "boolean"], "lockedByJobId": ["type": "string", "format": "uuid"],
                "createdAt": ["type": "string", "format": "date-time"], "updatedAt": ["type": "string", "format": "date-time"],
                "expiresAt": [
                    "type": "string", "format": "date-time",
                    "description": "With files: when retention (GOMODEL_RETENTION_DAYS) deletes it unless it changes or trains before.",
                ],
                "contentSha256": [
                    "type": "string", "description": "With files: the digest of their content, as a job's reproducibility record (GET /api/jobs/{id}/record) states it.",
                ],
                "validation": .ref("Validation"),
                "files": [
                    "type": "array",
                    "items": [
                        "type": "object",
                        "properties": [
                            "key": ["type": "string"], "role": ["type": "string", "enum": ["target", "caption", "control_1", "control_2", "control_3"]],
                            "stem": ["type": "string"], "bytes": ["type": "integer"], "sha256": ["type": "string"], "format": ["type": "string"],
                            "width": ["type": "integer"], "height": ["type": "integer"], "caption": ["type": "string"],
                        ],
                    ],
                ],
                "failures": ["type": "array", "items": ["type": "object", "properties": ["path": ["type": "string"], "reason": ["type": "string"]]]],
            ],
        ],
        "Validation": [
            "type": "object", "required": ["sound", "samples", "findings"],
            "properties": [
                "sound": ["type": "boolean"], "samples": ["type": "integer"], "totalBytes": ["type": "integer"],
                "controlsPerSample": ["type": "integer", "description": "The most control images a sample has (1–3); samples may have fewer."],
                "controlMix": [
                    "type": "array", "description": "How many samples have 1, 2 or 3 control images (empty while a sample's controls are incomplete).",
                    "items": ["type": "object", "required": ["controls", "samples"], "properties": ["controls": ["type": "integer"], "samples": ["type": "integer"]]],
                ],
                "findings": [
                    "type": "array",
                    "items": [
                        "type": "object",
                        "properties": [
                            "severity": ["type": "string", "enum": ["error", "warning"]], "code": ["type": "string"],
                            "file": ["type": "string", "description": "Dataset-relative key, or empty for the whole dataset."], "message": ["type": "string"],
                        ],
                    ],
                ],
            ],
        ],
    ]
}
