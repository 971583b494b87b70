extension Dictionary {
    /// Calls `body` with each value in place. A `for index in indices` loop keeps the storage
    /// referenced while the body changes it, so that the first change copies the whole
    /// dictionary: with 1,000 agents that copy was most of the health tick's time.
    mutating func updateEach(_ body: (Key, inout Value) throws -> Void) rethrows {
        var index = startIndex
        while index != endIndex {
            // Apart, so that the keys view no longer holds the storage when the value is changed.
            let key = keys[index]
            try body(key, &values[index])
            formIndex(after: &index)
        }
    }

    /// Calls `body` with each value where it is stored. A `for (key, value) in` loop (and
    /// `map`, `filter`, `contains` on `values`) copies each value out, which for an agent's
    /// state retains everything it holds, to read a field or two.
    func forEachInPlace(_ body: (Key, borrowing Value) throws -> Void) rethrows {
        for index in indices {
            try body(keys[index], values[index])
        }
    }
}
