import Foundation

/// A forecast of a run's GPU time, shown before training starts (and its cost when
/// GOMODEL_GPU_PRICE_PER_SECOND is set): learned from this server's completed runs of the same
/// preset and profile when there are some, assumed otherwise.
public enum TrainingEstimate {
    /// Loading the model, caching latents and text embeddings, uploading results.
    public static let overheadSeconds: Double = 600
    /// How many of the newest completed runs on one GPU the learned figures are the median of.
    public static let learnedRuns = 10

    public static func secondsPerStep(_ profile: QwenImageEdit.Profile) -> Double {
        switch profile {
        case .gb32: 6.0
        case .gb48: 4.0
        case .gb80: 2.5
        }
    }

    /// Speeds measured on completed runs of one preset and profile on one GPU.
    public struct Learned: Sendable, Equatable, Codable {
        public let gpuName: String
        public let runs: Int
        public let secondsPerStep: Double
        public let overheadSeconds: Double

        public init(gpuName: String, runs: Int, secondsPerStep: Double, overheadSeconds: Double) {
            self.gpuName = gpuName
            self.runs = runs
            self.secondsPerStep = secondsPerStep
            self.overheadSeconds = overheadSeconds
        }

        /// The medians of `measured` (newest first) on the GPU of the newest one: the card a
        /// new job most likely gets. Nil when nothing was measured.
        public init?(measured: [(gpuName: String, secondsPerStep: Double, overheadSeconds: Double)]) {
            guard let gpu = measured.first?.gpuName else { return nil }
            let runs = measured.filter { $0.gpuName == gpu }.prefix(TrainingEstimate.learnedRuns)
            self.init(
                gpuName: gpu, runs: runs.count, secondsPerStep: TrainingEstimate.median(runs.map(\.secondsPerStep)),
                overheadSeconds: TrainingEstimate.median(runs.map(\.overheadSeconds)))
        }
    }

    public static func seconds(steps: Int, profile: QwenImageEdit.Profile, learned: Learned? = nil) -> Double {
        guard let learned else { return overheadSeconds + Double(steps) * secondsPerStep(profile) }
        return learned.overheadSeconds + Double(steps) * learned.secondsPerStep
    }

    /// Where an estimate comes from, for people.
    public static func source(_ learned: Learned?) -> String {
        guard let learned else { return "assumed: no completed run of this preset and profile yet" }
        return "the median of the last \(learned.runs) completed run\(learned.runs == 1 ? "" : "s") on \(learned.gpuName)"
    }

    static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        guard !sorted.isEmpty else { return 0 }
        let middle = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
    }
}
