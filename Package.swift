// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "gomodel",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "gomodel", targets: ["gomodel"]),
    ],
    dependencies: [
        .package(url: "https://github.com/vapor/vapor.git", exact: "4.122.3"),
        .package(url: "https://github.com/vapor/fluent.git", exact: "4.13.0"),
        .package(url: "https://github.com/vapor/fluent-sqlite-driver.git", exact: "4.9.0"),
        .package(url: "https://github.com/vapor/fluent-postgres-driver.git", exact: "2.14.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", exact: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", exact: "2.4.1"),
    ],
    targets: [
        // Contracts and domain rules: Foundation only, no I/O.
        .target(name: "TrainerCore"),
        .target(
            name: "TrainerServer",
            dependencies: [
                "TrainerCore",
                .product(name: "Vapor", package: "vapor"),
                .product(name: "Fluent", package: "fluent"),
                .product(name: "FluentSQLiteDriver", package: "fluent-sqlite-driver"),
                .product(name: "FluentPostgresDriver", package: "fluent-postgres-driver"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        .executableTarget(
            name: "gomodel",
            dependencies: [
                "TrainerCore",
                "TrainerServer",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(name: "TrainerCoreTests", dependencies: ["TrainerCore"]),
        .testTarget(
            name: "TrainerServerTests",
            dependencies: [
                "TrainerServer",
                .product(name: "VaporTesting", package: "vapor"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
