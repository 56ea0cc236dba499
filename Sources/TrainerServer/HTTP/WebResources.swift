import Foundation
import Vapor

/// The web app's templates (`Web/Views`) and static files (`Web/Assets`), shipped as resources
/// of this target so `gomodel serve` finds them from any working directory.
enum WebResources {
    static var root: URL {
        guard let url = Bundle.module.url(forResource: "Web", withExtension: nil) else {
            fatalError("The TrainerServer resource bundle lacks its Web folder; rebuild the package.")
        }
        return url
    }

    static var viewsDirectory: String { root.appendingPathComponent("Views").path + "/" }
    static var assetsDirectory: String { root.appendingPathComponent("Assets").path + "/" }

    static let contentTypes: [String: String] = [
        "css": "text/css; charset=utf-8", "js": "text/javascript; charset=utf-8", "svg": "image/svg+xml", "png": "image/png", "ico": "image/x-icon",
    ]

    /// `/assets/**`: only plain files inside the assets folder, never `..`, hidden files or
    /// folders. Path pieces arrive percent-decoded (`js%2F..` is one piece `js/..`), so a piece
    /// may hold no `/` either, and the resolved path must still lie in the folder.
    static func serveAsset(request: Request) async throws -> Response {
        let parts = request.parameters.getCatchall()
        guard !parts.isEmpty, parts.allSatisfy({ !$0.isEmpty && !$0.hasPrefix(".") && !$0.contains("/") && !$0.contains("\\") }),
            let type = parts.last.flatMap({ $0.split(separator: ".").last }).flatMap({ contentTypes[String($0)] })
        else { throw Abort(.notFound) }
        let path = assetsDirectory + parts.joined(separator: "/")
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), !isFolder.boolValue,
            URL(fileURLWithPath: path).standardizedFileURL.path.hasPrefix(URL(fileURLWithPath: assetsDirectory).standardizedFileURL.path + "/")
        else { throw Abort(.notFound) }
        let response = try await request.fileio.asyncStreamFile(at: path)
        response.headers.replaceOrAdd(name: .contentType, value: type)
        // Revalidated each time (ETag), so a new release is picked up at once.
        response.headers.replaceOrAdd(name: .cacheControl, value: "no-cache")
        return response
    }
}
