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

    /// Calls `body` with each value borrowed. The values' getter still hands out a copy (perf
    /// shows the value witness), which for a copy-on-write `LiveAgent` is one retain; a
    /// `for (key, value) in` loop over the old, inline agent state retained everything it held.
    func forEachInPlace(_ body: (Key, borrowing Value) throws -> Void) rethrows {
        for index in indices {
            try body(keys[index], values[index])
        }
    }
}
