# mailwarden build and test entry points. `make test` is the README's test
# command and what CI runs.
GO ?= go

.PHONY: build test unit fuzz bench bench-e2e bench-scale soak screenshots clean

build:
	$(GO) build -o bin/mailwarden ./cmd/mailwarden

# Everything: installs and starts what the integration tests need (as
# root), then vet, govulncheck (reported; skipped with a note when it
# cannot be had), unit and fuzz-seed tests under the race detector (the
# store conformance suites run there against real Redis, Cluster
# included), then the integration and browser tests, which drive the
# built binary beside real daemons and run without it.
test:
	./test/setup.sh
	$(GO) vet ./...
	GO=$(GO) ./test/vulncheck.sh
	$(GO) test -race -count=1 -timeout 20m ./internal/... ./cmd/... ./bench/...
	$(GO) test -count=1 -timeout 20m ./test/...

# Unit tests only: no root, no real programs.
unit:
	$(GO) test -count=1 ./internal/... ./cmd/...

# Fuzz every parser of untrusted input for FUZZTIME each. The targets are
# found in the source, so a new Fuzz function is fuzzed without editing
# this file; go test -fuzz takes one target per run. Crashers land in the
# package's testdata/fuzz/FuzzX/ and are then part of every `go test`.
FUZZTIME ?= 30s
FUZZFLAGS ?=
fuzz:
	@set -e; grep -rl --include='*_test.go' '^func Fuzz' cmd internal | sort | while read -r f; do \
		dir=./$$(dirname "$$f"); \
		for t in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$$f"); do \
			echo "== $$dir $$t ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) $(FUZZFLAGS) "$$dir"; \
		done; \
	done

bench:
	./bench/run.sh

# Mail through a real Postfix, end to end, as an administrator sees it
# (as root): Postfix alone, no-op milters, mailwarden's paths, and, when
# the shared reference systems' script is there, clamav-milter and
# rspamd, in alternating rounds in one run (BENCHMARKS.md, "End to
# end"). E2E_N, E2E_N_LARGE, E2E_SESSIONS, E2E_ROUNDS and E2E_PATHS
# change the load; E2E_ANCHORS= leaves the reference systems out.
E2E_ANCHORS ?= $(abspath $(wildcard ../shared/bench/anchors.sh))
bench-e2e:
	./test/setup.sh
	E2E_ANCHORS=$(E2E_ANCHORS) CI=true $(GO) test -count=1 -run '^$$' -bench '^BenchmarkE2E$$' -benchtime 1x -timeout 90m -v ./test/integration/

# Both stores at scale (issue 17; BENCHMARKS.md, "Store at scale"):
# greylist triplets in steps of SCALE_SIZES through each backend in
# SCALE_BACKENDS, with insert rate, decision latency, space per entry
# and expiry cost at each step. The redis half starts its own
# redis-server on a free loopback port. Ten million triplets take tens
# of minutes and, for SQLite, about 5 GB of disk and of memory.
SCALE_SIZES ?= 100000,1000000,10000000
SCALE_BACKENDS ?= sqlite redis
bench-scale:
	@set -e; for b in $(SCALE_BACKENDS); do \
		$(GO) run ./bench/cmd/greyscale -backend $$b -sizes $(SCALE_SIZES); \
	done

# The fault test under a longer load (as root, after test/setup.sh):
# 10,000 messages (2,000 by default) through Postfix while the daemon
# is killed, clamd stopped, the disk filled and the store made
# unwritable (docs/reliability.md, "Faults under load").
soak:
	MAILWARDEN_SOAK=1 CI=true $(GO) test -count=1 -timeout 15m -v -run '^TestFaultsUnderLoad$$' ./test/integration/

# The dashboard screenshots the README shows, taken by the browser test
# (as root, after test/setup.sh) from a daemon with Day A's evidence.
screenshots:
	MAILWARDEN_SCREENSHOTS=$(CURDIR)/docs/screenshots $(GO) test -count=1 -run '^TestDashboardScreenshots$$' ./test/integration/

clean:
	rm -rf bin
