import Foundation
import TrainerCore

/// One line of a job's state for a terminal: status, step bar, loss, speed and time left.
public enum JobLine {
    public static func render(_ job: API.Job, width: Int = 20) -> String {
        var parts = [job.status == "running" ? (job.progress?.phase ?? "running") : job.status]
        if let step = job.progress?.step, let total = job.progress?.totalSteps, total > 0 {
            let filled = min(width, max(0, Int(Double(step) / Double(total) * Double(width))))
            parts.append(String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled) + " step \(step)/\(total)")
        }
        if let loss = job.progress?.loss { parts.append(String(format: "loss %.4f", loss)) }
        if let speed = job.progress?.itPerSec, speed > 0 { parts.append(speed >= 1 ? String(format: "%.2f it/s", speed) : String(format: "%.1f s/it", 1 / speed)) }
        if let eta = job.progress?.etaSeconds, eta > 0, !job.isFinal { parts.append("ETA " + ProgressLine.duration(eta)) }
        if job.status == "submitted", let waited = job.queueSeconds { parts.append("waiting for a GPU " + ProgressLine.duration(waited)) }
        if let runner = job.runnerStatus, !RunPodStatus(runner).isKnown {
            parts.append("RunPod: \(runner)")
        }
        if let cost = job.cost { parts.append(String(format: "cost %.2f", cost)) }
        if let error = job.error { parts.append(error) }
        return parts.joined(separator: "  ")
    }
}
