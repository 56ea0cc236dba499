import Foundation

/// The XML documents the built-in store reads and writes.
public enum S3XML {
    public static func error(_ error: S3StoreError, resource: String, requestID: String) -> String {
        XMLNode(
            "Error",
            children: [
                XMLNode("Code", error.code), XMLNode("Message", error.message),
                XMLNode("Resource", resource), XMLNode("RequestId", requestID),
            ]
        ).document(namespace: nil)
    }

    public static func location() -> String {
        XMLNode(name: "LocationConstraint").document()
    }

    public static func initiateMultipartUpload(bucket: String, key: String, uploadID: String) -> String {
        XMLNode("InitiateMultipartUploadResult", children: [XMLNode("Bucket", bucket), XMLNode("Key", key), XMLNode("UploadId", uploadID)]).document()
    }

    public static func completeMultipartUpload(bucket: String, key: String, etag: String) -> String {
        XMLNode(
            "CompleteMultipartUploadResult",
            children: [
                XMLNode("Location", "/\(bucket)/\(key)"), XMLNode("Bucket", bucket), XMLNode("Key", key), XMLNode("ETag", "\"\(etag)\""),
            ]
        ).document()
    }

    public static func copyResult(_ stored: StoredObject) -> String {
        XMLNode("CopyObjectResult", children: [XMLNode("LastModified", iso8601(stored.lastModified)), XMLNode("ETag", "\"\(stored.etag)\"")]).document()
    }

    public static func listParts(bucket: String, key: String, uploadID: String, parts: [(Int, StoredObject)]) -> String {
        XMLNode(
            "ListPartsResult",
            children: [XMLNode("Bucket", bucket), XMLNode("Key", key), XMLNode("UploadId", uploadID), XMLNode("IsTruncated", "false")]
                + parts.map { number, stored in
                    XMLNode(
                        "Part",
                        children: [
                            XMLNode("PartNumber", String(number)), XMLNode("LastModified", iso8601(stored.lastModified)),
                            XMLNode("ETag", "\"\(stored.etag)\""), XMLNode("Size", String(stored.size)),
                        ])
                }
        ).document()
    }

    public static func deleteResult(deleted: [String], failed: [(String, S3StoreError)]) -> String {
        XMLNode(
            "DeleteResult",
            children: deleted.map { XMLNode("Deleted", children: [XMLNode("Key", $0)]) }
                + failed.map { key, error in XMLNode("Error", children: [XMLNode("Key", key), XMLNode("Code", error.code), XMLNode("Message", error.message)]) }
        )
        .document()
    }

    public static func listV2(bucket: String, query: [String: String], listing: BuiltInStore.Listing, maxKeys: Int, urlEncode: Bool) -> String {
        var children = [
            XMLNode("Name", bucket), XMLNode("Prefix", encodeIf(urlEncode, query["prefix"] ?? "")),
            XMLNode("KeyCount", String(listing.keys.count + listing.commonPrefixes.count)), XMLNode("MaxKeys", String(maxKeys)),
            XMLNode("IsTruncated", listing.nextStartAfter == nil ? "false" : "true"),
        ]
        if let delimiter = query["delimiter"] { children.append(XMLNode("Delimiter", encodeIf(urlEncode, delimiter))) }
        if let token = query["continuation-token"] { children.append(XMLNode("ContinuationToken", token)) }
        if let startAfter = query["start-after"] { children.append(XMLNode("StartAfter", encodeIf(urlEncode, startAfter))) }
        if let next = listing.nextStartAfter { children.append(XMLNode("NextContinuationToken", Data(next.utf8).base64EncodedString())) }
        if urlEncode { children.append(XMLNode("EncodingType", "url")) }
        return XMLNode("ListBucketResult", children: children + contents(listing, urlEncode: urlEncode)).document()
    }

    public static func listV1(bucket: String, query: [String: String], listing: BuiltInStore.Listing, maxKeys: Int, urlEncode: Bool) -> String {
        var children = [
            XMLNode("Name", bucket), XMLNode("Prefix", encodeIf(urlEncode, query["prefix"] ?? "")), XMLNode("Marker", encodeIf(urlEncode, query["marker"] ?? "")),
            XMLNode("MaxKeys", String(maxKeys)), XMLNode("IsTruncated", listing.nextStartAfter == nil ? "false" : "true"),
        ]
        if let delimiter = query["delimiter"] { children.append(XMLNode("Delimiter", encodeIf(urlEncode, delimiter))) }
        if let next = listing.nextStartAfter { children.append(XMLNode("NextMarker", encodeIf(urlEncode, next))) }
        if urlEncode { children.append(XMLNode("EncodingType", "url")) }
        return XMLNode("ListBucketResult", children: children + contents(listing, urlEncode: urlEncode)).document()
    }

    static func contents(_ listing: BuiltInStore.Listing, urlEncode: Bool) -> [XMLNode] {
        listing.keys.map { key, stored in
            XMLNode(
                "Contents",
                children: [
                    XMLNode("Key", encodeIf(urlEncode, key)), XMLNode("LastModified", iso8601(stored.lastModified)),
                    XMLNode("ETag", "\"\(stored.etag)\""), XMLNode("Size", String(stored.size)), XMLNode("StorageClass", "STANDARD"),
                ])
        } + listing.commonPrefixes.map { XMLNode("CommonPrefixes", children: [XMLNode("Prefix", encodeIf(urlEncode, $0))]) }
    }

    /// Continuation tokens are the last listed name, base64-encoded.
    public static func decodeToken(_ token: String) -> String? {
        Data(base64Encoded: token).flatMap { String(data: $0, encoding: .utf8) }
    }

    /// `CompleteMultipartUpload` → (part number, ETag) pairs.
    public static func parseCompleteMultipartUpload(_ data: Data) throws(S3StoreError) -> [(Int, String)] {
        guard let root = XMLNode.parse(data), root.name == "CompleteMultipartUpload" else { throw .malformedXML }
        var parts: [(Int, String)] = []
        for part in root.children("Part") {
            guard let number = part.value("PartNumber").flatMap(Int.init), let etag = part.value("ETag") else { throw .malformedXML }
            parts.append((number, etag))
        }
        return parts
    }

    /// `Delete` (DeleteObjects) → the keys, and whether only errors should be reported.
    public static func parseDelete(_ data: Data) throws(S3StoreError) -> (keys: [String], quiet: Bool) {
        guard let root = XMLNode.parse(data), root.name == "Delete" else { throw .malformedXML }
        return (root.children("Object").compactMap { $0.value("Key") }, root.value("Quiet") == "true")
    }

    public static func rfc1123(_ date: Date) -> String { HTTPDates.rfc1123(date) }
    static func iso8601(_ date: Date) -> String { HTTPDates.iso8601(date) }

    private static func encodeIf(_ encode: Bool, _ text: String) -> String {
        encode ? SigV4Encoding.encode(text, keepSlash: true) : text
    }
}
