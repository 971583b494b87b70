# pimesh — build, demo and test on Debian 12 (as root, or with sudo).
SWIFT      ?= swift
RELEASE    := -c release --static-swift-stdlib
DEBUG_BIN  := .build/debug/pimesh
# The unstripped release binary is kept for `nm`; .build/pimesh is the stripped one to ship.
RELEASE_BIN := .build/release/pimesh
SHIP_BIN    := .build/pimesh

# promtool (Debian package prometheus) checks /metrics in the tests; the demo does not need it.
.PHONY: deps test-deps build release demo test test-swift test-python check-binary clean

deps:
	@scripts/install-deps.sh

# promtool checks /metrics; moto's S3 server receives snapshot uploads in the tests; schemathesis
# fuzzes the API from docs/openapi.yaml.
test-deps:
	@scripts/install-deps.sh prometheus python3-pip curl
	@python3 -c "import moto.server" 2>/dev/null || python3 -m pip install --quiet --break-system-packages "moto[server]"
	@python3 -c "import schemathesis" 2>/dev/null || python3 -m pip install --quiet --break-system-packages "schemathesis>=4.1,<5"

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build $(RELEASE) --product pimesh
	strip -o $(SHIP_BIN) $(RELEASE_BIN)
	@ls -l $(SHIP_BIN) | awk '{printf "release binary %s: %.1f MB stripped\n", $$9, $$5/1048576}'

demo: release
	@scripts/demo.sh $(SHIP_BIN)

test: deps test-deps test-swift test-python check-binary

# One suite at a time: the end-to-end suites load a 2-core machine with swarms and thousands of
# tasks, and the LED timing tests measure ±20 ms; side by side they would measure each other.
test-swift:
	$(SWIFT) build --build-tests
	PIMESH_BIN=$(CURDIR)/$(DEBUG_BIN) $(SWIFT) test --no-parallel

test-python:
	$(SWIFT) build --product pimesh
	PIMESH_BIN=$(CURDIR)/$(DEBUG_BIN) python3 -m unittest discover -s clients/python -p 'test_*.py' -v

check-binary: release
	@scripts/check-binary.sh $(RELEASE_BIN) $(SHIP_BIN)

clean:
	rm -rf .build
