package pipeline

import (
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// t0 is the source's time in tests: distinct from every time in the lines.
var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// mustBuild builds specs or fails the test.
func mustBuild(t testing.TB, specs ...map[string]any) *Pipeline {
	t.Helper()
	p, err := Build(specs)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return p
}

// rec is a fresh record for line at t0, with maps as Stream passes them.
func rec(line string) *Record {
	return &Record{Time: t0, Line: line, Fields: map[string]string{}, Labels: map[string]string{}}
}

// process runs p on a fresh record of line.
func process(p *Pipeline, line string) (*Record, bool, string) {
	r := rec(line)
	keep, reason := p.Process(r)
	return r, keep, reason
}

func metadata(r *Record, name string) (string, bool) {
	for _, m := range r.Metadata {
		if m.Name == name {
			return m.Value, true
		}
	}
	return "", false
}

// wantBuildErr checks that Build fails and that the error mentions every
// one of parts.
func wantBuildErr(t *testing.T, specs []map[string]any, parts ...string) {
	t.Helper()
	_, err := Build(specs)
	if err == nil {
		t.Fatalf("Build(%v) succeeded, want an error mentioning %q", specs, parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("Build(%v) error %q does not mention %q", specs, err, p)
		}
	}
}
