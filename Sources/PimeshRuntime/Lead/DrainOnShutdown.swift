import ServiceLifecycle

/// The last service in the group, so the first to hear of a graceful shutdown: it ends the long
/// polls before the API server waits for its open requests.
struct DrainOnShutdown: Service {
    let tasks: TaskService
    let gather: GatherService

    func run() async throws {
        try? await gracefulShutdown()
        gather.drain()
        tasks.drain()
    }
}
