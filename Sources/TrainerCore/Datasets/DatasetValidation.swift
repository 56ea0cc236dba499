/// Whether a dataset is sound enough to spend GPU time on; every finding names the file and the fix.
public enum DatasetValidation {
    public struct Limits: Sendable, Equatable {
        public var maximumSamples: Int
        public var maximumBytes: Int64
        public var smallestSide: Int
        public var largestSide: Int

        public init(maximumSamples: Int = 2000, maximumBytes: Int64 = 5 << 30, smallestSide: Int = 256, largestSide: Int = 8192) {
            self.maximumSamples = maximumSamples
            self.maximumBytes = maximumBytes
            self.smallestSide = smallestSide
            self.largestSide = largestSide
        }
    }

    /// One stored file of the dataset, as recorded after upload.
    public struct File: Sendable, Equatable {
        public let placement: DatasetLayout.Placement
        public let bytes: Int64
        /// What the first bytes say (images only; nil for captions or when not read yet).
        public let probe: ImageProbe.Result?

        public init(placement: DatasetLayout.Placement, bytes: Int64, probe: ImageProbe.Result?) {
            self.placement = placement
            self.bytes = bytes
            self.probe = probe
        }
    }

    public struct Finding: Sendable, Equatable {
        public enum Severity: String, Sendable { case error, warning }

        public let severity: Severity
        public let code: String
        /// The dataset-relative key the finding is about (or "" for the dataset as a whole).
        public let file: String
        public let message: String
    }

    public struct Report: Sendable, Equatable {
        public let findings: [Finding]
        public let samples: Int
        /// How many samples have 1, 2 or 3 control images (empty while a sample lacks some).
        public let controlMix: [Int: Int]
        public let totalBytes: Int64

        /// The most control images a sample has (1–3), when every sample's are complete; the
        /// control folders a job reads.
        public var controlsPerSample: Int? { controlMix.keys.max() }

        /// Sound means no errors; warnings do not block training.
        public var isSound: Bool { !findings.contains { $0.severity == .error } }
    }

    /// `drafts`: stems of samples with a drafted instruction not yet reviewed; such a sample may
    /// not train on anything else meanwhile (not even the default caption).
    public static func validate(_ files: [File], defaultCaption: String?, drafts: Set<String> = [], limits: Limits = Limits()) -> Report {
        var findings: [Finding] = []
        func add(_ severity: Finding.Severity, _ code: String, _ file: String, _ message: String) {
            findings.append(Finding(severity: severity, code: code, file: file, message: message))
        }

        // One file per role and stem: `a.png` and `a.jpg` both as target is ambiguous.
        var byRole: [DatasetLayout.Role: [String: File]] = [:]
        for file in files.sorted(by: { $0.placement.relativeKey < $1.placement.relativeKey }) {
            let placement = file.placement
            if let existing = byRole[placement.role]?[placement.stem] {
                add(.error, "duplicate_stem", placement.relativeKey, "\(placement.relativeKey) and \(existing.placement.relativeKey) have the same name; keep one of them.")
                continue
            }
            byRole[placement.role, default: [:]][placement.stem] = file
        }
        let targets = byRole[.target] ?? [:]
        let captions = byRole[.caption] ?? [:]
        let hasControls = (1...DatasetLayout.maximumControls).contains { byRole[.control($0)] != nil }

        if targets.isEmpty {
            add(.error, "no_samples", "", "The dataset has no target images; upload the edited results into target/ (or name them X_end.png).")
        }
        if !targets.isEmpty, !hasControls {
            add(.error, "no_controls", "", "The dataset has no control images; Qwen-Image-Edit needs the input image of each pair in control/ (or named X_start.png).")
        }
        // Samples may differ in how many controls they have (1–3): ai-toolkit finds each sample's
        // own in the control folders, in folder order, so a gap would renumber "Picture 2/3".
        var controlMix: [Int: Int] = [:]
        for stem in targets.keys.sorted() {
            let target = targets[stem]!.placement.relativeKey
            let present = (1...DatasetLayout.maximumControls).filter { byRole[.control($0)]?[stem] != nil }
            if hasControls, present.isEmpty {
                add(.error, "missing_control", target, "\(target) has no control image; upload control/\(stem).png (the input of the edit) or remove the target.")
            } else if let last = present.last, let gap = (1...last).first(where: { !present.contains($0) }) {
                add(
                    .error, "missing_control", target,
                    "\(target) has control image \(last) but no control image \(gap) (control_\(gap)/\(stem).png or .jpg); a sample's controls are numbered from 1 without gaps: upload it or rename the others."
                )
            } else if !present.isEmpty {
                controlMix[present.count, default: 0] += 1
            }
            if captions[stem] == nil, drafts.contains(stem) {
                add(
                    .error, "unaccepted_draft", target,
                    "\(target) has a drafted instruction waiting for review; accept, edit or reject it (a draft trains nothing until accepted).")
            } else if captions[stem] == nil, (defaultCaption ?? "").isEmpty {
                add(.error, "missing_caption", target, "\(target) has no caption; upload target/\(stem).txt with the edit instruction, or set the dataset's default caption.")
            }
        }
        for (role, entries) in byRole where role != .target {
            for (stem, file) in entries where targets[stem] == nil {
                add(
                    .warning, "orphan", file.placement.relativeKey,
                    "\(file.placement.relativeKey) has no target image \(stem).png/.jpg; it will not be used. Upload the target or delete the file.")
            }
        }

        var totalBytes: Int64 = 0
        for file in files {
            totalBytes += file.bytes
            let key = file.placement.relativeKey
            if file.bytes == 0 {
                add(.error, "empty_file", key, "\(key) is empty (0 bytes); upload it again.")
                continue
            }
            guard file.placement.role != .caption, let probe = file.probe else { continue }
            switch probe {
            case .notAnImage:
                add(.error, "not_an_image", key, "\(key) is not a PNG, JPEG or WebP image (its first bytes say otherwise); export it again as PNG or JPEG.")
            case .needsMoreBytes:
                add(.warning, "unknown_size", key, "The size of \(key) could not be read from its header; check that it opens in an image viewer.")
            case .image(_, let width, let height):
                if width > limits.largestSide || height > limits.largestSide {
                    add(.error, "too_large", key, "\(key) is \(width)×\(height) px; the largest side may be at most \(limits.largestSide) px. Downscale it.")
                } else if width < limits.smallestSide || height < limits.smallestSide {
                    add(
                        .warning, "too_small", key,
                        "\(key) is \(width)×\(height) px; below \(limits.smallestSide) px the model learns little detail. Use a larger image if you have one.")
                }
            }
        }
        if targets.count > limits.maximumSamples {
            add(.error, "too_many_samples", "", "The dataset has \(targets.count) samples; at most \(limits.maximumSamples) are allowed. Split it or remove samples.")
        }
        if totalBytes > limits.maximumBytes {
            add(.error, "too_many_bytes", "", "The dataset holds \(totalBytes) bytes; at most \(limits.maximumBytes) are allowed. Compress the images or remove samples.")
        }
        let complete = !findings.contains { $0.code == "missing_control" }
        return Report(findings: findings, samples: targets.count, controlMix: complete ? controlMix : [:], totalBytes: totalBytes)
    }
}
