import ArgumentParser
import Foundation
import TrainerClient
import TrainerCore

struct Webhooks: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Send your jobs' events to your own endpoints, signed the Standard Webhooks way (after `gomodel login`).",
        subcommands: [Add.self, List.self, Test.self, Deliveries.self, Remove.self])

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Register an endpoint; prints its signing secret, which is shown only once.",
            discussion: "Events: \(OutgoingWebhook.EventType.subscribable.map(\.rawValue).joined(separator: ", ")) (all of them unless --events is given).")
        @Argument(help: "The endpoint's http:// or https:// URL.") var url: String
        @ArgumentParser.Option(help: "Comma-separated events to send, e.g. job.completed,job.failed.") var events: String?
        @ArgumentParser.Option(help: "A note for you, e.g. what receives it.") var description: String?

        func run() async throws {
            try await withClient(try ClientLogin.load()) { api, _ in
                let names = events.map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } }
                let endpoint = try await api.createWebhook(API.WebhookCreate(url: url, events: names, description: description))
                print("Webhook \(endpoint.id.uuidString.lowercased()) sends \(endpoint.events.joined(separator: ", ")) to \(endpoint.url).")
                print("Signing secret (shown only now; your receiver verifies webhook-signature with it):")
                print(endpoint.secret ?? "")
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List your webhooks.")

        func run() async throws {
            try await withClient(try ClientLogin.load()) { api, _ in
                let endpoints = try await api.webhooks()
                if endpoints.isEmpty { print("No webhooks yet; add one with `gomodel webhooks add URL`.") }
                for endpoint in endpoints {
                    print("\(endpoint.id.uuidString.lowercased())  \(endpoint.url)  \(endpoint.events.joined(separator: ","))\(endpoint.description.map { "  (\($0))" } ?? "")")
                }
            }
        }
    }

    struct Test: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Send a webhook.test event and wait up to 30 s for the receiver's answer.")
        @Argument(help: "The webhook's id.") var webhook: String

        func run() async throws {
            try await withClient(try ClientLogin.load()) { api, _ in
                let id = try webhookID(webhook)
                let queued = try await api.testWebhook(id)
                let deadline = Date().addingTimeInterval(30)
                while Date() < deadline {
                    if let delivery = try await api.webhookDeliveries(id).first(where: { $0.id == queued.id }), let attempt = delivery.attempts.last {
                        print(describe(attempt))
                        if delivery.state != "delivered" { throw ExitCode(1) }
                        return
                    }
                    try await Task.sleep(for: .milliseconds(300))
                }
                print("Queued as \(queued.messageId); no answer yet. `gomodel webhooks deliveries \(webhook)` shows it later.")
                throw ExitCode(1)
            }
        }
    }

    struct Deliveries: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The webhook's last 50 deliveries, newest first, with each try's answer.")
        @Argument(help: "The webhook's id.") var webhook: String

        func run() async throws {
            try await withClient(try ClientLogin.load()) { api, _ in
                let deliveries = try await api.webhookDeliveries(try webhookID(webhook))
                if deliveries.isEmpty { print("Nothing sent yet.") }
                let formatter = ISO8601DateFormatter()
                for delivery in deliveries {
                    var line = "\(formatter.string(from: delivery.createdAt))  \(delivery.eventType)  \(delivery.state)  \(delivery.messageId)"
                    if !delivery.attempts.isEmpty { line += "  tries: " + delivery.attempts.map { $0.statusCode.map(String.init) ?? "error" }.joined(separator: ", ") }
                    if delivery.state == "pending", let next = delivery.nextAttemptAt { line += "  next try \(formatter.string(from: next))" }
                    if let error = delivery.attempts.last?.error { line += "  (\(error))" }
                    print(line)
                }
            }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a webhook; what it has not sent yet is dropped.")
        @Argument(help: "The webhook's id.") var webhook: String

        func run() async throws {
            try await withClient(try ClientLogin.load()) { api, _ in
                try await api.deleteWebhook(try webhookID(webhook))
                print("Deleted webhook \(webhook).")
            }
        }
    }
}

private func webhookID(_ text: String) throws -> UUID {
    guard let id = UUID(uuidString: text) else { throw ValidationError("'\(text)' is not a webhook id; `gomodel webhooks list` shows them.") }
    return id
}

private func describe(_ attempt: API.WebhookAttempt) -> String {
    if let status = attempt.statusCode {
        return (200..<300).contains(status)
            ? "Delivered: the receiver answered \(status) in \(attempt.milliseconds) ms." : "The receiver answered \(status); it is tried again later."
    }
    let reason = attempt.error.map { $0.hasSuffix(".") ? String($0.dropLast()) : $0 } ?? "no answer"
    return "Not delivered: \(reason); it is tried again later."
}
