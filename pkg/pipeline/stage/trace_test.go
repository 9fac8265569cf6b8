package stage

import (
	"maps"
	"testing"
	"time"

	"github.com/podtail/podtail/pkg/pipeline"
)

// traceOne runs line through a traced choice of specs and returns the steps.
func traceOne(t *testing.T, specs []map[string]any, lines ...string) [][]Step {
	t.Helper()
	sel, err := NewSelector(SelectorConfig{Files: specs})
	if err != nil {
		t.Fatal(err)
	}
	var steps []Step
	p, names := sel.Select(Source{}, StreamFile).Trace(func(s Step) { steps = append(steps, s) })
	if len(names) != p.Len() {
		t.Fatalf("%d names for %d stages", len(names), p.Len())
	}
	var out [][]Step
	for _, l := range lines {
		steps = nil
		p.Process(rec(l))
		out = append(out, steps)
	}
	return out
}

// Each parser says whether it parsed a line, by the rules pipeline test
// documents (see Parse).
func TestTraceParse(t *testing.T) {
	for _, c := range []struct {
		spec map[string]any
		line string
		want Parse
	}{
		{map[string]any{"type": "zap"}, benchZapLine, ParseOK},
		{map[string]any{"type": "zap"}, "2024-11-25T08:00:00.000Z\tINFO\tmain.go:1\thi", ParseOK},
		{map[string]any{"type": "zap"}, "panic: boom", ParseFailed},
		{map[string]any{"type": "zap"}, `{"level":"info"`, ParseFailed},
		{map[string]any{"type": "zap"}, `{"msg":"no level"}`, ParseOK}, // log_level unknown
		{map[string]any{"type": "json_auto"}, "plain text", ParseSkipped},
		{map[string]any{"type": "json_auto"}, `{"level":"info",}`, ParseFailed},
		{map[string]any{"type": "json_auto"}, `{"level":"info"}`, ParseOK},
		{map[string]any{"type": "json", "expressions": map[string]any{"a": ""}}, `{"a":1}`, ParseOK},
		{map[string]any{"type": "json", "expressions": map[string]any{"a": ""}}, `a=1`, ParseFailed},
		{map[string]any{"type": "json", "expressions": map[string]any{"a": ""}, "source": "x"}, `a=1`, ParseSkipped},
		{map[string]any{"type": "logfmt"}, `level=info msg="hi there"`, ParseOK},
		{map[string]any{"type": "logfmt"}, `a= b`, ParseOK},
		{map[string]any{"type": "logfmt"}, `a="" b`, ParseOK},
		{map[string]any{"type": "logfmt"}, `hello world`, ParseFailed},
		{map[string]any{"type": "logfmt"}, ``, ParseFailed},
		{map[string]any{"type": "regex", "expression": `^(?P<user>\w+)/`}, "beiluo/x", ParseOK},
		{map[string]any{"type": "regex", "expression": `^(?P<user>\w+)/`}, "-", ParseFailed},
		{map[string]any{"type": "labels", "level": ""}, "x", ParseNone},
	} {
		steps := traceOne(t, []map[string]any{c.spec}, c.line)[0]
		if len(steps) != 1 || steps[0].Parse != c.want {
			t.Errorf("%v on %q: %+v, want %q", c.spec, c.line, steps, c.want)
		}
	}
}

// A step reports what its stage set or changed, the time and where it came
// from, the line after it, and drops; a timestamp stage that cannot read
// its field fails and says which value.
func TestTraceSteps(t *testing.T) {
	specs := []map[string]any{
		{"type": "multiline", "first_line": `^\S`},
		{"type": "regex", "expression": `^(?P<ts>\S+) (?P<level>\w+) (?P<msg>.*)$`},
		{"type": "timestamp", "source": "ts", "format": "RFC3339", "fallback_formats": []any{"UnixMs"}},
		{"type": "labels", "level": ""},
		{"type": "redact", "patterns": []any{"password"}},
		{"type": "drop", "source": "level", "value": "debug"},
	}
	out := traceOne(t, specs,
		"2024-11-25T00:00:01Z info login password=hunter2",
		"1732492802000 warn slow",
		"yesterday debug x",
	)
	first := out[0]
	if len(first) != 5 {
		t.Fatalf("steps %+v", first)
	}
	if s := first[0]; s.Parse != ParseOK || s.Fields["level"] != "info" || s.TimeSet {
		t.Errorf("regex step %+v", s)
	}
	if s := first[1]; s.Parse != ParseOK || !s.TimeSet || !s.Time.Equal(time.Unix(1732492801, 0)) || s.TimeFrom != "field ts (RFC3339)" {
		t.Errorf("timestamp step %+v", s)
	}
	if s := first[2]; !maps.Equal(s.Labels, map[string]string{"level": "info"}) || len(s.Fields) != 0 {
		t.Errorf("labels step %+v", s)
	}
	if s := first[3]; !s.LineChanged || s.Line != "2024-11-25T00:00:01Z info login password=****" || s.Note != "1 masked in the line" ||
		s.Fields["msg"] != "login password=****" {
		t.Errorf("redact step %+v", s)
	}
	if s := first[4]; !s.Keep || s.Note != "no match" {
		t.Errorf("drop step %+v", s)
	}
	if s := out[1][1]; s.TimeFrom != "field ts (UnixMs)" || !s.Time.Equal(time.Unix(1732492802, 0)) {
		t.Errorf("fallback format step %+v", s)
	}
	third := out[2]
	if s := third[1]; s.Parse != ParseFailed || s.Note != `no format reads ts="yesterday"` ||
		s.TimeFrom != "the last time read + 1ns, action_on_failure fudge" || !s.Time.Equal(time.Unix(1732492802, 1)) {
		t.Errorf("failed timestamp step %+v", s)
	}
	if s := third[len(third)-1]; s.Keep || s.DropReason != "drop_stage" || s.Note != "matched" {
		t.Errorf("dropping step %+v", s)
	}
	if s := third[2]; s.Stage != 2 {
		t.Errorf("stage index %d, want 2", s.Stage)
	}
}

// Trace names stages by their place in the list as configured (a leading
// multiline spec counts), and a traced zap stage fills Fields even as the
// last stage of a Stream's pipeline.
func TestTraceNames(t *testing.T) {
	sel, err := NewSelector(SelectorConfig{Apps: []App{{Match: Match{Application: "a"}, Files: []map[string]any{
		{"type": "multiline", "first_line": `^\{`}, {"type": "zap"},
	}}}})
	if err != nil {
		t.Fatal(err)
	}
	var steps []Step
	p, names := sel.Select(Source{Application: "a"}, StreamFile).Trace(func(s Step) { steps = append(steps, s) })
	if len(names) != 1 || names[0] != (TracedStage{Place: "apps[0].files[1]", Type: "zap"}) {
		t.Errorf("names %+v", names)
	}
	pipeline.NewStream(pipeline.StreamConfig{}, p, pipeline.Sink{})
	p.Process(rec(benchZapLine))
	if len(steps) != 1 || steps[0].Fields["request_id"] == "" {
		t.Errorf("steps %+v: want the zap stage's fields", steps)
	}
	var none *Choice
	if p, names := none.Trace(nil); p.Len() != 0 || names != nil {
		t.Errorf("nil choice: %d stages, names %v", p.Len(), names)
	}
}
