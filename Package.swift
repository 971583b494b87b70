// swift-tools-version: 6.1
import PackageDescription

// Swift 6 language mode everywhere; the core stays free of Foundation and I/O (DESIGN.md §1).
let strictSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
]

/// The CLI's commands run once per invocation and a lead only parses `run`'s flags with them;
/// the swarm and the benchmark drivers run only when someone benchmarks (the lead being
/// measured is built for speed); snapshots are made and sent minutes apart, their bytes
/// compressed and hashed in C and swift-crypto, which keep their speed. Optimized for size,
/// they leave room in the 25 MB budget for what a Pi runs all the time.
let coldCodeSettings: [SwiftSetting] = [
    .unsafeFlags(["-Osize"], .when(configuration: .release)),
]

let package = Package(
    name: "pimesh",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "pimesh", targets: ["pimesh"]),
        .executable(name: "pimesh-coordinator", targets: ["pimesh-coordinator"]),
        .library(name: "PimeshCore", targets: ["PimeshCore"]),
        .library(name: "PimeshAgent", targets: ["PimeshAgent"]),
        .library(name: "PimeshSystem", targets: ["PimeshSystem"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        // traits: [] keeps FullFoundation (and with it ICU) out of the binary: DESIGN.md §9.
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1", traits: []),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
    ],
    targets: [
        .systemLibrary(
            name: "CSQLite",
            pkgConfig: "sqlite3",
            providers: [.apt(["libsqlite3-dev"])]
        ),
        .systemLibrary(
            name: "CLZ4",
            pkgConfig: "liblz4",
            providers: [.apt(["liblz4-dev"])]
        ),
        // libcurl's header at build time (libcurl4-openssl-dev); the library itself is loaded
        // only while a transfer runs (Sources/CCurl/include/pimesh_curl.h).
        .target(name: "CCurl"),
        .systemLibrary(
            name: "CGPIOD",
            pkgConfig: "libgpiod",
            providers: [.apt(["libgpiod-dev"])]
        ),
        // fork/exec with every inherited descriptor closed and the agent's own uid/gid: what
        // posix_spawn cannot do (issue 12).
        .target(name: "CSpawn"),
        // recvmmsg for the heartbeat socket: a GNU extension Swift's Glibc module leaves out.
        .target(name: "CDatagram"),
        // mallopt, for the lead's malloc arena limit (ProcessMemory.limitMallocArenas).
        .systemLibrary(name: "CMalloc"),
        // dl_iterate_phdr, for the loaded objects whose clean pages the lead drops (CodePages).
        .target(name: "CLink"),
        .target(
            name: "PimeshCore",
            swiftSettings: strictSettings
        ),
        // Files, clocks, sockets and JSON with POSIX calls, for every process pimesh runs: the
        // lead, agents, the coordinator and the LED module borrow them from here.
        .target(
            name: "PimeshSystem",
            dependencies: ["PimeshCore"],
            swiftSettings: strictSettings
        ),
        .target(
            name: "PimeshStore",
            dependencies: ["CSQLite", "PimeshCore"],
            swiftSettings: strictSettings
        ),
        .target(
            name: "PimeshAgent",
            dependencies: [
                "PimeshCore",
                "PimeshSystem",
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "PimeshSnapshot",
            dependencies: [
                "CLZ4",
                "CCurl",
                "PimeshCore",
                "PimeshStore",
                "PimeshSystem",
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strictSettings + coldCodeSettings
        ),
        .target(
            name: "PimeshLED",
            dependencies: [
                "CGPIOD",
                "PimeshCore",
                "PimeshSystem",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
        // What an HTTP server of pimesh needs besides Hummingbird: JSON errors, bearer tokens in
        // private files, blocking work off the event loops. The lead and the coordinator use it.
        .target(
            name: "PimeshServer",
            dependencies: [
                "PimeshCore",
                "PimeshSystem",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
            ],
            swiftSettings: strictSettings
        ),
        // The lead's releases in its data dir and what a rollback leaves for the next start:
        // `pimesh update`, `pimesh run` before it leads, and a start after a rollback use it.
        .target(
            name: "PimeshRelease",
            dependencies: [
                "PimeshAgent",
                "PimeshCore",
                "PimeshSnapshot",
                "PimeshStore",
                "PimeshSystem",
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strictSettings + coldCodeSettings
        ),
        .target(
            name: "PimeshRuntime",
            dependencies: [
                "CDatagram",
                "CLink",
                "CMalloc",
                "CSpawn",
                "PimeshCore",
                "PimeshFleetIndex",
                "PimeshLED",
                "PimeshRelease",
                "PimeshServer",
                "PimeshSnapshot",
                "PimeshStore",
                "PimeshSystem",
                "PimeshAgent",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: strictSettings
        ),
        // The coordinator's index of enrolled nodes, their snapshots, audit heads and incidents.
        // Apart from the server, because `pimesh audit verify --heads-from DIR` and `pimesh
        // snapshot verify --coordinator-dir DIR` read it where the coordinator keeps its files.
        .target(
            name: "PimeshFleetIndex",
            dependencies: ["PimeshCore", "PimeshSnapshot", "PimeshStore"],
            swiftSettings: strictSettings + coldCodeSettings
        ),
        // The upstream receiver of a fleet's snapshots and incidents: a server of its own, never
        // on a Pi (`pimesh-coordinator`).
        .target(
            name: "PimeshCoordinator",
            dependencies: [
                "PimeshAgent",
                "PimeshCore",
                "PimeshFleetIndex",
                "PimeshServer",
                "PimeshSnapshot",
                "PimeshStore",
                "PimeshSystem",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
        // Error lines, tables and the environment for both executables.
        .target(
            name: "PimeshCommandLine",
            dependencies: [
                "PimeshCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strictSettings + coldCodeSettings
        ),
        // What stands in for agents and measures a lead: `pimesh swarm`, `pimesh sim-agent` and
        // the drivers of `pimesh bench`. The lead never runs any of it.
        .target(
            name: "PimeshSim",
            dependencies: [
                "CSpawn",
                "PimeshCore",
                "PimeshSystem",
                "PimeshAgent",
                "PimeshRuntime",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            swiftSettings: strictSettings + coldCodeSettings
        ),
        .executableTarget(
            name: "pimesh",
            dependencies: [
                "PimeshCommandLine",
                "PimeshCore",
                "PimeshFleetIndex",
                "PimeshSim",
                "PimeshStore",
                "PimeshSnapshot",
                "PimeshLED",
                "PimeshRelease",
                "PimeshRuntime",
                "PimeshSystem",
                "PimeshAgent",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings + coldCodeSettings
        ),
        .executableTarget(
            name: "pimesh-coordinator",
            dependencies: [
                "PimeshAgent",
                "PimeshCommandLine",
                "PimeshCoordinator",
                "PimeshCore",
                "PimeshFleetIndex",
                "PimeshStore",
                "PimeshSystem",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        // Test helpers only: scratch directories that are removed when a test process exits.
        .target(name: "PimeshTestSupport", path: "Tests/PimeshTestSupport", swiftSettings: strictSettings),
        // swift-crypto only for the audit chain's SHA-256, which the core takes as a parameter.
        .testTarget(name: "PimeshCoreTests", dependencies: ["PimeshCore", .product(name: "Crypto", package: "swift-crypto")]),
        .testTarget(name: "PimeshStoreTests", dependencies: ["PimeshTestSupport", "PimeshStore", "CSQLite", "PimeshAgent", "PimeshCore", "PimeshSystem"]),
        .testTarget(name: "PimeshAgentTests", dependencies: ["PimeshTestSupport", "PimeshAgent", "PimeshCore", "PimeshSystem"]),
        .testTarget(name: "PimeshLEDTests", dependencies: ["PimeshTestSupport", "PimeshLED", "PimeshCore", "PimeshSystem"]),
        .testTarget(name: "PimeshSnapshotTests", dependencies: ["PimeshTestSupport", "PimeshSnapshot", "PimeshStore", "PimeshAgent", "PimeshCore", "PimeshSystem"]),
        .testTarget(
            name: "PimeshRuntimeTests",
            dependencies: [
                "PimeshTestSupport", "PimeshRuntime", "PimeshRelease", "PimeshCore", "PimeshServer", "PimeshSnapshot", "PimeshStore", "PimeshSystem",
                "PimeshAgent",
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .testTarget(name: "PimeshSimTests", dependencies: ["PimeshSim", "PimeshSystem", "PimeshAgent"]),
        .testTarget(name: "PimeshEndToEndTests", dependencies: ["PimeshTestSupport", "PimeshAgent", "PimeshCore", "PimeshSnapshot", "PimeshSystem"]),
    ],
    swiftLanguageModes: [.v6]
)
