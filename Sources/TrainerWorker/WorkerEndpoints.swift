import Foundation

/// The URLs a worker talks to (reference/runpod.md §2.1): RunPod's templated environment
/// variables in its cloud, or the same paths on `gomodel serve` for the built-in queue.
public struct WorkerEndpoints: Sendable, Equatable {
    /// Job-take URL, with the worker id filled in and a query string.
    public let jobTake: String
    /// Job-done URL with the worker id filled in; `$ID` is the job's id.
    public let jobDoneTemplate: String
    public let jobStop: String
    public let ping: String
    /// The raw value of `Authorization` (RunPod's SDK sends the key without `Bearer`).
    public let authorization: String
    public let workerID: String
    public let pingInterval: Duration

    public struct MissingSetting: Error, Sendable, CustomStringConvertible {
        public let description: String
    }

    /// From RunPod's variables. Both `$RUNPOD_POD_ID` and `$ID` in the take, stop and ping URLs
    /// are the worker id (the SDK only replaces `$ID` there, platform templates use either);
    /// in job-done, `$RUNPOD_POD_ID` is the worker and `$ID` stays for the job.
    public static func fromRunPod(environment: [String: String]) throws(MissingSetting) -> WorkerEndpoints {
        func value(_ name: String) throws(MissingSetting) -> String {
            guard let text = environment[name], !text.isEmpty else {
                throw MissingSetting(description: "\(name) is not set; RunPod sets it in its workers. Elsewhere use `gomodel worker --server URL --key KEY`.")
            }
            return text
        }
        let worker = environment["RUNPOD_POD_ID"].flatMap { $0.isEmpty ? nil : $0 } ?? UUID().uuidString.lowercased()
        func filled(_ template: String) -> String {
            template.replacingOccurrences(of: "$RUNPOD_POD_ID", with: worker).replacingOccurrences(of: "$ID", with: worker)
        }
        let take = filled(try value("RUNPOD_WEBHOOK_GET_JOB"))
        let interval = environment["RUNPOD_PING_INTERVAL"].flatMap(Int.init).map { max($0 / 1000, 1) } ?? 10
        return WorkerEndpoints(
            jobTake: Self.withQuery(take),
            jobDoneTemplate: Self.withQuery(try value("RUNPOD_WEBHOOK_POST_OUTPUT").replacingOccurrences(of: "$RUNPOD_POD_ID", with: worker)),
            jobStop: Self.withQuery(take.replacingOccurrences(of: "/job-take/", with: "/job-stop/")),
            ping: Self.withQuery(filled(environment["RUNPOD_WEBHOOK_PING"] ?? take.replacingOccurrences(of: "/job-take/", with: "/ping/"))),
            authorization: try value("RUNPOD_AI_API_KEY"), workerID: worker, pingInterval: .seconds(interval)
        )
    }

    /// For the built-in queue of `gomodel serve` at `server`.
    public static func builtInQueue(server: URL, key: String, workerID: String) -> WorkerEndpoints {
        var base = server.absoluteString
        while base.hasSuffix("/") { base.removeLast() }
        let worker = workerID.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-_."))) ?? workerID
        return WorkerEndpoints(
            jobTake: "\(base)/v2/local/job-take/\(worker)?", jobDoneTemplate: "\(base)/v2/local/job-done/\(worker)/$ID?",
            jobStop: "\(base)/v2/local/job-stop/\(worker)?", ping: "\(base)/v2/local/ping/\(worker)?",
            authorization: key, workerID: workerID, pingInterval: .seconds(10)
        )
    }

    /// Query parameters are appended with `&`, as RunPod's SDK does: every URL gets a `?`.
    static func withQuery(_ url: String) -> String { url.contains("?") ? url : url + "?" }

    public func jobDone(_ jobID: String) -> String {
        jobDoneTemplate.replacingOccurrences(of: "$ID", with: jobID.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-_."))) ?? jobID)
    }
}
