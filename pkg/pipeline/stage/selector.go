package stage

import (
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"

	"github.com/podtail/podtail/pkg/pipeline"
)

// StreamFile is the stream of log files' lines (their stream label);
// container output's streams are stdout and stderr.
const StreamFile = "file"

// containerStreams are the streams of container output a Match can select.
var containerStreams = []string{"stdout", "stderr"}

// SelectorConfig is what a Selector chooses among: the default stages of
// each kind of source (pipeline.container, pipeline.files) and the per-app
// entries (pipeline.apps), in order.
type SelectorConfig struct {
	Container []map[string]any
	Files     []map[string]any
	Apps      []App
}

// App is one entry of pipeline.apps. Container and Files are the stage
// specs it gives container output and log files; nil means the entry is
// not for that kind of source, which then looks on to the next entry (an
// entry for one app's files does not hide a later entry for its tenant's
// containers), while an empty, non-nil list means "no stages".
type App struct {
	Match     Match
	Container []map[string]any
	Files     []map[string]any
}

// Match selects sources with regexes, anchored at both ends (`shop` is not
// `shop-admin`; write `shop.*` for that). An empty Tenant, Application,
// Version or Stream matches anything. Labels are the container's labels:
// each name given must have a value its regex matches, an absent label
// being "" (so `{team: ""}` selects containers without one, and `.+` those
// with any).
type Match struct {
	Tenant      string
	Application string
	Version     string
	Stream      string // stdout, stderr or file
	Labels      map[string]string
}

// Source is what a Match is tested against: a source's Loki labels and
// its container's labels (none for a static directory).
type Source struct {
	Tenant, Application, Version string
	Labels                       map[string]string
}

// Selector chooses the stages of each source: the first pipeline.apps
// entry for its kind whose Match fits it, else the default of its kind.
// Every spec list it can choose was built once by NewSelector, so choosing
// cannot fail; a nil *Selector chooses nil (no stages) for everything.
type Selector struct {
	container, files *Choice
	apps             []app
}

// app is an App ready to match: nil matchers match anything.
type app struct {
	tenant, application, version, stream *matcher
	labels                               []labelMatch
	container, files                     *Choice // nil: not for that kind
}

type labelMatch struct {
	name string
	m    *matcher
}

// matcher matches whole values: by comparison when its expression is a
// plain literal (`application: shop`, the usual match), since an anchored
// regexp costs ~100 ns a test, and every file tries each entry in turn.
type matcher struct {
	re      *regexp.Regexp
	literal string
	isLit   bool
}

func (m *matcher) match(s string) bool {
	if m.isLit {
		return s == m.literal
	}
	return m.re.MatchString(s)
}

// Choice is one chosen spec list. Its pipelines are built per source
// (Pipeline, Joiner), since stages keep per-stream state (limit's token
// bucket, labels' cardinality bound).
type Choice struct {
	// Name is where its specs are configured, under pipeline:
	// "container", "files", "apps[2].files".
	Name string
	// multiline is the joiner's decoded spec, when the list starts with one.
	multiline *pipeline.MultilineConfig
	stages    []map[string]any
}

// NewSelector checks every match and builds every spec list of cfg once,
// and reports the problems (errors.Join; a list with a misplaced multiline
// is not built further), each naming its place relative to the pipeline
// key: `apps[2].match.application: ...`,
// `apps[0].files[1]: json: expressions.level: ...`.
func NewSelector(cfg SelectorConfig) (*Selector, error) {
	var errs []error
	s := &Selector{
		container: newChoice("container", cfg.Container, &errs),
		files:     newChoice("files", cfg.Files, &errs),
	}
	for i, a := range cfg.Apps {
		s.apps = append(s.apps, newApp(fmt.Sprintf("apps[%d]", i), a, &errs))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return s, nil
}

// Select returns the choice for src's lines of stream: StreamFile chooses
// among the files lists, stdout and stderr among the container lists.
func (s *Selector) Select(src Source, stream string) *Choice {
	if s == nil {
		return nil
	}
	file := stream == StreamFile
	for i := range s.apps {
		a := &s.apps[i]
		c := a.container
		if file {
			c = a.files
		}
		if c != nil && a.fits(&src, stream) {
			return c
		}
	}
	if file {
		return s.files
	}
	return s.container
}

// Pipeline builds a pipeline of the choice's stages for one source; nil
// for a nil choice (no stages).
func (c *Choice) Pipeline() *pipeline.Pipeline {
	if c == nil {
		return nil
	}
	p, err := Build(c.stages)
	if err != nil {
		panic(fmt.Sprintf("pipeline.%s: %v", c.Name, err)) // unreachable: NewSelector built the same specs
	}
	return p
}

// Joiner returns what makes the choice's multiline joiner for one source,
// or nil when it has none (every line is an entry): the shape
// file.Config.Multiline and source.Pipes.Join take.
func (c *Choice) Joiner() func() *pipeline.Multiline {
	if c == nil || c.multiline == nil {
		return nil
	}
	return func() *pipeline.Multiline {
		m, err := pipeline.NewMultiline(*c.multiline)
		if err != nil {
			panic(fmt.Sprintf("pipeline.%s: %v", c.Name, err)) // unreachable: NewSelector built the same spec
		}
		return m
	}
}

// newChoice checks specs, the list at key, and builds them once; problems
// go to errs, each naming the spec by its index in the list as configured.
func newChoice(key string, specs []map[string]any, errs *[]error) *Choice {
	if specs == nil {
		return nil
	}
	ml, stages, misplaced := splitMultiline(specs)
	if misplaced >= 0 {
		*errs = append(*errs, fmt.Errorf("%s[%d]: multiline: %w", key, misplaced, errMultilineFirst))
		return nil
	}
	var mlCfg *pipeline.MultilineConfig
	if ml != nil {
		cfg, err := multilineConfig(ml)
		if err == nil {
			mlCfg = &cfg
			if _, err = pipeline.NewMultiline(cfg); err != nil {
				err = multilineErrors([]error{err})
			}
		}
		if err != nil {
			for _, e := range flatten(err) { // "multiline: ..."
				*errs = append(*errs, fmt.Errorf("%s[0]: %w", key, e))
			}
		}
	}
	skipped := len(specs) - len(stages) // the multiline spec before them
	_, err := buildStages(stages, func(i int, typ string) string {
		if typ == "" {
			return fmt.Sprintf("%s[%d]", key, i+skipped)
		}
		return fmt.Sprintf("%s[%d]: %s", key, i+skipped, typ)
	})
	if err != nil {
		*errs = append(*errs, flatten(err)...)
	}
	return &Choice{Name: key, multiline: mlCfg, stages: stages}
}

// newApp compiles a's match and builds its lists; key is "apps[i]".
func newApp(key string, a App, errs *[]error) app {
	bad := func(field string, err error) { *errs = append(*errs, fmt.Errorf("%s.%s: %w", key, field, err)) }
	out := app{
		container: newChoice(key+".container", a.Container, errs),
		files:     newChoice(key+".files", a.Files, errs),
	}
	var err error
	for _, f := range []struct {
		field string
		expr  string
		m     **matcher
	}{
		{"match.tenant", a.Match.Tenant, &out.tenant},
		{"match.application", a.Match.Application, &out.application},
		{"match.version", a.Match.Version, &out.version},
		{"match.stream", a.Match.Stream, &out.stream},
	} {
		if f.expr == "" {
			continue // any
		}
		if *f.m, err = newMatcher(f.expr); err != nil {
			bad(f.field, err)
		}
	}
	names := make([]string, 0, len(a.Match.Labels))
	for name := range a.Match.Labels {
		names = append(names, name)
	}
	slices.Sort(names) // problems in a stable order
	for _, name := range names {
		if name == "" {
			bad("match.labels", errors.New("a label name is empty"))
			continue
		}
		m, err := newMatcher(a.Match.Labels[name])
		if err != nil {
			bad("match.labels."+name, err)
			continue
		}
		out.labels = append(out.labels, labelMatch{name, m})
	}
	if a.Container == nil && a.Files == nil {
		*errs = append(*errs, fmt.Errorf("%s: has neither container nor files: it would change no source's stages", key))
	} else {
		checkStreams(key, a, out.stream, errs)
	}
	return out
}

// checkStreams refuses a stream match that leaves a list of the entry
// unused: it is a mistake (a stderr rule under files), never an intent.
// stream is nil when the match gives none (or did not compile).
func checkStreams(key string, a App, stream *matcher, errs *[]error) {
	if stream == nil {
		return
	}
	expr := a.Match.Stream
	container := slices.ContainsFunc(containerStreams, stream.match)
	file := stream.match(StreamFile)
	switch {
	case a.Container != nil && a.Files != nil && !container && !file:
		*errs = append(*errs, fmt.Errorf("%s.match.stream: %q matches none of stdout, stderr, file: the entry can never apply", key, expr))
	case a.Files == nil && !container:
		*errs = append(*errs, fmt.Errorf("%s.match.stream: %q matches neither stdout nor stderr, and the entry has only container stages: it can never apply", key, expr))
	case a.Container == nil && !file:
		*errs = append(*errs, fmt.Errorf("%s.match.stream: %q does not match file, the stream of log files, and the entry has only files stages: it can never apply", key, expr))
	case a.Container != nil && !container:
		*errs = append(*errs, fmt.Errorf("%s.container: never used: match.stream %q matches neither stdout nor stderr", key, expr))
	case a.Files != nil && !file:
		*errs = append(*errs, fmt.Errorf("%s.files: never used: match.stream %q does not match file", key, expr))
	}
}

// newMatcher compiles expr to match whole values. The error shows expr as
// written, not wrapped in the anchors.
func newMatcher(expr string) (*matcher, error) {
	if _, err := regexp.Compile(expr); err != nil {
		return nil, err
	}
	re, err := regexp.Compile("^(?:" + expr + ")$")
	if err != nil {
		return nil, err
	}
	m := &matcher{re: re}
	if p, err := syntax.Parse(expr, syntax.Perl); err == nil && p.Op == syntax.OpLiteral && p.Flags&syntax.FoldCase == 0 {
		m.literal, m.isLit = string(p.Rune), true
	}
	return m, nil
}

// fits reports whether every field of a's match fits src's lines of stream.
func (a *app) fits(src *Source, stream string) bool {
	if !matches(a.stream, stream) || !matches(a.tenant, src.Tenant) ||
		!matches(a.application, src.Application) || !matches(a.version, src.Version) {
		return false
	}
	for _, l := range a.labels {
		if !l.m.match(src.Labels[l.name]) {
			return false
		}
	}
	return true
}

func matches(m *matcher, s string) bool { return m == nil || m.match(s) }

// String describes the choice for logs: where it is configured and its
// stage types in order.
func (c *Choice) String() string {
	if c == nil {
		return "none"
	}
	var types []string
	if c.multiline != nil {
		types = append(types, "multiline")
	}
	for _, s := range c.stages {
		t, _ := s["type"].(string)
		types = append(types, t)
	}
	return "pipeline." + c.Name + " [" + strings.Join(types, ", ") + "]"
}
