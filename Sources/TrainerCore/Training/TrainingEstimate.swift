import Foundation

/// A rough forecast of a run's GPU time, shown before training starts (and its cost when
/// GOMODEL_GPU_PRICE_PER_SECOND is set). Rough on purpose: speed depends on the card and the
/// images; the figures are typical for the default 512/768/1024 buckets on each profile's class of GPU.
public enum TrainingEstimate {
    /// Loading the model, caching latents and text embeddings, uploading results.
    public static let overheadSeconds: Double = 600

    public static func secondsPerStep(_ profile: QwenImageEdit.Profile) -> Double {
        switch profile {
        case .gb32: 6.0
        case .gb48: 4.0
        case .gb80: 2.5
        }
    }

    public static func seconds(steps: Int, profile: QwenImageEdit.Profile) -> Double {
        overheadSeconds + Double(steps) * secondsPerStep(profile)
    }
}
