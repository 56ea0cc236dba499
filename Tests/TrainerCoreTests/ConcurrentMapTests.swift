import Foundation
import Testing
import TrainerCore

@Suite struct ConcurrentMapTests {
    actor Gauge {
        var running = 0
        var most = 0
        func enter() {
            running += 1
            most = max(most, running)
        }
        func leave() { running -= 1 }
    }

    struct Boom: Error {}

    @Test func keepsOrderAndTheLimit() async throws {
        let gauge = Gauge()
        let results = try await Array(0..<40).concurrentMap(limit: 3) { value in
            await gauge.enter()
            try await Task.sleep(for: .milliseconds(Int.random(in: 1...5)))
            await gauge.leave()
            return value * 2
        }
        #expect(results == Array(0..<40).map { $0 * 2 })
        #expect(await gauge.most == 3)
    }

    @Test func theFirstErrorIsThrown() async throws {
        await #expect(throws: Boom.self) {
            _ = try await Array(0..<10).concurrentMap(limit: 4) { value in
                if value == 5 { throw Boom() }
                return value
            }
        }
        #expect(try await [Int]().concurrentMap(limit: 4) { $0 }.isEmpty)
    }
}
