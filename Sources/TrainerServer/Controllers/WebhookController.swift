import Fluent
import TrainerCore
import Vapor

/// A user's outgoing webhooks: `POST /api/webhooks` (the secret is shown once),
/// `GET /api/webhooks`, `GET|DELETE /api/webhooks/{id}`, `POST /api/webhooks/{id}/test`,
/// `GET /api/webhooks/{id}/deliveries`.
struct WebhookController: Sendable {
    let webhooks: WebhookService

    func register(signedIn routes: any RoutesBuilder) {
        let group = routes.grouped("webhooks")
        group.post(use: create)
        group.get(use: list)
        group.get(":id", use: show)
        group.delete(":id", use: delete)
        group.post(":id", "test", use: test)
        group.get(":id", "deliveries", use: deliveries)
    }

    @Sendable func create(request: Request) async throws -> Response {
        let body = try request.decodeJSON(API.WebhookCreate.self, fields: ["url", "events", "description"])
        let endpoint = try await webhooks.create(userID: try request.principal.userID, body, on: request.db)
        return try JSON.response(endpoint.shape(secret: endpoint.secret), status: .created)
    }

    @Sendable func list(request: Request) async throws -> Response {
        let endpoints = try await webhooks.list(userID: try request.principal.userID, on: request.db)
        return try JSON.response(API.WebhookEndpointList(webhooks: endpoints.map { $0.shape() }))
    }

    @Sendable func show(request: Request) async throws -> Response {
        try JSON.response(try await find(request).shape())
    }

    @Sendable func delete(request: Request) async throws -> Response {
        try await webhooks.delete(try await find(request), on: request.db)
        return Response(status: .noContent)
    }

    @Sendable func test(request: Request) async throws -> Response {
        let delivery = try await webhooks.sendTest(to: try await find(request), on: request.db)
        return try JSON.response(delivery.shape, status: .accepted)
    }

    @Sendable func deliveries(request: Request) async throws -> Response {
        let list = try await webhooks.deliveries(of: try await find(request), on: request.db)
        return try JSON.response(API.WebhookDeliveryList(deliveries: list.map(\.shape)))
    }

    private func find(_ request: Request) async throws -> WebhookEndpoint {
        try await webhooks.find(request.parameters.get("id", as: UUID.self), userID: try request.principal.userID, on: request.db)
    }

    static let operations: [APIOperation] = [
        APIOperation(
            method: .POST, path: "/api/webhooks",
            summary:
                "Register a webhook for your jobs' events, signed the Standard Webhooks way (webhook-id, webhook-timestamp, webhook-signature) with its secret, shown only in this response. Failed deliveries are retried with exponential backoff for a day.",
            requestSchema: [
                "type": "object", "required": ["url"], "additionalProperties": false,
                "properties": [
                    "url": [
                        "type": "string", "maxLength": .int(OutgoingWebhook.maximumURLLength), "pattern": .string(OutgoingWebhook.urlPattern),
                        "description": "An http:// or https:// URL at a public address.",
                    ],
                    "events": [
                        "type": "array", "minItems": 1,
                        "items": ["type": "string", "enum": .array(OutgoingWebhook.EventType.subscribable.map { .string($0.rawValue) })],
                        "description": "The events to send; all of them when left out.",
                    ],
                    "description": ["type": "string", "maxLength": 200],
                ],
            ],
            responses: [
                201: ("The webhook, with its secret.", .ref("Webhook")),
                400: ("Not a valid URL, or an unknown event.", .ref("Error")),
                409: ("You have the most webhooks an account may have.", .ref("Error")),
                422: ("The host resolves to no address (unresolvable_host), or to one that is not public (private_address).", .ref("Error")),
            ]),
        APIOperation(
            method: .GET, path: "/api/webhooks", summary: "List your webhooks (without their secrets).",
            responses: [200: ("Your webhooks.", ["type": "object", "required": ["webhooks"], "properties": ["webhooks": ["type": "array", "items": .ref("Webhook")]]])]),
        APIOperation(
            method: .GET, path: "/api/webhooks/{id}", summary: "One of your webhooks.",
            responses: [200: ("The webhook.", .ref("Webhook")), 404: ("No such webhook of yours.", .ref("Error"))]),
        APIOperation(
            method: .DELETE, path: "/api/webhooks/{id}", summary: "Delete a webhook and its delivery log; what it has not sent yet is dropped.",
            responses: [204: ("Deleted.", nil), 404: ("No such webhook of yours.", .ref("Error"))]),
        APIOperation(
            method: .POST, path: "/api/webhooks/{id}/test", summary: "Send a webhook.test event to this webhook now.",
            responses: [
                202: ("The queued delivery; its log shows the answer.", .ref("WebhookDelivery")), 404: ("No such webhook of yours.", .ref("Error")),
                409: ("A test event to it is still waiting to be delivered (test_pending).", .ref("Error")),
            ]),
        APIOperation(
            method: .GET, path: "/api/webhooks/{id}/deliveries", summary: "The webhook's last 50 deliveries, newest first, each with every try and the receiver's status code.",
            responses: [
                200: ("The deliveries.", ["type": "object", "required": ["deliveries"], "properties": ["deliveries": ["type": "array", "items": .ref("WebhookDelivery")]]]),
                404: ("No such webhook of yours.", .ref("Error")),
            ]),
    ]

    static let schemas: [String: SchemaValue] = [
        "Webhook": [
            "type": "object", "required": ["id", "url", "events", "createdAt"],
            "properties": [
                "id": ["type": "string", "format": "uuid"], "url": ["type": "string"],
                "events": ["type": "array", "items": ["type": "string", "enum": .array(OutgoingWebhook.EventType.subscribable.map { .string($0.rawValue) })]],
                "description": ["type": "string"], "createdAt": ["type": "string", "format": "date-time"],
                "secret": ["type": "string", "pattern": "^whsec_", "description": "The signing secret, only when the webhook is created."],
            ],
        ],
        "WebhookDelivery": [
            "type": "object", "required": ["id", "messageId", "eventType", "state", "attempts", "createdAt", "payload"],
            "properties": [
                "id": ["type": "string", "format": "uuid"],
                "messageId": ["type": "string", "description": "The webhook-id header, the same on every retry."],
                "eventType": ["type": "string", "enum": .array(OutgoingWebhook.EventType.allCases.map { .string($0.rawValue) })],
                "jobId": ["type": "string", "format": "uuid"],
                "state": ["type": "string", "enum": ["pending", "delivered", "failed"]],
                "attempts": [
                    "type": "array",
                    "items": [
                        "type": "object", "required": ["at", "milliseconds"],
                        "properties": [
                            "at": ["type": "string", "format": "date-time"], "statusCode": ["type": "integer"], "error": ["type": "string"],
                            "milliseconds": ["type": "integer", "minimum": 0],
                        ],
                    ],
                ],
                "nextAttemptAt": ["type": "string", "format": "date-time"], "createdAt": ["type": "string", "format": "date-time"],
                "deliveredAt": ["type": "string", "format": "date-time"], "payload": ["type": "string", "description": "The body sent, as JSON text."],
            ],
        ],
    ]
}
