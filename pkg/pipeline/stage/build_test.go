package stage

import (
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podtail/podtail/pkg/pipeline"
)

type specs = []map[string]any

// TestBuildErrors pins that every bad spec fails at Build with an error
// naming the stage (1-based, with its type) and the option.
func TestBuildErrors(t *testing.T) {
	cases := []struct {
		name  string
		specs specs
		want  []string
	}{
		{"missing type", specs{{"source": "x"}}, []string{"stage 1: type: missing"}},
		{"type not a string", specs{{"type": 3}}, []string{"stage 1: type: must be a non-empty string"}},
		{"unknown type", specs{{"type": "zap"}, {"type": "jsonn"}}, []string{`stage 2 (jsonn): type: unknown stage "jsonn"`}},
		{"multiline", specs{{"type": "multiline", "first_line": "x"}}, []string{"stage 1 (multiline): type: multiline is not a pipeline stage"}},
		{"unknown option", specs{{"type": "zap", "levle_key": "x"}}, []string{"stage 1 (zap): levle_key: unknown option (known: action_on_failure, caller_key, level_key, message_key, time_key)"}},
		{"zap empty key", specs{{"type": "zap", "level_key": ""}}, []string{"stage 1 (zap): level_key: must not be empty"}},
		{"zap action", specs{{"type": "json_auto", "action_on_failure": "drop"}}, []string{`stage 1 (json_auto): action_on_failure: "drop" is not fudge or skip`}},
		{"json bad path", specs{{"type": "zap"}, {"type": "json", "expressions": map[string]any{"level": "a..b"}}}, []string{`stage 2 (json): expressions.level: "a..b": empty key`}},
		{"json bad index", specs{{"type": "json", "expressions": map[string]any{"x": "a[x]"}}}, []string{`stage 1 (json): expressions.x: "a[x]": bad index`}},
		{"json no expressions", specs{{"type": "json"}}, []string{"stage 1 (json): expressions: at least one is required"}},
		{"json wrong type", specs{{"type": "json", "expressions": "level"}}, []string{"stage 1 (json): expressions:"}},
		{"json expression not a string", specs{{"type": "json", "expressions": map[string]any{"a": []any{1}}}}, []string{"stage 1 (json): expressions.a:"}},
		{"regex bad", specs{{"type": "regex", "expression": "(?P<a>"}}, []string{"stage 1 (regex): expression: error parsing regexp"}},
		{"regex unnamed", specs{{"type": "regex", "expression": "(a)"}}, []string{"stage 1 (regex): expression: needs at least one named group"}},
		{"regex missing", specs{{"type": "regex"}}, []string{"stage 1 (regex): expression: required"}},
		{"timestamp", specs{{"type": "timestamp", "format": "nonsense", "fallback_formats": []any{"RFC3339", "bad"}, "location": "Mars/Olympus", "action_on_failure": "x"}},
			[]string{"stage 1 (timestamp): source: required", `stage 1 (timestamp): format: "nonsense" is neither`, "stage 1 (timestamp): fallback_formats[1]:", "stage 1 (timestamp): location:", "stage 1 (timestamp): action_on_failure:"}},
		{"labels reserved", specs{{"type": "labels", "values": map[string]any{"tenant": "user", "application": "", "version": "v", "stream": "", "ok": ""}}},
			[]string{"stage 1 (labels): values.tenant: label \"tenant\" is reserved", "values.application: label", "values.version: label", "values.stream: label"}},
		{"labels bad name", specs{{"type": "labels", "values": map[string]any{"1abc": "", "a-b": "", "__x": ""}}}, []string{"values.1abc: invalid name", "values.a-b: invalid name", "values.__x: name \"__x\" is reserved"}},
		{"labels bounds", specs{{"type": "labels", "values": map[string]any{"a": ""}, "max_value_length": 0, "max_values": -1}}, []string{"max_value_length: must be at least 1", "max_values: must be at least 1"}},
		{"labels empty", specs{{"type": "labels"}}, []string{"stage 1 (labels): values: at least one label is required"}},
		{"labels both forms", specs{{"type": "labels", "values": map[string]any{"a": ""}, "level": ""}}, []string{"stage 1 (labels): level: unknown option"}},
		{"labels flat reserved", specs{{"type": "labels", "tenant": "user", "max_values": 0}}, []string{"stage 1 (labels): tenant: label \"tenant\" is reserved", "max_values: must be at least 1"}},
		{"metadata empty", specs{{"type": "structured_metadata"}}, []string{"stage 1 (structured_metadata): values: at least one name is required"}},
		{"metadata bad name", specs{{"type": "structured_metadata", "values": map[string]any{"trace-id": ""}}}, []string{"stage 1 (structured_metadata): values.trace-id: invalid name"}},
		{"drop", specs{{"type": "drop", "value": "x", "expression": "(", "drop_ratio": 1.5, "level": []any{"info", "verbose"}, "older_than": "soon", "longer_than": "big"}},
			[]string{"stage 1 (drop): value: value and expression cannot both be set", "value: needs source", "expression: error parsing regexp", "drop_ratio: 1.5 is not between 0 and 1", `level[1]: "verbose" is not one of`, "older_than:", "longer_than:"}},
		{"drop reason", specs{{"type": "drop", "drop_counter_reason": ""}}, []string{"drop_counter_reason: must not be empty"}},
		{"redact", specs{{"type": "redact", "patterns": []any{"email", "ssn"}, "expressions": []any{"(", "x*"}}},
			[]string{`stage 1 (redact): patterns[1]: unknown pattern "ssn"`, "expressions[0]: error parsing regexp", `expressions[1]: "x*" matches the empty string`}},
		{"redact nothing", specs{{"type": "redact", "patterns": []any{}}}, []string{"patterns: nothing to redact"}},
		{"line_format", specs{{"type": "line_format", "template": "{{ .a "}}, []string{"stage 1 (line_format): template:"}},
		{"line_format func", specs{{"type": "line_format", "template": "{{ Nope .a }}"}}, []string{`function "Nope" not defined`}},
		{"limit", specs{{"type": "limit", "rate": 0, "burst": 0, "drop": false}},
			[]string{"stage 1 (limit): rate: must be", "burst: must be at least 1", "drop: false (wait instead of dropping) is not supported yet"}},
		{"several stages", specs{{"type": "zap"}, {"type": "nope"}, {"type": "labels", "values": map[string]any{"tenant": ""}}},
			[]string{"stage 2 (nope): type: unknown", "stage 3 (labels): values.tenant:"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wantBuildErr(t, c.specs, c.want...)
		})
	}
}

// TestBuildJoinsErrors pins that several problems come back as one joined
// error, one per problem.
func TestBuildJoinsErrors(t *testing.T) {
	_, err := Build(specs{{"type": "nope"}, {"type": "drop", "drop_ratio": 2, "bogus": 1}})
	j, ok := err.(interface{ Unwrap() []error })
	if !ok || len(j.Unwrap()) != 3 {
		t.Fatalf("want 3 joined errors, got %v", err)
	}
	var oe *optErr
	if !errors.As(j.Unwrap()[1], &oe) {
		t.Errorf("%v does not wrap an optErr", j.Unwrap()[1])
	}
}

// TestBuildDecoding pins weak typing (numbers as text, durations as text)
// and that Build does not change the specs.
func TestBuildDecoding(t *testing.T) {
	spec := map[string]any{"type": "drop", "drop_ratio": "0.5", "older_than": "500ms", "longer_than": "8KB", "level": []any{"INFO"}}
	d := mustStages(t, spec)[0].(*dropStage)
	if d.ratio != 0.5 || d.olderThan != 500*time.Millisecond || d.longerThan != 8192 || d.levels[0] != "info" {
		t.Errorf("decoded %+v", d)
	}
	if len(spec) != 5 || spec["type"] != "drop" {
		t.Errorf("spec changed: %v", spec)
	}
	if p := mustBuild(t); p.Len() != 0 {
		t.Errorf("empty specs: %d stages", p.Len())
	}
	if len(Types()) != 12 {
		t.Errorf("Types: %v", Types())
	}
	for _, typ := range Types() {
		if _, err := newStage(typ, map[string]any{"type": typ}, 0); err != nil && strings.Contains(err.Error(), "unknown stage") {
			t.Errorf("%s is listed but unknown", typ)
		}
	}
}

// TestPresets pins the presets.
func TestPresets(t *testing.T) {
	if p := mustBuild(t, ZapPreset()...); p.Len() != 1 {
		t.Error("zap preset")
	}
	if p := mustBuild(t, ContainerPreset()...); p.Len() != 1 {
		t.Error("container preset")
	}
}

// TestSeedPipeline runs the seed's pipeline: zap, then "keep every error,
// 10% of info", labels and redaction, the way a user would write it.
func TestSeedPipeline(t *testing.T) {
	p := mustBuild(t,
		map[string]any{"type": "zap"},
		map[string]any{"type": "drop", "level": []any{"debug"}},
		map[string]any{"type": "drop", "level": []any{"info"}, "drop_ratio": 0.9, "drop_counter_reason": "sampled_info_logs"},
		map[string]any{"type": "structured_metadata", "values": map[string]any{"request_id": ""}},
		map[string]any{"type": "redact"},
	)
	r, keep, _ := process(p, `{"level":"error","ts":1732492800.5,"caller":"a.go:1","msg":"login failed password=hunter2","request_id":"r1"}`)
	if !keep || r.Labels[pipeline.LabelLogLevel] != "error" || !strings.Contains(r.Line, "password=****") {
		t.Fatalf("error line: keep=%v line=%q labels=%v", keep, r.Line, r.Labels)
	}
	if v, _ := metadata(r, "request_id"); v != "r1" {
		t.Errorf("request_id = %q", v)
	}
	if _, keep, reason := process(p, `{"level":"debug","msg":"x"}`); keep || reason != "drop_stage" {
		t.Errorf("debug: keep=%v reason=%q", keep, reason)
	}
	dropped := 0
	for i := range 1000 {
		if _, keep, reason := process(p, `{"level":"info","msg":"n`+strconv.Itoa(i)+`"}`); !keep {
			dropped++
			if reason != "sampled_info_logs" {
				t.Fatalf("reason %q", reason)
			}
		}
	}
	if dropped < 850 || dropped > 950 {
		t.Errorf("dropped %d of 1000 info lines, want about 900", dropped)
	}
}

// TestConcurrentPipelines runs one pipeline per goroutine from the same
// specs (run with -race): nothing is shared but read-only data.
func TestConcurrentPipelines(t *testing.T) {
	all := specs{
		{"type": "zap"},
		{"type": "json", "expressions": map[string]any{"rid": "request_id"}},
		{"type": "labels", "values": map[string]any{"method": ""}},
		{"type": "drop", "level": []any{"info"}, "drop_ratio": 0.5},
		{"type": "redact", "patterns": []any{"password", "email", "credit_card", "ipv4", "bearer"}},
		{"type": "structured_metadata", "values": map[string]any{"rid": ""}},
		{"type": "line_format", "template": "{{.msg}} {{.Entry}}"},
		{"type": "limit", "rate": 1e9},
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := Build(all)
			if err != nil {
				t.Error(err)
				return
			}
			for i := range 500 {
				process(p, `{"level":"info","ts":1732492800.5,"method":"GET","msg":"m`+strconv.Itoa(g*1000+i)+`","request_id":"x","u":"a@b.com"}`)
			}
		}()
	}
	wg.Wait()
}
