extension Array where Element: Sendable {
    /// `transform` applied to every element, at most `limit` at a time, results in order.
    /// The first error cancels the rest and is thrown.
    @discardableResult
    public func concurrentMap<Result: Sendable>(limit: Int, _ transform: @escaping @Sendable (Element) async throws -> Result) async throws -> [Result] {
        try await withThrowingTaskGroup(of: (Int, Result).self) { group in
            var results = [Result?](repeating: nil, count: count)
            var next = 0
            func start() {
                let index = next
                let element = self[index]
                group.addTask { (index, try await transform(element)) }
                next += 1
            }
            while next < Swift.min(Swift.max(limit, 1), count) { start() }
            while let (index, result) = try await group.next() {
                results[index] = result
                if next < count { start() }
            }
            return results.map { $0! }
        }
    }
}
