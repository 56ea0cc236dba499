import AsyncHTTPClient
import Foundation
import ObjectStorage
import TrainerCore

/// Where jobs' files are: one bucket for every job (R2_*), or the built-in store at a server,
/// with the key scoped to the job that each job brings (`gomodel worker --server` alone).
public enum JobBucket: Sendable {
    case configured(S3Client)
    case builtInStore(url: URL, http: HTTPClient, retry: RetryPolicy)

    func client(for input: JobInput) throws -> S3Client {
        switch self {
        case .configured(let bucket):
            return bucket
        case .builtInStore(let url, let http, let retry):
            guard let key = input.storeKey else {
                throw JobFailure("The job brings no store key (its server does not run the built-in store); give the worker the bucket's R2_* settings.")
            }
            let credentials = S3Credentials(accessKeyID: key.accessKeyID, secretAccessKey: Secret(key.secretAccessKey))
            return S3Client(endpoint: S3Endpoint(url: url, bucket: input.dataset.bucket, region: "us-east-1", credentials: credentials), httpClient: http, retry: retry)
        }
    }
}

/// What `gomodel worker` runs: each job by its input's task.
public struct TaskHandler: JobHandler {
    let training: TrainingHandler
    let drafting: DraftHandler

    public init(training: TrainingHandler, drafting: DraftHandler) {
        self.training = training
        self.drafting = drafting
    }

    public func run(_ job: WorkerProtocolClient.TakenJob, progress: ProgressReporter) async throws -> JSONValue {
        switch job.input["task"]?.stringValue {
        case JobInput.Task.draftInstructions.rawValue: try await drafting.run(job, progress: progress)
        default: try await training.run(job, progress: progress)
        }
    }
}
