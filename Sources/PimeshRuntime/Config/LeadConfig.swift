import PimeshCore

/// Every setting of the lead, each with its documented default (docs/configuration.md).
/// The JSON keys are the snake_case paths shown there; flags of `pimesh run` override them.
public struct LeadConfig: Sendable, Equatable {
    /// The file these settings were read from (`pimesh run --config`), which a reload reads again.
    public var configFile: String?
    /// Where the database, the node token and lead.json live (`/var/lib/pimesh` on a Pi).
    public var dataDir = "./.pimesh"
    /// Sockets and scratch files; tmpfs on a Pi (`/run/pimesh`). Default: `$RUNTIME_DIRECTORY`
    /// when systemd sets it, else `<data_dir>/run`.
    public var runDir: String?
    public var api = API()
    public var heartbeat = Heartbeat()
    public var agents = Agents()
    public var store = Store()
    public var node = Node()
    public var tasks = Tasks()
    public var coordination = Coordination()
    public var leds = LEDs()
    public var supervision = Supervision()
    public var snapshots = Snapshots()
    public var upload = Upload()
    public var audit = Audit()
    public var incidents = Incidents()
    public var update = Update()
    public var logLevel = "info"
    /// A stopping lead gives its services this long to finish (agents stopped, polls answered,
    /// uploads aborted), then cancels them; the store's final commit comes after either way.
    /// Below the unit's TimeoutStopSec (30 s), so that systemd's SIGKILL never cuts that commit.
    public var stopDeadlineS = 20

    public struct API: Sendable, Equatable {
        public var host = "127.0.0.1"
        public var port = 7420
        /// Also serve the API on `<run_dir>/api.sock` for containers that mount the run dir.
        public var unixSocket = true
        /// Open connections each API server (TCP, unix socket) holds at most; past it new ones
        /// wait in the kernel's backlog until one closes. Room for 1,024 agents with a long
        /// poll each, twice over.
        public var maxConnections = 2048
        /// A connection that has not sent a complete request head this long after it opened or
        /// after its last response is closed (slow and idle clients; a long poll being answered
        /// is not idle).
        public var idleTimeoutS = 15
    }

    public struct Heartbeat: Sendable, Equatable {
        public var host = "127.0.0.1"
        public var port = 7421
        public var unixSocket = true
        /// Seed 000 AgentHeartbeat: every 250 ms.
        public var intervalMs = 250
        /// No heartbeat for this long and an agent's state is TRANSIT (outcome unknown) again.
        public var staleAfterMs = 1000
        public var maxClockSkewMs = 30_000
    }

    /// Registered agents (docs/configuration.md).
    public struct Agents: Sendable, Equatable {
        /// An agent no manifest names that stays silent this long is `departed`: out of the
        /// healthy ratio, kept in the store, back at its next heartbeat.
        public var expireAfterS = 300
        /// Registered agents the lead keeps at most (manifests' agents included); past it
        /// registration answers 507. Each costs about 20 KB of RAM and a row.
        public var maxRegistered = 1024
        /// Registrations accepted per second once `registration_burst` is spent; past it 429
        /// with Retry-After. A node that boots 200 agents registers them at once.
        public var registrationsPerS = 20
        public var registrationBurst = 200
    }

    public struct Store: Sendable, Equatable {
        /// Group commit: queued writes go to SQLite together at most this often.
        public var commitIntervalMs = 50
        /// The last impedance and iteration of each agent are written this often; heartbeats
        /// themselves never write. Five minutes keeps 100 agents near 0.3 MB/h of SD writes.
        public var checkpointIntervalS = 300
        /// A write someone waits for (a task accepted, a result) is committed this soon instead
        /// of at the next tick; writes arriving meanwhile share its commit.
        public var durableCommitDelayMs = 2
        /// DESIGN.md §5: the lead's own writes per day; ahead of it, checkpoints are stretched
        /// (up to 12×). 0: no budget.
        public var writeBudgetMBPerDay = 256
    }

    public struct Node: Sendable, Equatable {
        public var probeIntervalMs = 1000
        /// How often code pages the lead no longer runs are dropped from its mappings (0: never).
        public var codeTrimIntervalS = 15
        /// Root of /proc and /sys; tests point it at a fake tree.
        public var procRoot = "/proc"
        public var sysRoot = "/sys"
    }

    public struct Tasks: Sendable, Equatable {
        /// A task handed to an agent and not finished within this goes back to the queue.
        public var leaseMs = 30_000
        /// After this many attempts without a result a task fails instead of being requeued.
        public var maxAttempts = 3
        /// The longest an agent's long poll for work may wait.
        public var longPollMaxMs = 30_000
        /// Work is sent as datagrams to agents whose heartbeats ask for it (v2); off, every
        /// agent takes its work with the long poll.
        public var workDatagrams = true
        /// Open tasks (queued, assigned, running) at most; past it submissions answer 429.
        public var maxOpen = 10_000
        /// Finished tasks are deleted this long after they finished…
        public var retainFinishedS = 604_800
        /// …and beyond this many, oldest first.
        public var retainFinishedCount = 10_000
        /// Payloads, results and rows of all stored tasks together; finished ones are pruned to
        /// stay under it, and when open ones alone fill it submissions answer 507.
        public var maxStoredMB = 64
        /// Finished tasks kept in RAM for quick answers, by their size.
        public var recentRAMKB = 2048
        /// Seed 001 `ttl_ms` of a task that gives none: still queued this long after
        /// submission, it is dropped (`ttl_exceeded`).
        public var defaultTTLMs = 3_600_000
    }

    /// Seed 001 §3.2 scatter-gather and §5.2 quorum, for `ask` and `broadcast`.
    public struct Coordination: Sendable, Equatable {
        public var arrivalWindowMs = 500
        public var bucketMs = 10
        public var minimumResponseRatio = 0.95
        public var timeoutMs = 5000
        public var requiredReadyRate = 0.95
        public var maxConflictRate = 0.05
        public var maxTransitRate = 0.10
    }

    /// DESIGN.md §7 and docs/leds.md.
    public struct LEDs: Sendable, Equatable {
        /// `auto` (sysfs when the onboard LEDs are writable, else sim), `sysfs`, `gpiod`, `sim` or `off`.
        public var backend = "auto"
        /// Where the onboard LEDs are; default `<node.sys_root>/class/leds`.
        public var sysfsRoot: String?
        /// Which LED shows which role; empty means the backend's default (docs/leds.md).
        public var map: [LEDMapping] = []
        /// How often the lead's state is read for the LEDs.
        public var refreshMs = 1000
    }

    /// DESIGN.md §4 and docs/operations.md: manifests, detection, healing, RAM budget.
    public struct Supervision: Sendable, Equatable {
        /// `agents.d/*.json`; default `<dir of --config>/agents.d`, else `<data_dir>/agents.d`.
        public var agentsDir: String?
        /// Each agent's log in `<run_dir>/logs` is rotated past this size (one old file kept).
        public var logMaxKB = 256
        /// What one agent may write to its log each second; the excess is dropped and counted
        /// in the log, and the agent is slowed by its full pipe.
        public var logRateKBPerS = 256
        /// On shutdown agents get SIGTERM, then SIGKILL after this long.
        public var stopTimeoutS = 5
        /// Seed 000 phi accrual: suspect at phi ≥ this.
        public var phiThreshold = 8.0
        public var acceptablePauseMs = 200
        public var minStdDevMs = 40
        /// A started agent that has not heartbeat after this long while its process runs is hung.
        public var startGraceMs = 5000
        /// Progress watchdog floors: no HANG before this much stagnation, no LOOP before this.
        public var hangAfterMs = 2000
        public var loopAfterMs = 10_000
        /// A hung/looping supervised agent is restarted, a silent attached one healed, after this.
        public var healAfterMs = 2000
        /// All agents together; over it the node degrades and sheds. Unset: 60 % of the Pi's
        /// memory; 0: no budget.
        public var ramBudgetMB: Int?
        public var workStealing = true
        /// Where cgroup v2 is mounted; tests point it at a fake tree.
        public var cgroupRoot = "/sys/fs/cgroup"
        public var tickMs = 100
    }

    /// docs/incidents.md.
    public struct Incidents: Sendable, Equatable {
        /// Seed 003: quiet (no recurrence, task success at target) this long resolves an incident.
        public var observationWindowS = 1800
        /// Seed 003's `for: 5m` on the mass-failure rule.
        public var massFailureSustainS = 300
        /// Operators' playbooks; nil: `playbooks.d` beside the agents dir.
        public var playbooksDir: String?
        /// Seed 002's emergency "verify 18/20 agents running": the share `verify_running` needs.
        public var emergencyMinRunning = 0.9
    }

    /// docs/audit.md.
    public struct Audit: Sendable, Equatable {
        /// The node key signs the chain's tip every this many rows (and at every snapshot): a
        /// cut tail shows against the newest head, so fewer rows between heads hide less.
        public var headEveryRows = 256
        /// Rows older than this are pruned, but only once a snapshot whose head covers them
        /// has reached upstream; with no upstream nothing is pruned. 0: as soon as upstream has them.
        public var retainDays = 90
    }

    /// DESIGN.md §6 and docs/snapshots.md.
    public struct Snapshots: Sendable, Equatable {
        /// The lead takes a snapshot this often (0: only `pimesh snapshot create`).
        public var intervalS = 3600
        /// The spool keeps at most this many snapshots and this many MiB; oldest dropped first.
        public var spoolMaxCount = 8
        public var spoolMaxMB = 256
    }

    /// `pimesh update` (docs/pi.md, "Update and rollback").
    public struct Update: Sendable, Equatable {
        /// Ed25519 public keys (64 hex digits) whose signature a release must carry; with none,
        /// `pimesh update apply` refuses every release.
        public var trustedKeys: [String] = []
        /// The new lead must stay READY, healthy and the same process this long before the
        /// release is committed.
        public var soakS = 60
        /// How long a restarted lead may take to become READY before the update is rolled back.
        public var readyTimeoutS = 60
        public var unit = "pimesh.service"
        /// Releases that no link names, kept for a manual switch back; older ones are deleted.
        public var keepReleases = 2
        /// A download or file larger than this is refused.
        public var maxReleaseMB = 128

        public init(
            trustedKeys: [String] = [], soakS: Int = 60, readyTimeoutS: Int = 60, unit: String = "pimesh.service", keepReleases: Int = 2,
            maxReleaseMB: Int = 128
        ) {
            self.trustedKeys = trustedKeys
            self.soakS = soakS
            self.readyTimeoutS = readyTimeoutS
            self.unit = unit
            self.keepReleases = keepReleases
            self.maxReleaseMB = maxReleaseMB
        }
    }

    /// Where snapshots go (docs/snapshots.md): `none`, `coordinator`, `s3` or `directory`.
    public struct Upload: Sendable, Equatable {
        public var target = "none"
        /// coordinator: its base URL (`https://coordinator.example:7430`).
        public var url: String?
        /// directory: an absolute path.
        public var directory: String?
        public var s3Endpoint: String?
        public var s3Bucket: String?
        public var s3Region = "us-east-1"
        public var s3Prefix = "pimesh"
        /// From the config, else `$AWS_ACCESS_KEY_ID` / `$AWS_SECRET_ACCESS_KEY` when the lead starts.
        public var s3AccessKeyID: String?
        public var s3SecretAccessKey: String?
        public var retryInitialMs = 1000
        public var retryMaxS = 300
    }

    public struct LEDMapping: Sendable, Equatable {
        /// sysfs: the LED's directory name, alternatives separated by `|` (`ACT|led0`);
        /// gpiod and sim: a label.
        public var name: String
        public var role: String
        public var chip: String?
        public var line: Int?
        public var activeLow = false

        public init(name: String, role: String, chip: String? = nil, line: Int? = nil, activeLow: Bool = false) {
            self.name = name
            self.role = role
            self.chip = chip
            self.line = line
            self.activeLow = activeLow
        }
    }

    public init() {}

    public var resolvedRunDir: String {
        runDir ?? dataDir + "/run"
    }
}
