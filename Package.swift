// swift-tools-version:6.0
import PackageDescription

/// Swift 7's rules now: `any` spelled out for existentials, and members only from modules a file imports.
let upcoming: [SwiftSetting] = [.enableUpcomingFeature("ExistentialAny"), .enableUpcomingFeature("MemberImportVisibility")]

let package = Package(
    name: "gomodel",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "gomodel", targets: ["gomodel"])
    ],
    dependencies: [
        .package(url: "https://github.com/vapor/vapor.git", exact: "4.122.3"),
        .package(url: "https://github.com/vapor/fluent.git", exact: "4.13.0"),
        .package(url: "https://github.com/vapor/fluent-sqlite-driver.git", exact: "4.9.0"),
        .package(url: "https://github.com/vapor/fluent-postgres-driver.git", exact: "2.14.0"),
        .package(url: "https://github.com/vapor/leaf.git", exact: "4.5.2"),
        // Leaf's engine, named for NIOLeafFiles: the templates live under .build during development,
        // which Leaf's default file source refuses (it hides dot-folders).
        .package(url: "https://github.com/vapor/leaf-kit.git", exact: "1.14.3"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", exact: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", exact: "2.4.1"),
        .package(url: "https://github.com/swift-server/async-http-client.git", exact: "1.37.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.6.0"),
        .package(url: "https://github.com/weichsel/ZIPFoundation.git", exact: "0.9.20"),
    ],
    targets: [
        // Contracts and domain rules: Foundation only, no I/O.
        .target(name: "TrainerCore", swiftSettings: upcoming),
        // SigV4, the S3 client and the built-in store's disk layout and request rules (no Vapor).
        .target(
            name: "ObjectStorage",
            dependencies: [
                "TrainerCore",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "_NIOFileSystem", package: "swift-nio"),
            ],
            swiftSettings: upcoming
        ),
        // RunPod Serverless's queue API (the client side; the worker side comes with the worker).
        .target(
            name: "RunPod",
            dependencies: [
                "TrainerCore",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: upcoming
        ),
        .target(
            name: "TrainerServer",
            dependencies: [
                "TrainerCore",
                "ObjectStorage",
                "RunPod",
                .product(name: "Vapor", package: "vapor"),
                .product(name: "Fluent", package: "fluent"),
                .product(name: "FluentSQLiteDriver", package: "fluent-sqlite-driver"),
                .product(name: "FluentPostgresDriver", package: "fluent-postgres-driver"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "_NIOFileSystem", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "Leaf", package: "leaf"),
                .product(name: "LeafKit", package: "leaf-kit"),
                .product(name: "ZIPFoundation", package: "ZIPFoundation"),
            ],
            // The web app's Leaf templates and static assets, found through Bundle.module at run time.
            resources: [.copy("Web")],
            swiftSettings: upcoming
        ),
        // The GPU worker (`gomodel worker`): RunPod's worker protocol, the training handler. No Vapor.
        .target(
            name: "TrainerWorker",
            dependencies: [
                "TrainerCore",
                "ObjectStorage",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            // The captioner the worker runs beside ai-toolkit (drafting jobs), found beside the binary.
            resources: [.copy("Captioner/caption.py")],
            swiftSettings: upcoming
        ),
        // The API client of the CLI (login, dataset push…): no Vapor, so scripts and the worker could use it.
        .target(
            name: "TrainerClient",
            dependencies: [
                "TrainerCore",
                "ObjectStorage",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "_NIOFileSystem", package: "swift-nio"),
            ],
            swiftSettings: upcoming
        ),
        .executableTarget(
            name: "gomodel",
            dependencies: [
                "TrainerCore",
                "TrainerServer",
                "TrainerClient",
                "TrainerWorker",
                "ObjectStorage",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            swiftSettings: upcoming
        ),
        // Benchmark driver for bench/ (built in release by bench scripts, not by the tests).
        .executableTarget(
            name: "s3bench",
            dependencies: [
                "ObjectStorage",
                "TrainerWorker",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: upcoming
        ),
        .testTarget(name: "TrainerCoreTests", dependencies: ["TrainerCore"], exclude: ["Golden"], swiftSettings: upcoming),
        .testTarget(
            name: "ObjectStorageTests",
            dependencies: ["ObjectStorage", "TrainerCore", "TrainerWorker", .product(name: "AsyncHTTPClient", package: "async-http-client")],
            exclude: ["Fixtures"],
            swiftSettings: upcoming
        ),
        .testTarget(
            name: "TrainerServerTests",
            dependencies: [
                "TrainerServer",
                "TrainerClient",
                "ObjectStorage",
                "RunPod",
                "TrainerWorker",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "VaporTesting", package: "vapor"),
                .product(name: "ZIPFoundation", package: "ZIPFoundation"),
            ],
            swiftSettings: upcoming
        ),
    ],
    swiftLanguageModes: [.v6]
)
