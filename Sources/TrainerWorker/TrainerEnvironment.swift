import Foundation
import TrainerCore

/// What a job's reproducibility record says about the machine that trained it: this worker's
/// version, the GPU, the trainer's commit and the versions of the packages it trains with.
/// Read once per worker (the first job), each part best-effort: a part that cannot be read is
/// left out rather than failing the job.
actor TrainerEnvironment {
    let trainerCommand: [String]
    let trainerDirectory: String?
    let environment: [String: String]
    private var probed: JSONValue?

    /// The packages whose versions decide what ai-toolkit computes.
    static let packages = [
        "torch", "torchvision", "diffusers", "transformers", "accelerate", "peft", "safetensors", "optimum-quanto", "torchao", "huggingface_hub", "numpy",
    ]

    init(trainerCommand: [String], trainerDirectory: String?, environment: [String: String]) {
        self.trainerCommand = trainerCommand
        self.trainerDirectory = trainerDirectory
        self.environment = environment
    }

    func report() async -> JSONValue {
        if let probed { return probed }
        var fields: [(String, JSONValue)] = [("worker_version", .string(GomodelVersion.current))]
        if let gpu = await ChildProcess.output(of: ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], timeout: .seconds(30))?.split(whereSeparator: \.isNewline).first {
            fields.append(("gpu_name", .string(String(gpu).trimmingCharacters(in: .whitespaces))))
        } else {
            fields.append(("gpu_name", "no GPU"))
        }
        if let commit = trainerCommit() { fields.append(("trainer_commit", .string(commit))) }
        // The trainer's own Python, when the trainer is run by one (`python run.py`).
        if let python = trainerCommand.first, (python as NSString).lastPathComponent.hasPrefix("python") {
            let script = """
                import importlib.metadata as m, json, platform
                versions = {}
                for name in \(Self.packages.map { "'\($0)'" }.joined(separator: ", ")),:
                    try: versions[name] = m.version(name)
                    except Exception: pass
                print(json.dumps({"python": platform.python_version(), "packages": versions}))
                """
            let text = await ChildProcess.output(of: [python, "-c", script], timeout: .seconds(30))
            if let text, let json = try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8)) {
                if let version = json["python"] { fields.append(("python", version)) }
                if let packages = json["packages"] { fields.append(("packages", packages)) }
            }
        }
        let report = JSONValue.object(fields)
        probed = report
        return report
    }

    /// The trainer checkout's commit: `AI_TOOLKIT_COMMIT`, else its `.git/HEAD` (detached, or
    /// the branch it names).
    func trainerCommit() -> String? {
        if let given = environment["AI_TOOLKIT_COMMIT"] ?? ProcessInfo.processInfo.environment["AI_TOOLKIT_COMMIT"], !given.isEmpty { return given }
        guard let directory = trainerDirectory,
            let head = try? String(contentsOfFile: directory + "/.git/HEAD", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        else { return nil }
        guard head.hasPrefix("ref: ") else { return Self.isCommit(head) ? head : nil }
        let ref = String(head.dropFirst(5))
        if let sha = try? String(contentsOfFile: directory + "/.git/" + ref, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines), Self.isCommit(sha) {
            return sha
        }
        let packed = (try? String(contentsOfFile: directory + "/.git/packed-refs", encoding: .utf8)) ?? ""
        for line in packed.split(whereSeparator: \.isNewline) {
            let words = line.split(separator: " ").map(String.init)
            if words.count == 2, words[1] == ref, Self.isCommit(words[0]) { return words[0] }
        }
        return nil
    }

    static func isCommit(_ text: String) -> Bool { text.count == 40 && text.allSatisfy(\.isHexDigit) }
}
