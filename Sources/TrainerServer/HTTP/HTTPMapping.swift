import TrainerCore
import Vapor

/// A domain error the API answers with its own status and stable code; its message is the
/// error's description. This file is the one place where the services' refusals meet HTTP.
protocol APIErrorConvertible: Error, CustomStringConvertible {
    var status: HTTPResponseStatus { get }
    var code: String { get }
    /// Per-item problems, for programs to show beside the items.
    var details: [API.Item]? { get }
    var headers: HTTPHeaders { get }
}

extension APIErrorConvertible {
    var details: [API.Item]? { nil }
    var headers: HTTPHeaders { [:] }
    var apiError: APIError { APIError(status: status, code: code, message: description, headers: headers, details: details) }
}

extension DatasetService.Failure: APIErrorConvertible {
    var status: HTTPResponseStatus {
        switch self {
        case .notFound, .noSuchSample, .noSuchImage: .notFound
        case .nameTaken, .inUse, .importing: .conflict
        case .invalidName, .captionTooLong, .tooManyFiles, .noFiles: .badRequest
        case .invalidPaths, .tooLarge, .quotaExceeded: .unprocessableEntity
        }
    }

    var code: String {
        switch self {
        case .notFound, .noSuchSample, .noSuchImage: "not_found"
        case .nameTaken: "name_taken"
        case .inUse, .importing: "dataset_in_use"
        case .invalidName: "invalid_name"
        case .captionTooLong: "invalid_caption"
        case .tooManyFiles: "too_many_files"
        case .noFiles: "no_files"
        case .invalidPaths: "invalid_paths"
        case .tooLarge: "dataset_too_large"
        case .quotaExceeded: "quota_exceeded"
        }
    }

    var details: [API.Item]? {
        guard case .invalidPaths(let rejections) = self else { return nil }
        return rejections.map { API.Item(path: $0.path, reason: $0.reason) }
    }
}

extension DatasetImporter.Failure: APIErrorConvertible {
    var status: HTTPResponseStatus {
        switch self {
        case .notFound: .notFound
        case .notAZip, .invalidSize: .badRequest
        case .alreadyStarted, .notUploaded: .conflict
        case .sizeDiffers: .unprocessableEntity
        }
    }

    var code: String {
        switch self {
        case .notFound: "not_found"
        case .notAZip, .invalidSize: "invalid_parameter"
        case .alreadyStarted: "import_started"
        case .notUploaded: "not_uploaded"
        case .sizeDiffers: "size_differs"
        }
    }
}

extension DraftService.Failure: APIErrorConvertible {
    var status: HTTPResponseStatus {
        switch self {
        case .noSuchSample, .noSuchDraft: .notFound
        case .noStems: .badRequest
        case .alreadyRunning: .conflict
        case .nothingToDraft: .unprocessableEntity
        }
    }

    var code: String {
        switch self {
        case .noSuchSample, .noSuchDraft: "not_found"
        case .noStems: "invalid_parameter"
        case .alreadyRunning: "drafting"
        case .nothingToDraft: "nothing_to_draft"
        }
    }
}

extension JobService.Failure: APIErrorConvertible {
    var status: HTTPResponseStatus {
        switch self {
        case .notFound: .notFound
        case .invalidParameters: .badRequest
        case .parameterDoesNotFitDataset, .datasetNotReady: .unprocessableEntity
        case .notPromotable: .conflict
        case .noSuchCheckpoint: .notFound
        case .checkpointGone: .gone
        case .uploadInProgress, .importInProgress, .alreadyEnded, .notRetryable, .datasetGone, .stillActive, .outputsDeleted, .changedMeanwhile: .conflict
        }
    }

    var code: String {
        switch self {
        case .notFound: "not_found"
        case .invalidParameters, .parameterDoesNotFitDataset: "invalid_parameter"
        case .uploadInProgress, .importInProgress: "upload_in_progress"
        case .datasetNotReady: "dataset_not_ready"
        case .notPromotable: "not_promotable"
        case .noSuchCheckpoint: "not_found"
        case .checkpointGone: "checkpoint_gone"
        case .alreadyEnded: "job_finished"
        case .notRetryable: "job_not_retryable"
        case .datasetGone: "dataset_gone"
        case .stillActive: "job_active"
        case .outputsDeleted: "outputs_deleted"
        case .changedMeanwhile: "job_changed"
        }
    }

    var details: [API.Item]? {
        switch self {
        case .invalidParameters(let problems): problems.map { API.Item(path: JobService.Failure.path(of: $0), reason: $0.message) }
        case .datasetNotReady(let errors): errors.map { API.Item(path: $0.file, reason: $0.message) }
        default: nil
        }
    }
}

extension AccountService.Failure: APIErrorConvertible {
    var status: HTTPResponseStatus {
        switch self {
        case .invalidEmail, .weakPassword, .invalidTokenName: .badRequest
        case .emailTaken: .conflict
        case .signupClosed, .inviteRequired, .invalidInvite: .forbidden
        case .tooManySignIns: .tooManyRequests
        case .wrongCredentials: .unauthorized
        case .noAccount, .noSuchToken: .notFound
        }
    }

    var code: String {
        switch self {
        case .invalidEmail: "invalid_email"
        case .weakPassword: "weak_password"
        case .invalidTokenName: "invalid_name"
        case .emailTaken: "email_taken"
        case .signupClosed: "signup_closed"
        case .inviteRequired: "invite_required"
        case .invalidInvite: "invalid_invite"
        case .tooManySignIns: "too_many_attempts"
        case .wrongCredentials: "unauthorized"
        case .noAccount, .noSuchToken: "not_found"
        }
    }

    var headers: HTTPHeaders {
        guard case .tooManySignIns(let wait) = self else { return [:] }
        return ["Retry-After": String(Int(wait.rounded(.up)))]
    }
}

extension WorkerKeyService.Failure: APIErrorConvertible {
    var status: HTTPResponseStatus {
        switch self {
        case .invalidName: .badRequest
        case .nameTaken: .conflict
        case .notFound, .noSuchID: .notFound
        case .keyRequired, .revoked: .unauthorized
        }
    }

    var code: String {
        switch self {
        case .invalidName: "invalid_name"
        case .nameTaken: "name_taken"
        case .notFound, .noSuchID: "not_found"
        case .keyRequired, .revoked: "unauthorized"
        }
    }
}
