/// One loss point per step, read from ai-toolkit's training bar.
///
/// ai-toolkit redraws the bar twice a step (BaseSDTrainProcess ~2697, ~2797): `set_postfix_str`
/// shows step k's loss at the count k, then `update` moves the count to k + 1 with that same loss
/// (tqdm may skip this second redraw when steps are fast, never the first). So the loss of step k
/// is the last one drawn at count k, settled once the count moves past k; the final redraw
/// (count = total, the last step's loss again) is never a step of its own. `loss_log.db` numbers
/// its steps the same way.
public struct LossCurve: Sendable, Equatable {
    public private(set) var points: [Point] = []
    private var drawn: Point?

    public struct Point: Sendable, Equatable {
        public let step: Int
        public let loss: Double

        public init(step: Int, loss: Double) {
            self.step = step
            self.loss = loss
        }
    }

    /// `earlier`: points of earlier attempts; a resumed run redraws its steps from there on.
    public init(earlier: [Point] = []) {
        points = earlier
    }

    /// One redraw of the training bar; returns the point it settled, if any.
    @discardableResult
    public mutating func observe(count: Int, loss: Double) -> Point? {
        defer { drawn = Point(step: count, loss: loss) }
        guard let drawn, count > drawn.step else { return nil }
        // A resumed run trains its first steps again: its values replace the earlier attempt's.
        points.removeAll { $0.step >= drawn.step }
        points.append(drawn)
        return drawn
    }

    /// ai-toolkit saved a checkpoint at `step`: every step before it is done, so the one still
    /// drawn (its `update` redraw skipped) is settled. Without this, `loss.csv` uploaded with the
    /// checkpoint lacks the step before it, and a resume from that checkpoint never gets it back.
    public mutating func settle(before step: Int) {
        guard let drawn, drawn.step < step else { return }
        points.removeAll { $0.step >= drawn.step }
        points.append(drawn)
    }

    /// `loss.csv` as the job page and the bucket keep it.
    public var csv: String {
        "step,loss\n" + points.map { "\($0.step),\($0.loss)\n" }.joined()
    }

    /// Reads `csv` back (an earlier attempt's curve); lines that are not `step,loss` are skipped.
    public static func points(csv: String) -> [Point] {
        csv.split(whereSeparator: \.isNewline).compactMap { line in
            let fields = line.split(separator: ",")
            guard fields.count == 2, let step = Int(fields[0]), let loss = Double(fields[1]) else { return nil }
            return Point(step: step, loss: loss)
        }
    }
}
