import Foundation

extension API {
    /// `POST /api/webhooks`. `events` defaults to all of `OutgoingWebhook.EventType.subscribable`.
    public struct WebhookCreate: Codable, Sendable {
        public let url: String
        public let events: [String]?
        public let description: String?

        public init(url: String, events: [String]?, description: String?) {
            self.url = url
            self.events = events
            self.description = description
        }
    }

    /// An endpoint; `secret` only in the answer that creates it.
    public struct WebhookEndpoint: Codable, Sendable {
        public let id: UUID
        public let url: String
        public let events: [String]
        public let description: String?
        public let createdAt: Date
        public let secret: String?

        public init(id: UUID, url: String, events: [String], description: String?, createdAt: Date, secret: String?) {
            self.id = id
            self.url = url
            self.events = events
            self.description = description
            self.createdAt = createdAt
            self.secret = secret
        }
    }

    public struct WebhookEndpointList: Codable, Sendable {
        public let webhooks: [WebhookEndpoint]

        public init(webhooks: [WebhookEndpoint]) { self.webhooks = webhooks }
    }

    /// One try at sending a delivery: the receiver's status code, or why there was none.
    public struct WebhookAttempt: Codable, Sendable, Equatable {
        public let at: Date
        public let statusCode: Int?
        public let error: String?
        public let milliseconds: Int

        public init(at: Date, statusCode: Int?, error: String?, milliseconds: Int) {
            self.at = at
            self.statusCode = statusCode
            self.error = error
            self.milliseconds = milliseconds
        }
    }

    /// One event for one endpoint: `pending` (tried again at `nextAttemptAt`), `delivered` (a 2xx
    /// came back) or `failed` (no 2xx within a day, or the endpoint's address was refused).
    public struct WebhookDelivery: Codable, Sendable {
        public let id: UUID
        public let messageId: String
        public let eventType: String
        public let jobId: UUID?
        public let state: String
        public let attempts: [WebhookAttempt]
        public let nextAttemptAt: Date?
        public let createdAt: Date
        public let deliveredAt: Date?
        public let payload: String

        public init(
            id: UUID, messageId: String, eventType: String, jobId: UUID?, state: String, attempts: [WebhookAttempt], nextAttemptAt: Date?, createdAt: Date,
            deliveredAt: Date?, payload: String
        ) {
            self.id = id
            self.messageId = messageId
            self.eventType = eventType
            self.jobId = jobId
            self.state = state
            self.attempts = attempts
            self.nextAttemptAt = nextAttemptAt
            self.createdAt = createdAt
            self.deliveredAt = deliveredAt
            self.payload = payload
        }
    }

    public struct WebhookDeliveryList: Codable, Sendable {
        public let deliveries: [WebhookDelivery]

        public init(deliveries: [WebhookDelivery]) { self.deliveries = deliveries }
    }
}
