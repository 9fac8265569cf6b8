package stage

import (
	"errors"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/podtail/podtail/pkg/labels"
	"github.com/podtail/podtail/pkg/pipeline"
)

// The labels stage (stream labels from Fields) and the structured_metadata
// stage (structured metadata from Fields). The rules for label names and
// values themselves are pkg/labels'.

// LabelOther is the value a label takes once the labels stage has seen
// max_values distinct values for it.
const LabelOther = "other"

// labelsStage is Promtail's labels stage: {label: field} sets stream
// labels from Fields; an empty (or null) field means the label's own name.
// Missing and empty values set nothing. The pairs are written beside type,
// as in Promtail (`{type: labels, log_level: level, app: ""}`), or under
// values, as in Alloy's stage.labels (`{type: labels, values: {...}}`);
// with values present, any other key is an unknown option.
//
// Labels with unbounded values explode Loki's index, so values are bounded:
// cut to max_value_length bytes (default 64, on a UTF-8 boundary; invalid
// UTF-8 is replaced), and once a label has had max_values distinct values
// (default 100) in this pipeline instance, i.e. this stream, any other
// value becomes "other".
//
// Label names must match [a-zA-Z_][a-zA-Z0-9_]* and not start with "__";
// tenant, application, version and stream are refused: they come only from
// trusted metadata, never from a line.
type labelsStage struct {
	labels []labelFrom
	maxLen int
	maxVal int
	seen   map[string]map[string]struct{} // label -> values seen
}

var _ pipeline.Stage = (*labelsStage)(nil)

type labelFrom struct{ name, field string }

type labelsOptions struct {
	Values         map[string]string `mapstructure:"values"`
	MaxValueLength int               `mapstructure:"max_value_length"`
	MaxValues      int               `mapstructure:"max_values"`
}

func newLabelsStage(spec map[string]any) (*labelsStage, error) {
	o := labelsOptions{MaxValueLength: 64, MaxValues: 100}
	var errs []error
	if err := decode(flatValues(spec, "max_value_length", "max_values"), &o); err != nil {
		errs = append(errs, err)
	}
	if len(o.Values) == 0 && len(errs) == 0 {
		errs = append(errs, optErrorf("values", "at least one label is required"))
	}
	if o.MaxValueLength < 1 {
		errs = append(errs, optErrorf("max_value_length", "must be at least 1"))
	}
	if o.MaxValues < 1 {
		errs = append(errs, optErrorf("max_values", "must be at least 1"))
	}
	s := &labelsStage{maxLen: o.MaxValueLength, maxVal: o.MaxValues, seen: map[string]map[string]struct{}{}}
	prefix := valuesPrefix(spec)
	for _, name := range sortedKeys(o.Values) {
		if err := checkLabelName(name); err != nil {
			errs = append(errs, &optErr{key: prefix + name, err: err})
			continue
		}
		if pipeline.ReservedLabel(name) {
			errs = append(errs, optErrorf(prefix+name, "label %q is reserved: it comes only from trusted metadata (the source), not from log lines", name))
			continue
		}
		field := o.Values[name]
		if field == "" {
			field = name
		}
		s.labels = append(s.labels, labelFrom{name: name, field: field})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return s, nil
}

// Process implements Stage.
func (s *labelsStage) Process(r *pipeline.Record) (bool, string) {
	for _, l := range s.labels {
		v := r.Fields[l.field]
		if v == "" {
			continue
		}
		v = boundValue(v, s.maxLen)
		seen := s.seen[l.name]
		if _, ok := seen[v]; !ok {
			if seen == nil {
				seen = map[string]struct{}{}
				s.seen[l.name] = seen
			}
			if len(seen) >= s.maxVal {
				v = LabelOther
			} else {
				seen[strings.Clone(v)] = struct{}{} // v may point into a large line
			}
		}
		setLabel(r, l.name, v)
	}
	return true, ""
}

// boundValue makes v valid UTF-8 of at most n bytes.
func boundValue(v string, n int) string {
	v, _ = labels.CutValue(v, n)
	return v
}

// metadataStage is Promtail's structured_metadata stage: {name: field}
// (beside type, or under values as in Alloy) puts Fields into Loki
// structured metadata (the place for request ids, trace ids and other
// high-cardinality facts); an empty field means the name itself. Empty and missing values are skipped; a name set again
// replaces the earlier value. Names are checked like label names.
type metadataStage struct {
	values []labelFrom
}

var _ pipeline.Stage = (*metadataStage)(nil)

type metadataOptions struct {
	Values map[string]string `mapstructure:"values"`
}

func newMetadataStage(spec map[string]any) (*metadataStage, error) {
	var o metadataOptions
	var errs []error
	if err := decode(flatValues(spec), &o); err != nil {
		errs = append(errs, err)
	}
	if len(o.Values) == 0 && len(errs) == 0 {
		errs = append(errs, optErrorf("values", "at least one name is required"))
	}
	s := &metadataStage{}
	prefix := valuesPrefix(spec)
	for _, name := range sortedKeys(o.Values) {
		if err := checkLabelName(name); err != nil {
			errs = append(errs, &optErr{key: prefix + name, err: err})
			continue
		}
		field := o.Values[name]
		if field == "" {
			field = name
		}
		s.values = append(s.values, labelFrom{name: name, field: field})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return s, nil
}

// Process implements Stage.
func (s *metadataStage) Process(r *pipeline.Record) (bool, string) {
	for _, m := range s.values {
		if v := r.Fields[m.field]; v != "" {
			if !utf8.ValidString(v) {
				v = strings.ToValidUTF8(v, "\uFFFD")
			}
			r.SetMetadata(m.name, v)
		}
	}
	return true, ""
}

// flatValues moves the name: field pairs written beside type into
// `values`, unless values is given; options stay where they are.
func flatValues(spec map[string]any, options ...string) map[string]any {
	if _, ok := spec["values"]; ok {
		return spec
	}
	out := map[string]any{}
	values := map[string]any{}
	for k, v := range spec {
		if k == "type" || slices.Contains(options, k) {
			out[k] = v
		} else {
			values[k] = v
		}
	}
	if len(values) > 0 {
		out["values"] = values
	}
	return out
}

// valuesPrefix is how errors name a pair: under values, or beside type.
func valuesPrefix(spec map[string]any) string {
	if _, ok := spec["values"]; ok {
		return "values."
	}
	return ""
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
