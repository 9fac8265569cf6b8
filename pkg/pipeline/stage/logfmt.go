package stage

import (
	"strconv"

	"github.com/podtail/podtail/pkg/pipeline"
)

// logfmtStage is Promtail's logfmt stage: mapping {field: key} puts the
// value of logfmt key `key` (empty: the field's own name) into Fields; with
// no mapping every pair is extracted under its own key. source reads a
// field instead of the line.
//
// Parsing is lenient and never fails: `key=value`, `key="quoted value"`
// (backslash escapes as in Go and JSON: \" \\ \n \t \uXXXX ...), and a
// bare `key` (empty value). Bytes up to and including the space are
// separators. A key repeated takes its last value.
type logfmtStage struct {
	source  string
	mapping map[string][]string // logfmt key -> fields
	all     bool
}

var _ pipeline.Stage = (*logfmtStage)(nil)

type logfmtOptions struct {
	Mapping map[string]string `mapstructure:"mapping"`
	Source  string            `mapstructure:"source"`
}

func newLogfmtStage(spec map[string]any) (*logfmtStage, error) {
	var o logfmtOptions
	if err := decode(spec, &o); err != nil {
		return nil, err
	}
	s := &logfmtStage{source: o.Source, all: len(o.Mapping) == 0, mapping: map[string][]string{}}
	for field, key := range o.Mapping {
		if key == "" {
			key = field
		}
		s.mapping[key] = append(s.mapping[key], field)
	}
	return s, nil
}

// Process implements Stage.
func (s *logfmtStage) Process(r *pipeline.Record) (bool, string) {
	text, ok := sourceText(r, s.source)
	if !ok {
		return true, ""
	}
	for i := 0; ; {
		var k, v string
		var done bool
		k, v, i, done = logfmtNext(text, i)
		if done {
			break
		}
		if s.all {
			setField(r, k, v)
			continue
		}
		for _, f := range s.mapping[k] {
			setField(r, f, v)
		}
	}
	return true, ""
}

// logfmtNext reads the pair at or after s[i]; done is true at the end.
func logfmtNext(s string, i int) (key, val string, next int, done bool) {
	for {
		for i < len(s) && s[i] <= ' ' {
			i++
		}
		if i >= len(s) {
			return "", "", i, true
		}
		j := i
		for j < len(s) && s[j] > ' ' && s[j] != '=' && s[j] != '"' {
			j++
		}
		if j == i { // '=' or '"' where a key should start: skip the garbage
			for j < len(s) && s[j] > ' ' {
				j++
			}
			i = j
			continue
		}
		key = s[i:j]
		if j >= len(s) || s[j] != '=' {
			if j < len(s) && s[j] == '"' { // key"junk: skip the rest of the word
				for j < len(s) && s[j] > ' ' {
					j++
				}
			}
			return key, "", j, false
		}
		j++ // '='
		if j < len(s) && s[j] == '"' {
			end, esc := logfmtQuoted(s, j)
			if end < 0 { // unterminated: the rest of the input
				return key, s[j+1:], len(s), false
			}
			inner := s[j+1 : end-1]
			if esc {
				if u, err := strconv.Unquote(s[j:end]); err == nil {
					inner = u
				} else if u, ok := unquoteJSONish(inner); ok {
					inner = u
				}
			}
			return key, inner, end, false
		}
		k := j
		for k < len(s) && s[k] > ' ' {
			k++
		}
		return key, s[j:k], k, false
	}
}

// logfmtQuoted finds the end (after the closing quote) of the quoted value
// opening at s[i], or -1.
func logfmtQuoted(s string, i int) (int, bool) {
	esc := false
	for j := i + 1; j < len(s); j++ {
		switch s[j] {
		case '\\':
			esc = true
			j++
		case '"':
			return j + 1, esc
		}
	}
	return -1, esc
}

// unquoteJSONish unescapes what strconv.Unquote refuses but JSON allows
// (\/); when that fails too the caller keeps the text as written.
func unquoteJSONish(inner string) (string, bool) {
	q := `"` + inner + `"`
	end, esc := scanString(q, 0)
	if end != len(q) {
		return "", false
	}
	return jsonUnquote(inner, esc), true
}
