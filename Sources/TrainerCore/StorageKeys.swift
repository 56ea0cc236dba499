/// Where things live in the bucket (DESIGN §4): one place for the layouts the server, the worker
/// and the built-in store's scoped keys all use.
public enum StorageKeys {
    /// A dataset's files: `datasets/{dataset id}/{role folder}/{file}`.
    public static func datasetPrefix(_ datasetID: String) -> String { "datasets/\(datasetID.lowercased())/" }

    /// A job's outputs: `outputs/{job id}/` with `lora/`, `checkpoints/`, `samples/`, `log.txt`,
    /// `config.json` and `loss.csv`.
    public static func outputPrefix(_ jobID: String) -> String { "outputs/\(jobID.lowercased())/" }
}
