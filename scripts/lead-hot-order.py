#!/usr/bin/env python3
"""Turns `perf script` output of a profiled `pimesh bench run` into the link order of the lead's
functions (scripts/lead-hot.order), so that the code a lead runs sits together in its binary.

The kernel maps up to 64 KiB of cached file pages around each page fault ("fault-around"), so a
lead whose few thousand running functions are spread over 20 MB of text keeps most of the text
resident. Packed first by the linker (lld --symbol-ordering-file), they fill a few MB.

Input (stdin): `perf script --show-mmap-events -F comm,pid,event,ip,dso` of a recording with
call graphs (`-g`) of cpu-clock samples and of every page fault (`-e page-faults/period=1/`). A
function counts once per sample it is on the stack of, and once per fault its code took.
Output: the existing order file's functions first, in their order (a stable layout from one
regeneration to the next), then new ones, most seen first.

Usage: scripts/lead-hot-order.py UNSTRIPPED_BINARY ORDER_FILE < perf-script.txt
"""
import bisect
import collections
import re
import subprocess
import sys

LEAD_DSO = "/pimesh-lead"  # the bench's private copy of the binary the lead runs from


def text_symbols(binary):
    out = subprocess.run(["nm", "-n", binary], check=True, capture_output=True, text=True).stdout
    addresses, names = [], []
    for line in out.splitlines():
        parts = line.split(None, 2)
        if len(parts) == 3 and parts[1] in "tTwW":
            addresses.append(int(parts[0], 16))
            names.append(parts[2])
    return addresses, names


def executable_segment(binary):
    """(file offset, virtual address) of the binary's R E load segment."""
    out = subprocess.run(["readelf", "-lW", binary], check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if parts[:1] == ["LOAD"] and "E" in parts[6:-1]:
            return int(parts[1], 16), int(parts[2], 16)
    sys.exit(f"{binary}: no executable LOAD segment")


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    binary, order_file = sys.argv[1], sys.argv[2]
    addresses, names = text_symbols(binary)
    segment_offset, segment_address = executable_segment(binary)
    mmap = re.compile(r"PERF_RECORD_MMAP2? (\d+)/\d+: \[(0x[0-9a-f]+)\((0x[0-9a-f]+)\) @ (0x[0-9a-f]+|0) .*\]: r-xp (\S+)")
    # "comm pid event: [ip (dso)]": a sample's header, with its ip when there is no call graph
    header = re.compile(r"^\s*\S.*?\s(\d+)\s+\S+:\s*(?:([0-9a-f]+)\s+\((\S+)\))?\s*$")
    frame = re.compile(r"^\s+([0-9a-f]+)\s+\((\S+)\)\s*$")
    bases = {}  # pid -> (start, length, file offset) of its mapping of the lead's code
    seen = collections.Counter()
    pid = None

    def count(pid, ip_text, dso):
        if pid not in bases or not dso.endswith(LEAD_DSO):
            return
        start, length, offset = bases[pid]
        ip = int(ip_text, 16)
        # perf prints a sample's own ip as an address, and call-graph frames as file offsets
        file_offset = ip - start + offset if start <= ip < start + length else ip
        index = bisect.bisect_right(addresses, file_offset - segment_offset + segment_address) - 1
        if index >= 0:
            seen[names[index]] += 1

    for line in sys.stdin:
        if "PERF_RECORD_MMAP" in line:
            match = mmap.search(line)
            if match and match.group(5).endswith(LEAD_DSO):
                bases[int(match.group(1))] = (int(match.group(2), 16), int(match.group(3), 16), int(match.group(4), 16))
            continue
        match = header.match(line)
        if match:
            pid = int(match.group(1))
            if match.group(2):
                count(pid, match.group(2), match.group(3))
            continue
        match = frame.match(line)
        if match:
            count(pid, match.group(1), match.group(2))
    if not seen:
        sys.exit("no sample or fault in the lead's code: was perf recording the bench's leads (-a)?")
    try:
        kept = [line.strip() for line in open(order_file) if line.strip()]
    except FileNotFoundError:
        kept = []
    known = set(kept)
    added = [name for name, _ in seen.most_common() if name not in known]
    with open(order_file, "w") as out:
        out.writelines(name + "\n" for name in kept + added)
    print(f"{order_file}: {len(kept)} functions kept, {len(added)} added ({len(seen)} seen)")


if __name__ == "__main__":
    main()
