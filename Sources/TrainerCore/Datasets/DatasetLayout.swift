/// Where an uploaded file belongs in a Qwen-Image-Edit-2509 dataset (DESIGN §4).
///
/// Users arrive with the layouts they already have: folders named `control`/`input`/`start`
/// (with `_2`, `_3` variants) and `target`/`output`/`end`, fal's flat naming (`X_start.png`,
/// `X_start2.png`, `X_end.png`, `X.txt`), upper-case extensions, nested folders, or our own layout
/// (`control_1/`, `target/`). Every one maps to `target/{stem}.{ext}`, `target/{stem}.txt` or
/// `control_{n}/{stem}.{ext}` under the dataset's prefix.
public enum DatasetLayout {
    public static let imageExtensions: Set<String> = ["png", "jpg", "jpeg", "webp"]
    public static let maximumControls = 3
    /// Stems become file names on the worker; keep them well inside file-name limits.
    public static let maximumStemBytes = 200

    public enum Role: Sendable, Hashable {
        case target
        case caption
        /// 1…3, the order of "Picture 1/2/3" in the edit prompt.
        case control(Int)
    }

    /// A file placed in the dataset.
    public struct Placement: Sendable, Hashable {
        public let role: Role
        public let stem: String
        /// Lower-case extension (`txt` for captions).
        public let fileExtension: String

        public init(role: Role, stem: String, fileExtension: String) {
            self.role = role
            self.stem = stem
            self.fileExtension = fileExtension
        }

        /// The key below the dataset prefix, e.g. `control_2/cat.png`.
        public var relativeKey: String {
            switch role {
            case .target: "target/\(stem).\(fileExtension)"
            case .caption: "target/\(stem).txt"
            case .control(let index): "control_\(index)/\(stem).\(fileExtension)"
            }
        }
    }

    public enum Outcome: Sendable, Equatable {
        case placed(Placement)
        /// System litter (`.DS_Store`, `__MACOSX/…`, `Thumbs.db`): skipped without a word.
        case ignored
        /// Refused, with a message that says what to do.
        case refused(String)
    }

    /// ai-toolkit replaces `${VAR}` and `[name]` anywhere in its config (toolkit/config.py), and the
    /// sample prompts name control images by path: stems with these would break or misdirect a run.
    public static let trainerReservedCharacters: Set<Character> = ["$", "{", "}", "[", "]"]

    public static func place(_ rawPath: String) -> Outcome {
        let path = rawPath.replacingAll("\\", with: "/")
        if let hidden = HiddenCharacters.first(in: path) {
            return .refused("'\(visible(rawPath))' contains an invisible character (\(HiddenCharacters.name(hidden))) that could disguise its name; rename the file.")
        }
        if path.hasPrefix("/") || (path.count > 1 && Array(path)[1] == ":") {
            return .refused("'\(rawPath)' is an absolute path; upload paths relative to the dataset folder.")
        }
        let components = path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        if components.contains(where: { $0 == ".." || $0 == "." }) {
            return .refused("'\(rawPath)' contains '.' or '..'; upload paths inside the dataset folder only.")
        }
        guard let fileName = components.last else { return .refused("The path is empty.") }
        if components.contains(where: { $0.hasPrefix(".") || $0 == "__MACOSX" }) || ["thumbs.db", "desktop.ini"].contains(fileName.lowercased()) {
            return .ignored
        }
        guard let dot = fileName.lastIndex(of: "."), dot != fileName.startIndex else {
            return .refused("'\(rawPath)' has no file extension; images must be .png, .jpg, .jpeg or .webp and captions .txt.")
        }
        let base = String(fileName[..<dot]).trimmingWhitespace()
        let fileExtension = fileName[fileName.index(after: dot)...].lowercased()
        let isImage = imageExtensions.contains(fileExtension)
        guard isImage || fileExtension == "txt" else {
            return .refused("'\(rawPath)' is a .\(fileExtension) file; images must be .png, .jpg, .jpeg or .webp and captions .txt.")
        }

        // The nearest folder that names a role decides; otherwise fal's flat naming does.
        var role: Role?
        for folder in components.dropLast().reversed() {
            if let named = roleOfFolder(folder) {
                role = named
                break
            }
        }
        var stem = base
        if role == nil, isImage, let (flatStem, flatRole) = flatName(base) {
            role = flatRole
            stem = flatStem
        }
        if !isImage {
            // Captions sit beside their target, or loose (fal): `X.txt`.
            guard role == nil || role == .target else {
                return .refused("'\(rawPath)' is a caption inside a control folder; put captions beside the target images (target/\(base).txt).")
            }
            role = .caption
        }
        guard let role else {
            return .refused(
                "'\(rawPath)' is neither in a control/target folder nor named X_start.png / X_end.png; put inputs in control/ (or control_2/, control_3/) and results in target/.")
        }
        guard !stem.isEmpty else { return .refused("'\(rawPath)' has an empty name.") }
        if let reserved = stem.first(where: { trainerReservedCharacters.contains($0) }) {
            return .refused(
                "'\(rawPath)' has '\(reserved)' in its name; rename the file without $ { } [ ] (ai-toolkit reads ${…} and [name] in its config as variables, so the training would fail)."
            )
        }
        guard stem.utf8.count <= maximumStemBytes else {
            return .refused("'\(rawPath)' has a name longer than \(maximumStemBytes) bytes; shorten it.")
        }
        return .placed(Placement(role: role, stem: stem, fileExtension: role == .caption ? "txt" : (fileExtension == "jpeg" ? "jpg" : fileExtension)))
    }

    /// `control`, `input`, `start` (with `_2`/`2`/`_3`/`3`, and `_1`) → control n;
    /// `target`, `output`, `end` → target. Case does not matter.
    static func roleOfFolder(_ name: String) -> Role? {
        let lower = name.lowercased()
        if ["target", "targets", "output", "outputs", "end", "edited"].contains(lower) { return .target }
        for word in ["control", "controls", "input", "inputs", "start"] where lower.hasPrefix(word) {
            var rest = lower.dropFirst(word.count)
            if rest.isEmpty { return .control(1) }
            if rest.first == "_" || rest.first == "-" { rest = rest.dropFirst() }
            if let index = Int(rest), (1...maximumControls).contains(index) { return .control(index) }
        }
        return nil
    }

    /// fal's flat naming: `X_start`, `X_start2`, `X_start3` → controls, `X_end` → target.
    static func flatName(_ base: String) -> (String, Role)? {
        let lower = base.lowercased()
        if lower.hasSuffix("_end") { return (String(base.dropLast(4)), .target) }
        for index in 1...maximumControls {
            let suffix = index == 1 ? "_start" : "_start\(index)"
            if lower.hasSuffix(suffix) { return (String(base.dropLast(suffix.count)), .control(index)) }
        }
        if lower.hasSuffix("_start1") { return (String(base.dropLast(7)), .control(1)) }
        return nil
    }

    private static func visible(_ text: String) -> String {
        String(text.unicodeScalars.map { HiddenCharacters.first(in: String($0)) != nil ? "?" : Character($0) })
    }
}

extension String {
    func replacingAll(_ target: Character, with replacement: Character) -> String {
        String(map { $0 == target ? replacement : $0 })
    }
}
