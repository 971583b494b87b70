import Glibc

/// Who counts as an operator on the unix socket without a token: root, the lead's own user,
/// and members of the operator group (`pimesh`, created by the .deb), as the docker group
/// grants the docker socket.
struct OperatorPeers: Sendable {
    static let defaultGroupName = "pimesh"

    let groupName: String
    let groupID: gid_t?

    init(groupName: String = defaultGroupName) {
        self.groupName = groupName
        var record = group()
        var result: UnsafeMutablePointer<group>?
        var buffer = [CChar](repeating: 0, count: 16_384)
        groupID = getgrnam_r(groupName, &record, &buffer, buffer.count, &result) == 0 ? result?.pointee.gr_gid : nil
    }

    func allows(uid: uid_t, gid: gid_t) -> Bool {
        if uid == 0 || uid == geteuid() { return true }
        guard let groupID else { return false }
        if gid == groupID { return true }
        return Self.supplementaryGroups(of: uid).contains(groupID)
    }

    private static func supplementaryGroups(of uid: uid_t) -> [gid_t] {
        var record = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 16_384)
        guard getpwuid_r(uid, &record, &buffer, buffer.count, &result) == 0, let user = result else { return [] }
        var count: Int32 = 64
        var groups = [gid_t](repeating: 0, count: Int(count))
        if getgrouplist(user.pointee.pw_name, user.pointee.pw_gid, &groups, &count) < 0 {
            groups = [gid_t](repeating: 0, count: Int(count))
            guard getgrouplist(user.pointee.pw_name, user.pointee.pw_gid, &groups, &count) >= 0 else { return [] }
        }
        return Array(groups.prefix(Int(count)))
    }
}
