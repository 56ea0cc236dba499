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
        #expect(
            TrainerLog.parse("Loading checkpoint shards: 100%|██████████| 4/4 [00:03<00:00,  1.2it/s]", runName: "gm_x")
                == .phase("loading", message: "Loading checkpoint shards: 100%|██████████| 4/4 [00:03<00:00,  1.2it/s]"))
        #expect(TrainerLog.parse("Generating baseline samples before training", runName: "gm_x") == .phase("sampling", message: "Generating baseline samples before training"))
        #expect(TrainerLog.parse("Saving at step 250", runName: "gm_x") == .phase("saving", message: "Saving at step 250"))
        #expect(TrainerLog.parse("Found step 750 in metadata, starting from there", runName: "gm_x") == .resumed(fromStep: 750))
        #expect(
            TrainerLog.parse("Error running job: Missing control images for QwenImageEditPlusModel", runName: "gm_x")
                == .error("Error running job: Missing control images for QwenImageEditPlusModel"))
        #expect(TrainerLog.parse("gm_xy:  1%|  | 1/10 [00:01<00:09, 1.0it/s]", runName: "gm_x") == nil)
        #expect(TrainerLog.parse("Bucket sizes for /workspace/datasets/x/target:", runName: "gm_x") == nil)
    }

    /// What ai-toolkit prints around a save and while sampling (BaseSDTrainProcess.save,
    /// BaseModel.generate_images).
    @Test func savesAndTheSamplingBarAreRecognised() {
        let sampling = "Generating Samples:  50%|█████     | 1/2 [00:03<00:03,  3.70s/it]"
        #expect(TrainerLog.parse(sampling, runName: "gm_x") == .phase("sampling", message: sampling))
        #expect(TrainerLog.parse("Saved checkpoint to /w/output/gm_x/gm_x_000000020.safetensors", runName: "gm_x") == .checkpointSaved(file: "gm_x_000000020.safetensors"))
        #expect(TrainerLog.parse("Saved checkpoint to /w/output/gm_x/gm_x.safetensors", runName: "gm_x") == .checkpointSaved(file: "gm_x.safetensors"))
        #expect(TrainerLog.parse("Saved checkpoint to /w/output/gm_x/gm_x_refiner.safetensors", runName: "gm_x") == .checkpointSaved(file: "gm_x_refiner.safetensors"))
        #expect(TrainerLog.parse("Saved optimizer to /w/output/gm_x/optimizer.pt", runName: "gm_x") == .optimizerSaved)
    }

    /// Two redraws a step (set_postfix_str at the old count, then update), the second one
    /// sometimes skipped by tqdm: one point per step, as loss_log.db numbers them.
    @Test func theLossCurveHasOnePointPerStep() {
        var curve = LossCurve()
        // (2, 3) to (3, 2): an update skipped.
        let redraws: [(Int, Double)] = [(0, 5), (1, 5), (1, 4), (2, 4), (2, 3), (3, 2), (4, 2)]
        for (count, loss) in redraws { curve.observe(count: count, loss: loss) }
        #expect(curve.points == [.init(step: 0, loss: 5), .init(step: 1, loss: 4), .init(step: 2, loss: 3), .init(step: 3, loss: 2)])
        #expect(curve.csv == "step,loss\n0,5.0\n1,4.0\n2,3.0\n3,2.0\n")

        // A resumed attempt starts from its checkpoint's step and replaces what it trains again.
        var resumed = LossCurve(earlier: LossCurve.points(csv: curve.csv + "junk\n"))
        for (count, loss) in [(2, 9.0), (3, 9.0), (3, 8.0), (4, 8.0)] { resumed.observe(count: count, loss: loss) }
        #expect(resumed.points.map(\.step) == [0, 1, 2, 3])
        #expect(resumed.points.map(\.loss) == [5, 4, 9, 8])
    }

    /// Seen with the real trainer in CI: the redraw moving the count to 40 was skipped, the
    /// worker was killed after saving step 40, and the resumed curve lacked step 39.
    @Test func aSavedCheckpointSettlesTheStepBeforeIt() {
        var curve = LossCurve()
        // The update to 40 skipped, then the save.
        for (count, loss) in [(38, 3.0), (39, 3.0), (39, 2.0)] { curve.observe(count: count, loss: loss) }
        #expect(curve.points.map(\.step) == [38])
        curve.settle(before: 40)
        #expect(curve.points == [.init(step: 38, loss: 3), .init(step: 39, loss: 2)])
        // Training goes on as before: the same point is not added twice.
        for (count, loss) in [(40, 2.0), (40, 1.5), (41, 1.5)] { curve.observe(count: count, loss: loss) }
        #expect(curve.points.map(\.step) == [38, 39, 40])
        // A save that finds the step before it settled already changes nothing.
        curve.settle(before: 41)
        #expect(curve.points.map(\.step) == [38, 39, 40])
    }

    @Test func redrawsAndChunksSplitIntoLines() {
        var pending = ""
        #expect(TrainerLog.lines(appending: "gm_x:   1%| | 1/100 [00:01<", to: &pending).isEmpty)
        #expect(
            TrainerLog.lines(appending: "01:39, 1.0it/s]\rgm_x:   2%| | 2/100 [00:02<01:38, 1.0it/s]\r", to: &pending)
                == ["gm_x:   1%| | 1/100 [00:01<01:39, 1.0it/s]", "gm_x:   2%| | 2/100 [00:02<01:38, 1.0it/s]"])
        #expect(TrainerLog.lines(appending: "Saving at step 2\r\nnext", to: &pending) == ["Saving at step 2"])
        #expect(pending == "next")
    }
}
