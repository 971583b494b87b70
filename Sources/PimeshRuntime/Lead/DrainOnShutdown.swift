import ServiceLifecycle

/// The last service in the group, so the first to hear of a graceful shutdown: it ends the long
/// polls before the API server waits for its open requests.
struct DrainOnShutdown: Service {
    let tasks: TaskService
    let gather: GatherService
    let notifier: SystemdNotifier

    func run() async throws {
        try? await gracefulShutdown()
        // systemd shows "deactivating" from the first moment, not after the last service ended.
        notifier.notify("STOPPING=1")
        gather.drain()
        tasks.drain()
    }
}
