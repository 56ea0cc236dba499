import Testing
import TrainerCore

/// ai-toolkit's console, as reference/ai-toolkit.md §3.1 reproduces it.
@Suite struct TrainerLogTests {
    @Test func theTrainingBarGivesStepTotalSpeedEtaAndLoss() {
        let line = "gm_3f2a9c1e7b4d:   8%|▊         | 251/3000 [00:50<09:10,  4.99it/s, lr: 1.0e-04 loss: 3.456e-01]"
        #expect(TrainerLog.parse(line, runName: "gm_3f2a9c1e7b4d") == .step(step: 251, total: 3000, itPerSec: 4.99, etaSeconds: 550, loss: 0.3456))
        // Slower than one step a second, hours left, bar drawn with '#'.
        let slow = "gm_x:  10%|##        | 300/3000 [27:30<4:07:30, 5.50s/it, lr: 1.0e-04 loss: 1.200e-01]"
        guard case .step(300, 3000, let speed?, 14850, 0.12)? = TrainerLog.parse(slow, runName: "gm_x") else {
            Issue.record("not parsed: \(String(describing: TrainerLog.parse(slow, runName: "gm_x")))")
            return
        }
        #expect(abs(speed - 1 / 5.5) < 1e-9)
        // Before the first step: no rate yet.
        #expect(TrainerLog.parse("gm_x:   0%|          | 0/3000 [00:00<?, ?it/s]", runName: "gm_x") == .step(step: 0, total: 3000, itPerSec: nil, etaSeconds: nil, loss: nil))
    }

    @Test func otherBarsAndLinesAreNotTheTrainingBar() {
        #expect(TrainerLog.parse("Loading checkpoint shards: 100%|██████████| 4/4 [00:03<00:00,  1.2it/s]", runName: "gm_x") == .phase("loading", message: "Loading checkpoint shards: 100%|██████████| 4/4 [00:03<00:00,  1.2it/s]"))
        #expect(TrainerLog.parse("Generating baseline samples before training", runName: "gm_x") == .phase("sampling", message: "Generating baseline samples before training"))
        #expect(TrainerLog.parse("Saving at step 250", runName: "gm_x") == .phase("saving", message: "Saving at step 250"))
        #expect(TrainerLog.parse("Found step 750 in metadata, starting from there", runName: "gm_x") == .resumed(fromStep: 750))
        #expect(TrainerLog.parse("Error running job: Missing control images for QwenImageEditPlusModel", runName: "gm_x") == .error("Error running job: Missing control images for QwenImageEditPlusModel"))
        #expect(TrainerLog.parse("gm_xy:  1%|  | 1/10 [00:01<00:09, 1.0it/s]", runName: "gm_x") == nil)
        #expect(TrainerLog.parse("Bucket sizes for /workspace/datasets/x/target:", runName: "gm_x") == nil)
    }

    @Test func redrawsAndChunksSplitIntoLines() {
        var pending = ""
        #expect(TrainerLog.lines(appending: "gm_x:   1%| | 1/100 [00:01<", to: &pending).isEmpty)
        #expect(TrainerLog.lines(appending: "01:39, 1.0it/s]\rgm_x:   2%| | 2/100 [00:02<01:38, 1.0it/s]\r", to: &pending)
            == ["gm_x:   1%| | 1/100 [00:01<01:39, 1.0it/s]", "gm_x:   2%| | 2/100 [00:02<01:38, 1.0it/s]"])
        #expect(TrainerLog.lines(appending: "Saving at step 2\r\nnext", to: &pending) == ["Saving at step 2"])
        #expect(pending == "next")
    }
}
