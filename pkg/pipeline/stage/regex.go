package stage

import (
	"errors"
	"regexp"

	"github.com/podtail/podtail/pkg/pipeline"
)

// regexStage is Promtail's regex stage: the named groups of expression
// (RE2 syntax) that take part in the first match on the line (or on the
// field source) go to Fields under their names.
type regexStage struct {
	re     *regexp.Regexp
	names  []string
	source string
}

var _ pipeline.Stage = (*regexStage)(nil)

type regexOptions struct {
	Expression string `mapstructure:"expression"`
	Source     string `mapstructure:"source"`
}

func newRegexStage(spec map[string]any) (*regexStage, error) {
	var o regexOptions
	if err := decode(spec, &o); err != nil {
		return nil, err
	}
	if o.Expression == "" {
		return nil, optErrorf("expression", "required")
	}
	re, err := regexp.Compile(o.Expression)
	if err != nil {
		return nil, &optErr{key: "expression", err: err}
	}
	named := false
	for _, n := range re.SubexpNames() {
		if n != "" {
			named = true
		}
	}
	if !named {
		return nil, &optErr{key: "expression", err: errors.New("needs at least one named group (?P<name>...)")}
	}
	return &regexStage{re: re, names: re.SubexpNames(), source: o.Source}, nil
}

// Process implements Stage.
func (s *regexStage) Process(r *pipeline.Record) (bool, string) {
	text, ok := sourceText(r, s.source)
	if !ok {
		return true, ""
	}
	m := s.re.FindStringSubmatchIndex(text)
	if m == nil {
		return true, ""
	}
	for g, n := range s.names {
		if n != "" && m[2*g] >= 0 {
			setField(r, n, text[m[2*g]:m[2*g+1]])
		}
	}
	return true, ""
}
