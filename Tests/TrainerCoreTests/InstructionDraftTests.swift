import Foundation
import Testing
import TrainerCore

@Suite struct InstructionDraftTests {
    @Test func thePromptNamesThePicturesInOrder() {
        #expect(InstructionDraft.prompt(controls: 1).hasPrefix("Picture 1 is the input image and Picture 2 is the result"))
        #expect(InstructionDraft.prompt(controls: 3).hasPrefix("Pictures 1 to 3 are the input images (Picture 1 is the one being edited) and Picture 4 is the result"))
        let item = InstructionDraft.Item(stem: "cat", controls: ["control_1/cat.png", "control_2/cat.png"], target: "target/cat.png")
        #expect(item.images == ["control_1/cat.png", "control_2/cat.png", "target/cat.png"] && item.prompt == InstructionDraft.prompt(controls: 2))
    }

    @Test(arguments: [
        ("Make the cat blue.", "Make the cat blue."),
        ("  \"Make the cat blue.\"\n", "Make the cat blue."),
        ("```\nInstruction: Turn the sky orange.\n```", "Turn the sky orange."),
        ("1. Add a red hat to the man.\n2. Something else", "Add a red hat to the man."),
        ("- “Remove the car”", "Remove the car"),
        ("Replace\u{200B} the   tree\twith a lamp", "Replace the tree with a lamp"),
        ("Answer: `Blur the background`", "Blur the background"),
        ("3.5x zoom on the face", "3.5x zoom on the face"),
    ])
    func aReplyBecomesOneCleanInstruction(reply: String, expected: String) {
        #expect(InstructionDraft.parse(reply) == expected)
    }

    @Test func emptyOrEndlessRepliesAreCutOrRefused() {
        #expect(InstructionDraft.parse("") == nil)
        #expect(InstructionDraft.parse("```\n```") == nil)
        #expect(InstructionDraft.parse("\"\"") == nil)
        let endless = String(repeating: "make it bluer ", count: 100)
        let long = InstructionDraft.parse(endless)!
        // Cut between words.
        #expect(long.count <= InstructionDraft.maximumLength && long.count > InstructionDraft.maximumLength - 10 && endless.hasPrefix(long + " "))
    }

    @Test func theEndpointGetsOpenAIsChatFormatAndItsAnswerIsRead() throws {
        let body = InstructionDraft.chatCompletionBody(model: "gpt-4o-mini", images: [.init(mediaType: "image/png", bytes: [1, 2, 3])], prompt: "p")
        #expect(body["model"] == "gpt-4o-mini" && body["max_tokens"] == .int(InstructionDraft.maximumNewTokens) && body["temperature"] == 0)
        guard case .array(let messages)? = body["messages"], case .array(let parts)? = messages.last?["content"] else {
            Issue.record("unexpected body \(body)")
            return
        }
        #expect(messages.first?["role"] == "system" && messages.first?["content"] == .string(InstructionDraft.system))
        #expect(parts.first?["image_url"]?["url"] == "data:image/png;base64,AQID" && parts.last == ["type": "text", "text": "p"])

        let text: JSONValue = ["choices": [["index": 0, "message": ["role": "assistant", "content": "Make it red."], "finish_reason": "stop"]]]
        #expect(InstructionDraft.replyText(text) == "Make it red.")
        let parted: JSONValue = ["choices": [["message": ["role": "assistant", "content": [["type": "text", "text": "Make "], ["type": "text", "text": "it red."]]]]]]
        #expect(InstructionDraft.replyText(parted) == "Make it red.")
        #expect(InstructionDraft.replyText(["error": ["message": "x"]]) == nil)
    }

    @Test func aDraftingInputNamesItsTaskAndATrainingInputStaysAsItWas() throws {
        let dataset = JobInput.Dataset(datasetId: "d", bucket: "b", prefix: "datasets/d/")
        let output = JobInput.Output(bucket: "b", prefix: "outputs/j/")
        let training = JobInput(trainerJobID: "j", attempt: 1, jobConfig: ["config": ["name": "gm"]], dataset: dataset, output: output)
        #expect(training.json["task"] == nil)
        #expect(try JobInput(json: training.json).task == .train)
        let drafting = JobInput(task: .draftInstructions, trainerJobID: "j", attempt: 1, jobConfig: [:], dataset: dataset, output: output)
        #expect(drafting.json["task"] == "draft_instructions")
        // Version 2: a worker that reads only version 1 refuses it by its version.
        #expect(training.json["contract_version"] == 1 && drafting.json["contract_version"] == 2)
        #expect(try JobInput(json: drafting.json).task == .draftInstructions)
    }
}
