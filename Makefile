# pimesh — build, demo and test on Debian 12 (as root, or with sudo).
SWIFT      ?= swift
# lld (shipped with every Swift toolchain) packs the ~85,000 relative relocations of the static
# Swift runtime as RELR (glibc 2.36+): a smaller binary, and each process it starts (the lead,
# every `pimesh agent`) relocates itself faster.
# SwiftPM links executables with --export-dynamic (for tests that link them); a Pi binary
# exports nothing, and without it the dynamic symbol table (3.3 MB of names) and the code only
# those exports kept alive go: 33.4 MB stripped before, 29.8 after. Addresses from a core dump
# are named by `llvm-symbolizer --obj=.build/release/pimesh` (the unstripped twin).
# Each function in a section of its own lets --gc-sections drop the ones nothing calls (1.5 MB),
# and lets lld place the functions a lead runs side by side (scripts/lead-hot.order, made by
# `make lead-order` from a profiled bench on x86-64): fault-around then maps less of the text.
# -z now binds every import at start so the whole GOT is read-only after it (full RELRO).
# The unwind tables (.eh_frame and its index, 4.6 MiB) are discarded at link time
# (scripts/no-unwind-tables.ld): no pimesh frame is ever unwound. Swift errors are return
# values, no C++ exception may cross a Swift frame, BoringSSL's C++ cleanups never run because nothing in it throws, nothing reachable
# calls pthread_exit or pthread_cancel (glibc unwinds for those; libdispatch's dispatch_main, which
# pimesh never calls, is the only importer), and a Swift runtime trap ends the process with a
# signal (SIGILL on x86-64, SIGTRAP on arm64) and no backtrace with or without them; the runtime's
# "Current stack trace" after some fatal errors (an exclusivity violation) comes out empty. gdb
# and the Swift backtracer walk the frame pointers, which Swift keeps on Linux; addresses
# from a core dump are named from the unstripped twin, .build/release/pimesh (keep it with each
# release, under its build id). `perf --call-graph=dwarf` loses frames; use --call-graph=fp.
# lld takes one order file: the functions a lead runs (scripts/lead-hot.order) and the .bss it
# writes (scripts/lead-data.order, `make lead-data-order`), joined.
LINK_ORDER := .build/lead.order
RELEASE    := -c release --static-swift-stdlib -Xswiftc -use-ld=lld -Xlinker -z -Xlinker pack-relative-relocs -Xlinker --no-export-dynamic \
              -Xlinker -z -Xlinker relro -Xlinker -z -Xlinker now \
              -Xswiftc -Xfrontend -Xswiftc -function-sections -Xcc -ffunction-sections -Xcc -fdata-sections \
              -Xlinker "--symbol-ordering-file=$(CURDIR)/$(LINK_ORDER)" -Xlinker --no-warn-symbol-ordering \
              -Xlinker "$(CURDIR)/scripts/no-unwind-tables.ld" -Xlinker --no-eh-frame-hdr \
              -Xlinker "$(CURDIR)/scripts/read-only-rodata.ld" -Xlinker "$(CURDIR)/scripts/zero-filled-backtrace.ld" -Xlinker --icf=safe \
              $(if $(LINK_MAP),-Xlinker -Map=$(LINK_MAP) -Xlinker --no-demangle)
# --icf=safe folds functions whose code is identical where nothing takes their address
# (12,288 bytes at 8096a49: 25,010,344 -> 24,998,056 stripped).
# SwiftPM relinks when an object changes, not when one of these does.
LINK_INPUTS := scripts/lead-hot.order scripts/lead-data.order scripts/no-unwind-tables.ld scripts/read-only-rodata.ld scripts/zero-filled-backtrace.ld
DEBUG_BIN  := .build/debug/pimesh
# The unstripped release binary is kept for `nm`; .build/pimesh is the stripped one to ship.
RELEASE_BIN := .build/release/pimesh
SHIP_BIN    := .build/pimesh
# The fleet's receiver of snapshots runs on a server, never on a Pi: a binary of its own.
COORDINATOR_BIN := .build/pimesh-coordinator

# promtool (Debian package prometheus) checks /metrics in the tests; the demo does not need it.
.PHONY: deps test-deps build release coordinator cli-docs deb demo test test-swift test-python test-packaging check-binary bench-check bench-thresholds lead-order lead-data-order clean

deps:
	@scripts/install-deps.sh

# promtool checks /metrics; moto's S3 server receives snapshot uploads in the tests; schemathesis
# fuzzes the API from docs/openapi.yaml; `pimesh bench run --compare supervisord` runs PyPI's
# supervisord (Debian's package would also start a system-wide one); `--compare systemd-run` runs
# beside systemd booted in namespaces of the test's own (scripts/systemd-container.sh: systemd,
# util-linux's unshare and nsenter, procps's pgrep).
test-deps:
	@scripts/install-deps.sh prometheus python3-pip curl stress-ng lintian mmdebstrap qemu-user-static gcc-aarch64-linux-gnu libc6-dev-arm64-cross fdisk mtools dosfstools systemd util-linux procps
	@python3 -c "import moto.server" 2>/dev/null || python3 -m pip install --quiet --break-system-packages "moto[server]"
	@python3 -c "import schemathesis" 2>/dev/null || python3 -m pip install --quiet --break-system-packages "schemathesis>=4.1,<5"
	@command -v supervisord >/dev/null || python3 -m pip install --quiet --break-system-packages "supervisor>=4.2,<5"

build: deps
	$(SWIFT) build

relink_if_stale = if [ -e $(1) ] && [ -n "$$(find $(LINK_INPUTS) -newer $(1))" ]; then rm -f $(1); fi

$(LINK_ORDER): scripts/lead-hot.order scripts/lead-data.order
	@mkdir -p $(dir $@)
	awk 1 $^ > $@

release: deps $(LINK_ORDER)
	@$(call relink_if_stale,$(RELEASE_BIN))
	$(SWIFT) build $(RELEASE) --product pimesh
	strip -o $(SHIP_BIN) $(RELEASE_BIN)
	@ls -l $(SHIP_BIN) | awk '{printf "release binary %s: %.1f MiB stripped\n", $$9, $$5/1048576}'
	@$(MAKE) --no-print-directory cli-docs DOCS_BIN=$(SHIP_BIN)

coordinator: deps $(LINK_ORDER)
	@$(call relink_if_stale,.build/release/pimesh-coordinator)
	$(SWIFT) build $(RELEASE) --product pimesh-coordinator
	strip -o $(COORDINATOR_BIN) .build/release/pimesh-coordinator
	@ls -l $(COORDINATOR_BIN) | awk '{printf "coordinator binary %s: %.1f MiB stripped\n", $$9, $$5/1048576}'

# The man page and shell completions, generated by swift-argument-parser from the commands
# themselves (so they never disagree with --help): .build/man/pimesh.1, .build/completions/.
DOCS_BIN ?= $(DEBUG_BIN)
cli-docs:
	$(SWIFT) build --product generate-manual
	@mkdir -p .build/man .build/completions
	.build/debug/generate-manual $(DOCS_BIN) --output-directory .build/man
	$(DOCS_BIN) --generate-completion-script bash > .build/completions/pimesh.bash
	$(DOCS_BIN) --generate-completion-script zsh > .build/completions/_pimesh
	$(DOCS_BIN) --generate-completion-script fish > .build/completions/pimesh.fish
	@echo "man page .build/man/pimesh.1, completions in .build/completions"

# make deb [ARCH=arm64|amd64] [BIN=path]: .build/deb/pimesh_<version>_<arch>.deb (docs/pi.md).
# Without BIN, the release binary of this machine is built first. An arm64 BIN comes from a Pi
# or an arm64 builder (pi/build-on-pi.sh); the man page and completions are the same for both.
ARCH ?= $(shell dpkg --print-architecture)
BIN ?=
deb:
	@if [ -z "$(BIN)" ]; then $(MAKE) --no-print-directory release; fi
	@if [ ! -f .build/man/pimesh.1 ]; then $(MAKE) --no-print-directory release; fi
	@scripts/build-deb.sh $(ARCH) $(or $(BIN),$(SHIP_BIN)) .build/deb

demo: release
	@scripts/demo.sh $(SHIP_BIN)

test: deps test-deps test-swift test-python check-binary test-packaging

# One suite at a time: the end-to-end suites load a 2-core machine with swarms and thousands of
# tasks, and the LED timing tests measure ±20 ms; side by side they would measure each other.
test-swift:
	$(SWIFT) build --build-tests
	PIMESH_BIN=$(CURDIR)/$(DEBUG_BIN) $(SWIFT) test --no-parallel

test-python:
	$(SWIFT) build --product pimesh
	PIMESH_BIN=$(CURDIR)/$(DEBUG_BIN) python3 -m unittest discover -s clients/python -p 'test_*.py' -v

# The .deb: lintian, Depends against the binary, install/upgrade/remove/purge in a Debian 12
# root, the arm64 package's structure with a qemu-run stub (pi/tests/test_packaging.py); the
# image injector and first boot (test_image.py); pimesh update from the debug build to the
# release build and back (test_update.py).
test-packaging: release
	$(SWIFT) build --product pimesh
	$(SWIFT) build --product pimesh-coordinator
	PIMESH_SHIP_BIN=$(CURDIR)/$(SHIP_BIN) PIMESH_BIN=$(CURDIR)/$(DEBUG_BIN) python3 -m unittest discover -s pi/tests -p 'test_*.py' -v

# Re-derives scripts/lead-hot.order from a profiled bench (root, linux-perf, a quiet machine).
ROUNDS ?= 2
lead-order: deps
	scripts/lead-hot-order.sh $(ROUNDS)

# Re-derives scripts/lead-data.order from a bench's lead (root, a quiet machine).
lead-data-order: deps
	scripts/lead-data-order.sh

check-binary: release
	@scripts/check-binary.sh $(RELEASE_BIN) $(SHIP_BIN)

clean:
	rm -rf .build

# Micro-benchmarks of the lead's hot paths (benchmarks/, ordo-one/benchmark): allocations and
# wall clock against benchmarks/Thresholds/. Not part of `make test`: the benchmark tool and a
# release build of the core take minutes. SwiftPM turns every failing plugin into exit 1, so the
# outcome is read from the plugin's own words: a regression exits 2, improvements only exit 0.
bench-check: deps
	@mkdir -p benchmarks/.build
	@cd benchmarks && { $(SWIFT) package --disable-sandbox benchmark thresholds check --no-progress 2>&1; echo "exit $$?"; } \
	  | tee .build/bench-check.log; \
	  if grep -q "benchmarkThresholdRegression" .build/bench-check.log; then echo "bench-check: REGRESSION (see above)"; exit 2; \
	  elif grep -q "benchmarkThresholdImprovement" .build/bench-check.log; then \
	    echo "bench-check: improvements only (make bench-thresholds records them)"; \
	  elif ! grep -qx "exit 0" .build/bench-check.log; then echo "bench-check: the benchmarks did not run"; exit 1; fi

# Records the current figures as the thresholds to check against (after an intended change).
bench-thresholds: deps
	cd benchmarks && $(SWIFT) package --disable-sandbox --allow-writing-to-package-directory benchmark thresholds update --no-progress

