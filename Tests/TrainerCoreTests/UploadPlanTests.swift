import Testing
import TrainerCore

@Suite struct UploadPlanTests {
    @Test func filesArePlacedTypedAndLitterSkipped() {
        let sha = String(repeating: "ab", count: 32)
        let outcome = UploadPlan.plan([
            .init(path: "control/a.PNG", size: 10, sha256: sha), .init(path: "a_end.jpeg", size: 20),
            .init(path: "a.txt", size: 5), .init(path: "b_start2.webp", size: 1), .init(path: ".DS_Store", size: 1),
        ])
        guard case .planned(let uploads, let skipped) = outcome else {
            Issue.record("rejected: \(outcome)")
            return
        }
        #expect(uploads.map(\.placement.relativeKey) == ["control_1/a.png", "target/a.jpg", "target/a.txt", "control_2/b.webp"])
        #expect(uploads.map(\.contentType) == ["image/png", "image/jpeg", "text/plain; charset=utf-8", "image/webp"])
        #expect(uploads[0].sha256 == [UInt8](repeating: 0xAB, count: 32) && uploads[1].sha256 == nil)
        #expect(skipped == [".DS_Store"])
    }

    @Test func oneBadFileRejectsTheBatchWithEveryReason() {
        let outcome = UploadPlan.plan([
            .init(path: "control/a.png", size: 1), .init(path: "a_start.png", size: 1),
            .init(path: "target/big.png", size: UploadPlan.maximumFileBytes + 1), .init(path: "target/neg.png", size: -1),
            .init(path: "target/sha.png", size: 1, sha256: "xyz"), .init(path: "../x.png", size: 1), .init(path: "target/ok.png", size: 1),
            .init(path: "output/ok.JPG", size: 1),
        ])
        guard case .rejected(let rejections) = outcome else {
            Issue.record("planned: \(outcome)")
            return
        }
        #expect(rejections.map(\.path) == ["a_start.png", "target/big.png", "target/neg.png", "target/sha.png", "../x.png", "output/ok.JPG"])
        #expect(rejections[5].reason.contains("same target of sample 'ok' as 'target/ok.png'"))
        #expect(rejections[0].reason.contains("lands on control_1/a.png, like 'control/a.png'"))
        #expect(rejections[1].reason.contains("at most 512 MiB"))
        #expect(rejections[3].reason.contains("64 hexadecimal digits"))
    }

    @Test func rolesHaveStableNames() {
        for role in [DatasetLayout.Role.target, .caption, .control(1), .control(2), .control(3)] {
            #expect(DatasetLayout.Role(name: role.name) == role)
        }
        #expect(DatasetLayout.Role(name: "control_4") == nil && DatasetLayout.Role(name: "controls") == nil)
    }
}
