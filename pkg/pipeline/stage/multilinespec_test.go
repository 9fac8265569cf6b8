package stage

import (
	"strings"
	"testing"
	"time"
)

// TestMultilineSpecErrors pins the spec errors, each naming its option.
func TestMultilineSpecErrors(t *testing.T) {
	for spec, want := range map[string]map[string]any{
		"multiline: first_line: required":                 {},
		"multiline: first_line: error parsing regexp":     {"first_line": "("},
		"multiline: max_lines: must be at least 1":        {"first_line": "x", "max_lines": -1},
		"multiline: max_wait: \"soon\" is not a duration": {"first_line": "x", "max_wait": "soon"},
		"multiline: firstline: firstline and first_line":  {"first_line": "x", "firstline": "y"},
		"multiline: bogus: unknown option":                {"first_line": "x", "bogus": 1},
		"multiline: type: json is not multiline":          {"type": "json", "first_line": "x"},
		"multiline: max_wait: must not be negative":       {"first_line": "x", "max_wait": "-1s"},
	} {
		_, err := NewMultilineFromSpec(want)
		if err == nil || !strings.Contains(err.Error(), spec) {
			t.Errorf("%v: error %v, want %q", want, err, spec)
		}
	}
}

// TestMultilineSpecAliases pins Promtail's names for the options
// (firstline, max_wait_time) and `type: multiline` beside them.
func TestMultilineSpecAliases(t *testing.T) {
	m, err := NewMultilineFromSpec(map[string]any{"type": "multiline", "firstline": `^\d{4}-\d{2}-\d{2}T`, "max_wait_time": "1s"})
	if err != nil {
		t.Fatal(err)
	}
	m.Add("2024-11-25T00:00:00.000Z\tERROR\tsvc/h.go:42\tquery failed", t0, 1, t0)
	if out := m.Add("main.(*server).handle", t0, 2, t0); len(out) != 0 {
		t.Errorf("a continuation line completed %+v", out)
	}
	if d, ok := m.Deadline(); !ok || !d.Equal(t0.Add(time.Second)) {
		t.Errorf("deadline %v %v, want max_wait_time after the last line", d, ok)
	}
	out := m.Add("2024-11-25T00:00:01.000Z\tINFO\tsvc/h.go:50\tok", t0, 3, t0)
	if len(out) != 1 || out[0].Pos != 2 || !strings.HasSuffix(out[0].Line, "\nmain.(*server).handle") {
		t.Errorf("a first line completed %+v, want the entry of lines 1 and 2", out)
	}
}
