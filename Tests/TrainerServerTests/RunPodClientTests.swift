import AsyncHTTPClient
import Foundation
import NIOCore
import RunPod
import Testing
import TrainerCore

/// The RunPod client against the suite's fake (reference/runpod.md §1), faults included.
@Suite struct RunPodClientTests {
    final class Clock: @unchecked Sendable {
        private let lock = NSLock()
        private var current = Date(timeIntervalSince1970: 1_800_000_000)
        var now: Date { lock.withLock { current } }
        func advance(_ seconds: TimeInterval) { lock.withLock { current += seconds } }
    }

    static let fast = RetryPolicy(maxAttempts: 4, baseDelay: .milliseconds(1), maxDelay: .milliseconds(10))

    static func withFake(_ clock: Clock = Clock(), _ test: (FakeRunPod, RunPodClient, HTTPClient) async throws -> Void) async throws {
        let fake = FakeRunPod(now: { clock.now })
        try await fake.start()
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        let client = RunPodClient(
            baseURL: fake.baseURL, endpointID: FakeRunPod.endpointID, apiKey: Secret(FakeRunPod.apiKey), http: http, retry: fast, timeout: .seconds(3), runTimeout: .seconds(3))
        var failure: (any Error)?
        do { try await test(fake, client, http) } catch { failure = error }
        try await http.shutdown()
        try await fake.stop()
        if let failure { throw failure }
    }

    static let input: JSONValue = ["contract_version": 1, "trainer_job_id": "job-1"]

    @Test func aJobGoesThroughItsStatesWithProgressAsOutput() async throws {
        try await Self.withFake { fake, client, _ in
            let submitted = try await client.run(input: Self.input, webhook: nil, policy: .training(expectedSeconds: 3600))
            #expect(submitted.status == .inQueue && submitted.id.hasPrefix("fake-"))
            #expect(fake.jobs.first?.input == Self.input)

            fake.start(submitted.id)
            fake.progress(submitted.id, ["phase": "training", "step": 10, "total_steps": 100])
            let running = try await client.status(submitted.id)
            #expect(running.status == .inProgress && running.output?["step"] == 10)

            fake.complete(submitted.id, output: ["steps": 100, "final_loss": 0.04])
            let done = try await client.status(submitted.id)
            #expect(done.status == .completed && done.status.isFinal && done.output?["steps"] == 100 && done.executionTime != nil)
        }
    }

    @Test func unknownStatusesAreKeptAndErrorsRead() async throws {
        try await Self.withFake { fake, client, _ in
            let job = try await client.run(input: Self.input, webhook: nil, policy: .training(expectedSeconds: 60))
            fake.setRawStatus(job.id, "RUNNING")
            let odd = try await client.status(job.id)
            #expect(odd.status == .other("RUNNING") && !odd.status.isFinal && odd.status.description == "RUNNING")
            fake.start(job.id)
            fake.fail(job.id, error: "Missing control images for QwenImageEditPlusModel\n...log tail...")
            let failed = try await client.status(job.id)
            #expect(failed.status == .failed && failed.error?.hasPrefix("Missing control images") == true)
            let retried = try await client.retry(job.id)
            #expect(retried.status == .inQueue)
            #expect(try await client.status(job.id).error == nil)
        }
    }

    @Test func resultsAreGone30MinutesAfterTheEnd() async throws {
        let clock = Clock()
        try await Self.withFake(clock) { fake, client, _ in
            let job = try await client.run(input: Self.input, webhook: nil, policy: .training(expectedSeconds: 60))
            fake.start(job.id)
            fake.complete(job.id, output: ["steps": 1])
            clock.advance(29 * 60)
            #expect(try await client.status(job.id).status == .completed)
            clock.advance(2 * 60)
            await #expect { try await client.status(job.id) } throws: { ($0 as? RunPodError)?.status == 404 }
        }
    }

    @Test func safeCallsAreRetriedThrough429And500AndTimeouts() async throws {
        try await Self.withFake { fake, client, _ in
            let job = try await client.run(input: Self.input, webhook: nil, policy: .training(expectedSeconds: 60))
            fake.inject(.status(429), .status(500), .delay(4.5), into: "status")
            #expect(try await client.status(job.id).status == .inQueue)
            #expect(fake.calls("status") == 4)
            fake.inject(.status(503), .dropAfterHandling, into: "cancel")
            #expect(try await client.cancel(job.id).status == .cancelled)
            fake.inject(.status(500), .status(500), .status(500), .status(500), into: "health")
            await #expect { try await client.health() } throws: { ($0 as? RunPodError)?.status == 500 }
            #expect(fake.calls("health") == 4)
        }
    }

    @Test func runIsRepeatedOnlyWhenRunPodCannotHaveSeenIt() async throws {
        try await Self.withFake { fake, client, _ in
            // 429: refused, so sending again is safe.
            fake.inject(.status(429), .status(429), into: "run")
            _ = try await client.run(input: Self.input, webhook: nil, policy: .training(expectedSeconds: 60))
            #expect(fake.calls("run") == 3 && fake.jobs.count == 1)

            // A 500, a dropped answer or a timeout may hide a created job: no second submit.
            for fault in [FakeRunPod.Fault.status(500), .dropAfterHandling, .delay(4.5)] {
                let before = fake.calls("run")
                fake.inject(fault, into: "run")
                do {
                    _ = try await client.run(input: Self.input, webhook: nil, policy: .training(expectedSeconds: 60))
                    Issue.record("\(fault) did not fail the submit")
                } catch let error as RunPodError {
                    #expect(error.mayHaveArrived, "\(fault)")
                }
                #expect(fake.calls("run") == before + 1, "\(fault) was sent again")
            }
            #expect(fake.jobs.count == 3, "the dropped and the timed-out submits did create jobs")
        }
    }

    @Test func aServerThatIsNotThereIsRetriedAndSaysNothingArrived() async throws {
        // AsyncHTTPClient keeps retrying a refused connection until its connect timeout.
        var configuration = HTTPClient.Configuration()
        configuration.timeout.connect = .milliseconds(200)
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        let client = RunPodClient(baseURL: URL(string: "http://127.0.0.1:1/v2")!, endpointID: "x", apiKey: Secret("k"), http: http, retry: Self.fast)
        do {
            _ = try await client.run(input: Self.input, webhook: nil, policy: .training(expectedSeconds: 60))
            Issue.record("no error")
        } catch let error as RunPodError {
            #expect(error.status == 0 && !error.mayHaveArrived, "\(error)")
        }
        try await http.shutdown()
    }

    @Test func aWrongKeyIs401AndNotRetried() async throws {
        try await Self.withFake { fake, _, http in
            let wrong = RunPodClient(baseURL: fake.baseURL, endpointID: FakeRunPod.endpointID, apiKey: Secret("nope"), http: http, retry: Self.fast)
            await #expect { try await wrong.health() } throws: { ($0 as? RunPodError)?.status == 401 }
            #expect(fake.calls("health") == 1)
        }
    }

    @Test func theRequestCarriesPolicyAndWebhook() async throws {
        try await Self.withFake { fake, client, _ in
            let policy = RunPodPolicy.training(expectedSeconds: 5 * 3600)
            #expect(policy.executionTimeout == 10 * 3_600_000 && policy.ttl == 34 * 3_600_000)
            #expect(RunPodPolicy(executionTimeout: 10 * RunPodPolicy.sevenDays, ttl: 1).ttl == 10_000)
            let job = try await client.run(input: Self.input, webhook: URL(string: "http://127.0.0.1:9/hook/secret")!, policy: policy)
            #expect(fake.jobs.first { $0.id == job.id }?.webhook == "http://127.0.0.1:9/hook/secret")
            #expect(try await client.purgeQueue() == 1)
            let health = try await client.health()
            #expect(health.jobs?.inQueue == 0 && health.workers?.idle == 1)
        }
    }
}
