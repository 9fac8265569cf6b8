# podtail — the two commands a fresh Debian machine needs:
#   make demo   start Podman, a local Loki, two tenants' apps and podtail; query the logs back per tenant
#   make test   formatting, vet, unit tests (and again under the race detector), and the e2e suite against real Podman and Loki
#
# A static binary (the sidecar image is FROM scratch); the race detector alone needs cgo.
export CGO_ENABLED := 0
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
TESTBED := e2e/testbed/testbed.sh
# Every package but the e2e suite runs under the race detector (pkg/podman uses
# only the bindings' connection, which builds under cgo without btrfs or gpgme headers).
RACE_PKGS = $$(go list ./... | grep -v /e2e)
# Fuzz targets, each run for FUZZTIME in make test (a few seconds each) (go test runs one target per call).
FUZZ := ./pkg/source/:FuzzParseCRI ./pkg/source/:FuzzParseConmonTime ./pkg/discovery/:FuzzValidTenant ./pkg/pipeline/stage/:FuzzZap ./pkg/pipeline/stage/:FuzzLogfmt ./pkg/pipeline/:FuzzMultiline ./pkg/discovery/:FuzzFileRules ./pkg/pipeline/:FuzzSanitizeRender \
	./pkg/journal/:FuzzReadFile ./pkg/journal/:FuzzParseCursor
# By executions, not seconds: a time limit can end a run with "context deadline
# exceeded" reported as a failure, with no crasher (seen here). Minimising a new
# input is bounded by time: FuzzReadFile's 60 KB journal files took minutes each.
FUZZTIME ?= 40000x

.PHONY: man e2e-clock build check unit race fuzz contrib e2e test demo bench bench-ab clean soak soak-short
build:
	go build -ldflags "-X main.version=$(VERSION)" -o bin/podtail ./cmd/podtail

check:
	@out=$$(gofmt -l cmd pkg e2e bench soak); if [ -n "$$out" ]; then echo "gofmt wanted on:"; echo "$$out"; exit 1; fi
	go vet ./...

unit:
	go test -count=1 $$(go list ./... | grep -v /e2e)

race:
	CGO_ENABLED=1 go test -race -count=1 $(RACE_PKGS)

fuzz:
	@for t in $(FUZZ); do pkg=$${t%%:*}; fn=$${t##*:}; echo "fuzz $$fn ($$pkg) for $(FUZZTIME)"; \
		go test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 2s $$pkg || exit 1; done

# Quadlet units through Podman's generator (dry run), systemd-analyze verify, every shipped config, and the
# lint of dashboards, alert and ruler rules and the Loki config (e2e/lokibuild/lint, cached in ~/.cache/podtail).
# Through the test bed: systemd-analyze verify refuses the Quadlet units while /usr/bin/podman, their ExecStart,
# is missing (as on a fresh machine before the e2e step installed it), and the lint builds in seconds once
# the test bed has built Loki, whose packages it shares.
contrib:
	$(TESTBED) bash contrib/check.sh

# The e2e suite in both host profiles (e2e/testbed/testbed.sh): Debian's Podman 4.3.1 with k8s-file logs
# and file events, then Podman 5.8.2 with journald logs and events, as on users' systemd hosts. Tests whose
# subject does not depend on where container output goes skip themselves in the second (sameInBothProfiles).
# The output is kept in bin/e2e-<profile>.log; on failure the failed tests' messages are repeated at the end.
E2E_PROFILES := podman4-file podman5-journald
e2e:
	@mkdir -p bin
	@for p in $(E2E_PROFILES); do echo "== e2e, profile $$p"; \
		bash -c "set -o pipefail; PODTAIL_PROFILE=$$p $(TESTBED) go test -count=1 -v -timeout 40m ./e2e/ 2>&1 | tee bin/e2e-$$p.log" || \
		{ echo "== e2e failed in profile $$p; what the failed tests said (all of it: bin/e2e-$$p.log):"; awk -f e2e/failures.awk bin/e2e-$$p.log; exit 1; }; done

test: check unit race fuzz contrib e2e soak-short

# The soak (issue 21, go run ./soak -help): on real Podman and Loki, in both host profiles, containers started and
# removed every second with 30 running, zap apps rotating their files (in containers and under files.static),
# podtail SIGKILLed every 10 minutes and Loki restarted twice; at the end every line written is read back from Loki
# and must be there exactly once, and RSS at the end within 10 % of RSS after the first 10 minutes. podtail's RSS,
# goroutines, open files, positions file and inotify watches are sampled every 10 s: bin/soak-<profile>.md, its
# .png, -samples.csv, -events.csv and -podtail.log. make soak is the hour (not in make test); soak-short, 5 minutes
# per profile (~6 with catch-up and checks, ~9 when lines are missing; podtail killed every 100 s; RSS reported,
# not checked), runs in make test after the e2e suite.
SOAK_DURATION ?= 1h
soak-run = @mkdir -p bin; for p in $(E2E_PROFILES); do echo "== soak $(1), profile $$p"; \
	PODTAIL_PROFILE=$$p $(TESTBED) go run ./soak -duration $(1) -out bin/soak-$$p || \
	{ echo "== soak failed in profile $$p: bin/soak-$$p.md, podtail's log bin/soak-$$p-podtail.log"; exit 1; }; done
soak: build
	$(call soak-run,$(SOAK_DURATION))
soak-short: build
	$(call soak-run,5m)

# The e2e test that steps this machine's clock back an hour and forward again
# (positions must survive it); not in make test, as CI's timing would see it.
e2e-clock:
	@for p in $(E2E_PROFILES); do echo "== e2e clock step, profile $$p"; \
		PODTAIL_PROFILE=$$p PODTAIL_E2E_STEP_CLOCK=1 $(TESTBED) go test -count=1 -v -timeout 20m -run TestClockSteppedBack ./e2e/ || exit 1; done

# Man pages, generated from the commands' own help (see cmd/podtail/man.go).
man: build
	bin/podtail man --dir bin/man

# The test bed's preparation (Podman from apt, Loki's modules and build) runs while podtail builds: on a fresh
# machine the downloads then overlap the compiles.
demo:
	@bash -c 'set -e; $(TESTBED) & prep=$$!; $(MAKE) --no-print-directory build || { wait $$prep; exit 1; }; wait $$prep'
	$(TESTBED) go run ./e2e/demo -podtail bin/podtail

# podtail against Promtail and Alloy (built from their modules by bench/promtailbuild and bench/alloybuild,
# cached; Alloy's first build takes 13+ minutes) on the same files,
# containers and Loki-protocol sink, plus the necessary-work bound and a CPU profile; not part of make test.
# BENCHFLAGS=-quick for a short run (see go run ./bench -help).
bench: build
	$(TESTBED) go run ./bench -podtail bin/podtail $(BENCHFLAGS)

# A/B: the bench with git revision BASE's podtail (default HEAD~1) as podtail-base beside this tree's, in
# turn with its runs, and an A/B section in the report (-baseline in go run ./bench -help). BASE is checked
# out into a temporary git worktree, removed afterwards (the working tree is left alone), and built there by
# this Makefile's build target into bin/podtail-base. make bench-ab BASE=main BENCHFLAGS=-quick, say.
# The sub-make goes by another name than $(MAKE): a line naming $(MAKE) runs even under make -n, and this
# one also adds and removes a worktree.
BASE ?= HEAD~1
BUILD_BASE = $(MAKE) --no-print-directory -f $(CURDIR)/Makefile
bench-ab: build
	@set -e; rev=$$(git rev-parse --verify --quiet '$(BASE)^{commit}') || { echo "bench-ab: BASE=$(BASE) is not a commit"; exit 1; }; \
		tmp=$$(mktemp -d -t podtail-base-XXXXXX); \
		trap 'git worktree remove --force "$$tmp" 2>/dev/null; rm -rf "$$tmp"' EXIT; trap 'exit 130' INT TERM; \
		echo "bench-ab: building $(BASE) ($$rev) in $$tmp"; \
		git worktree add --quiet --detach "$$tmp" "$$rev"; \
		$(BUILD_BASE) -C "$$tmp" build; \
		cp "$$tmp/bin/podtail" bin/podtail-base
	$(TESTBED) go run ./bench -podtail bin/podtail -baseline bin/podtail-base $(BENCHFLAGS)

clean:
	rm -rf bin
