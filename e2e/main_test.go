// Package e2e tests podtail against a real Podman (Debian's package) and a
// real Loki (built from its Go module), both started here. Run it through
// the test bed, which installs and builds what these tests need:
//
//	e2e/testbed/testbed.sh go test -count=1 -v ./e2e/
//
// Without the test bed's environment (PODTAIL_E2E=1) the tests skip, saying
// why; with it, a missing part is a failure, never a skip.
package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podtail/podtail/e2e/testbed"
)

// bed is what TestMain started, shared by the tests (which run one by one).
var bed struct {
	skip     string
	dir      string
	podtail  string // binary
	zaplog   string // the zap + lumberjack test app, static
	panicker string // the app that dies of a Go panic on stderr, static
	image    string
	lokiURL  string
	socket   string // unix:// URI of the shared Podman service
	runID    string // makes tenants and container names unique per run
	services []*testbed.Service
	loki     *testbed.Loki
}

func TestMain(m *testing.M) {
	code, err := setup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e setup:", err)
		teardown()
		os.Exit(1)
	}
	if code < 0 {
		code = m.Run()
	}
	teardown()
	os.Exit(code)
}

func setup() (int, error) {
	if os.Getenv("PODTAIL_E2E") != "1" {
		bed.skip = "PODTAIL_E2E is not 1: run through e2e/testbed/testbed.sh (make test)"
		return -1, nil
	}
	for _, env := range []string{"PODTAIL_LOKI_BIN", "PODTAIL_TEST_IMAGE", "CONTAINERS_CONF"} {
		if os.Getenv(env) == "" {
			return 1, fmt.Errorf("%s is not set; run through e2e/testbed/testbed.sh", env)
		}
	}
	dir, err := os.MkdirTemp("", "podtail-e2e-")
	if err != nil {
		return 1, err
	}
	bed.dir = dir
	bed.image = os.Getenv("PODTAIL_TEST_IMAGE")
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	bed.runID = hex.EncodeToString(b)

	bed.podtail = filepath.Join(dir, "podtail")
	bed.zaplog = filepath.Join(dir, "zaplog")
	bed.panicker = filepath.Join(dir, "panicker")
	for bin, pkg := range map[string]string{bed.podtail: "../cmd/podtail", bed.zaplog: "./apps/zaplog", bed.panicker: "./apps/panicker"} {
		build := exec.Command("go", "build", "-o", bin, pkg)
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			return 1, fmt.Errorf("build %s: %v\n%s", pkg, err, out)
		}
	}
	if bed.loki, err = testbed.StartLoki(filepath.Join(dir, "loki")); err != nil {
		return 1, err
	}
	bed.lokiURL = bed.loki.URL
	sock := filepath.Join(dir, "podman.sock")
	svc, err := testbed.StartPodmanService(sock)
	if err != nil {
		return 1, err
	}
	bed.services = append(bed.services, svc)
	bed.socket = "unix://" + sock
	return -1, nil
}

func teardown() {
	for _, s := range bed.services {
		s.Stop()
	}
	if bed.loki != nil {
		bed.loki.Stop()
	}
	if bed.dir != "" && os.Getenv("PODTAIL_E2E_KEEP") == "" {
		os.RemoveAll(bed.dir)
	}
}

// needBed skips when the test bed is absent (plain `go test ./...`).
func needBed(t *testing.T) {
	t.Helper()
	if bed.skip != "" {
		t.Skip(bed.skip)
	}
}

// name makes a per-run unique name: tenant, container.
func name(parts ...string) string {
	return strings.Join(append(parts, bed.runID), "-")
}
