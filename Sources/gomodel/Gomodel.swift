import ArgumentParser

@main
struct Gomodel: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gomodel",
        abstract: "GoModel Trainer: train Qwen-Image-Edit-2509 LoRAs on GPU workers.",
        subcommands: [
            Serve.self, Migrate.self, Users.self, Tokens.self, Workers.self, Storage.self, Login.self, Datasets.self, Train.self, Jobs.self, Webhooks.self, Usage.self, Worker.self,
        ]
    )
}
