#!/usr/bin/env python3
"""Lists the zero-initialised data (.bss) that a running lead has written, as link order
(scripts/lead-data.order), so that lld puts it side by side at the start of .bss.

A page of .bss costs private memory once anything in it is written. Swift keeps a small cache
variable per type (metadata, witness tables) there, written when the type is first used; a
lead uses a few of the binary's types, but its 1,090 KiB of .bss holds the caches of every
one, so what it writes was spread over most of it (docs/benchmarks.md has the figures).

lld orders input sections, not variables, and Swift puts all of a source file's .bss in one
input section (-function-sections does not split data), so the unit here is the input section:
one symbol from each section the lead wrote names it in the order file (a symbol unique in
.bss, since a local name such as `completed.0` may name a section in several objects).

Input: the map of the link (lld -Map) of the binary the lead runs, and the lead's pid (root, or
the lead's user: this reads /proc/PID/mem), read every 2 s until the lead exits. A section
counts as written when any of its bytes was not zero in any reading. Output: one symbol per
written section, in address order; the order file is rewritten.

Usage: scripts/lead-data-order.py MAP_FILE PID ORDER_FILE
"""
import collections
import os
import re
import sys
import time

LINE = re.compile(r"^\s+([0-9a-f]+)\s+([0-9a-f]+)\s+([0-9a-f]+)\s+(\d+) (\s*)(\S.*)$")


def bss_sections(map_path):
    """(start, size, [(address, size, [symbols])]) of .bss in an lld map."""
    start = size = None
    sections = []
    with open(map_path) as lines:
        for line in lines:
            match = LINE.match(line)
            if not match:
                continue
            indent, name = len(match.group(5)), match.group(6)
            if indent == 0:
                if start is not None:
                    break
                if name == ".bss":
                    start, size = int(match.group(1), 16), int(match.group(3), 16)
            elif start is not None and indent == 8:
                sections.append((int(match.group(1), 16), int(match.group(3), 16), []))
            elif start is not None and indent == 16 and sections:
                sections[-1][2].append(name)
    if start is None:
        sys.exit(f"{map_path}: no .bss output section (is this an lld -Map file?)")
    return start, size, sections


def load_base(pid):
    """Where the lead's executable is mapped (its mapping at file offset 0)."""
    exe = os.readlink(f"/proc/{pid}/exe")
    with open(f"/proc/{pid}/maps") as maps:
        for line in maps:
            fields = line.split()
            if len(fields) >= 6 and fields[5] == exe and int(fields[2], 16) == 0:
                return int(fields[0].split("-")[0], 16)
    raise OSError(f"pid {pid}: {exe} is not mapped from offset 0")


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__.strip().splitlines()[-1])
    map_path, pid, order_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    start, size, sections = bss_sections(map_path)
    seen = set()
    readings = 0
    while True:
        try:
            # Looked up at each reading: the lead execs itself once as it starts (same pid,
            # new mappings), and this may begin before that.
            base = load_base(pid)
            with open(f"/proc/{pid}/mem", "rb") as memory:
                memory.seek(base + start)
                bss = memory.read(size)
        except OSError:
            break
        if len(bss) != size:
            break
        readings += 1
        for index, (address, length, _) in enumerate(sections):
            if index not in seen and length and any(bss[address - start:address - start + length]):
                seen.add(index)
        time.sleep(2)
    if readings == 0:
        sys.exit(f"pid {pid}: could not read its .bss")
    counts = collections.Counter(symbol for _, _, symbols in sections for symbol in symbols)
    written, unnamed = [], 0
    for index in sorted(seen):
        unique = [symbol for symbol in sections[index][2] if counts[symbol] == 1]
        if unique:
            written.append(unique[0])
        else:
            unnamed += 1
    # Written whole, not merged: a symbol the lead no longer writes would hold a place at the
    # front that the sections it does write need.
    with open(order_path, "w") as out:
        out.write("".join(symbol + "\n" for symbol in written))
    print(f"{len(written)} of {len(sections)} .bss sections written by pid {pid} ({readings} readings), "
          f"{unnamed} more without a unique symbol; {order_path} rewritten")


if __name__ == "__main__":
    main()
