import Foundation
import PimeshAgent
@testable import PimeshCore
import PimeshStore
import PimeshSystem
import Testing
import PimeshTestSupport

@testable import PimeshSnapshot

func scratchDirectory(_ name: String) -> String {
    Scratch.directory("pimesh-snap-\(name)", mode: 0o755)
}

/// A lead database with agents and tasks, `blobMB` of incompressible payload on top.
func makeDatabase(at path: String, agents: Int = 20, tasks: Int = 200, blobMB: Int = 0) throws -> Database {
    let database = try Database(path: path)
    try database.transaction { connection in
        for index in 0..<agents {
            try AgentStore.insert(
                AgentRow(
                    id: AgentID.random(), name: "agent-\(index)", agentClass: .local, capabilities: ["work"],
                    secret: (0..<32).map { _ in UInt8.random(in: 0...255) }, registeredAtMs: 1_700_000_000_000 + Int64(index)),
                in: connection)
        }
        for index in 0..<tasks {
            var generator = SystemRandomNumberGenerator()
            // Printable noise: 1 MiB that LZ4 can barely shrink.
            let payload = blobMB > 0 && index < blobMB
                ? String(decoding: (0..<(1 << 17)).flatMap { _ in withUnsafeBytes(of: generator.next()) { $0.map { 33 + $0 % 94 } } }, as: UTF8.self)
                : "{\"frame\": \(index)}"
            try TaskStore.save(
                TaskRow(
                    id: "task-\(index)", idempotencyKey: "key-\(index)", capability: "work", payload: payload, weight: 1,
                    deadlineMs: nil, state: .succeeded, agentID: nil, attempts: 1, submittedAtMs: 1_700_000_000_000 + Int64(index),
                    result: "done \(index)"),
                in: connection)
        }
    }
    return database
}

func run(_ program: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: program)
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

func flipBit(_ path: String, at offset: Int) throws {
    let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
    try handle.seek(toOffset: UInt64(offset))
    var byte = try handle.read(upToCount: 1)!
    byte[0] ^= 0x10
    try handle.seek(toOffset: UInt64(offset))
    try handle.write(contentsOf: byte)
    try handle.close()
}

@Suite struct SnapshotTests {
    let root = scratchDirectory("round")

    func maker(_ database: Database, maxCount: Int = 8) throws -> SnapshotMaker {
        SnapshotMaker(
            databasePath: database.path, stagingDirectory: root + "/run",
            spool: try SnapshotSpool(directory: root + "/spool", maxCount: maxCount), key: try NodeKey.loadOrCreate(dataDir: root))
    }

    @Test func roundTripThroughTheSystemToolsAndRestore() throws {
        let database = try makeDatabase(at: root + "/pimesh.db")
        let made = try maker(database).create()
        let manifest = made.entry.manifest
        #expect(manifest.sequence == 1)
        #expect(manifest.schemaVersion == Schema.migrations.count)
        #expect(manifest.compressedBytes < manifest.rawBytes)
        #expect(FileManager.default.fileExists(atPath: made.entry.filePath))
        #expect(!FileManager.default.fileExists(atPath: root + "/run/snapshot-1-\(getpid()).db"), "the staging copy is removed")

        // The system's lz4 reads it, and sqlite3 finds the database sound.
        let plain = root + "/plain.db"
        let lz4 = try run("/usr/bin/lz4", ["-d", "-q", "-f", made.entry.filePath, plain])
        #expect(lz4.status == 0, "\(lz4.output)")
        let integrity = try run("/usr/bin/sqlite3", [plain, "pragma integrity_check"])
        #expect(integrity.output.trimmingCharacters(in: .whitespacesAndNewlines) == "ok")

        let (report, check) = try SnapshotVerifier.restore(made.entry.filePath, to: root + "/restored", trustedKeys: [manifest.publicKey])
        #expect(report.manifest == manifest)
        #expect(check == "ok")
        let restored = try Database(path: root + "/restored/pimesh.db")
        #expect(try AgentStore(database: restored).loadAgents() == AgentStore(database: database).loadAgents())
        #expect(try TaskStore(database: restored).recent(limit: 1000, state: nil) == TaskStore(database: database).recent(limit: 1000, state: nil))
        #expect(throws: SnapshotVerifier.Problem.self) { try SnapshotVerifier.restore(made.entry.filePath, to: root + "/restored", trustedKeys: [manifest.publicKey]) }
    }

    /// A restore writes every agent's secret: never through a name another user could have
    /// planted, never beside a journal that SQLite would replay into it.
    @Test func restoreRefusesForeignDirectoriesJournalsAndPlantedLinks() throws {
        let database = try makeDatabase(at: root + "/pimesh.db")
        let made = try maker(database).create()
        let keys = [made.entry.manifest.publicKey]
        func refusal(_ directory: String) -> String {
            do {
                _ = try SnapshotVerifier.restore(made.entry.manifestPath, to: directory, trustedKeys: keys)
                return "restored"
            } catch {
                return "\(error)"
            }
        }
        let open = root + "/open-to-all"
        try FileManager.default.createDirectory(atPath: open, withIntermediateDirectories: true)
        chmod(open, 0o777)
        #expect(refusal(open).contains("writable by group or others"))
        #expect(!FileManager.default.fileExists(atPath: open + "/pimesh.db"))
        if geteuid() == 0 {
            let foreign = root + "/foreign"
            try FileManager.default.createDirectory(atPath: foreign, withIntermediateDirectories: true)
            #expect(chown(foreign, 65534, 65534) == 0)
            #expect(refusal(foreign).contains("belongs to uid 65534"))
            #expect(!FileManager.default.fileExists(atPath: foreign + "/pimesh.db"))
        }
        // A link in place of the directory, to one the restore would otherwise accept.
        let real = root + "/real"
        try FileManager.default.createDirectory(atPath: real, withIntermediateDirectories: true)
        symlink(real, root + "/linked-dir")
        #expect(refusal(root + "/linked-dir").contains("is a symbolic link"))
        #expect(!FileManager.default.fileExists(atPath: real + "/pimesh.db"))

        for journal in ["-wal", "-shm", "-journal"] {
            let directory = root + "/journal" + journal
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            FileManager.default.createFile(atPath: directory + "/pimesh.db" + journal, contents: Data("x".utf8))
            #expect(refusal(directory).contains("pimesh.db\(journal) exists"))
            #expect(!FileManager.default.fileExists(atPath: directory + "/pimesh.db"))
        }

        // A link left at the temporary name is replaced, not written through.
        let victim = root + "/victim.txt"
        FileManager.default.createFile(atPath: victim, contents: Data("untouched".utf8))
        let linked = root + "/linked"
        try FileManager.default.createDirectory(atPath: linked, withIntermediateDirectories: true)
        symlink(victim, linked + "/pimesh.db.restoring")
        #expect(refusal(linked) == "restored")
        #expect(try String(contentsOfFile: victim, encoding: .utf8) == "untouched")
        var info = stat()
        #expect(lstat(linked + "/pimesh.db", &info) == 0 && info.st_mode & S_IFMT == S_IFREG && info.st_mode & 0o777 == 0o600)
    }

    /// A signed manifest that understates what its frame decompresses to is refused when the
    /// output passes it, not after writing all of it; a FIFO in place of the file is refused
    /// at once.
    @Test func aFrameLargerThanItsManifestSaysAndAFIFOAreRefusedEarly() throws {
        let database = try makeDatabase(at: root + "/pimesh.db", blobMB: 2)
        let made = try maker(database).create()
        let key = try NodeKey.loadOrCreate(dataDir: root)
        var understated = made.entry.manifest
        understated.rawBytes = 64 * 1024
        understated.signature = Hex.encode(try key.sign(understated.signedText))
        let directory = root + "/understated"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: made.entry.filePath, toPath: directory + "/" + understated.file)
        try APICoding.encode(understated).withUnsafeBytes { try Data($0).write(to: URL(fileURLWithPath: directory + "/m.json")) }
        do {
            _ = try SnapshotVerifier.restore(directory + "/m.json", to: directory + "/out", trustedKeys: [understated.publicKey])
            Issue.record("an understated frame was restored")
        } catch let problem as SnapshotVerifier.Problem {
            #expect(problem.description.contains("decompresses to more than the 65536 bytes its manifest says"))
        }
        #expect(!FileManager.default.fileExists(atPath: directory + "/out/pimesh.db.restoring"))

        let fifo = root + "/fifo"
        try FileManager.default.createDirectory(atPath: fifo, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: made.entry.manifestPath, toPath: fifo + "/m.json")
        #expect(mkfifo(fifo + "/" + made.entry.manifest.file, 0o600) == 0)
        do {
            _ = try SnapshotVerifier.verify(fifo + "/m.json")
            Issue.record("a FIFO was read as a snapshot")
        } catch let problem as SnapshotVerifier.Problem {
            #expect(problem.description.contains("a FIFO, not a regular file"))
        }
    }

    /// What a coordinator or S3 answers reaches the lead's log and a terminal only as printable
    /// text of bounded length.
    @Test func answersFromUpstreamArePrintableAndBounded() {
        let forged = "403 no\n2026-12-05T00:00:00 critical pimesh: FORGED\u{1B}[2J\u{9B}\u{202E}txt.exe\\u{41}"
        let printable = PrintableText.of(forged)
        #expect(!printable.unicodeScalars.contains { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) || $0.value == 0x202E })
        #expect(printable.contains("\\u{A}2026") && printable.contains("\\u{1B}[2J") && printable.contains("\\u{9B}"))
        // A backslash is written out too, so that no escape in the text passes for one of these.
        #expect(printable.hasSuffix("\\u{202E}txt.exe\\u{5C}u{41}"))
        let long = PutAnswer(status: 500, body: Array(String(repeating: "é", count: 5000).utf8), headers: [:]).bodyExcerpt
        #expect(long.count == 301 && long.hasSuffix("…"))
        // Clipped for a table cell, which escapes it itself: only the length changes.
        #expect(PrintableText.clipped("abc\u{1B}def", limit: 4) == "abc\u{1B}…")
        #expect(PrintableText.clipped("abc", limit: 3) == "abc")
        #expect(PrintableText.clipped("", limit: 0) == "")
    }

    @Test func damageAndForgeryAreRefusedWithTheReason() throws {
        let database = try makeDatabase(at: root + "/pimesh.db", blobMB: 2)
        let made = try maker(database).create()
        let size = Int(made.entry.manifest.compressedBytes)
        for offset in [0, 7, size / 3, size / 2, size - 5, size - 1] {
            let copy = root + "/copy-\(offset)"
            try FileManager.default.createDirectory(atPath: copy, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: made.entry.filePath, toPath: copy + "/" + made.entry.manifest.file)
            try FileManager.default.copyItem(atPath: made.entry.manifestPath, toPath: copy + "/m.json")
            try flipBit(copy + "/" + made.entry.manifest.file, at: offset)
            // Whichever check trips first, the answer says the file is not what was signed.
            do {
                _ = try SnapshotVerifier.verify(copy + "/m.json")
                Issue.record("bit flipped at \(offset) of \(size): accepted")
            } catch let problem as SnapshotVerifier.Problem {
                #expect(problem.description.contains("SHA-256 of the compressed file does not match the manifest"), "at \(offset): \(problem)")
            }
        }
        #expect(try SnapshotVerifier.verify(made.entry.manifestPath).manifest.sequence == 1)

        var forged = made.entry.manifest
        forged.sequence = 99
        let forgedPath = root + "/spool/forged.json"
        try APICoding.encode(forged).withUnsafeBytes { try Data($0).write(to: URL(fileURLWithPath: forgedPath)) }
        do {
            _ = try SnapshotVerifier.verify(forgedPath)
            Issue.record("a changed manifest was accepted")
        } catch let problem as SnapshotVerifier.Problem {
            #expect(problem.description.contains("bad signature"))
        }
        do {
            _ = try SnapshotVerifier.verify(made.entry.manifestPath, trustedKeys: [String(repeating: "ab", count: 32)])
            Issue.record("an unknown key was accepted")
        } catch let problem as SnapshotVerifier.Problem {
            #expect(problem.description.contains("not trusted"))
        }
        try FileManager.default.removeItem(atPath: forgedPath)
        // Truncated: the size no longer matches.
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: made.entry.filePath))
        try handle.truncate(atOffset: UInt64(size - 100))
        try handle.close()
        do {
            _ = try SnapshotVerifier.verify(made.entry.filePath)
            Issue.record("a truncated snapshot was accepted")
        } catch let problem as SnapshotVerifier.Problem {
            #expect(problem.description.contains("the manifest says \(size)"))
        }
    }

    @Test func theSpoolIsBoundedNumbersNeverRepeatAndLeftoversAreRemoved() throws {
        let database = try makeDatabase(at: root + "/pimesh.db", agents: 2, tasks: 2)
        let maker = try maker(database, maxCount: 2)
        _ = try maker.create()
        _ = try maker.create()
        let third = try maker.create()
        #expect(third.dropped.map(\.manifest.sequence) == [1])
        #expect(maker.spool.entries().entries.map(\.manifest.sequence) == [2, 3])
        #expect(maker.spool.nextSequence() == 4)
        // What a crash mid-snapshot leaves: a temporary file, a compressed file without manifest.
        FileManager.default.createFile(atPath: root + "/spool/.tmp-snapshot-0000000004.db.lz4", contents: Data([1, 2, 3]))
        FileManager.default.createFile(atPath: root + "/spool/snapshot-0000000004.db.lz4", contents: Data([1, 2, 3]))
        FileManager.default.createFile(atPath: root + "/spool/snapshot-0000000003.json.tmp.123", contents: Data([1]))
        #expect(Set(maker.spool.recover()) == [".tmp-snapshot-0000000004.db.lz4", "snapshot-0000000004.db.lz4", "snapshot-0000000003.json.tmp.123"])
        #expect(maker.spool.entries().entries.count == 2)
        #expect(try maker.create().entry.manifest.sequence == 4)

        // A pinned snapshot (taken before a release's migration) outlives the bounds until unpinned.
        let pinned = try #require(maker.spool.entries().entries.first)
        #expect(pinned.manifest.sequence == 3)
        try maker.spool.pin(pinned.manifest.file)
        #expect(try maker.create().dropped.map(\.manifest.sequence) == [4])
        #expect(try maker.create().dropped.map(\.manifest.sequence) == [5])
        #expect(maker.spool.entries().entries.map(\.manifest.sequence) == [3, 6])
        maker.spool.unpin(pinned.manifest.file)
        #expect(try maker.create().dropped.map(\.manifest.sequence) == [3])
        // A pin whose snapshot is gone is a leftover.
        try maker.spool.pin("snapshot-0000000003.db.lz4")
        #expect(maker.spool.recover() == ["snapshot-0000000003.pinned"])
    }

    @Test func theNodeKeyIsMadeOnceAndKeptPrivate() throws {
        let first = try NodeKey.loadOrCreate(dataDir: root)
        let again = try NodeKey.loadOrCreate(dataDir: root)
        #expect(first.publicKeyHex == again.publicKeyHex)
        #expect(first.nodeID.hasPrefix("node-") && first.nodeID.count == 21)
        let mode = try FileManager.default.attributesOfItem(atPath: root + "/node-key")[.posixPermissions] as? Int
        #expect(mode == 0o600)
        try FileManager.default.createDirectory(atPath: root + "/bad", withIntermediateDirectories: true)
        try "not a key".write(toFile: root + "/bad/node-key", atomically: false, encoding: .utf8)
        #expect(throws: NodeKey.KeyError.self) { try NodeKey.loadOrCreate(dataDir: root + "/bad") }
    }

    /// A key of small order verifies a signature no one made: R of small order and S = 0.
    /// Each of the eight such points (and y ≥ p in disguise) is refused as a key, and as R.
    @Test func keysAndSignaturesOfSmallOrderVerifyNothing() throws {
        let zero = [UInt8](repeating: 0, count: 32)
        var weak = Ed25519Encoding.smallOrderY.flatMap { y in [y, Array(y.dropLast()) + [y[31] | 0x80]] }
        weak.append([0xed] + [UInt8](repeating: 0xff, count: 30) + [0x7f])
        weak.append([0xee] + [UInt8](repeating: 0xff, count: 30) + [0xff])
        for key in weak {
            #expect(Ed25519Encoding.weakness(of: key) != nil, "\(Hex.encode(key))")
            for r in weak {
                #expect(!NodeKey.verify(signature: r + zero, message: Array("pimesh-release-v1 x".utf8), publicKeyHex: Hex.encode(key)))
            }
        }
        let real = try NodeKey.loadOrCreate(dataDir: root)
        let real32 = try #require(Hex.decode(real.publicKeyHex))
        #expect(Ed25519Encoding.weakness(of: real32) == nil)
        // Under a real key too, no weak R with S = 0 passes.
        for r in weak {
            #expect(!NodeKey.verify(signature: r + zero, message: Array("pimesh-release-v1 x".utf8), publicKeyHex: real.publicKeyHex))
        }
        let message = Array("pimesh-release-v1 y".utf8)
        let signature = try real.sign(message)
        #expect(NodeKey.verify(signature: signature, message: message, publicKeyHex: real.publicKeyHex))
    }
}

/// What a lead and its transfer helper pass each other (issue 14: uploads run in a helper).
@Suite struct PutHelperTests {
    let s3 = PutRequest(
        url: "http://127.0.0.1:9/b/n/snapshot-0000000001.db.lz4", headers: ["x-amz-content-sha256: ab", "Content-Type: a/b"],
        awsSigV4: .init(provider: "aws:amz:us-east-1:s3", credentials: "k:secret"), timeoutS: 300)

    func failure(_ body: () throws -> Void) -> String? {
        do {
            try body()
            return nil
        } catch {
            return (error as? TransferFailure)?.description ?? "not a TransferFailure: \(error)"
        }
    }

    @Test func anOrderCarriesTheRequestAndAnInlineBodyOrAPath() throws {
        let incident: [UInt8] = Array(#"{"id": 7}"#.utf8) + [0x0A, 0x00, 0xFF]
        let (request, body, lead) = try PutHelper.decodeOrder(try PutHelper.order(s3, body: .bytes(incident)))
        #expect(lead == getpid())
        #expect(request.url == s3.url && request.headers == s3.headers && request.timeoutS == 300)
        #expect(request.awsSigV4?.provider == "aws:amz:us-east-1:s3" && request.awsSigV4?.credentials == "k:secret")
        guard case .bytes(let inline) = body else { Issue.record("\(body)"); return }
        #expect(inline == incident)
        let (plain, file, _) = try PutHelper.decodeOrder(try PutHelper.order(PutRequest(url: "http://h/", timeoutS: 30), body: .file(path: "/var/lib/pimesh/spool/s.db.lz4")))
        #expect(plain.awsSigV4 == nil && plain.headers.isEmpty && plain.timeoutS == 30)
        guard case .file(let path) = file else { Issue.record("\(file)"); return }
        #expect(path == "/var/lib/pimesh/spool/s.db.lz4")
        let (_, empty, _) = try PutHelper.decodeOrder(try PutHelper.order(s3, body: .bytes([])))
        guard case .bytes(let none) = empty else { Issue.record("\(empty)"); return }
        #expect(none.isEmpty)
    }

    @Test func aBadOrderIsRefusedSayingWhatIsWrong() throws {
        #expect(failure { _ = try PutHelper.decodeOrder(Array("no fields at all".utf8)) } == "transfer-helper: the request ends before its mark")
        #expect(failure { _ = try PutHelper.decodeOrder(Array("GET / HTTP/1.1\0".utf8)) } == "transfer-helper: stdin is not a request (it starts with pimesh-put)")
        #expect(failure { _ = try PutHelper.decodeOrder(Array("pimesh-put\0123\0http://h/\0-1\0\0\0\0\00\0".utf8)) } == "transfer-helper: the timeout is not a positive number of seconds")
        #expect(failure { _ = try PutHelper.decodeOrder(Array("pimesh-put\0123\0http://h/\05\0\0\0\03\0a: b\0".utf8)) } == "transfer-helper: the request ends before its header 2 of 3")
        let withBoth = try PutHelper.order(s3, body: .file(path: "/x")) + [1, 2, 3]
        #expect(failure { _ = try PutHelper.decodeOrder(withBoth) } == "transfer-helper: a request with a body path has no inline body")
        #expect(failure { _ = try PutHelper.decodeOrder(Array("pimesh-put\0me\0http://h/\0".utf8)) } == "transfer-helper: the lead's pid is not a pid")
        // A field longer than any order may have is not looked for beyond the limit.
        #expect(failure { _ = try PutHelper.decodeOrder(Array("pimesh-put\0123\0".utf8) + [UInt8](repeating: 0x41, count: 70_000) + [0]) } == "transfer-helper: the request ends before its URL")
        let huge = PutRequest(url: "http://h/", headers: [String(repeating: "h", count: 70_000)])
        #expect(failure { _ = try PutHelper.order(huge, body: .bytes([])) }?.contains("over 65536") == true)
        #expect(failure { _ = try PutHelper.order(PutRequest(url: "http://h/\0evil"), body: .bytes([])) }?.contains("a NUL byte") == true)
    }

    @Test func theAnswerIsTheLastLineWhateverCameBefore() throws {
        let answer = PutAnswer(status: 201, body: Array("{\"compressed_sha256\": \"ab\"}".utf8) + [0, 0x0A, 0xFE], headers: ["etag": "\"x\"", "server": "s"])
        // Noise before it without a newline, and after it: the answer is its own line.
        let output = Array("a library's complaint on stderr".utf8) + PutHelper.encodeOutcome(.success(answer)) + Array("p11-kit: bye\n".utf8)
        let read = try PutHelper.answer(fromOutput: output)
        #expect(read.status == 201 && read.body == answer.body && read.headers == answer.headers)

        let refused = PutHelper.encodeOutcome(.failure(TransferFailure(description: "http://h/: Couldn't\nconnect")))
        #expect(failure { _ = try PutHelper.answer(fromOutput: Array("noise\n".utf8) + refused) } == "http://h/: Couldn't connect (noise)")
        #expect(failure { _ = try PutHelper.answer(fromOutput: Array("Segmentation fault\n".utf8)) } == "the transfer helper gave no answer: Segmentation fault")
        #expect(failure { _ = try PutHelper.answer(fromOutput: []) } == "the transfer helper gave no answer")
        #expect(failure { _ = try PutHelper.answer(fromOutput: Array("pimesh-put-answer\0200\00\0zz".utf8)) }?.hasPrefix("the transfer helper's answer is damaged") == true)
        #expect(failure { _ = try PutHelper.answer(fromOutput: Array("pimesh-put-answer\0200\02\0a\0b\0".utf8)) }?.hasPrefix("the transfer helper's answer is damaged") == true)
    }
}
