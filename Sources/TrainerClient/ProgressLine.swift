import Foundation

/// The one-line progress of an upload: files, bytes, rate and time left.
public enum ProgressLine {
    public static func render(_ progress: DatasetPush.Progress, elapsed: TimeInterval, width: Int = 24) -> String {
        let fraction =
            progress.bytesTotal > 0
            ? Double(progress.bytesDone) / Double(progress.bytesTotal)
            : (progress.filesTotal > 0 ? Double(progress.filesDone) / Double(progress.filesTotal) : 1)
        let filled = Int((fraction * Double(width)).rounded(.down))
        let bar = String(repeating: "█", count: min(filled, width)) + String(repeating: "░", count: max(width - filled, 0))
        let rate = elapsed > 0 ? Double(progress.bytesDone) / elapsed : 0
        let eta: String
        if progress.bytesDone >= progress.bytesTotal {
            eta = "done"
        } else if rate > 0 {
            eta = duration(Double(progress.bytesTotal - progress.bytesDone) / rate) + " left"
        } else {
            eta = "…"
        }
        return "\(bar) \(progress.filesDone)/\(progress.filesTotal) files  \(bytes(progress.bytesDone))/\(bytes(progress.bytesTotal))  \(bytes(Int64(rate)))/s  \(eta)"
    }

    public static func bytes(_ count: Int64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(count)
        var unit = 0
        while value >= 1024, unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return unit == 0 ? "\(count) B" : String(format: value < 10 ? "%.1f %@" : "%.0f %@", value, units[unit])
    }

    public static func duration(_ seconds: Double) -> String {
        let total = Int(seconds.rounded(.up))
        if total < 60 { return "\(total)s" }
        if total < 3600 { return "\(total / 60)m\(String(format: "%02d", total % 60))s" }
        return "\(total / 3600)h\(String(format: "%02d", total / 60 % 60))m"
    }
}
