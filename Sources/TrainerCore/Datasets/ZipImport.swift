/// What a zip may hold to become dataset files. The server reads the zip's central directory
/// and applies `plan` before it writes anything, then checks each entry's real bytes as it
/// unpacks (`checkUnpacked`, `ImageProbe`); these are the rules, without I/O.
public enum ZipImport {
    public struct Entry: Sendable, Equatable {
        public enum Kind: Sendable, Equatable { case file, directory, symlink }

        public let path: String
        public let kind: Kind
        public let compressedSize: UInt64
        public let uncompressedSize: UInt64

        public init(path: String, kind: Kind, compressedSize: UInt64, uncompressedSize: UInt64) {
            self.path = path
            self.kind = kind
            self.compressedSize = compressedSize
            self.uncompressedSize = uncompressedSize
        }
    }

    public struct Limits: Sendable, Equatable {
        /// Entries in the central directory (a dataset of 2000 samples with 3 controls and
        /// captions has 10 000 files).
        public var maximumEntries = 20_000
        /// Uncompressed ÷ compressed of one entry. Images are compressed already (PNG, JPEG,
        /// WebP: a ratio near 1); only captions and crafted entries compress much.
        public var maximumRatio: UInt64 = 100
        /// Entries this small may have any ratio (a caption of 4000 spaces).
        public var ratioFloor: UInt64 = 1 << 20
        /// One file, as for an upload (`UploadPlan.maximumFileBytes`).
        public var maximumEntryBytes = UInt64(UploadPlan.maximumFileBytes)

        public init() {}
    }

    public enum Code: String, Sendable, Equatable {
        case zipBomb = "zip_bomb"
        /// More than the dataset has room for, or a file larger than an upload may be.
        case tooLarge = "too_large"
        case pathTraversal = "path_traversal"
        case symlink
        case duplicateName = "duplicate_name"
        case notAnImage = "not_an_image"
        case unreadableZip = "unreadable_zip"
        case layout
        case empty
    }

    /// Why the zip is refused; nothing of it is kept.
    public struct Refusal: Error, Sendable, Equatable, CustomStringConvertible {
        public let code: Code
        public let message: String
        public var description: String { message }

        public init(_ code: Code, _ message: String) {
            self.code = code
            self.message = message
        }
    }

    /// An entry that becomes a dataset file.
    public struct PlannedFile: Sendable, Equatable {
        public let entryPath: String
        public let placement: DatasetLayout.Placement
        public let bytes: UInt64
    }

    public struct Plan: Sendable, Equatable {
        public let files: [PlannedFile]
        /// System litter and folders, skipped.
        public let ignored: Int
        public var bytes: UInt64 { files.reduce(0) { $0 + $1.bytes } }
    }

    /// The files the zip becomes, or the first reason to refuse it. `room` is how many bytes
    /// the dataset may still take (its limit less what it holds).
    /// `roomIsQuota`: the room left is the owner's storage quota's, not the dataset's limit.
    public static func plan(_ entries: [Entry], room: Int64, roomIsQuota: Bool = false, limits: Limits = Limits()) -> Result<Plan, Refusal> {
        if entries.count > limits.maximumEntries { return .failure(tooManyEntries(limits)) }
        var files: [PlannedFile] = []
        var ignored = 0
        var byRoleAndStem: [String: String] = [:]
        var total: UInt64 = 0
        for entry in entries {
            let path = entry.path
            let components = path.replacingAll("\\", with: "/").split(separator: "/", omittingEmptySubsequences: false)
            if path.hasPrefix("/") || path.hasPrefix("\\") || components.contains("..") || (path.count > 1 && Array(path)[1] == ":") {
                return .failure(
                    Refusal(.pathTraversal, "'\(path)' points outside the zip's folder (an absolute path or '..'); such a zip is refused. Zip the dataset folder itself."))
            }
            switch entry.kind {
            case .symlink:
                return .failure(Refusal(.symlink, "'\(path)' is a symbolic link; zips with links are refused. Zip the files themselves (zip without -y)."))
            case .directory:
                ignored += 1
                continue
            case .file:
                break
            }
            let placement: DatasetLayout.Placement
            switch DatasetLayout.place(path) {
            case .ignored:
                ignored += 1
                continue
            case .refused(let reason):
                let isFileType = reason.contains("images must be")
                return .failure(Refusal(isFileType ? .notAnImage : .layout, "\(reason) Nothing of the zip was imported."))
            case .placed(let placed):
                placement = placed
            }
            let identity = "\(placement.role)|\(placement.stem)"
            if let other = byRoleAndStem[identity] {
                return .failure(
                    Refusal(.duplicateName, "'\(other)' and '\(path)' would both be the \(roleName(placement.role)) of sample '\(placement.stem)'; keep one of them and zip again.")
                )
            }
            byRoleAndStem[identity] = path
            if entry.uncompressedSize > limits.ratioFloor, entry.uncompressedSize / max(entry.compressedSize, 1) > limits.maximumRatio {
                return .failure(
                    Refusal(
                        .zipBomb,
                        "'\(path)' unpacks to \(entry.uncompressedSize) bytes from \(entry.compressedSize) (over \(limits.maximumRatio) times); images do not compress like that, so the zip is refused as a zip bomb."
                    ))
            }
            if entry.uncompressedSize > limits.maximumEntryBytes {
                return .failure(
                    Refusal(.tooLarge, "'\(path)' unpacks to \(entry.uncompressedSize) bytes; a file may have at most \(limits.maximumEntryBytes). Compress or downscale it."))
            }
            total += entry.uncompressedSize
            if total > UInt64(max(room, 0)) {
                return .failure(
                    Refusal(
                        .tooLarge,
                        roomIsQuota
                            ? "The zip unpacks to more than the \(max(room, 0)) bytes your storage quota (GOMODEL_STORAGE_QUOTA) leaves room for; delete datasets or jobs you no longer need, or ask the operator for more."
                            : "The zip unpacks to more than the \(max(room, 0)) bytes the dataset has room for; compress the images or split the dataset."))
            }
            files.append(PlannedFile(entryPath: path, placement: placement, bytes: entry.uncompressedSize))
        }
        if files.isEmpty {
            return .failure(Refusal(.empty, "The zip holds no images or captions the dataset layout knows (control/…, target/…, or X_start.png / X_end.png / X.txt)."))
        }
        return .success(Plan(files: files, ignored: ignored))
    }

    static func roleName(_ role: DatasetLayout.Role) -> String {
        switch role {
        case .target: "target image"
        case .caption: "caption"
        case .control(let index): "control image \(index)"
        }
    }

    public static func tooManyEntries(_ limits: Limits) -> Refusal {
        Refusal(.zipBomb, "The zip has more than \(limits.maximumEntries) entries; split it into several zips.")
    }

    /// An entry whose bytes run past the size its header declared is a bomb in disguise: the
    /// unpacking stops at once.
    public static func checkUnpacked(_ written: UInt64, of file: PlannedFile) -> Refusal? {
        guard written > file.bytes else { return nil }
        return Refusal(.zipBomb, "'\(file.entryPath)' unpacks to more bytes than the zip declares for it (\(file.bytes)); the zip is refused.")
    }

    /// The refusal for an unpacked image whose bytes are not an image.
    public static func notAnImage(_ file: PlannedFile) -> Refusal {
        Refusal(
            .notAnImage, "'\(file.entryPath)' is not a PNG, JPEG or WebP image (its first bytes say otherwise); export it again and zip again. Nothing of the zip was imported.")
    }
}
