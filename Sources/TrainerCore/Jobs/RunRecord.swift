import Foundation

/// What a job's reproducibility record is made of, besides its stored config: the dataset's
/// content as one digest, and each attempt's overhead besides its steps.
public enum RunRecord {
    public static let version = 1

    /// One file of a dataset as it was trained: its path in the dataset, size and SHA-256.
    public struct DatasetFile: Codable, Sendable, Equatable {
        public let path: String
        public let bytes: Int64
        public let sha256: String?

        public init(path: String, bytes: Int64, sha256: String?) {
            self.path = path
            self.bytes = bytes
            self.sha256 = sha256
        }
    }

    /// What the dataset's digest is the SHA-256 of: a line `{sha256}  {path}` per file, sorted by
    /// path (the form `sha256sum` writes, so `sha256sum -c` can check a copy). Nil when a
    /// file's SHA-256 is unknown.
    public static func digestText(of files: [DatasetFile]) -> String? {
        var lines: [String] = []
        for file in files.sorted(by: { $0.path < $1.path }) {
            guard let sha256 = file.sha256 else { return nil }
            lines.append("\(sha256)  \(file.path)\n")
        }
        return lines.joined()
    }

    /// The rest of an attempt's time besides its steps (loading, caching, sampling, uploads), given
    /// the seconds per step the trainer last reported while training. Nil without trained steps.
    public static func overhead(steps: Int?, resumedFromStep: Int?, durationSeconds: Double?, secondsPerStep: Double?) -> Double? {
        guard let steps, let durationSeconds, let secondsPerStep, secondsPerStep > 0 else { return nil }
        let trained = steps - (resumedFromStep ?? 0)
        guard trained > 0 else { return nil }
        return max(0, durationSeconds - Double(trained) * secondsPerStep)
    }
}
