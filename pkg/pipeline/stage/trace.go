package stage

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/podtail/podtail/pkg/pipeline"
)

// Tracing, for `podtail pipeline test`: a choice's stages each wrapped so
// that what it did to every record (fields, labels, metadata and time set,
// the line after it, kept or dropped) and what it made of the record (did
// it parse, where its time came from) is reported. The wrappers are
// ordinary stages around the ones Build makes: nothing is added to the
// stages' own path, which runs as in a Stream.

// Parse says how a parsing stage fared with one record.
type Parse string

// What a stage made of a record (Step.Parse). A record fails to parse
// when one of its parsing stages reports ParseFailed:
//
//   - zap: the line is neither one JSON object nor zap console output
//     (TIME<TAB>LEVEL<TAB>...), so it gets no log_level;
//   - json_auto: the line starts with '{' but is not one JSON object
//     (other lines are not JSON output: ParseSkipped, passed untouched);
//   - json: its text (the line, or the source field) is not a JSON object
//     (with drop_malformed the stage drops it as malformed_json);
//   - logfmt: its text holds no key=value pair;
//   - regex: the expression does not match its text;
//   - timestamp: the source field is there but no format reads it
//     (action_on_failure then applies).
//
// A parser whose source field is missing has nothing to parse
// (ParseSkipped), which is not a failure. Other stages parse nothing
// (ParseNone).
const (
	ParseNone    Parse = ""
	ParseOK      Parse = "parsed"
	ParseFailed  Parse = "failed"
	ParseSkipped Parse = "skipped"
)

// TracedStage names one stage of a traced pipeline.
type TracedStage struct {
	// Place is where it is configured under pipeline: "apps[0].files[2]"
	// (indexes count a leading multiline spec, as config errors do).
	Place string
	Type  string
}

// Step is what one stage did to one record.
type Step struct {
	Stage int // index into the []TracedStage of Trace
	// Parse and Note are the stage's account of the record: whether it
	// parsed (see Parse) and, in words, what it found or why it failed;
	// TimeFrom says where the time it chose came from (time stages only).
	Parse    Parse
	Note     string
	TimeFrom string
	// Fields, Labels and Metadata are those the stage set or changed (new
	// values); Time is the record's time after the stage, TimeSet whether
	// the stage changed it; Line is the line after it.
	Fields      map[string]string
	Labels      map[string]string
	Metadata    []pipeline.Label
	Time        time.Time
	TimeSet     bool
	Line        string
	LineChanged bool
	Keep        bool
	DropReason  string
}

// Trace builds the choice's stages as Pipeline does, each wrapped to call
// onStep with what it did to every record it sees, and names them. A nil
// choice (no stages) gives an empty pipeline. Each call builds fresh
// stages (their state is per source, as Pipeline's).
//
// A traced zap stage fills Fields even when it is the last stage (a
// Stream tells only a pipeline.FieldsSkipper, which the wrapper is not), so
// that they can be shown; what is shipped is the same.
func (c *Choice) Trace(onStep func(Step)) (*pipeline.Pipeline, []TracedStage) {
	if c == nil {
		return pipeline.New(), nil
	}
	built, err := buildStages(c.stages, stageNumber)
	if err != nil {
		panic(fmt.Sprintf("pipeline.%s: %v", c.Name, err)) // unreachable: NewSelector built the same specs
	}
	skipped := 0
	if c.multiline != nil {
		skipped = 1
	}
	names := make([]TracedStage, len(built))
	wrapped := make([]pipeline.Stage, len(built))
	for i, s := range built {
		typ, _ := c.stages[i]["type"].(string)
		names[i] = TracedStage{Place: fmt.Sprintf("%s[%d]", c.Name, i+skipped), Type: typ}
		wrapped[i] = &tracedStage{index: i, s: s, onStep: onStep}
	}
	return pipeline.New(wrapped...), names
}

// tracedStage runs s and reports what it did.
type tracedStage struct {
	index  int
	s      pipeline.Stage
	onStep func(Step)
}

// Process implements pipeline.Stage.
func (t *tracedStage) Process(r *pipeline.Record) (bool, string) {
	before := pipeline.Record{
		Time: r.Time, Line: r.Line, Fields: clonedMap(r.Fields), Labels: clonedMap(r.Labels),
		Metadata: slices.Clone(r.Metadata),
	}
	st := explain(t.s, r) // before the stage: it reads the stage's state as the stage will
	keep, reason := t.s.Process(r)
	st.Stage, st.Keep, st.DropReason = t.index, keep, reason
	st.Fields = changed(before.Fields, r.Fields)
	st.Labels = changed(before.Labels, r.Labels)
	for _, m := range r.Metadata {
		if i := slices.IndexFunc(before.Metadata, func(b pipeline.Label) bool { return b.Name == m.Name }); i < 0 || before.Metadata[i].Value != m.Value {
			st.Metadata = append(st.Metadata, m)
		}
	}
	st.Time, st.TimeSet = r.Time, !r.Time.Equal(before.Time)
	st.Line, st.LineChanged = r.Line, r.Line != before.Line
	if rs, ok := t.s.(*redactStage); ok && st.LineChanged && rs.repl != "" {
		if n := strings.Count(r.Line, rs.repl) - strings.Count(before.Line, rs.repl); n > 0 {
			st.Note = fmt.Sprintf("%d masked in the line", n)
		}
	}
	if t.onStep != nil {
		t.onStep(st)
	}
	return keep, reason
}

func clonedMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// changed is what after holds that before did not, or held otherwise.
func changed(before, after map[string]string) map[string]string {
	var out map[string]string
	for k, v := range after {
		if old, ok := before[k]; !ok || old != v {
			if out == nil {
				out = map[string]string{}
			}
			out[k] = v
		}
	}
	return out
}

// explain is a stage's account of r, taken before it runs: whether it
// parses r and where its time comes from. It changes neither the stage
// nor r (probes run on copies).
func explain(s pipeline.Stage, r *pipeline.Record) Step {
	switch s := s.(type) {
	case *zapStage:
		return s.explain(r.Line)
	case *jsonStage:
		text, ok := sourceText(r, s.source)
		switch {
		case !ok:
			return Step{Parse: ParseSkipped, Note: "field " + s.source + " missing"}
		case !isJSONObject(text):
			return Step{Parse: ParseFailed, Note: "not a JSON object"}
		}
		return Step{Parse: ParseOK}
	case *logfmtStage:
		text, ok := sourceText(r, s.source)
		switch {
		case !ok:
			return Step{Parse: ParseSkipped, Note: "field " + s.source + " missing"}
		case !hasLogfmtPair(text):
			return Step{Parse: ParseFailed, Note: "no key=value pair"}
		}
		return Step{Parse: ParseOK}
	case *regexStage:
		text, ok := sourceText(r, s.source)
		switch {
		case !ok:
			return Step{Parse: ParseSkipped, Note: "field " + s.source + " missing"}
		case !s.re.MatchString(text):
			return Step{Parse: ParseFailed, Note: "expression did not match"}
		}
		return Step{Parse: ParseOK}
	case *timestampStage:
		return s.explain(r)
	case *dropStage:
		return s.explain(r)
	}
	return Step{}
}

// explain is the zap stage's account of line; a probe (a copy of the
// stage that neither fudges nor keeps what it reads) tells what the line
// carries.
func (s *zapStage) explain(line string) Step {
	probe := *s
	probe.fudge, probe.noFields = false, true
	var pr pipeline.Record
	pr.Line = line
	probe.Process(&pr)
	_, leveled := pr.Labels[pipeline.LabelLogLevel]
	timed := !pr.Time.IsZero()
	var st Step
	i := skipWS(line, 0)
	object := i < len(line) && line[i] == '{'
	switch {
	case object && isJSONObject(line):
		st.Parse, st.Note = ParseOK, "JSON object"
		if !s.auto && pr.Labels[pipeline.LabelLogLevel] == LevelUnknown {
			st.Note += "; " + s.levelKey + " missing or not one of zap's levels"
		}
	case object:
		st.Parse, st.Note = ParseFailed, "starts with { but is not one JSON object"
	case s.auto:
		return Step{Parse: ParseSkipped, Note: "not JSON: passed untouched"}
	case leveled:
		st.Parse, st.Note = ParseOK, "zap console line"
	default:
		st.Parse, st.Note = ParseFailed, "neither a JSON object nor zap console output"
	}
	switch {
	case timed && object:
		st.TimeFrom = s.timeKey
	case timed:
		st.TimeFrom = "the console line's time column"
	case s.fudge && s.lastOK:
		st.TimeFrom = "none in the line: the last time read + 1ns, action_on_failure fudge"
	default:
		st.TimeFrom = "none in the line: the source's time kept"
	}
	return st
}

// explain is the timestamp stage's account of r.
func (s *timestampStage) explain(r *pipeline.Record) Step {
	fallback := "the source's time kept"
	if s.fudge && s.lastOK {
		fallback = "the last time read + 1ns, action_on_failure fudge"
	}
	v, ok := r.Fields[s.source]
	if !ok {
		return Step{Parse: ParseSkipped, Note: "field " + s.source + " missing", TimeFrom: "no field " + s.source + ": " + fallback}
	}
	for _, f := range s.formats {
		if _, ok := s.parse(f, v); ok {
			return Step{Parse: ParseOK, TimeFrom: "field " + s.source + " (" + f.name() + ")"}
		}
	}
	return Step{Parse: ParseFailed, Note: fmt.Sprintf("no format reads %s=%q", s.source, v), TimeFrom: fallback}
}

// name is the format as configured.
func (f tsFormat) name() string {
	for n, u := range epochUnits {
		if f.unit != 0 && u == f.unit {
			return n
		}
	}
	for n, l := range namedLayouts {
		if f.unit == 0 && l == f.layout {
			return n
		}
	}
	return f.layout
}

// explain is the drop stage's account of r: whether it matches, and the
// sample drawn when it samples.
func (s *dropStage) explain(r *pipeline.Record) Step {
	if !s.matches(r) {
		return Step{Note: "no match"}
	}
	if s.ratio >= 1 {
		return Step{Note: "matched"}
	}
	u := sampleUnit(r.Line, s.salt)
	if u >= s.ratio {
		return Step{Note: fmt.Sprintf("matched; sample %.3f >= drop_ratio %g: kept", u, s.ratio)}
	}
	return Step{Note: fmt.Sprintf("matched; sample %.3f < drop_ratio %g: dropped", u, s.ratio)}
}

// hasLogfmtPair reports whether text holds a key=value pair (a bare word
// is a key without one).
func hasLogfmtPair(text string) bool {
	for i := 0; ; {
		_, v, next, done := logfmtNext(text, i)
		if done {
			return false
		}
		if v != "" || text[next-1] == '=' || strings.HasSuffix(text[:next], `=""`) {
			return true
		}
		i = next
	}
}
