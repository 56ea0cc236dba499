import Foundation

/// Edit instructions drafted by a vision-language model from a sample's pictures: the prompt
/// both paths send (a GPU worker's Qwen2.5-VL, or an OpenAI-compatible endpoint) and the reading
/// of the reply. A draft is only a proposal: it trains nothing until a person accepts it.
public enum InstructionDraft {
    /// The `preset` of a drafting job in the queue (its input's task is `draft_instructions`).
    public static let jobPreset = "draft-instructions"
    /// What the GPU worker runs unless the server names another (`GOMODEL_CAPTION_MODEL`).
    public static let defaultWorkerModel = "Qwen/Qwen2.5-VL-7B-Instruct"
    /// Enough for one sentence of instruction; a rambling reply is cut, not paid for.
    public static let maximumNewTokens = 96
    /// The longest draft kept (a caption may be longer when typed).
    public static let maximumLength = 400

    public static let system =
        "You write the instruction for an image-editing model. You are shown the input picture(s) of an edit and, last, the edited result. Reply with the instruction only."

    /// The request for one sample: its control images in order, then its target.
    public static func prompt(controls: Int) -> String {
        let inputs =
            controls == 1
            ? "Picture 1 is the input image and Picture 2 is the result of editing it."
            : "Pictures 1 to \(controls) are the input images (Picture 1 is the one being edited) and Picture \(controls + 1) is the result of the edit."
        return inputs
            + " Write the one instruction that turns the input into the result, as a person would ask an image editor: imperative, one sentence, at most 30 words, saying what changes and where. Do not describe what stays the same. Answer with the instruction only."
    }

    /// The instruction in a model's reply, or nil when there is none. Models wrap answers in
    /// quotes, code fences, "Instruction:" labels or list marks; only the first line of text counts.
    public static func parse(_ reply: String) -> String? {
        let lines = reply.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
        guard var text = lines.first(where: { !$0.isEmpty && !$0.hasPrefix("```") }) else { return nil }
        for label in ["instruction:", "edit instruction:", "edit:", "answer:"] where text.lowercased().hasPrefix(label) {
            text = String(text.dropFirst(label.count)).trimmingCharacters(in: .whitespaces)
        }
        if text.hasPrefix("- ") || text.hasPrefix("* ") { text = String(text.dropFirst(2)) }
        // "1. " or "2) " is a list mark; "3.5x zoom" is not.
        if let first = text.first, first.isNumber, let dot = text.firstIndex(where: { $0 == "." || $0 == ")" }), text[..<dot].allSatisfy(\.isNumber),
            text[text.index(after: dot)...].first == " "
        {
            text = String(text[text.index(after: dot)...]).trimmingCharacters(in: .whitespaces)
        }
        for (open, close) in [("\"", "\""), ("'", "'"), ("“", "”"), ("`", "`")] where text.count >= 2 && text.hasPrefix(open) && text.hasSuffix(close) {
            text = String(text.dropFirst().dropLast())
        }
        // Nothing hidden in a caption (it reaches configs and pages); runs of spaces become one.
        text = text.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        text = String(String.UnicodeScalarView(text.unicodeScalars.filter { HiddenCharacters.first(in: String($0)) == nil }))
        text = text.split(separator: " ").joined(separator: " ")
        if text.count > maximumLength {
            let cut = text.prefix(maximumLength)
            text = String(cut[..<(cut.lastIndex(of: " ") ?? cut.endIndex)])
        }
        return text.isEmpty ? nil : text
    }

    /// One sample to draft: its dataset-relative image keys, controls first, target last.
    public struct Item: Sendable, Equatable, Codable {
        public let stem: String
        public let images: [String]
        public let prompt: String

        public init(stem: String, controls: [String], target: String) {
            self.stem = stem
            self.images = controls + [target]
            self.prompt = InstructionDraft.prompt(controls: controls.count)
        }
    }

    /// The `job_config` of a drafting job on a GPU worker (`JobInput.task == .draftInstructions`).
    public struct WorkerRequest: Sendable, Equatable, Codable {
        public let model: String
        public let system: String
        public let maxNewTokens: Int
        public let items: [Item]

        enum CodingKeys: String, CodingKey {
            case model, system, items
            case maxNewTokens = "max_new_tokens"
        }

        public init(model: String, items: [Item]) {
            self.model = model
            self.system = InstructionDraft.system
            self.maxNewTokens = InstructionDraft.maximumNewTokens
            self.items = items
        }
    }

    // MARK: OpenAI-compatible endpoints

    /// An image as a chat message part: a `data:` URL (the endpoint may be unable to reach the
    /// bucket, and presigned URLs would hand it a key).
    public struct Image: Sendable, Equatable {
        public let mediaType: String
        public let bytes: [UInt8]

        public init(mediaType: String, bytes: [UInt8]) {
            self.mediaType = mediaType
            self.bytes = bytes
        }
    }

    /// The body of `POST {base}/chat/completions` for one sample (OpenAI's chat completions
    /// format, which OpenAI-compatible servers such as vLLM and Ollama read too).
    public static func chatCompletionBody(model: String, images: [Image], prompt: String) -> JSONValue {
        let parts: [JSONValue] =
            images.map { image in
                ["type": "image_url", "image_url": ["url": .string("data:\(image.mediaType);base64," + Data(image.bytes).base64EncodedString())]]
            } + [["type": "text", "text": .string(prompt)]]
        return [
            "model": .string(model),
            "messages": [["role": "system", "content": .string(system)], ["role": "user", "content": .array(parts)]],
            "max_tokens": .int(maximumNewTokens),
            "temperature": 0,
        ]
    }

    /// The assistant's text in a chat completion (a string, or an array of text parts); nil when
    /// the answer has none.
    public static func replyText(_ completion: JSONValue) -> String? {
        guard case .array(let choices)? = completion["choices"], let message = choices.first?["message"] else { return nil }
        switch message["content"] {
        case .string(let text)?: return text
        case .array(let parts)?: return parts.compactMap { $0["type"] == "text" ? $0["text"]?.stringValue : nil }.joined()
        default: return nil
        }
    }
}
