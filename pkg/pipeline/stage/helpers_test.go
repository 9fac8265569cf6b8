package stage

import (
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/podtail/podtail/pkg/pipeline"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// t0 is the source's time in tests: distinct from every time in the lines.
var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// mustBuild builds specs or fails the test.
func mustBuild(t testing.TB, specs ...map[string]any) *pipeline.Pipeline {
	t.Helper()
	return pipeline.New(mustStages(t, specs...)...)
}

// mustStages is mustBuild's stages, for a test that reaches into one (its
// clock, its decoded options) before it makes them a pipeline.
func mustStages(t testing.TB, specs ...map[string]any) []pipeline.Stage {
	t.Helper()
	stages, err := buildStages(specs, stageNumber)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return stages
}

// asStreamRuns builds specs and binds them to a Stream, as a source does:
// NewStream tells the last stage that nothing reads Fields after it
// (pipeline.FieldsSkipper).
func asStreamRuns(t testing.TB, specs ...map[string]any) *pipeline.Pipeline {
	t.Helper()
	p := mustBuild(t, specs...)
	pipeline.NewStream(pipeline.StreamConfig{}, p, pipeline.Sink{})
	return p
}

// rec is a fresh record for line at t0, with maps as Stream passes them.
func rec(line string) *pipeline.Record {
	return &pipeline.Record{Time: t0, Line: line, Fields: map[string]string{}, Labels: map[string]string{}}
}

// process runs p (a pipeline, or one stage) on a fresh record of line.
func process(p pipeline.Stage, line string) (*pipeline.Record, bool, string) {
	r := rec(line)
	keep, reason := p.Process(r)
	return r, keep, reason
}

func metadata(r *pipeline.Record, name string) (string, bool) {
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
