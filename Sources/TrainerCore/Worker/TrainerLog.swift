import Foundation

/// Reads ai-toolkit's console output (reference/ai-toolkit.md §3.1) into progress: the training
/// bar is a tqdm bar on stderr, redrawn with `\r`, labelled with `config.name`:
///
///     my_lora:   8%|▊         | 251/3000 [00:50<09:10,  4.99it/s, lr: 1.0e-04 loss: 3.456e-01]
///
/// Other bars (loading shards, caching, `Generating Samples`) carry other labels and are not the
/// training bar. The bar glyphs are never parsed (they become `#` when the stream is not UTF-8).
public enum TrainerLog {
    /// What one line says.
    public enum Event: Sendable, Equatable {
        case step(step: Int, total: Int, itPerSec: Double?, etaSeconds: Double?, loss: Double?)
        case phase(String, message: String)
        case resumed(fromStep: Int)
        /// `Saved checkpoint to …/<file>`: that file (a step's checkpoint, or the final LoRA) is complete.
        case checkpointSaved(file: String)
        /// `Saved optimizer to …/optimizer.pt`: rewritten in place at every save, so it belongs to
        /// the checkpoint saved just before.
        case optimizerSaved
        case error(String)
    }

    /// Splits output into lines at `\n` and at tqdm's `\r` redraws; `pending` keeps an
    /// unfinished line between chunks.
    public static func lines(appending chunk: String, to pending: inout String) -> [String] {
        pending += chunk
        var lines: [String] = []
        var current = ""
        for character in pending {
            // "\r\n" is one grapheme in Swift: it ends a line too.
            if character == "\n" || character == "\r" || character == "\r\n" {
                if !current.isEmpty { lines.append(current) }
                current = ""
            } else {
                current.append(character)
            }
        }
        pending = current
        return lines
    }

    public static func parse(_ line: String, runName: String) -> Event? {
        let text = line.trimmingSpaces()
        if text.hasPrefix(runName + ":") { return trainingBar(text) }
        // `Generating Samples` is the bar of the models ai-toolkit samples through
        // `BaseModel.generate_images` (Qwen among them); `Generating Images` the legacy models'.
        if text.hasPrefix("Generating baseline samples") || text.hasPrefix("Generating Samples") || text.hasPrefix("Generating Images") || text.hasPrefix("Generating images") {
            return .phase("sampling", message: text)
        }
        if text.hasPrefix("Saving at step") { return .phase("saving", message: text) }
        if text.hasPrefix("Saved checkpoint to ") {
            // What the file is, `WorkerJob.artifact(forOutputFile:)` says.
            return .checkpointSaved(file: String(text.dropFirst("Saved checkpoint to ".count).split(separator: "/").last ?? ""))
        }
        if text.hasPrefix("Saved optimizer to ") { return .optimizerSaved }
        if text.hasPrefix("Loading") || text.hasPrefix("Quantizing") || text.hasPrefix("Caching") { return .phase("loading", message: text) }
        if let range = text.range(of: "Found step "), let step = Int(text[range.upperBound...].prefix { $0.isNumber }) {
            return .resumed(fromStep: step)
        }
        if text.hasPrefix("Error running job:") || text.hasPrefix("torch.OutOfMemoryError") || text.contains("CUDA out of memory") {
            return .error(text)
        }
        return nil
    }

    static func trainingBar(_ text: String) -> Event? {
        // "… | 251/3000 [00:50<09:10,  4.99it/s, lr: 1.0e-04 loss: 3.456e-01]"
        guard let bar = text.lastIndex(of: "|") else { return nil }
        let rest = text[text.index(after: bar)...].trimmingSpaces()
        let counts = rest.prefix { $0 != " " && $0 != "[" }
        let parts = counts.split(separator: "/")
        guard parts.count == 2, let step = Int(parts[0]), let total = Int(parts[1]), total > 0 else { return nil }
        var itPerSec: Double?
        var eta: Double?
        var loss: Double?
        if let open = rest.firstIndex(of: "["), let close = rest.lastIndex(of: "]"), open < close {
            let fields = rest[rest.index(after: open)..<close].split(separator: ",").map { $0.trimmingSpaces() }
            if let times = fields.first, let less = times.firstIndex(of: "<") {
                eta = seconds(String(times[times.index(after: less)...]))
            }
            for field in fields.dropFirst() {
                if field.hasSuffix("it/s"), let value = Double(field.dropLast(4)) {
                    itPerSec = value
                } else if field.hasSuffix("s/it"), let value = Double(field.dropLast(4)), value > 0 {
                    itPerSec = 1 / value
                }
                if let range = field.range(of: "loss: ") {
                    loss = Double(field[range.upperBound...].prefix { !$0.isWhitespace })
                }
            }
        }
        return .step(step: step, total: total, itPerSec: itPerSec, etaSeconds: eta, loss: loss)
    }

    /// tqdm's `MM:SS` or `H:MM:SS`; `?` (unknown) gives nil.
    static func seconds(_ text: String) -> Double? {
        let parts = text.split(separator: ":").map { Int($0) }
        guard !parts.isEmpty, parts.count <= 3, parts.allSatisfy({ $0 != nil }) else { return nil }
        return Double(parts.reduce(0) { $0 * 60 + $1! })
    }
}

extension StringProtocol {
    func trimmingSpaces() -> String {
        String(drop { $0.isWhitespace }.reversed().drop { $0.isWhitespace }.reversed())
    }
}
