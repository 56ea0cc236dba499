import Foundation
import Testing
import TrainerCore

@Suite struct ConfigurationTests {
    let r2Key = String(repeating: "a", count: 32)

    func problems(_ environment: [String: String]) -> [ConfigurationError.Problem] {
        do {
            _ = try Configuration(environment: environment)
            return []
        } catch {
            return error.problems
        }
    }

    @Test func emptyEnvironmentGivesTheEmbeddedDefaults() throws {
        let configuration = try Configuration(environment: [:])
        #expect(configuration.runPod == nil)
        guard case .builtIn(let bucket) = configuration.objectStore else {
            Issue.record("expected the built-in store")
            return
        }
        #expect(bucket == "gomodel")
        guard case .sqlite = configuration.database else {
            Issue.record("expected SQLite")
            return
        }
        #expect(configuration.dataDirectory == "./data")
        #expect(configuration.signupPolicy == .open)
        #expect(configuration.worker.workDirectory == "/workspace")
        #expect(configuration.publicURL == nil)
        #expect(configuration.usesSecureCookies == false)
        #expect(configuration.warnings.isEmpty)
    }

    @Test func instructionDraftsGoToWorkersUnlessAnEndpointIsSet() throws {
        let workers = try Configuration(environment: [:]).captions
        #expect(workers.endpoint == nil && workers.workerModel == "Qwen/Qwen2.5-VL-7B-Instruct")
        #expect(try Configuration(environment: ["GOMODEL_CAPTION_MODEL": "/models/qwen-vl"]).captions.workerModel == "/models/qwen-vl")
        let endpoint = try Configuration(environment: [
            "GOMODEL_CAPTION_URL": "https://api.openai.com/v1", "GOMODEL_CAPTION_API_KEY": "sk-x", "GOMODEL_CAPTION_MODEL": "gpt-4o-mini",
        ]).captions.endpoint
        #expect(endpoint?.baseURL.absoluteString == "https://api.openai.com/v1" && endpoint?.apiKey?.value == "sk-x" && endpoint?.model == "gpt-4o-mini")
        #expect(problems(["GOMODEL_CAPTION_URL": "https://api.openai.com/v1"]).map(\.variable) == ["GOMODEL_CAPTION_MODEL"])
        #expect(problems(["GOMODEL_CAPTION_API_KEY": "sk-x"]).map(\.variable) == ["GOMODEL_CAPTION_API_KEY"])
        #expect(problems(["GOMODEL_CAPTION_URL": "api.openai.com", "GOMODEL_CAPTION_MODEL": "m"]).map(\.variable) == ["GOMODEL_CAPTION_URL"])
        #expect(problems(["GOMODEL_CAPTION_COMMAND": "python 'unclosed"]).map(\.variable) == ["GOMODEL_CAPTION_COMMAND"])
    }

    @Test func theBuiltInStoresBucketCanBeRenamed() throws {
        guard case .builtIn(let bucket) = try Configuration(environment: ["GOMODEL_STORE_BUCKET": "loras"]).objectStore else {
            Issue.record("expected the built-in store")
            return
        }
        #expect(bucket == "loras")
        #expect(problems(["GOMODEL_STORE_BUCKET": "Not_Valid"]).map(\.variable) == ["GOMODEL_STORE_BUCKET"])
    }

    @Test func runPodNeedsBothVariables() {
        let onlyEndpoint = problems(["RUNPOD_ENDPOINT_ID": "abc123", "R2_BUCKET": "b"])
        #expect(onlyEndpoint.contains { $0.variable == "RUNPOD_API_KEY" && $0.message.contains("is missing") })
        let onlyKey = problems(["RUNPOD_API_KEY": "rpa_secret"])
        #expect(onlyKey.map(\.variable) == ["RUNPOD_ENDPOINT_ID"])
    }

    @Test func runPodWithR2IsAccepted() throws {
        let configuration = try Configuration(environment: [
            "RUNPOD_ENDPOINT_ID": "abc123", "RUNPOD_API_KEY": "rpa_secret",
            "R2_BUCKET": "loras", "R2_ENDPOINT": "https://0123abcd.r2.cloudflarestorage.com",
            "R2_ACCESS_KEY_ID": r2Key, "R2_SECRET_ACCESS_KEY": "s3cr3t",
        ])
        #expect(configuration.runPod?.endpointID == "abc123")
        #expect(configuration.runPod?.baseURL.absoluteString == "https://api.runpod.ai/v2")
        guard case .s3(let s3) = configuration.objectStore else {
            Issue.record("expected S3")
            return
        }
        #expect(s3.region == "auto")
        #expect(s3.bucket == "loras")
    }

    @Test func runPodEndpointIDMustNotBeAURL() {
        let found = problems(["RUNPOD_ENDPOINT_ID": "https://api.runpod.ai/v2/abc", "RUNPOD_API_KEY": "k", "GOMODEL_PUBLIC_URL": "https://trainer.example.com"])
        #expect(found.map(\.variable) == ["RUNPOD_ENDPOINT_ID"])
    }

    @Test func runPodWithTheBuiltInStoreNeedsAPublicURL() {
        #expect(problems(["RUNPOD_ENDPOINT_ID": "abc", "RUNPOD_API_KEY": "k"]).map(\.variable) == ["R2_BUCKET"])
        #expect(problems(["RUNPOD_ENDPOINT_ID": "abc", "RUNPOD_API_KEY": "k", "GOMODEL_PUBLIC_URL": "https://trainer.example.com"]).isEmpty)
    }

    @Test func r2VariablesComeTogether() {
        let found = problems(["R2_BUCKET": "loras", "R2_ENDPOINT": "https://s3.example.com"])
        #expect(Set(found.map(\.variable)) == ["R2_ACCESS_KEY_ID", "R2_SECRET_ACCESS_KEY"])
        #expect(found.allSatisfy { $0.message.contains("come together") })
        #expect(problems(["R2_REGION": "auto"]).map(\.variable) == ["R2_REGION"])
    }

    @Test(arguments: [31, 33, 20, 40])
    func r2AccessKeyMustBe32CharactersOnCloudflare(length: Int) {
        let found = problems([
            "R2_BUCKET": "loras", "R2_ENDPOINT": "https://0123abcd.r2.cloudflarestorage.com",
            "R2_ACCESS_KEY_ID": String(repeating: "k", count: length), "R2_SECRET_ACCESS_KEY": "s",
        ])
        #expect(found.map(\.variable) == ["R2_ACCESS_KEY_ID"])
        #expect(found.first?.message.contains("exactly 32") == true)
        #expect(found.first?.message.contains("\(length) characters") == true)
    }

    @Test func otherS3EndpointsAcceptAnyKeyLengthAndDefaultToUSEast1() throws {
        let configuration = try Configuration(environment: [
            "R2_BUCKET": "loras", "R2_ENDPOINT": "http://127.0.0.1:9000",
            "R2_ACCESS_KEY_ID": "minio", "R2_SECRET_ACCESS_KEY": "minio123",
        ])
        guard case .s3(let s3) = configuration.objectStore else {
            Issue.record("expected S3")
            return
        }
        #expect(s3.region == "us-east-1")
        #expect(s3.accessKeyID == "minio")
    }

    @Test func r2EndpointMustNotContainTheBucket() {
        let found = problems([
            "R2_BUCKET": "loras", "R2_ENDPOINT": "https://0123abcd.r2.cloudflarestorage.com/loras",
            "R2_ACCESS_KEY_ID": r2Key, "R2_SECRET_ACCESS_KEY": "s",
        ])
        #expect(found.map(\.variable) == ["R2_ENDPOINT"])
    }

    @Test(arguments: ["Loras", "ab", "-loras", "lo..ras", "lo_ras"])
    func invalidBucketNamesAreRefused(bucket: String) {
        let found = problems(["R2_BUCKET": bucket, "R2_ENDPOINT": "http://127.0.0.1:9000", "R2_ACCESS_KEY_ID": "k", "R2_SECRET_ACCESS_KEY": "s"])
        #expect(found.map(\.variable) == ["R2_BUCKET"])
    }

    @Test(arguments: ["ftp://example.com", "example.com", "https://", "https://example.com/?a=b"])
    func urlsMustBeHTTPWithAHost(url: String) {
        #expect(problems(["GOMODEL_PUBLIC_URL": url]).map(\.variable) == ["GOMODEL_PUBLIC_URL"])
        #expect(problems(["RUNPOD_BASE_URL": url]).map(\.variable) == ["RUNPOD_BASE_URL"])
    }

    @Test func publicURLDecidesSecureCookiesAndLosesItsTrailingSlash() throws {
        let https = try Configuration(environment: ["GOMODEL_PUBLIC_URL": "https://trainer.example.com/"])
        #expect(https.usesSecureCookies)
        #expect(https.publicURL?.absoluteString == "https://trainer.example.com")
        #expect(try Configuration(environment: ["GOMODEL_PUBLIC_URL": "http://10.0.0.2:8080"]).usesSecureCookies == false)
    }

    @Test func databaseURLMustBePostgresAndIsNeverEchoed() throws {
        let secret = "hunter2hunter2"
        let found = problems(["DATABASE_URL": "mysql://app:\(secret)@db/app"])
        #expect(found.map(\.variable) == ["DATABASE_URL"])
        #expect(!found.contains { $0.message.contains(secret) })
        let configuration = try Configuration(environment: ["DATABASE_URL": "postgres://app:\(secret)@127.0.0.1:5432/app"])
        guard case .postgres(let url) = configuration.database else {
            Issue.record("expected PostgreSQL")
            return
        }
        #expect(url.value.contains(secret))
    }

    @Test func signupPolicyIsOneOfThree() throws {
        #expect(try Configuration(environment: ["GOMODEL_SIGNUP": "Invite"]).signupPolicy == .invite)
        #expect(try Configuration(environment: ["GOMODEL_SIGNUP": "closed"]).signupPolicy == .closed)
        let found = problems(["GOMODEL_SIGNUP": "sometimes"])
        #expect(found.map(\.variable) == ["GOMODEL_SIGNUP"])
        #expect(found.first?.message.contains("open, invite, closed") == true)
    }

    @Test func datasetLimitsTakeCountsAndSizes() throws {
        let defaults = try Configuration(environment: [:]).datasetLimits
        #expect(defaults.maximumSamples == 2000 && defaults.maximumBytes == 5 << 30)
        let set = try Configuration(environment: ["GOMODEL_DATASET_MAX_SAMPLES": "300", "GOMODEL_DATASET_MAX_BYTES": "512MiB"]).datasetLimits
        #expect(set.maximumSamples == 300 && set.maximumBytes == 512 << 20)
        #expect(try Configuration(environment: ["GOMODEL_DATASET_MAX_BYTES": "2 GB"]).datasetLimits.maximumBytes == 2 << 30)
        #expect(try Configuration(environment: ["GOMODEL_DATASET_MAX_BYTES": "1000"]).datasetLimits.maximumBytes == 1000)
        let found = problems(["GOMODEL_DATASET_MAX_SAMPLES": "lots", "GOMODEL_DATASET_MAX_BYTES": "5 parsecs"])
        #expect(found.map(\.variable) == ["GOMODEL_DATASET_MAX_SAMPLES", "GOMODEL_DATASET_MAX_BYTES"])
        #expect(found.last?.message.contains("5GiB") == true)
        #expect(problems(["GOMODEL_DATASET_MAX_BYTES": "99999999999T"]).map(\.variable) == ["GOMODEL_DATASET_MAX_BYTES"])
    }

    @Test func gpuPriceIsPerSecond() throws {
        #expect(try Configuration(environment: [:]).gpuPricePerSecond == nil)
        #expect(try Configuration(environment: ["GOMODEL_GPU_PRICE_PER_SECOND": "0.00076"]).gpuPricePerSecond == 0.00076)
        let found = problems(["GOMODEL_GPU_PRICE_PER_SECOND": "2.74/h"])
        #expect(found.map(\.variable) == ["GOMODEL_GPU_PRICE_PER_SECOND"] && found.first?.message.contains("0.00076") == true)
        #expect(problems(["GOMODEL_GPU_PRICE_PER_SECOND": "3"]).count == 1, "an hourly price given by mistake")
    }

    @Test func trustProxyIsABoolean() throws {
        #expect(try Configuration(environment: ["GOMODEL_TRUST_PROXY": "true"]).trustProxy)
        #expect(problems(["GOMODEL_TRUST_PROXY": "maybe"]).map(\.variable) == ["GOMODEL_TRUST_PROXY"])
    }

    @Test func workerSettings() throws {
        let configuration = try Configuration(environment: [
            "GOMODEL_WORKDIR": "/scratch", "AI_TOOLKIT_DIR": "/opt/ai-toolkit", "HF_TOKEN": "hf_abc",
            "GOMODEL_TRAINER_COMMAND": "python3 'Tests/Fixtures/stand in.py' --fast",
        ])
        #expect(configuration.worker.workDirectory == "/scratch")
        #expect(configuration.worker.aiToolkitDirectory == "/opt/ai-toolkit")
        #expect(configuration.worker.trainerCommand == ["python3", "Tests/Fixtures/stand in.py", "--fast"])
        #expect(configuration.worker.huggingFaceToken?.value == "hf_abc")
        #expect(problems(["GOMODEL_WORKDIR": "workspace"]).map(\.variable) == ["GOMODEL_WORKDIR"])
        #expect(problems(["GOMODEL_TRAINER_COMMAND": "python 'unclosed"]).map(\.variable) == ["GOMODEL_TRAINER_COMMAND"])
    }

    @Test func everyProblemIsReportedAtOnce() {
        let found = problems(["GOMODEL_SIGNUP": "x", "GOMODEL_TRUST_PROXY": "x", "RUNPOD_API_KEY": "k", "DATABASE_URL": "x"])
        #expect(Set(found.map(\.variable)) == ["GOMODEL_SIGNUP", "GOMODEL_TRUST_PROXY", "RUNPOD_ENDPOINT_ID", "DATABASE_URL"])
    }

    @Test func emptyValuesCountAsUnset() throws {
        let configuration = try Configuration(environment: ["RUNPOD_ENDPOINT_ID": "", "RUNPOD_API_KEY": "  ", "GOMODEL_DATA_DIR": ""])
        #expect(configuration.runPod == nil)
        #expect(configuration.dataDirectory == "./data")
    }

    @Test func misspelledVariablesAreWarnedAbout() throws {
        let configuration = try Configuration(environment: ["GOMODEL_SINGUP": "closed", "R2_BUKET": "x", "RUNPOD_POD_ID": "pod", "PATH": "/bin"])
        #expect(configuration.warnings.count == 2)
        #expect(configuration.warnings[0].hasPrefix("GOMODEL_SINGUP"))
        #expect(configuration.warnings[1].hasPrefix("R2_BUKET"))
    }

    @Test func secretsNeverAppearInDescriptionsOrErrors() throws {
        let secrets = ["rpa_SECRETKEY", "r2-SECRET-value", "hf_SECRETTOKEN", "pgSECRETpass"]
        let configuration = try Configuration(environment: [
            "RUNPOD_ENDPOINT_ID": "abc", "RUNPOD_API_KEY": secrets[0],
            "R2_BUCKET": "loras", "R2_ENDPOINT": "https://x.r2.cloudflarestorage.com", "R2_ACCESS_KEY_ID": r2Key,
            "R2_SECRET_ACCESS_KEY": secrets[1], "HF_TOKEN": secrets[2], "DATABASE_URL": "postgres://u:\(secrets[3])@h/d",
        ])
        let dumps = [String(describing: configuration), String(reflecting: configuration), "\(configuration.runPod!.apiKey)"]
        for dump in dumps {
            for secret in secrets { #expect(!dump.contains(secret), "\(secret) leaked") }
        }
        var mirrored = ""
        dump(configuration, to: &mirrored)
        for secret in secrets { #expect(!mirrored.contains(secret), "\(secret) leaked through dump()") }

        let failing = problems(["RUNPOD_API_KEY": secrets[0], "R2_SECRET_ACCESS_KEY": secrets[1], "DATABASE_URL": "mysql://u:\(secrets[3])@h"])
        let text = String(describing: ConfigurationError(problems: failing))
        for secret in secrets { #expect(!text.contains(secret)) }
    }
}

@Suite struct DotEnvTests {
    @Test func parsesTheUsualForms() throws {
        let values = try DotEnv.parse(
            """
            # comment
            export RUNPOD_ENDPOINT_ID=abc123
            R2_BUCKET = loras   # inline comment
            DOUBLE="a \\"quoted\\" value\\nnext"
            SINGLE='keep \\n as is'
            EMPTY=
            URL=postgres://u:p@h/d?sslmode=require#x\r
            """)
        #expect(values["RUNPOD_ENDPOINT_ID"] == "abc123")
        #expect(values["R2_BUCKET"] == "loras")
        #expect(values["DOUBLE"] == "a \"quoted\" value\nnext")
        #expect(values["SINGLE"] == "keep \\n as is")
        #expect(values["EMPTY"] == "")
        #expect(values["URL"] == "postgres://u:p@h/d?sslmode=require#x")
    }

    @Test func reportsTheLineOfAMistake() {
        #expect(throws: DotEnv.ParseError(line: 2, reason: "expected KEY=value")) { try DotEnv.parse("A=1\nnot a setting\n") }
        #expect(throws: DotEnv.ParseError.self) { try DotEnv.parse("A=\"unclosed") }
        #expect(throws: DotEnv.ParseError.self) { try DotEnv.parse("1A=x") }
        #expect(throws: DotEnv.ParseError.self) { try DotEnv.parse("A=\"x\" trailing") }
    }
}

@Suite struct ShellWordsTests {
    @Test func splitsLikeAShell() throws {
        #expect(try ShellWords.split("python3 run.py").get() == ["python3", "run.py"])
        #expect(try ShellWords.split(#"a "b c" 'd "e"' f\ g "" x"#).get() == ["a", "b c", #"d "e""#, "f g", "", "x"])
        #expect(throws: ShellWords.SplitError.self) { try ShellWords.split("a 'b").get() }
        #expect(throws: ShellWords.SplitError.self) { try ShellWords.split("a \\").get() }
    }
}
