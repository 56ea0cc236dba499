import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFileSystem
import NIOHTTP1
import ObjectStorage
import TrainerCore

/// `gomodel jobs download`: a job's files from the bucket, each through a fresh presigned URL.
/// A download goes to `NAME.part` and continues from its end when run again (a Range request);
/// the finished file's SHA-256 is checked against the job's record before it takes its name.
public struct ArtifactDownload: Sendable {
    public struct Progress: Sendable {
        public let file: String
        public let bytesDone: Int64
        public let bytesTotal: Int64
    }

    let api: ServerAPI
    let http: HTTPClient

    public init(api: ServerAPI, http: HTTPClient) {
        self.api = api
        self.http = http
    }

    /// Downloads `artifact` of `job` (nil: its result) into `folder`; returns the file's path and
    /// whether it was already there, complete.
    public func run(job: API.Job, artifact: API.Job.Artifact, isResult: Bool, into folder: String, progress: @escaping @Sendable (Progress) -> Void) async throws -> (
        path: String, alreadyThere: Bool
    ) {
        let name = String(artifact.key.split(separator: "/").last ?? "artifact")
        let path = folder + "/" + name
        let part = path + ".part"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        if FileManager.default.fileExists(atPath: path) {
            if let expected = artifact.sha256, try await FileDigest.sha256(ofFile: path) == expected { return (path, true) }
            if artifact.sha256 == nil, let bytes = artifact.bytes, (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int64) == bytes { return (path, true) }
            throw PushError("\(path) exists and is not this job's \(name); move it away or download into another folder (-o).")
        }
        let url = try await api.downloadURL(job: job.id, artifactID: isResult ? nil : artifact.id)
        var offset = ((try? FileManager.default.attributesOfItem(atPath: part))?[.size] as? NSNumber)?.int64Value ?? 0
        if let total = artifact.bytes, offset > total { offset = 0 }
        var request = HTTPClientRequest(url: url.absoluteString)
        if offset > 0 { request.headers.add(name: "Range", value: "bytes=\(offset)-") }
        let response = try await http.execute(request, timeout: .hours(6))
        switch response.status.code {
        case 206: break
        case 200: offset = 0  // the whole file: start again
        case 416 where offset > 0 && offset == artifact.bytes: break  // the part is complete
        default:
            throw PushError("The bucket answered HTTP \(response.status.code) for \(name); run the command again.")
        }
        let total = artifact.bytes ?? (offset + (response.headers.first(name: "content-length").flatMap(Int64.init) ?? 0))
        if response.status.code != 416 {
            try await FileSystem.shared.withFileHandle(
                forWritingAt: FilePath(part), options: offset > 0 ? .modifyFile(createIfNecessary: false) : .newFile(replaceExisting: true)
            ) { file in
                var written = offset
                progress(Progress(file: name, bytesDone: written, bytesTotal: total))
                for try await chunk in response.body {
                    try await file.write(contentsOf: chunk, toAbsoluteOffset: written)
                    written += Int64(chunk.readableBytes)
                    progress(Progress(file: name, bytesDone: written, bytesTotal: total))
                }
            }
        }
        if let expected = artifact.sha256 {
            guard try await FileDigest.sha256(ofFile: part) == expected else {
                try? FileManager.default.removeItem(atPath: part)
                throw PushError("\(name) arrived damaged (its SHA-256 is not the job's record); the partial file was removed: run the command again.")
            }
        }
        try FileManager.default.moveItem(atPath: part, toPath: path)
        return (path, false)
    }
}
