import Foundation

/// Webhooks a user registers to hear about their jobs, sent the Standard Webhooks way
/// (https://www.standardwebhooks.com): `webhook-id`, `webhook-timestamp` and `webhook-signature`,
/// `v1,` + base64 of HMAC-SHA256 over `{id}.{timestamp}.{body}` keyed with the endpoint's secret.
public enum OutgoingWebhook {
    public enum EventType: String, Sendable, Codable, CaseIterable {
        case jobStarted = "job.started"
        case jobCompleted = "job.completed"
        case jobFailed = "job.failed"
        case jobCancelled = "job.cancelled"
        case checkpointSaved = "checkpoint.saved"
        /// Sent by "Send test event" only; every endpoint receives it whatever its filter.
        case test = "webhook.test"

        /// What an endpoint may subscribe to.
        public static let subscribable: [EventType] = [.jobStarted, .jobCompleted, .jobFailed, .jobCancelled, .checkpointSaved]
    }

    /// The event a job reaching `status` announces (a timed-out job failed; queued and submitted
    /// are not news to a pipeline).
    public static func event(for status: JobStatus) -> EventType? {
        switch status {
        case .running: .jobStarted
        case .completed: .jobCompleted
        case .failed, .timedOut: .jobFailed
        case .cancelled: .jobCancelled
        case .queued, .submitted: nil
        }
    }

    /// The idempotency key of an event: one delivery per endpoint and key, however often the
    /// state that announces it is written. A status is news once per attempt (a retry starts and
    /// ends again); a checkpoint once per step, whichever attempt saved it.
    public static func eventKey(_ type: EventType, job: UUID, attempt: Int, step: Int? = nil) -> String {
        let id = job.uuidString.lowercased()
        if let step { return "\(type.rawValue):\(id):step-\(step)" }
        return "\(type.rawValue):\(id):attempt-\(attempt)"
    }

    // MARK: Secrets and signatures

    public static let secretPrefix = "whsec_"

    /// A new endpoint secret from 32 random bytes, in the Standard Webhooks form `whsec_{base64}`.
    public static func secret(from bytes: [UInt8]) -> String { secretPrefix + Data(bytes).base64EncodedString() }

    /// The HMAC key a secret stands for (the base64 after the prefix).
    public static func signingKey(of secret: String) -> [UInt8]? {
        guard secret.hasPrefix(secretPrefix), let data = Data(base64Encoded: String(secret.dropFirst(secretPrefix.count))), !data.isEmpty else { return nil }
        return Array(data)
    }

    /// What is signed: `{id}.{timestamp}.{body}`.
    public static func signedContent(id: String, timestamp: Int, body: [UInt8]) -> [UInt8] {
        Array("\(id).\(timestamp).".utf8) + body
    }

    /// The `webhook-signature` header for an HMAC-SHA256 `mac`.
    public static func signatureHeader(mac: [UInt8]) -> String { "v1," + Data(mac).base64EncodedString() }

    // MARK: Payload

    /// The body: `{"type", "timestamp", "data"}`, as Standard Webhooks recommends.
    public static func payload(type: EventType, at time: Date, data: JSONValue) -> String {
        JSONValue.object([("type", .string(type.rawValue)), ("timestamp", .string(timestamp(time))), ("data", data)]).rendered()
    }

    static func timestamp(_ time: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.string(from: time)
    }

    // MARK: Retries

    /// The first retry comes after this; each next one waits `retryFactor` times longer, up to
    /// `maximumRetryDelay`, for a day after the event (Standard Webhooks' own schedule is of this shape).
    public static let firstRetryDelay: TimeInterval = 5
    public static let retryFactor: Double = 4
    public static let maximumRetryDelay: TimeInterval = 4 * 3600
    public static let retryWindow: TimeInterval = 24 * 3600

    /// When to try again after `failures` failed attempts of an event made at `created`; nil once
    /// the next try would fall outside the day.
    public static func nextAttempt(afterFailures failures: Int, created: Date, now: Date) -> Date? {
        precondition(failures >= 1)
        let delay = min(firstRetryDelay * pow(retryFactor, Double(failures - 1)), maximumRetryDelay)
        let next = now.addingTimeInterval(delay)
        return next.timeIntervalSince(created) <= retryWindow ? next : nil
    }

    // MARK: Targets

    public struct TargetProblem: Error, Equatable, Sendable {
        public let message: String
    }

    public static let maximumURLLength = 2000
    /// What an endpoint's URL looks like (ECMA and Swift regex alike; the OpenAPI document states
    /// it): http(s), a host name, IPv4 or bracketed IPv6 address, a port of 1–65535, then a path
    /// and query of URL characters (percent escapes whole), no user name and no fragment.
    public static let urlPattern =
        #"^[Hh][Tt][Tt][Pp][Ss]?://([A-Za-z0-9][A-Za-z0-9.-]*|\[[0-9A-Fa-f:.]+\])"#
        + #"(:([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?"#
        + #"([/?]([A-Za-z0-9._~:/?@!$&'()*+,;=-]|%[0-9A-Fa-f]{2})*)?$"#

    /// An endpoint's URL: http or https, a host, no credentials or fragment. Where the host
    /// points is checked separately (`NetworkAddress`), at registration and before every send.
    public static func target(_ text: String) -> Result<URL, TargetProblem> {
        guard text.utf8.count <= maximumURLLength else { return .failure(.init(message: "is longer than \(maximumURLLength) characters")) }
        guard let pattern = try? Regex(urlPattern), (try? pattern.wholeMatch(in: text)) != nil else {
            return .failure(
                .init(
                    message:
                        "must be an http:// or https:// URL with a host, an optional port of 1 to 65535, and no user name, fragment or spaces, e.g. https://example.com/hooks/gomodel"
                ))
        }
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased(), ["http", "https"].contains(scheme) else {
            return .failure(.init(message: "must be an http:// or https:// URL, e.g. https://example.com/hooks/gomodel"))
        }
        guard let host = components.host, !host.isEmpty else { return .failure(.init(message: "has no host")) }
        guard components.user == nil, components.password == nil else {
            return .failure(.init(message: "must not carry a user name or password; put a secret in the path or verify the signature instead"))
        }
        guard components.fragment == nil else { return .failure(.init(message: "must not have a #fragment")) }
        // Read from the text: a port too long for an Int leaves `port` nil.
        if let range = components.rangeOfPort {
            let text = String(components.string?[range] ?? "")
            guard let port = Int(text), (1...65535).contains(port) else { return .failure(.init(message: "has the port \(text); ports are 1 to 65535")) }
        }
        var normalized = components
        normalized.scheme = scheme
        guard let url = normalized.url else { return .failure(.init(message: "is not a valid URL")) }
        return .success(url)
    }
}

/// Which IP addresses a webhook may reach: public ones only, unless the operator allows private
/// targets. Loopback, private, link-local (cloud metadata at 169.254.169.254), shared, reserved
/// and multicast ranges are refused, also when an IPv6 address embeds an IPv4 one.
public enum NetworkAddress {
    /// `bytes`: 4 (IPv4) or 16 (IPv6), network order.
    public static func isPublic(_ bytes: [UInt8]) -> Bool {
        switch bytes.count {
        case 4: return isPublicV4(bytes)
        case 16: return isPublicV6(bytes)
        default: return false
        }
    }

    private static func isPublicV4(_ b: [UInt8]) -> Bool {
        switch (b[0], b[1]) {
        case (0, _), (10, _), (127, _): return false  // this network, private, loopback
        case (100, 64...127): return false  // shared (carrier-grade NAT)
        case (169, 254): return false  // link-local, cloud metadata
        case (172, 16...31), (192, 168): return false  // private
        case (192, 0) where b[2] == 0 || b[2] == 2: return false  // IETF protocol assignments, TEST-NET-1
        case (192, 88) where b[2] == 99: return false  // 6to4 relay anycast
        case (198, 18...19): return false  // benchmarking
        case (198, 51) where b[2] == 100, (203, 0) where b[2] == 113: return false  // TEST-NET-2, -3
        case (224...255, _): return false  // multicast, reserved, broadcast
        default: return true
        }
    }

    private static func isPublicV6(_ b: [UInt8]) -> Bool {
        let prefix = b[0..<12]
        // ::ffff:a.b.c.d (mapped), ::a.b.c.d (compatible), 64:ff9b::a.b.c.d (NAT64): judged as IPv4.
        if prefix == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF] || prefix == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
            || prefix == [0, 0x64, 0xFF, 0x9B, 0, 0, 0, 0, 0, 0, 0, 0]
        {
            return isPublicV4(Array(b[12..<16]))
        }
        // ::ffff:0:a.b.c.d (IPv4-translated) judged as IPv4 again; local NAT64 64:ff9b:1::/48.
        if prefix == [0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0, 0] { return isPublicV4(Array(b[12..<16])) }
        if b[0..<6] == [0, 0x64, 0xFF, 0x9B, 0, 1] { return false }
        if b[0..<8] == [1, 0, 0, 0, 0, 0, 0, 0] { return false }  // discard 100::/64
        if b[0] == 0x20, b[1] == 0x01, b[2] < 0x02 { return false }  // 2001::/23: Teredo, ORCHID, benchmarking
        if b[0] & 0xFE == 0xFC { return false }  // unique local fc00::/7
        if b[0] == 0xFE, b[1] & 0xC0 == 0x80 { return false }  // link-local fe80::/10
        if b[0] == 0xFE, b[1] & 0xC0 == 0xC0 { return false }  // site-local fec0::/10 (deprecated)
        if b[0] == 0xFF { return false }  // multicast
        if b[0] == 0x20, b[1] == 0x01, b[2] == 0x0D, b[3] == 0xB8 { return false }  // documentation
        if b[0] == 0x20, b[1] == 0x02 { return isPublicV4(Array(b[2..<6])) }  // 6to4 embeds an IPv4 address
        return true
    }
}
