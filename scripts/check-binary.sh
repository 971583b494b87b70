#!/usr/bin/env bash
# The Pi binary must not carry full Foundation or ICU (DESIGN.md §9): check the symbols of
# the unstripped release build, and report the size of the stripped one.
set -euo pipefail
unstripped=${1:-.build/release/pimesh}
shipped=${2:-.build/pimesh}
symbols=$(nm "$unstripped")
bad=$(grep -E 'FoundationInternationalization|_FoundationICU|\$s10Foundation' <<<"$symbols" | head -5 || true)
if [ -n "$bad" ]; then
  echo "check-binary: FAIL: $unstripped links full Foundation or ICU:" >&2
  echo "$bad" >&2
  exit 1
fi
# The coordinator is a server's program (pimesh-coordinator), not the Pi's (issue 14).
if grep -q '17PimeshCoordinator' <<<"$symbols"; then
  echo "check-binary: FAIL: $unstripped carries the coordinator's server (module PimeshCoordinator)" >&2
  exit 1
fi
grep -q 'FoundationEssentials' <<<"$symbols" || echo "check-binary: note: no FoundationEssentials symbols either"
# System libraries are linked dynamically: Pi OS has them and shares their pages (DESIGN.md §9).
needed=$(readelf -d "$unstripped" | awk '/NEEDED/ { gsub(/[\[\]]/, "", $5); print $5 }')
for library in libsqlite3 libgpiod; do
  grep -q "^$library\." <<<"$needed" || { echo "check-binary: FAIL: $unstripped does not link $library dynamically" >&2; exit 1; }
done
# libcurl and its chain (TLS, Kerberos, …) are loaded by the first transfer, not at start (issue 14).
if grep -q '^libcurl' <<<"$needed"; then
  echo "check-binary: FAIL: $unstripped links libcurl at start; it must be loaded on demand (Sources/CCurl)" >&2
  exit 1
fi
echo "check-binary: links dynamically: $(tr '\n' ' ' <<<"$needed")"
# It exports nothing (linked with --no-export-dynamic): SwiftPM's default export of every symbol
# once cost 3.3 MB of symbol names and kept code nothing calls.
exported=$(readelf --dyn-syms -W "$shipped" | awk 'NR > 3 && $7 != "UND" && $8 != ""' | wc -l)
if [ "$exported" -gt 0 ]; then
  echo "check-binary: FAIL: $shipped exports $exported dynamic symbols; link it with -Xlinker --no-export-dynamic" >&2
  exit 1
fi
# Hardened as Debian's policy asks (lintian: hardening-no-relro, -no-bindnow), and the unwind
# tables discarded at link time, not cut out by strip (which once dropped PT_GNU_RELRO).
headers=$(readelf -lW "$shipped")
grep -q 'GNU_RELRO' <<<"$headers" || { echo "check-binary: FAIL: $shipped has no PT_GNU_RELRO (link with -z relro)" >&2; exit 1; }
readelf -dW "$shipped" | grep -Eq 'BIND_NOW|FLAGS_1.*NOW' || { echo "check-binary: FAIL: $shipped is not linked with -z now" >&2; exit 1; }
sections=$(readelf -SW "$shipped")
if grep -q 'GNU_EH_FRAME' <<<"$headers" || grep -q '\.eh_frame' <<<"$sections"; then
  echo "check-binary: FAIL: $shipped carries unwind tables or their header (scripts/no-unwind-tables.ld)" >&2
  exit 1
fi
# Read-only data stays read-only (scripts/read-only-rodata.ld): one writable input once made
# all 2.7 MB of .rodata writable, and kept its pages from being dropped with the idle code.
if sed 's/^ *\[ *[0-9]*\]//' <<<"$sections" | awk '$1 == ".rodata" && $7 ~ /W/ { found = 1 } END { exit !found }'; then
  echo "check-binary: FAIL: $shipped has a writable .rodata (scripts/read-only-rodata.ld)" >&2
  exit 1
fi
# The runtime's backtracer buffers are zero pages, not zeros in the file
# (scripts/zero-filled-backtrace.ld), which is right only while the runtime's section holds
# nothing but zeros and no relocation: checked in the static library the binary was linked from.
if ! sed 's/^ *\[ *[0-9]*\]//' <<<"$sections" | awk '$1 == "swift5_backtrace" && $2 == "NOBITS" { found = 1 } END { exit !found }'; then
  echo "check-binary: FAIL: $shipped carries swift5_backtrace as file bytes (scripts/zero-filled-backtrace.ld)" >&2
  exit 1
fi
runtime=$(dirname "$(dirname "$(readlink -f "$(command -v swift)")")")/lib/swift_static/linux/libswiftCore.a
scratch=$(mktemp -d)
(cd "$scratch" && ar x "$runtime" Backtrace.cpp.o && objcopy -O binary --only-section=swift5_backtrace Backtrace.cpp.o section.bin)
nonzero=$(tr -d '\0' < "$scratch/section.bin" | wc -c)
relocated=$(readelf -rW "$scratch/Backtrace.cpp.o" | grep -c "rela.*swift5_backtrace" || true)
rm -rf "$scratch"
if [ "$nonzero" -ne 0 ] || [ "$relocated" -ne 0 ]; then
  echo "check-binary: FAIL: the runtime's swift5_backtrace now holds data ($nonzero non-zero bytes, $relocated relocation sections): drop scripts/zero-filled-backtrace.ld" >&2
  exit 1
fi
echo "check-binary: full RELRO, no unwind tables, read-only .rodata, zero-filled backtracer buffers"
# The .bss a lead writes sits together at its start (scripts/lead-data.order, made by
# scripts/lead-data-order.sh; docs/benchmarks.md has what it saves). A link that ignored the
# order would spread the listed symbols over the whole of .bss.
order=${LEAD_DATA_ORDER:-scripts/lead-data.order}
python3 - "$unstripped" "$order" <<'PY' || exit 1
import subprocess, sys
binary, order = sys.argv[1], sys.argv[2]
sections = subprocess.run(["readelf", "-SW", binary], check=True, capture_output=True, text=True).stdout
fields = next(line.split("]", 1)[1].split() for line in sections.splitlines() if "]" in line and line.split("]", 1)[1].split()[:1] == [".bss"])
start, size = int(fields[2], 16), int(fields[4], 16)
listed = {line.strip() for line in open(order) if line.strip()}
symbols = subprocess.run(["nm", binary], check=True, capture_output=True, text=True).stdout
starts = [int(parts[0], 16) - start for parts in (line.split() for line in symbols.splitlines())
        if len(parts) == 3 and parts[2] in listed and start <= int(parts[0], 16) < start + size]
if not starts:
    sys.exit(f"check-binary: FAIL: none of the symbols in {order} is in the .bss of {binary}")
if max(starts) * 4 > size * 3:
    sys.exit(f"check-binary: FAIL: the .bss a lead writes ({len(starts)} symbols of {order}) starts as far as byte {max(starts)} of {size}; the link did not take the order")
print(f"check-binary: the .bss a lead writes ({len(starts)} symbols) starts within the first {max(starts) // 1024} of {size // 1024} KiB")
PY
size=$(stat -c %s "$shipped")
# Issue 14: "stripped pimesh ≤ 25 MB", in bytes as the issue counts them.
budget=25000000
if [ "$size" -gt "$budget" ]; then
  echo "check-binary: FAIL: stripped binary is $size bytes, over the 25,000,000-byte budget (issue 14)" >&2
  exit 1
fi
awk -v u="$unstripped" -v s="$shipped" -v n="$size" \
  'BEGIN { printf "check-binary: ok: no full Foundation or ICU in %s; stripped %s is %.1f MiB (%d bytes; budget 25,000,000)\n", u, s, n / 1048576, n }'
# The man page and completions `make release` generates cover every command, today's included.
for file in .build/man/pimesh.1 .build/completions/pimesh.bash .build/completions/_pimesh .build/completions/pimesh.fish; do
  grep -q 'reload' "$file" && grep -q 'sim-agent' "$file" || { echo "check-binary: FAIL: $file is missing or stale" >&2; exit 1; }
done
echo "check-binary: man page and bash/zsh/fish completions ok"
