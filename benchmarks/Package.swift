// swift-tools-version: 6.1
import PackageDescription

// Micro-benchmarks of the lead's hot paths (ordo-one/benchmark): `make bench-check` compares
// a run with the thresholds checked in under Thresholds/ and fails on a regression.
// A package of its own so that neither the product nor `make test` builds the benchmark tool.
let package = Package(
    name: "pimesh-benchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "pimesh", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark.git", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "HotPaths",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "PimeshCore", package: "pimesh"),
                .product(name: "PimeshAgent", package: "pimesh"),
            ],
            path: "Benchmarks/HotPaths",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
