/// Which files of an upload batch get a presigned PUT, and where each one goes (DESIGN §4, §7).
///
/// A batch is all or nothing: if any path is refused (traversal, control characters, an unknown
/// kind of file, two files landing on the same key), nothing is signed and every refusal is
/// reported, so the user fixes them all at once.
public enum UploadPlan {
    public static let maximumFilesPerBatch = 500
    /// Far above any sane image (8192² RGBA PNG is 256 MiB uncompressed, much less stored).
    public static let maximumFileBytes: Int64 = 512 << 20

    public struct File: Sendable, Equatable {
        public let path: String
        public let size: Int64
        /// Hex SHA-256 of the content, when the client computed it.
        public let sha256: String?

        public init(path: String, size: Int64, sha256: String? = nil) {
            self.path = path
            self.size = size
            self.sha256 = sha256
        }
    }

    public struct Upload: Sendable, Equatable {
        public let path: String
        public let placement: DatasetLayout.Placement
        public let size: Int64
        public let contentType: String
        /// The SHA-256 digest, when the client gave one.
        public let sha256: [UInt8]?
    }

    public struct Rejection: Sendable, Equatable {
        public let path: String
        public let reason: String
    }

    public enum Outcome: Sendable, Equatable {
        /// `skipped`: system litter (`.DS_Store`…) that needs no upload.
        case planned(uploads: [Upload], skipped: [String])
        case rejected([Rejection])
    }

    public static func plan(_ files: [File]) -> Outcome {
        var uploads: [Upload] = []
        var skipped: [String] = []
        var rejections: [Rejection] = []
        var pathOfKey: [String: String] = [:]
        // Role and stem without the extension: `target/cat.png` and `target/cat.jpg` are one sample file.
        var pathOfSlot: [String: String] = [:]
        for file in files {
            func reject(_ reason: String) { rejections.append(Rejection(path: file.path, reason: reason)) }
            switch DatasetLayout.place(file.path) {
            case .ignored:
                skipped.append(file.path)
            case .refused(let reason):
                reject(reason)
            case .placed(let placement):
                let digest = file.sha256.flatMap(Self.digest)
                if file.size < 0 {
                    reject("size must be the file's length in bytes (0 or more).")
                } else if file.size > maximumFileBytes {
                    reject("is \(file.size) bytes; a file may be at most \(maximumFileBytes >> 20) MiB. Compress or downscale it.")
                } else if file.sha256 != nil, digest == nil {
                    reject("sha256 must be 64 hexadecimal digits (the SHA-256 of the file's content).")
                } else if let other = pathOfKey[placement.relativeKey] {
                    reject("lands on \(placement.relativeKey), like '\(other)'; keep one of the two.")
                } else if let other = pathOfSlot[placement.role.name + "/" + placement.stem] {
                    reject("is the same \(placement.role.name) of sample '\(placement.stem)' as '\(other)' (another format); keep one of the two.")
                } else {
                    pathOfKey[placement.relativeKey] = file.path
                    pathOfSlot[placement.role.name + "/" + placement.stem] = file.path
                    uploads.append(Upload(path: file.path, placement: placement, size: file.size, contentType: contentType(placement), sha256: digest))
                }
            }
        }
        return rejections.isEmpty ? .planned(uploads: uploads, skipped: skipped) : .rejected(rejections)
    }

    /// Decided by the extension, not by the client: browsers report `""` or a guess for WebP.
    public static func contentType(_ placement: DatasetLayout.Placement) -> String {
        switch placement.fileExtension {
        case "png": "image/png"
        case "jpg": "image/jpeg"
        case "webp": "image/webp"
        default: "text/plain; charset=utf-8"
        }
    }

    /// A SHA-256 digest from its 64 hex digits.
    static func digest(_ hex: String) -> [UInt8]? {
        Hex.decode(hex).flatMap { $0.count == 32 ? $0 : nil }
    }
}

extension DatasetLayout.Role {
    /// The name stored in the database and shown in the API: `target`, `caption`, `control_1`…
    public var name: String {
        switch self {
        case .target: "target"
        case .caption: "caption"
        case .control(let index): "control_\(index)"
        }
    }

    public init?(name: String) {
        switch name {
        case "target": self = .target
        case "caption": self = .caption
        default:
            guard name.hasPrefix("control_"), let index = Int(name.dropFirst(8)), (1...DatasetLayout.maximumControls).contains(index) else { return nil }
            self = .control(index)
        }
    }
}
