import Glibc

/// The user a supervised agent runs as (issue 12, as supervisord's `user=` and Greengrass's
/// per-component users): uid, primary gid and supplementary groups, resolved from the
/// manifest's `user`, `group` and `groups` when it is loaded, so a typo is refused by name.
package struct ProcessIdentity: Sendable, Equatable {
    var user: String
    var uid: uid_t
    var gid: gid_t
    var groups: [gid_t]

    /// The dedicated user agents get when their manifest names none (the .deb creates it).
    static let defaultAgentUser = "pimesh-agent"

    var isRoot: Bool { uid == 0 }

    struct LookupError: Error, CustomStringConvertible {
        /// The manifest key whose value was not found: `user`, `group` or `groups`.
        var key = "user"
        var description: String
    }

    /// `user`: a name or a numeric uid; `group`: the primary group (default: the user's own);
    /// `groups`: supplementary groups such as `gpio` (default: none).
    static func resolve(user: String, group: String?, groups: [String]) throws -> ProcessIdentity {
        let account = try lookUpUser(user)
        var gid = account.gid
        if let group { gid = try lookUpGroup(group, key: "group") }
        var supplementary: [gid_t] = [gid]
        for name in groups {
            let id = try lookUpGroup(name, key: "groups")
            if !supplementary.contains(id) { supplementary.append(id) }
        }
        return ProcessIdentity(user: account.name, uid: account.uid, gid: gid, groups: supplementary)
    }

    /// The default for a manifest without `user`: `pimesh-agent` where it exists, else nil
    /// (the agent runs as the lead's own user).
    static func defaultForAgents() -> ProcessIdentity? {
        guard let account = try? lookUpUser(defaultAgentUser) else { return nil }
        return ProcessIdentity(user: account.name, uid: account.uid, gid: account.gid, groups: [account.gid])
    }

    /// The lead's own user, as status shows it for agents that run as the lead does. Looked up
    /// once: the supervisor's summary asks for it on every health tick where no pimesh-agent
    /// user exists, and each lookup read /etc/passwd and asked every NSS module again.
    static let lead: ProcessIdentity = {
        let uid = geteuid()
        let name = (try? lookUpUser(String(uid)))?.name ?? String(uid)
        return ProcessIdentity(user: name, uid: uid, gid: getegid(), groups: [])
    }()

    /// Whether spawning needs setuid/setgid at all: not for the lead's own ids unless the
    /// lead is root (whose supplementary groups an agent must not keep).
    var needsChange: Bool {
        uid != geteuid() || gid != getegid() || geteuid() == 0
    }

    private static func lookUpUser(_ text: String) throws -> (name: String, uid: uid_t, gid: gid_t) {
        var record = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 16_384)
        let status: Int32
        if let numeric = UInt32(text) {
            // (uid_t)-1 tells setresuid "leave it as it is": the agent would keep the lead's root.
            guard numeric != .max else { throw LookupError(description: "uid \(text) is not a user: it means \"unchanged\" to setuid") }
            status = getpwuid_r(numeric, &record, &buffer, buffer.count, &result)
            if result == nil, status == 0 { return (text, numeric, numeric) }
        } else {
            status = getpwnam_r(text, &record, &buffer, buffer.count, &result)
        }
        guard status == 0, let found = result else {
            throw LookupError(description: "no user \"\(text)\" on this system (getent passwd \(text))")
        }
        return (String(cString: found.pointee.pw_name), found.pointee.pw_uid, found.pointee.pw_gid)
    }

    private static func lookUpGroup(_ text: String, key: String) throws -> gid_t {
        if let numeric = UInt32(text) {
            guard numeric != .max else { throw LookupError(key: key, description: "gid \(text) is not a group: it means \"unchanged\" to setgid") }
            return numeric
        }
        var record = group()
        var result: UnsafeMutablePointer<group>?
        var buffer = [CChar](repeating: 0, count: 16_384)
        guard getgrnam_r(text, &record, &buffer, buffer.count, &result) == 0, let found = result else {
            throw LookupError(key: key, description: "no group \"\(text)\" on this system (getent group \(text))")
        }
        return found.pointee.gr_gid
    }
}
