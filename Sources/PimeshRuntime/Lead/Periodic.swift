import ServiceLifecycle

/// The shape of every periodic service of the lead: wait an interval, do the work, until a
/// graceful shutdown cancels the wait.
func repeatUntilGracefulShutdown(every interval: Duration, _ body: @escaping @Sendable () async -> Void) async {
    try? await cancelWhenGracefulShutdown {
        while true {
            try await Task.sleep(for: interval)
            await body()
        }
    }
}
