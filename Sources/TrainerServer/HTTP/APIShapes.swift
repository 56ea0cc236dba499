import FluentKit
import Foundation
import TrainerCore

// The models in the API's shapes (TrainerCore's `API`): what the controllers answer.

extension User {
    var shape: API.User { API.User(id: id!, email: email, isAdmin: isAdmin, createdAt: createdAt) }
}

extension APIToken {
    /// `value` only in the answer that created it.
    func shape(value: String? = nil) -> API.Token {
        API.Token(id: id!, name: name, hint: hint, createdAt: createdAt, lastUsedAt: lastUsedAt, token: value)
    }
}

extension WorkerKey {
    /// `value` only in the answer that created it.
    func shape(runningJobs: Int, value: String? = nil) -> API.WorkerKey {
        API.WorkerKey(id: id!, name: name, createdAt: createdAt, lastUsedAt: lastUsedAt, revokedAt: revokedAt, runningJobs: runningJobs, key: value)
    }
}

extension Dataset {
    /// The dataset with its validation report, as the routes that change its files answer.
    func shape(validation report: DatasetValidation.Report) -> API.Dataset {
        var shaped = shape
        shaped.validation = API.Validation(report)
        return shaped
    }

    var shape: API.Dataset {
        API.Dataset(
            id: id!, name: name, defaultCaption: defaultCaption, fileCount: fileCount, sampleCount: sampleCount, totalBytes: totalBytes,
            controlsPerSample: controlsPerSample, errorCount: errorCount, warningCount: warningCount, lockedByJobId: lockedByJobID,
            createdAt: createdAt, updatedAt: updatedAt
        )
    }
}

extension DatasetFile {
    var shape: API.DatasetFile {
        API.DatasetFile(key: key, role: role, stem: stem, bytes: bytes ?? 0, sha256: sha256, format: format, width: width, height: height, caption: caption)
    }
}

extension JobEvent {
    var shape: API.Job.Event { API.Job.Event(at: at, status: status, message: message) }
}

extension Job {
    /// As of `now` (the waiting and GPU times of a job that has not ended grow), with its cost
    /// when a price per GPU second is set.
    func shape(now: Date, pricePerSecond: Double? = nil) -> API.Job {
        let queueSeconds = (startedAt ?? finishedAt ?? now).timeIntervalSince(createdAt)
        let executionSeconds = startedAt.map { (finishedAt ?? now).timeIntervalSince($0) }
        var shaped = API.Job(
            id: id!, datasetId: datasetID, preset: preset, params: try? JSONDecoder().decode(JSONValue.self, from: Data(parameters.utf8)),
            status: status.rawValue, runnerStatus: runnerStatus, attempt: attempt, progress: latestProgress, runpodJobId: runPodJobID,
            artifacts: storedArtifacts.map {
                API.Job.Artifact(id: JobController.artifactID($0.key), kind: $0.kind.rawValue, key: $0.key, bytes: $0.bytes, step: $0.step, sha256: $0.sha256)
            },
            error: error, errorDetail: errorDetail, cancelRequested: cancelRequested, createdAt: createdAt, submittedAt: submittedAt,
            startedAt: startedAt, finishedAt: finishedAt, queueSeconds: queueSeconds, executionSeconds: executionSeconds,
            cost: pricePerSecond.map { price in ((executionSeconds ?? 0) * price * 10000).rounded() / 10000 }
        )
        shaped.result = JobArtifact.result(of: storedArtifacts, promotedStep: promotedStep).map {
            API.Job.Result(artifactId: JobController.artifactID($0.key), kind: $0.kind.rawValue, step: $0.step, promoted: $0.kind == .checkpoint)
        }
        return shaped
    }
}

extension QwenImageEdit.Preset {
    var shape: API.Preset {
        var defaults = API.JobParameters()
        defaults.steps = self.defaults.steps
        defaults.learningRate = self.defaults.learningRate
        defaults.rank = self.defaults.rank
        defaults.profile = self.defaults.profile.rawValue
        defaults.resolutions = self.defaults.resolutions
        defaults.keepCheckpoints = self.defaults.keepCheckpoints
        defaults.seed = self.defaults.seed
        return API.Preset(
            id: id, label: label, baseModel: baseModel, isDefault: id == QwenImageEdit.defaultPreset.id,
            profiles: QwenImageEdit.Profile.allCases.map {
                .init(id: $0.rawValue, label: $0.label, maximumResolution: $0.maximumResolution, secondsPerStep: TrainingEstimate.secondsPerStep($0))
            },
            defaults: defaults)
    }
}

extension DatasetImport {
    /// An unpacking its server left when it stopped reads as failed (`interrupted`); unpacking it
    /// again is allowed.
    func shape(now: Date) -> API.DatasetImport {
        let interrupted = state == .unpacking && !DatasetImporter.isUnpacking(self, now: now)
        let error =
            interrupted
            ? API.DatasetImport.Failure(code: "interrupted", message: "The unpacking stopped when its server did; ask to unpack it again.")
            : errorCode.map { API.DatasetImport.Failure(code: $0, message: errorMessage ?? "") }
        return API.DatasetImport(
            id: id!, datasetId: $dataset.id, fileName: fileName, size: size, state: interrupted ? DatasetImport.State.failed.rawValue : state.rawValue,
            entriesTotal: entriesTotal, entriesDone: entriesDone, bytesTotal: bytesTotal, bytesWritten: bytesWritten, placed: placed, ignored: ignored, error: error,
            createdAt: createdAt, updatedAt: updatedAt)
    }
}

extension CaptionDraft {
    var shape: API.Draft { API.Draft(stem: stem, text: text, source: source, createdAt: createdAt) }
}

extension DraftRun {
    /// A worker run's progress is its job's (step = samples done); an endpoint run whose server
    /// stopped meanwhile reads as failed.
    func shape(now: Date, on db: any Database) async throws -> API.DraftRun {
        var done = samplesDone
        var state = state
        var error = error
        if state == .running, let jobID, let job = try await Job.find(jobID, on: db), let step = job.latestProgress?.step { done = step }
        if state == .running, mode == .endpoint, updatedAt < now.addingTimeInterval(-DraftService.staleAfter) {
            state = .failed
            error = "Drafting stopped when its server did; start it again."
        }
        return API.DraftRun(
            id: id!, mode: mode.rawValue, jobId: jobID, state: state.rawValue, samplesTotal: samplesTotal, samplesDone: done, drafted: drafted, error: error,
            createdAt: createdAt, updatedAt: updatedAt)
    }
}
