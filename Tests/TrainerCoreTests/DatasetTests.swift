import Testing
import TrainerCore

@Suite struct DatasetLayoutTests {
    func key(_ path: String) -> String? {
        if case .placed(let placement) = DatasetLayout.place(path) { return placement.relativeKey }
        return nil
    }

    @Test(arguments: [
        ("control/cat.png", "control_1/cat.png"),
        ("input/cat.JPG", "control_1/cat.jpg"),
        ("start/cat.jpeg", "control_1/cat.jpg"),
        ("control_2/cat.webp", "control_2/cat.webp"),
        ("Input3/cat.png", "control_3/cat.png"),
        ("start-2/cat.png", "control_2/cat.png"),
        ("target/cat.png", "target/cat.png"),
        ("output/cat.PNG", "target/cat.png"),
        ("END/cat.png", "target/cat.png"),
        ("target/cat.txt", "target/cat.txt"),
        ("my pairs/v2/target/cat.png", "target/cat.png"),
        ("target/sub/cat.png", "target/cat.png"),
        ("cat_start.png", "control_1/cat.png"),
        ("cat_start2.png", "control_2/cat.png"),
        ("cat_START3.JPG", "control_3/cat.jpg"),
        ("cat_end.png", "target/cat.png"),
        ("cat.txt", "target/cat.txt"),
        ("folder\\target\\cat.png", "target/cat.png"),
        ("target/日本 café.png", "target/日本 café.png"),
    ])
    func layoutsNormalise(path: String, expected: String) {
        #expect(key(path) == expected, "\(path)")
    }

    @Test(arguments: ["../target/cat.png", "target/../../cat.png", "/etc/target/cat.png", "C:/target/cat.png", "target/ca\u{0}t.png", "target/c\nat.png"])
    func unsafePathsAreRefused(path: String) {
        guard case .refused(let message) = DatasetLayout.place(path) else {
            Issue.record("\(path) was accepted")
            return
        }
        #expect(!message.contains("\u{0}"))
    }

    /// Found by a black-box run: a right-to-left override (U+202E) made "cat\u{202E}gnp.exe" show
    /// as "catexe.png". Bidirectional, zero-width and other invisible characters are refused, named.
    @Test(arguments: ["target/cat\u{202E}gnp.png", "target/c\u{200B}at.png", "target/\u{FEFF}cat.png", "control/dog\u{2066}.png", "target/cat\u{2028}.png"])
    func invisibleCharactersInFileNamesAreRefused(path: String) {
        guard case .refused(let message) = DatasetLayout.place(path) else {
            Issue.record("\(path) was accepted")
            return
        }
        let hidden = path.unicodeScalars.first { $0.value > 0x7f }!
        #expect(message.contains(HiddenCharacters.name(hidden)) && !message.unicodeScalars.contains(hidden), "\(message)")
    }

    @Test func visibleUnicodeNamesStayAllowed() {
        #expect(key("target/café_日本語_😀.png") == "target/café_日本語_😀.png")
    }

    @Test func refusalsSayWhatToDo() {
        guard case .refused(let loose) = DatasetLayout.place("cat.png") else {
            Issue.record("a loose image was placed")
            return
        }
        #expect(loose.contains("control/"))
        guard case .refused(let gif) = DatasetLayout.place("target/cat.gif") else {
            Issue.record("a gif was placed")
            return
        }
        #expect(gif.contains(".png"))
        guard case .refused(let caption) = DatasetLayout.place("control/cat.txt") else {
            Issue.record("a caption in control/ was placed")
            return
        }
        #expect(caption.contains("target/cat.txt"))
        guard case .refused(let long) = DatasetLayout.place("target/" + String(repeating: "x", count: 201) + ".png") else {
            Issue.record("a 201-byte name was placed")
            return
        }
        #expect(long.contains("shorten"))
    }

    /// ai-toolkit's config loader rewrites `${VAR}` and `[name]`; sample prompts name control
    /// images by path, so such names never reach a GPU.
    @Test(arguments: ["target/${HOME}.png", "control/[name].png", "target/a{b}.txt", "x$_start.png", "control_2/]x.jpg"])
    func namesTheTrainersConfigLoaderWouldRewriteAreRefused(path: String) {
        guard case .refused(let message) = DatasetLayout.place(path) else {
            Issue.record("\(path) was accepted")
            return
        }
        #expect(message.contains("rename the file without $ { } [ ]"), "\(message)")
    }

    @Test func systemLitterIsIgnored() {
        for path in [".DS_Store", "target/.DS_Store", "__MACOSX/target/._cat.png", "target/Thumbs.db"] {
            #expect(DatasetLayout.place(path) == .ignored, "\(path)")
        }
    }
}

@Suite struct ImageProbeTests {
    static let png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13] + Array("IHDR".utf8) + [0, 0, 4, 0, 0, 0, 3, 0, 8, 2, 0, 0, 0]
    static let jpeg: [UInt8] =
        [0xFF, 0xD8, 0xFF, 0xE0, 0, 16] + Array("JFIF".utf8) + [0, 1, 1, 0, 0, 1, 0, 1, 0, 0]
        + [0xFF, 0xC0, 0, 17, 8, 0x02, 0x00, 0x03, 0x20, 3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]

    @Test func pngSizeComesFromIHDR() {
        #expect(ImageProbe.inspect(Self.png) == .image(.png, width: 1024, height: 768))
    }

    @Test func jpegSizeComesFromTheFrameHeaderAfterOtherSegments() {
        #expect(ImageProbe.inspect(Self.jpeg) == .image(.jpeg, width: 800, height: 512))
        #expect(ImageProbe.inspect(Array(Self.jpeg.prefix(24))) == .needsMoreBytes(.jpeg))
    }

    @Test func webpLossyLosslessAndExtended() {
        let header = Array("RIFF".utf8) + [0, 0, 0, 0] + Array("WEBP".utf8)
        let lossy = header + Array("VP8 ".utf8) + [0, 0, 0, 0, 0, 0, 0] + [0x9D, 0x01, 0x2A] + [0x00, 0x04, 0x00, 0x03]
        #expect(ImageProbe.inspect(lossy) == .image(.webp, width: 1024, height: 768))
        // Lossless: 14-bit width-1 and height-1, packed little-endian after the 0x2F signature.
        let bits = UInt32(639) | UInt32(479) << 14
        let lossless = header + Array("VP8L".utf8) + [0, 0, 0, 0, 0x2F] + withUnsafeBytes(of: bits.littleEndian, Array.init) + [0, 0, 0, 0, 0]
        #expect(ImageProbe.inspect(lossless) == .image(.webp, width: 640, height: 480))
        let extended = header + Array("VP8X".utf8) + [0, 0, 0, 0] + [0, 0, 0, 0] + [0xFF, 0x1F, 0x00] + [0x37, 0x04, 0x00] + [0, 0]
        #expect(ImageProbe.inspect(extended) == .image(.webp, width: 8192, height: 1080))
    }

    @Test func otherBytesAreNotImages() {
        #expect(ImageProbe.inspect(Array("<html>not a picture</html>".utf8)) == .notAnImage)
        #expect(ImageProbe.inspect([]) == .notAnImage)
        #expect(ImageProbe.inspect(Array("GIF89a".utf8) + [1, 0, 1, 0]) == .notAnImage)
    }
}

@Suite struct DatasetValidationTests {
    func file(_ path: String, bytes: Int64 = 1000, size: (Int, Int)? = (1024, 1024), probe: ImageProbe.Result? = nil) -> DatasetValidation.File {
        guard case .placed(let placement) = DatasetLayout.place(path) else { fatalError("\(path) not placed") }
        let isCaption = placement.role == .caption
        return DatasetValidation.File(placement: placement, bytes: bytes, probe: isCaption ? nil : probe ?? size.map { .image(.png, width: $0.0, height: $0.1) })
    }

    func pair(_ stem: String) -> [DatasetValidation.File] {
        [file("control/\(stem).png"), file("target/\(stem).png"), file("target/\(stem).txt")]
    }

    func codes(_ report: DatasetValidation.Report) -> [String] { report.findings.map(\.code).sorted() }

    @Test func aSoundDatasetHasNoFindings() {
        let report = DatasetValidation.validate(pair("a") + pair("b"), defaultCaption: nil)
        #expect(report.findings.isEmpty)
        #expect(report.isSound)
        #expect(report.samples == 2)
        #expect(report.controlsPerSample == 1)
    }

    @Test func samplesMayHoldOneToThreeControlsNumberedWithoutGaps() {
        // a: 2 controls, b: 1, c: 3 — a mix ai-toolkit trains (each sample finds its own).
        let mixed = pair("a") + [file("control_2/a.png")] + pair("b") + pair("c") + [file("control_2/c.png"), file("control_3/c.png")]
        let report = DatasetValidation.validate(mixed, defaultCaption: nil)
        #expect(report.findings.isEmpty && report.isSound)
        #expect(report.controlMix == [1: 1, 2: 1, 3: 1])
        #expect(report.controlsPerSample == 3)
        #expect(API.Validation(report).controlSummary == "1 sample with 1 control image, 1 with 2 control images, 1 with 3 control images")
    }

    @Test func aSampleNeedsItsControlsFromOneAndACaption() {
        // b has control 2 without control 1 (a gap would renumber its pictures); d has none.
        let files = pair("a") + [file("control_2/b.png"), file("target/b.png"), file("target/d.png"), file("target/d.txt")]
        let report = DatasetValidation.validate(files, defaultCaption: nil)
        #expect(codes(report) == ["missing_caption", "missing_control", "missing_control"])
        let missing = report.findings.filter { $0.code == "missing_control" }
        #expect(missing.map(\.file) == ["target/b.png", "target/d.png"])
        #expect(missing[0].message.contains("control_1/b") && missing[0].message.contains("without gaps"))
        #expect(missing[1].message.contains("has no control image"))
        #expect(report.controlsPerSample == nil && report.controlMix.isEmpty)
        #expect(!report.isSound)
        // A default caption stands in for missing captions.
        #expect(codes(DatasetValidation.validate(files, defaultCaption: "make it blue")) == ["missing_control", "missing_control"])
    }

    @Test func aSampleWithAnUnacceptedDraftIsNotReady() {
        let files = pair("a") + [file("control/b.png"), file("target/b.png")]
        // Not even a default caption stands in while a draft waits for review.
        let report = DatasetValidation.validate(files, defaultCaption: "make it blue", drafts: ["b"])
        #expect(codes(report) == ["unaccepted_draft"] && report.findings[0].file == "target/b.png" && !report.isSound)
        // A sample with a caption trains on it (its draft, if any, no longer matters).
        #expect(DatasetValidation.validate(files, defaultCaption: "make it blue", drafts: ["a"]).isSound)
    }

    @Test func orphansAndDuplicatesAreReported() {
        let files = pair("a") + [file("control/lonely.png"), file("lonely2.txt"), file("target/a.jpg")]
        let report = DatasetValidation.validate(files, defaultCaption: nil)
        #expect(codes(report) == ["duplicate_stem", "orphan", "orphan"])
        #expect(report.findings.first { $0.code == "duplicate_stem" }!.message.contains("keep one"))
    }

    @Test func contentIsChecked() {
        let files = [
            file("control/a.png", bytes: 0), file("target/a.png", probe: .notAnImage), file("target/a.txt"),
            file("control/b.png", size: (100, 300)), file("target/b.png", size: (9000, 512)), file("target/b.txt"),
        ]
        let report = DatasetValidation.validate(files, defaultCaption: nil)
        #expect(codes(report) == ["empty_file", "not_an_image", "too_large", "too_small"])
        #expect(report.findings.first { $0.code == "too_small" }!.severity == .warning)
        #expect(report.findings.first { $0.code == "too_large" }!.message.contains("9000×512"))
    }

    @Test func emptyAndControllessDatasetsAreRefused() {
        #expect(codes(DatasetValidation.validate([], defaultCaption: nil)) == ["no_samples"])
        #expect(codes(DatasetValidation.validate([file("target/a.png"), file("target/a.txt")], defaultCaption: nil)) == ["no_controls"])
    }

    @Test func limitsAreEnforced() {
        let files = pair("a") + pair("b") + pair("c")
        let report = DatasetValidation.validate(files, defaultCaption: nil, limits: .init(maximumSamples: 2, maximumBytes: 5000))
        #expect(codes(report) == ["too_many_bytes", "too_many_samples"])
    }
}

@Suite struct ZipImportTests {
    func entry(_ path: String, _ kind: ZipImport.Entry.Kind = .file, compressed: UInt64 = 900, size: UInt64 = 1000) -> ZipImport.Entry {
        ZipImport.Entry(path: path, kind: kind, compressedSize: compressed, uncompressedSize: size)
    }

    func code(_ entries: [ZipImport.Entry], room: Int64 = 1 << 30) -> String? {
        if case .failure(let refusal) = ZipImport.plan(entries, room: room) { return refusal.code.rawValue }
        return nil
    }

    @Test func aZipBecomesPlacedFilesWithoutItsLitter() throws {
        let plan = try ZipImport.plan(
            [entry("set/", .directory), entry("set/cat_start.png"), entry("set/cat_end.png"), entry("set/cat.txt"), entry("__MACOSX/set/._cat_end.png"), entry("set/.DS_Store")],
            room: 1 << 30
        ).get()
        #expect(plan.files.map(\.placement.relativeKey) == ["control_1/cat.png", "target/cat.png", "target/cat.txt"])
        #expect(plan.ignored == 3 && plan.bytes == 3000)
    }

    @Test func everyRefusalHasItsCode() {
        let pair = [entry("control/a.png"), entry("target/a.png")]
        #expect(code(pair + [entry("../evil.png")]) == "path_traversal")
        #expect(code(pair + [entry("/etc/evil.png")]) == "path_traversal")
        #expect(code(pair + [entry("control\\..\\..\\evil.png")]) == "path_traversal")
        #expect(code(pair + [entry("target/b.png", .symlink)]) == "symlink")
        #expect(code(pair + [entry("target/a.PNG")]) == "duplicate_name")
        #expect(code(pair + [entry("target/a.jpg")]) == "duplicate_name")
        #expect(code(pair + [entry("target/setup.exe")]) == "not_an_image")
        #expect(code(pair + [entry("loose.png")]) == "layout")
        // 2 GiB of zeros in 2 MB: over the ratio; a small caption of spaces may compress any amount.
        #expect(code(pair + [entry("target/b.png", compressed: 2_000_000, size: 2 << 30)]) == "zip_bomb")
        #expect(code(pair + [entry("target/a.txt", compressed: 10, size: 4000)]) == nil)
        #expect(code(pair, room: 1500) == "too_large")
        #expect(code(pair + [entry("target/b.png", compressed: 600 << 20, size: 600 << 20)]) == "too_large")
        #expect(code([entry("readme/", .directory), entry(".DS_Store")]) == "empty")
        #expect(code(Array(repeating: entry("x/"), count: 20_001)) == "zip_bomb")
    }

    @Test func bytesPastTheDeclaredSizeStopTheUnpacking() throws {
        let file = try ZipImport.plan([entry("control/a.png")], room: 1 << 30).get().files[0]
        #expect(ZipImport.checkUnpacked(1000, of: file) == nil)
        #expect(ZipImport.checkUnpacked(1001, of: file)?.code == .zipBomb)
    }
}
