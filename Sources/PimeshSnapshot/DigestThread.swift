import Crypto
import Glibc

/// SHA-256 on a thread of its own, fed chunk by chunk: compressing and hashing both forms in
/// one thread ran at 80 % of `lz4 -1` here, and a Pi 4B has no SHA instructions at all, so the
/// hashing overlaps the compression instead. At most `depth` chunks wait, which bounds memory.
final class DigestThread: @unchecked Sendable {
    // On the heap: a Swift stored `var` has no stable address to hand to pthreads.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t> = .allocate(capacity: 1)
    private let changed: UnsafeMutablePointer<pthread_cond_t> = .allocate(capacity: 1)
    private var pending: [[UInt8]] = []
    private var closed = false
    private var finished = false
    private var hash = SHA256()
    private var result: [UInt8] = []
    private let depth: Int
    private var thread = pthread_t()

    init(depth: Int = 2) {
        self.depth = depth
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(changed, nil)
        let context = Unmanaged.passRetained(self).toOpaque()
        pthread_create(&thread, nil, { context in
            let worker = Unmanaged<DigestThread>.fromOpaque(context!).takeRetainedValue()
            worker.loop()
            return nil
        }, context)
    }

    deinit {
        pthread_cond_destroy(changed)
        pthread_mutex_destroy(mutex)
        changed.deallocate()
        mutex.deallocate()
    }

    /// Queues a copy of `bytes`; waits while `depth` chunks are already queued.
    func submit(_ bytes: UnsafeRawBufferPointer) {
        let copy = [UInt8](bytes)
        pthread_mutex_lock(mutex)
        while pending.count >= depth { pthread_cond_wait(changed, mutex) }
        pending.append(copy)
        pthread_cond_broadcast(changed)
        pthread_mutex_unlock(mutex)
    }

    /// Waits until everything queued is hashed; the digest.
    func finish() -> [UInt8] {
        pthread_mutex_lock(mutex)
        closed = true
        pthread_cond_broadcast(changed)
        while !finished { pthread_cond_wait(changed, mutex) }
        let digest = result
        pthread_mutex_unlock(mutex)
        pthread_join(thread, nil)
        return digest
    }

    private func loop() {
        while true {
            pthread_mutex_lock(mutex)
            while pending.isEmpty && !closed { pthread_cond_wait(changed, mutex) }
            if pending.isEmpty && closed {
                result = Array(hash.finalize())
                finished = true
                pthread_cond_broadcast(changed)
                pthread_mutex_unlock(mutex)
                return
            }
            let chunk = pending.removeFirst()
            pthread_cond_broadcast(changed)
            pthread_mutex_unlock(mutex)
            chunk.withUnsafeBytes { hash.update(bufferPointer: $0) }
        }
    }
}
