package stage

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/podtail/podtail/pkg/pipeline"
)

// jsonStage is Promtail's json stage: it reads a JSON object from the line
// (or from the field source) and puts the values named by expressions into
// Fields.
//
// An expression is a small subset of JMESPath: keys separated by dots
// (`ctx.user`), a key in double quotes when it holds a dot or other
// characters (`"user.id"`, `ctx."x-request-id"`), and array indexes
// (`items[0].id`). An empty expression means the field's own name as a
// top-level key. Strings are unescaped; numbers and booleans keep their
// JSON text; objects and arrays are put as their JSON text; null and
// missing values set nothing (an earlier stage's value of the field stays).
//
// A line that is not a JSON object is left alone, unless drop_malformed is
// set: then it is dropped with reason "malformed_json".
type jsonStage struct {
	source        string
	exprs         []jsonExpr
	dropMalformed bool
}

var _ pipeline.Stage = (*jsonStage)(nil)

type jsonExpr struct {
	field string
	path  []pathStep
}

// pathStep is a key (index < 0) or an array index.
type pathStep struct {
	key   string
	index int
}

type jsonOptions struct {
	Expressions   map[string]string `mapstructure:"expressions"`
	Source        string            `mapstructure:"source"`
	DropMalformed bool              `mapstructure:"drop_malformed"`
}

func newJSONStage(spec map[string]any) (*jsonStage, error) {
	var o jsonOptions
	var errs []error
	if err := decode(spec, &o); err != nil {
		errs = append(errs, err)
	}
	if len(o.Expressions) == 0 && len(errs) == 0 {
		errs = append(errs, optErrorf("expressions", "at least one is required"))
	}
	s := &jsonStage{source: o.Source, dropMalformed: o.DropMalformed}
	names := make([]string, 0, len(o.Expressions))
	for n := range o.Expressions {
		names = append(names, n)
	}
	sort.Strings(names) // stable order: the last expression for a field wins
	for _, n := range names {
		e := o.Expressions[n]
		if e == "" {
			e = strconv.Quote(n)
		}
		p, err := parsePath(e)
		if err != nil {
			errs = append(errs, optErrorf("expressions."+n, "%v", err))
			continue
		}
		s.exprs = append(s.exprs, jsonExpr{field: n, path: p})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return s, nil
}

// parsePath parses the JMESPath subset described on jsonStage.
func parsePath(e string) ([]pathStep, error) {
	var out []pathStep
	i := 0
	needKey := true
	for i < len(e) {
		switch c := e[i]; {
		case c == '[':
			if len(out) == 0 {
				return nil, fmt.Errorf("%q: an index needs a key before it", e)
			}
			j := strings.IndexByte(e[i:], ']')
			if j < 0 {
				return nil, fmt.Errorf("%q: missing ]", e)
			}
			n, err := strconv.Atoi(e[i+1 : i+j])
			if err != nil || n < 0 {
				return nil, fmt.Errorf("%q: bad index %q (want a number >= 0)", e, e[i+1:i+j])
			}
			out = append(out, pathStep{index: n})
			i += j + 1
		case c == '.':
			if needKey {
				return nil, fmt.Errorf("%q: empty key at %d", e, i)
			}
			needKey = true
			i++
			continue
		case !needKey:
			return nil, fmt.Errorf("%q: want . or [ at %d", e, i)
		case c == '"':
			j := i + 1
			for j < len(e) && e[j] != '"' {
				if e[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(e) {
				return nil, fmt.Errorf("%q: unterminated quoted key", e)
			}
			k, err := strconv.Unquote(e[i : j+1])
			if err != nil {
				return nil, fmt.Errorf("%q: bad quoted key %s", e, e[i:j+1])
			}
			out = append(out, pathStep{key: k, index: -1})
			i = j + 1
		default:
			j := i
			for j < len(e) && isIdentByte(e[j]) {
				j++
			}
			if j == i {
				return nil, fmt.Errorf("%q: unexpected %q at %d (quote keys with other characters)", e, c, i)
			}
			out = append(out, pathStep{key: e[i:j], index: -1})
			i = j
		}
		needKey = false
	}
	if needKey {
		return nil, fmt.Errorf("%q: empty key at the end", e)
	}
	return out, nil
}

func isIdentByte(c byte) bool {
	return c == '_' || c == '-' || c == '@' || c == '$' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
}

// Process implements Stage.
func (s *jsonStage) Process(r *pipeline.Record) (bool, string) {
	text, ok := sourceText(r, s.source)
	if !ok {
		return true, ""
	}
	if !isJSONObject(text) {
		if s.dropMalformed {
			return false, "malformed_json"
		}
		return true, ""
	}
	// One pass over the top-level members; each expression resolves the
	// rest of its path inside the member its first key names.
	it := newObjectIter(text)
	for it.next() {
		key := it.key
		if it.keyEsc {
			key = it.keyText()
		}
		for _, e := range s.exprs {
			if e.path[0].key != key {
				continue
			}
			if v, ok := jsonLookup(it.val, e.path[1:]); ok && v.kind != jsonNull {
				setField(r, e.field, v.text())
			}
		}
	}
	return true, ""
}
