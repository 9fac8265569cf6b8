package stage

import (
	"bytes"
	"regexp"
	"strings"
	"text/template"

	"github.com/podtail/podtail/pkg/pipeline"
)

// lineFormatStage is Promtail's line_format stage: template (Go
// text/template) replaces the line. The data is a map of strings: the
// stage-added labels, then Fields over them, then .Entry, the current line.
// A missing name renders as "". If the template fails on a line, the line
// is kept as it was.
//
// Functions: ToUpper, ToLower, Replace (strings.Replace: s old new n),
// ReplaceAll, Trim (s cutset), TrimLeft, TrimRight, TrimPrefix, TrimSuffix,
// TrimSpace, Title (first letter upper), HasPrefix, HasSuffix, Contains,
// regexReplaceAll (regex s repl, with $1 expansion), regexReplaceAllLiteral,
// and default (default fallback value: fallback when value is empty), as in
// Promtail.
type lineFormatStage struct {
	tmpl *template.Template
	data map[string]string
	buf  bytes.Buffer
}

var _ pipeline.Stage = (*lineFormatStage)(nil)

type lineFormatOptions struct {
	Template string `mapstructure:"template"`
}

var templateFuncs = template.FuncMap{
	"ToUpper":    strings.ToUpper,
	"ToLower":    strings.ToLower,
	"Replace":    strings.Replace,
	"ReplaceAll": strings.ReplaceAll,
	"Trim":       strings.Trim,
	"TrimLeft":   strings.TrimLeft,
	"TrimRight":  strings.TrimRight,
	"TrimPrefix": strings.TrimPrefix,
	"TrimSuffix": strings.TrimSuffix,
	"TrimSpace":  strings.TrimSpace,
	"Title": func(s string) string {
		if s == "" {
			return s
		}
		return strings.ToUpper(s[:1]) + s[1:]
	},
	"HasPrefix": strings.HasPrefix,
	"HasSuffix": strings.HasSuffix,
	"Contains":  strings.Contains,
	"regexReplaceAll": func(re, s, repl string) (string, error) {
		r, err := regexp.Compile(re)
		if err != nil {
			return "", err
		}
		return r.ReplaceAllString(s, repl), nil
	},
	"regexReplaceAllLiteral": func(re, s, repl string) (string, error) {
		r, err := regexp.Compile(re)
		if err != nil {
			return "", err
		}
		return r.ReplaceAllLiteralString(s, repl), nil
	},
	"default": func(def, v string) string {
		if v == "" {
			return def
		}
		return v
	},
}

func newLineFormatStage(spec map[string]any) (*lineFormatStage, error) {
	var o lineFormatOptions
	if err := decode(spec, &o); err != nil {
		return nil, err
	}
	if o.Template == "" {
		return nil, optErrorf("template", "required")
	}
	t, err := template.New("line_format").Funcs(templateFuncs).Option("missingkey=zero").Parse(o.Template)
	if err != nil {
		return nil, &optErr{key: "template", err: err}
	}
	return &lineFormatStage{tmpl: t, data: map[string]string{}}, nil
}

// Process implements Stage.
func (s *lineFormatStage) Process(r *pipeline.Record) (bool, string) {
	clear(s.data)
	for k, v := range r.Labels {
		s.data[k] = v
	}
	for k, v := range r.Fields {
		s.data[k] = v
	}
	s.data["Entry"] = r.Line
	s.buf.Reset()
	if err := s.tmpl.Execute(&s.buf, s.data); err != nil {
		return true, ""
	}
	r.Line = s.buf.String()
	if s.buf.Cap() > 64<<10 {
		s.buf = bytes.Buffer{} // do not keep a huge line's buffer
	}
	clear(s.data) // do not keep the record's strings alive
	return true, ""
}
