import PimeshAgent
import PimeshSystem

/// List routes answer in pages (docs/api.md, "Pages"): at most `limit` items and at most
/// `maxPageBytes` of JSON, with a cursor for the next page when there is more.
enum Paging {
    /// A page of 1 MiB takes a Pi about 10 ms to encode and send, and a client little RAM.
    static let maxPageBytes = 1 << 20

    /// The longest prefix of `items` whose JSON fits a page beside `reserve` bytes of the rest
    /// of the answer; at least one item, so that a page always moves forward.
    static func fit<T: Encodable>(_ items: [T], reserve: Int = 4096) -> (page: [T], cut: Bool) {
        var used = reserve
        for (index, item) in items.enumerated() {
            used += ((try? APICoding.encode(item))?.count ?? 0) + 1
            if used > maxPageBytes && index > 0 { return (Array(items.prefix(index)), true) }
        }
        return (items, false)
    }
}
