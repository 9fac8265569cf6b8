// Package stage holds the parsing stages of podtail's pipelines (zap,
// json_auto, json, logfmt, regex, timestamp, labels, structured_metadata,
// drop, redact, line_format, limit), Build, which makes a
// pipeline.Pipeline of them from the configured specs, the presets, and
// the reading of specs (each stage's options; multiline's in
// NewMultilineFromSpec).
//
// The contract the stages implement (pipeline.Record, pipeline.Stage) and
// what runs them (pipeline.Stream) are in pkg/pipeline, which the sources
// and the sink import without this package.
package stage

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/docker/go-units"
	"github.com/go-viper/mapstructure/v2"

	"github.com/podtail/podtail/pkg/labels"
	"github.com/podtail/podtail/pkg/pipeline"
)

// Build makes a pipeline from stage specs, in order. Each spec names its
// stage with `type:` and carries that stage's options beside it, e.g.
//
//	stages:
//	  - type: json
//	    expressions: {level: level, user: ctx.user}
//
// Options are decoded strictly (an unknown option is an error) and values
// are weakly typed ("0.9" is a number, durations are strings like "500ms").
// Every problem is reported, each naming its place with a 1-based stage
// number, e.g. `stage 2 (json): expressions.level: ...`, joined with
// errors.Join.
//
// A Pipeline holds per-instance state (the limit stage's token bucket, the
// labels stage's cardinality bound, the time of the last line for
// timestamp fudging), so Build one pipeline per stream; Build does not keep
// or change specs.
//
// Stages (each stage's type documents its options in full):
//
//	zap                 level_key, time_key, caller_key, message_key, action_on_failure
//	json_auto           level_key, time_key, caller_key, message_key, action_on_failure
//	json                expressions, source, drop_malformed
//	logfmt              mapping, source
//	regex               expression, source
//	timestamp           source, format, fallback_formats, location, action_on_failure
//	labels              label: field pairs (or values: {...}), max_value_length, max_values
//	structured_metadata name: field pairs (or values: {...})
//	drop                source, value, expression, older_than, longer_than, level,
//	                    drop_ratio, drop_counter_reason
//	redact              patterns, expressions, replacement
//	line_format         template
//	limit               rate, burst, drop
//
// multiline is not a stage (it joins lines before them): see
// pipeline.Multiline and NewMultilineFromSpec.
//
// Memory: stages write into r.Fields and r.Labels and allocate them only
// when they are nil (Stream reuses both across records); values put there
// are mostly substrings of the line (no copy). Metadata is appended to
// r.Metadata (one small allocation when it starts nil). The zap stage's
// usual path (level, ts, caller, fields) allocates only that.
func Build(specs []map[string]any) (*pipeline.Pipeline, error) {
	stages, err := buildStages(specs, stageNumber)
	if err != nil {
		return nil, err
	}
	return pipeline.New(stages...), nil
}

// stageNumber names the place of spec i of type typ in Build's errors:
// `stage 2 (json)`, counted from 1 as people count list items.
func stageNumber(i int, typ string) string {
	if typ == "" {
		return fmt.Sprintf("stage %d", i+1)
	}
	return fmt.Sprintf("stage %d (%s)", i+1, typ)
}

// buildStages is Build's work: the stages of specs, in order. place names
// spec i in errors (Build numbers stages; a Selector names config keys).
func buildStages(specs []map[string]any, place func(i int, typ string) string) ([]pipeline.Stage, error) {
	var errs []error
	stages := make([]pipeline.Stage, 0, len(specs))
	for i, spec := range specs {
		typ, _ := spec["type"].(string)
		s, err := newStage(typ, spec, i)
		if err != nil {
			for _, e := range flatten(err) {
				errs = append(errs, fmt.Errorf("%s: %w", place(i, typ), e))
			}
			continue
		}
		stages = append(stages, s)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return stages, nil
}

// Types lists the stage types Build knows.
func Types() []string {
	return []string{"drop", "json", "json_auto", "labels", "limit", "line_format", "logfmt",
		"redact", "regex", "structured_metadata", "timestamp", "zap"}
}

// ZapPreset is the pipeline for files written by zap's production (JSON)
// or development (console) encoder.
func ZapPreset() []map[string]any {
	return []map[string]any{{"type": "zap"}}
}

// ContainerPreset is the pipeline for container output: JSON lines get
// their level, time and caller, everything else passes untouched.
func ContainerPreset() []map[string]any {
	return []map[string]any{{"type": "json_auto"}}
}

func newStage(typ string, spec map[string]any, index int) (pipeline.Stage, error) {
	switch typ {
	case "":
		if _, ok := spec["type"]; ok {
			return nil, errors.New("type: must be a non-empty string")
		}
		return nil, errors.New("type: missing")
	case "zap":
		return newZapStage(spec, false)
	case "json_auto":
		return newZapStage(spec, true)
	case "json":
		return newJSONStage(spec)
	case "logfmt":
		return newLogfmtStage(spec)
	case "regex":
		return newRegexStage(spec)
	case "timestamp":
		return newTimestampStage(spec)
	case "labels":
		return newLabelsStage(spec)
	case "structured_metadata":
		return newMetadataStage(spec)
	case "drop":
		return newDropStage(spec, index)
	case "redact":
		return newRedactStage(spec)
	case "line_format":
		return newLineFormatStage(spec)
	case "limit":
		return newLimitStage(spec)
	case "multiline":
		return nil, errors.New("type: multiline is not a pipeline stage: it joins lines before the pipeline (configure it on the source, see Multiline)")
	}
	return nil, fmt.Errorf("type: unknown stage %q (known: %s)", typ, strings.Join(Types(), ", "))
}

// optErr is a problem with one option.
type optErr struct {
	key string
	err error
}

func (e *optErr) Error() string { return e.key + ": " + e.err.Error() }
func (e *optErr) Unwrap() error { return e.err }

func optErrorf(key, format string, args ...any) error {
	return &optErr{key: key, err: fmt.Errorf(format, args...)}
}

// flatten opens errors.Join trees.
func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// byteSize is a count of bytes given as a number or as text with a unit
// ("8KB" is 8192, "1MiB" too: binary units, as docker's).
type byteSize int64

var byteSizeType = reflect.TypeFor[byteSize]()

func byteSizeHook(from, to reflect.Type, data any) (any, error) {
	if to != byteSizeType || from.Kind() != reflect.String {
		return data, nil
	}
	n, err := units.RAMInBytes(strings.TrimSpace(data.(string)))
	if err != nil {
		return nil, fmt.Errorf("%q is not a size in bytes (e.g. 8192, 8KB, 1MiB)", data)
	}
	return n, nil
}

var durationType = reflect.TypeFor[time.Duration]()

// durationHook reads durations written as text ("500ms", "3s").
func durationHook(from, to reflect.Type, data any) (any, error) {
	if to != durationType || from.Kind() != reflect.String {
		return data, nil
	}
	d, err := time.ParseDuration(strings.TrimSpace(data.(string)))
	if err != nil {
		return nil, fmt.Errorf("%q is not a duration (e.g. 500ms, 3s, 1h30m)", data)
	}
	return d, nil
}

// decode fills out (a pointer to an options struct with mapstructure tags)
// from spec, ignoring `type`. Every unknown key and every bad value is
// reported as its own optErr.
func decode(spec map[string]any, out any) error {
	var errs []error
	known := map[string]bool{"type": true}
	t := reflect.TypeOf(out).Elem()
	var names []string
	for i := 0; i < t.NumField(); i++ {
		if tag, _, _ := strings.Cut(t.Field(i).Tag.Get("mapstructure"), ","); tag != "" && tag != "-" {
			known[tag] = true
			names = append(names, tag)
		}
	}
	sort.Strings(names)
	in := make(map[string]any, len(spec))
	var unknown []string
	for k, v := range spec {
		if k == "type" {
			continue
		}
		if known[k] {
			in[k] = v
		} else {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		errs = append(errs, optErrorf(k, "unknown option (known: %s)", strings.Join(names, ", ")))
	}
	d, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		DecodeHook:       mapstructure.ComposeDecodeHookFunc(durationHook, byteSizeHook),
		ErrorUnused:      true,
		WeaklyTypedInput: true,
		Result:           out,
	})
	if err != nil {
		return err
	}
	if err := d.Decode(in); err != nil {
		errs = append(errs, decodeErrors(err)...)
	}
	return errors.Join(errs...)
}

// decodeErrors opens mapstructure's tree of joined errors and DecodeErrors
// (which carry full names such as `expressions[level]`) into optErrs.
func decodeErrors(err error) []error {
	var out []error
	for _, e := range flatten(err) {
		de, ok := e.(*mapstructure.DecodeError)
		if !ok {
			// Decode wraps several errors in a message of its own.
			if inner := errors.Unwrap(e); inner != nil {
				out = append(out, decodeErrors(inner)...)
			} else {
				out = append(out, e)
			}
			continue
		}
		inner := de.Unwrap()
		if _, join := inner.(interface{ Unwrap() []error }); join {
			out = append(out, decodeErrors(inner)...)
			continue
		}
		if _, nested := inner.(*mapstructure.DecodeError); nested {
			out = append(out, decodeErrors(inner)...)
			continue
		}
		out = append(out, &optErr{key: optionPath(de.Name()), err: inner})
	}
	return out
}

// optionPath turns mapstructure's `expressions[level]` into
// `expressions.level` (list indexes stay: `fallback_formats[1]`).
func optionPath(name string) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(name, '[')
		j := strings.IndexByte(name, ']')
		if i < 0 || j < i {
			b.WriteString(name)
			return b.String()
		}
		b.WriteString(name[:i])
		k := name[i+1 : j]
		if _, err := strconv.Atoi(k); err == nil {
			b.WriteString(name[i : j+1])
		} else {
			b.WriteString("." + k)
		}
		name = name[j+1:]
	}
}

// Record helpers. Process methods allocate Fields and Labels only when the
// caller left them nil (Stream reuses them across records).

func setField(r *pipeline.Record, k, v string) {
	if r.Fields == nil {
		r.Fields = make(map[string]string, 8)
	}
	r.Fields[k] = v
}

func setLabel(r *pipeline.Record, k, v string) {
	if r.Labels == nil {
		r.Labels = make(map[string]string, 4)
	}
	r.Labels[k] = v
}

func checkLabelName(name string) error {
	if labels.ValidName(name) != nil {
		return fmt.Errorf("invalid name %q (want [a-zA-Z_][a-zA-Z0-9_]*)", name)
	}
	if strings.HasPrefix(name, "__") {
		return fmt.Errorf("name %q is reserved (names starting with __ are Loki's)", name)
	}
	return nil
}

// sourceText is the text a stage reads: the field source, or the line when
// source is empty. ok is false when the field is missing.
func sourceText(r *pipeline.Record, source string) (string, bool) {
	if source == "" {
		return r.Line, true
	}
	v, ok := r.Fields[source]
	return v, ok
}

// SplitMultiline separates a leading `type: multiline` spec (it joins lines
// before the stages, per stream) from the stages. Multiline anywhere else is
// an error, since stages need whole entries.
func SplitMultiline(specs []map[string]any) (multiline map[string]any, stages []map[string]any, err error) {
	multiline, stages, misplaced := splitMultiline(specs)
	if misplaced >= 0 {
		return nil, nil, fmt.Errorf("%s: %s", stageNumber(misplaced, "multiline"), errMultilineFirst)
	}
	return multiline, stages, nil
}

// errMultilineFirst is what is wrong with a multiline spec after a stage.
var errMultilineFirst = errors.New("must be the first stage: it joins lines before the others")

// splitMultiline is SplitMultiline's work; misplaced is the index of the
// first multiline spec that is not first, or -1.
func splitMultiline(specs []map[string]any) (multiline map[string]any, stages []map[string]any, misplaced int) {
	for i, s := range specs {
		if s["type"] == "multiline" {
			if i != 0 {
				return nil, nil, i
			}
			multiline = s
			continue
		}
		stages = append(stages, s)
	}
	return multiline, stages, -1
}
