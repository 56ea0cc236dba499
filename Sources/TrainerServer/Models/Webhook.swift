import Fluent
import Foundation
import TrainerCore

/// A user's outgoing webhook: where to send which job events, and the secret they are signed
/// with (kept, since every send signs with it; shown to the user once).
final class WebhookEndpoint: Model, @unchecked Sendable {
    static let schema = "webhook_endpoints"

    @ID(key: .id) var id: UUID?
    @Parent(key: "user_id") var user: User
    @Field(key: "url") var url: String
    /// The subscribed `OutgoingWebhook.EventType` raw values, comma-separated.
    @Field(key: "events") var events: String
    @Field(key: "secret") var secret: String
    @OptionalField(key: "description") var description: String?
    @Field(key: "created_at") var createdAt: Date

    init() {}

    init(userID: UUID, url: String, events: [OutgoingWebhook.EventType], secret: String, description: String?, createdAt: Date) {
        self.$user.id = userID
        self.url = url
        self.events = events.map(\.rawValue).joined(separator: ",")
        self.secret = secret
        self.description = description
        self.createdAt = createdAt
    }

    var eventTypes: [OutgoingWebhook.EventType] { events.split(separator: ",").compactMap { OutgoingWebhook.EventType(rawValue: String($0)) } }
}

/// One event for one endpoint (the outbox row): its body is fixed when the event happens, so
/// every retry sends the same bytes under the same `webhook-id`.
final class WebhookDelivery: Model, @unchecked Sendable {
    static let schema = "webhook_deliveries"

    enum State: String, Codable, Sendable {
        case pending
        case delivered
        case failed
    }

    @ID(key: .id) var id: UUID?
    @Parent(key: "endpoint_id") var endpoint: WebhookEndpoint
    /// `webhook-id`: the same on every retry, so receivers can drop duplicates.
    @Field(key: "message_id") var messageID: String
    @Field(key: "event_key") var eventKey: String
    @Field(key: "event_type") var eventType: String
    @OptionalField(key: "job_id") var jobID: UUID?
    @Field(key: "payload") var payload: String
    @Field(key: "state") var state: State
    @Field(key: "attempts") var attempts: Int
    @OptionalField(key: "next_attempt_at") var nextAttemptAt: Date?
    /// Which send holds it, until when (several server instances share the outbox).
    @OptionalField(key: "lease_until") var leaseUntil: Date?
    @OptionalField(key: "last_status_code") var lastStatusCode: Int?
    @OptionalField(key: "last_error") var lastError: String?
    /// `[API.WebhookAttempt]` (JSON), the newest last.
    @Field(key: "log") var log: String
    @Field(key: "created_at") var createdAt: Date
    @OptionalField(key: "delivered_at") var deliveredAt: Date?

    init() {}

    var attemptLog: [API.WebhookAttempt] { (try? API.decoder.decode([API.WebhookAttempt].self, from: Data(log.utf8))) ?? [] }
}
