package stage

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/podtail/podtail/pkg/pipeline"
)

// TestDropConditions pins the drop stage's conditions, alone and together.
func TestDropConditions(t *testing.T) {
	type line struct {
		fields map[string]string
		labels map[string]string
		text   string
		age    time.Duration
	}
	cases := []struct {
		name string
		spec map[string]any
		in   line
		drop bool
	}{
		{"source exists", map[string]any{"source": "a"}, line{fields: map[string]string{"a": ""}}, true},
		{"source missing", map[string]any{"source": "a"}, line{}, false},
		{"value equal", map[string]any{"source": "a", "value": "x"}, line{fields: map[string]string{"a": "x"}}, true},
		{"value differs", map[string]any{"source": "a", "value": "x"}, line{fields: map[string]string{"a": "xy"}}, false},
		{"expression on source", map[string]any{"source": "a", "expression": "^x+$"}, line{fields: map[string]string{"a": "xxx"}}, true},
		{"expression on source, no match", map[string]any{"source": "a", "expression": "^x+$"}, line{fields: map[string]string{"a": "xyx"}, text: "xxx"}, false},
		{"expression on line", map[string]any{"expression": "health"}, line{text: "GET /healthz 200"}, true},
		{"expression on line, no match", map[string]any{"expression": "health"}, line{text: "GET / 200"}, false},
		{"older_than", map[string]any{"older_than": "1h"}, line{age: 2 * time.Hour}, true},
		{"not older_than", map[string]any{"older_than": "1h"}, line{age: 30 * time.Minute}, false},
		{"longer_than", map[string]any{"longer_than": 4}, line{text: "12345"}, true},
		{"not longer_than", map[string]any{"longer_than": 4}, line{text: "1234"}, false},
		{"level label", map[string]any{"level": []any{"debug", "info"}}, line{labels: map[string]string{"log_level": "debug"}}, true},
		{"level label other", map[string]any{"level": []any{"debug"}}, line{labels: map[string]string{"log_level": "error"}, fields: map[string]string{"level": "debug"}}, false},
		{"level field", map[string]any{"level": []any{"debug"}}, line{fields: map[string]string{"level": "DEBUG"}}, true},
		{"level unknown", map[string]any{"level": []any{"unknown"}}, line{labels: map[string]string{"log_level": "unknown"}}, true},
		{"all of them", map[string]any{"source": "a", "value": "x", "longer_than": 2, "level": []any{"info"}},
			line{fields: map[string]string{"a": "x"}, labels: map[string]string{"log_level": "info"}, text: "abc"}, true},
		{"all but one", map[string]any{"source": "a", "value": "x", "longer_than": 2, "level": []any{"info"}},
			line{fields: map[string]string{"a": "x"}, labels: map[string]string{"log_level": "info"}, text: "ab"}, false},
		{"no condition", map[string]any{}, line{}, true},
		{"ratio 0", map[string]any{"drop_ratio": 0}, line{text: "x"}, false},
	}
	for _, c := range cases {
		spec := map[string]any{"type": "drop"}
		for k, v := range c.spec {
			spec[k] = v
		}
		stages := mustStages(t, spec)
		stages[0].(*dropStage).now = func() time.Time { return t0 }
		p := pipeline.New(stages...)
		r := rec(c.in.text)
		r.Time = t0.Add(-c.in.age)
		for k, v := range c.in.fields {
			r.Fields[k] = v
		}
		for k, v := range c.in.labels {
			r.Labels[k] = v
		}
		keep, reason := p.Process(r)
		if keep == c.drop {
			t.Errorf("%s: keep = %v", c.name, keep)
		}
		if !keep && reason != "drop_stage" {
			t.Errorf("%s: reason %q", c.name, reason)
		}
	}
	p := mustBuild(t, map[string]any{"type": "drop", "expression": "x", "drop_counter_reason": "noise"})
	if _, _, reason := process(p, "x"); reason != "noise" {
		t.Errorf("reason %q", reason)
	}
}

// TestDropSampling pins sampling: "keep every error, 10% of info" drops
// 88-92% of 10,000 distinct info lines, keeps every error, and decides
// the same way for the same line every time (also in a new pipeline, as
// after a restart).
func TestDropSampling(t *testing.T) {
	specs := []map[string]any{
		{"type": "zap"},
		{"type": "drop", "level": []any{"info"}, "drop_ratio": 0.9, "drop_counter_reason": "sampled_info_logs"},
	}
	p := mustBuild(t, specs...)
	again := mustBuild(t, specs...)
	line := func(level string, i int) string {
		return fmt.Sprintf(`{"level":"%s","ts":%d.%06d,"caller":"svc/h.go:42","msg":"request %d served"}`, level, 1732492800+i/1000, i%1000*997, i)
	}
	dropped := 0
	for i := range 10000 {
		l := line("info", i)
		_, keep, reason := process(p, l)
		if !keep {
			dropped++
			if reason != "sampled_info_logs" {
				t.Fatalf("reason %q", reason)
			}
		}
		for _, q := range []*pipeline.Pipeline{p, again} {
			if _, k, _ := process(q, l); k != keep {
				t.Fatalf("line %d: decided %v, then %v", i, keep, k)
			}
		}
		if _, keep, _ := process(p, line("error", i)); !keep {
			t.Fatalf("error line %d dropped", i)
		}
	}
	if dropped < 8800 || dropped > 9200 {
		t.Errorf("dropped %d of 10000 info lines, want 8800..9200", dropped)
	}
}

// TestDropSamplingSalt pins that two sampling stages decide independently.
func TestDropSamplingSalt(t *testing.T) {
	p := mustBuild(t,
		map[string]any{"type": "drop", "drop_ratio": 0.5},
		map[string]any{"type": "drop", "drop_ratio": 0.5})
	kept := 0
	for i := range 10000 {
		if _, keep, _ := process(p, "line "+strings.Repeat("x", i%7)+fmt.Sprint(i)); keep {
			kept++
		}
	}
	if kept < 2200 || kept > 2800 { // 25% when independent, 50% when not
		t.Errorf("kept %d of 10000, want about 2500", kept)
	}
}
