package stage

import (
	"fmt"
	"strings"
	"testing"
)

// dropAll is a spec list whose pipeline drops every line: a chosen
// pipeline that keeps a line was built from another list.
var dropAll = []map[string]any{{"type": "drop", "expression": ".*"}}

func mustSelector(t testing.TB, cfg SelectorConfig) *Selector {
	t.Helper()
	s, err := NewSelector(cfg)
	if err != nil {
		t.Fatalf("NewSelector: %v", err)
	}
	return s
}

// The first entry whose match fits a source wins, per kind and per
// stream; an entry without a list for the source's kind is passed over;
// the defaults come last.
func TestSelectorFirstMatchWins(t *testing.T) {
	s := mustSelector(t, SelectorConfig{
		Container: ContainerPreset(),
		Files:     ZapPreset(),
		Apps: []App{
			{Match: Match{Application: "shop", Stream: "stderr"}, Container: []map[string]any{{"type": "multiline", "first_line": `^\S`}}},
			{Match: Match{Application: "shop"}, Files: dropAll},                    // files only
			{Match: Match{Tenant: "acme"}, Container: dropAll, Files: ZapPreset()}, // both
			{Match: Match{Version: `v1\..*`}, Files: []map[string]any{}},           // no stages
		},
	})
	shop := Source{Tenant: "acme", Application: "shop", Version: "v2.0"}
	other := Source{Tenant: "other", Application: "shop", Version: "v1.4"}
	for _, c := range []struct {
		src    Source
		stream string
		want   string
	}{
		{shop, "stderr", "apps[0].container"},
		{shop, "stdout", "apps[2].container"}, // apps[1] has no container list
		{shop, StreamFile, "apps[1].files"},
		{Source{Tenant: "acme", Application: "cart"}, StreamFile, "apps[2].files"},
		{other, "stdout", "container"},
		{other, "stderr", "apps[0].container"}, // any tenant
		{Source{Tenant: "other", Application: "cart"}, "stderr", "container"},
		{other, StreamFile, "apps[1].files"},
		{Source{Tenant: "other", Version: "v1.4"}, StreamFile, "apps[3].files"},
		{Source{Tenant: "other", Version: "v10.4"}, StreamFile, "files"},
	} {
		if got := s.Select(c.src, c.stream); got == nil || got.Name != c.want {
			t.Errorf("Select(%+v, %s) = %v, want pipeline.%s", c.src, c.stream, got, c.want)
		}
	}
	if j := s.Select(shop, "stderr").Joiner(); j == nil || j() == nil {
		t.Error("apps[0].container starts with multiline: want a joiner")
	}
	if s.Select(shop, "stdout").Joiner() != nil {
		t.Error("apps[2].container has no multiline: want no joiner")
	}
}

// The chosen list is what runs, and every source gets a pipeline of its
// own (stages keep per-stream state).
func TestSelectorPipelinesAreTheChosenStagesPerSource(t *testing.T) {
	s := mustSelector(t, SelectorConfig{
		Container: []map[string]any{},
		Apps:      []App{{Match: Match{Application: "noisy"}, Container: dropAll}},
	})
	noisy := s.Select(Source{Application: "noisy"}, "stdout")
	a, b := noisy.Pipeline(), noisy.Pipeline()
	if a == b {
		t.Fatal("two sources share one pipeline")
	}
	if _, keep, _ := process(a, "x"); keep {
		t.Error("apps[0].container's pipeline kept a line; its drop stage did not run")
	}
	if _, keep, _ := process(s.Select(Source{Application: "calm"}, "stdout").Pipeline(), "x"); !keep {
		t.Error("the default (no stages) dropped a line")
	}
}

// Matches are anchored, and labels absent from a container match "".
func TestSelectorMatchesWholeValuesAndLabels(t *testing.T) {
	s := mustSelector(t, SelectorConfig{Files: ZapPreset(), Apps: []App{
		{Match: Match{Application: "shop"}, Files: dropAll},
		{Match: Match{Labels: map[string]string{"team": "pay.*", "tier": ""}}, Files: dropAll},
		{Match: Match{Labels: map[string]string{"tier": ".+"}}, Files: dropAll},
		{Match: Match{Version: `v1\.2`}, Files: dropAll}, // a literal, compared
		{Match: Match{Application: `(?i)cart`}, Files: dropAll},
	}})
	for _, c := range []struct {
		src  Source
		want string
	}{
		{Source{Application: "shop"}, "apps[0].files"},
		{Source{Application: "shop-admin"}, "files"},
		{Source{Application: "myshop"}, "files"},
		{Source{Labels: map[string]string{"team": "payments"}}, "apps[1].files"},
		{Source{Labels: map[string]string{"team": "payments", "tier": "gold"}}, "apps[2].files"},
		{Source{Labels: map[string]string{"team": "repay"}}, "files"},
		{Source{}, "files"},
		{Source{Version: "v1.2"}, "apps[3].files"},
		{Source{Version: "v1x2"}, "files"},
		{Source{Version: "v1.20"}, "files"},
		{Source{Application: "CART"}, "apps[4].files"},
	} {
		if got := s.Select(c.src, StreamFile); got.Name != c.want {
			t.Errorf("Select(%+v) = %s, want pipeline.%s", c.src, got.Name, c.want)
		}
	}
}

func TestNilSelectorChoosesNoStages(t *testing.T) {
	var s *Selector
	c := s.Select(Source{Tenant: "a"}, "stdout")
	if c != nil || c.Pipeline() != nil || c.Joiner() != nil {
		t.Errorf("nil selector chose %v", c)
	}
	// No lists at all: no default for either kind, so nothing to build.
	if c := mustSelector(t, SelectorConfig{}).Select(Source{}, StreamFile); c != nil {
		t.Errorf("empty selector chose %v", c)
	}
}

// Every problem is reported, each naming its key and list index as
// configured (multiline counted where it stands).
func TestNewSelectorErrorsNameTheirPlace(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  SelectorConfig
		want []string
	}{
		{"regexes", SelectorConfig{Apps: []App{{Match: Match{Tenant: "(", Application: "a[", Labels: map[string]string{"team": "*x"}}, Files: ZapPreset()}}},
			[]string{"apps[0].match.tenant: error parsing regexp: missing closing ): `(`",
				"apps[0].match.application: error parsing regexp: missing closing ]: `[`",
				"apps[0].match.labels.team: error parsing regexp: missing argument to repetition operator: `*`"}},
		{"empty label name", SelectorConfig{Apps: []App{{Match: Match{Labels: map[string]string{"": "x"}}, Files: ZapPreset()}}},
			[]string{"apps[0].match.labels: a label name is empty"}},
		{"stage after multiline", SelectorConfig{Apps: []App{{}, {Files: []map[string]any{{"type": "multiline", "first_line": "^a"}, {"type": "json_auto"}, {"type": "json", "expresions": map[string]any{}}}}}},
			[]string{"apps[0]: has neither container nor files", "apps[1].files[2]: json: expresions: unknown option"}},
		{"misplaced multiline", SelectorConfig{Apps: []App{{Container: []map[string]any{{"type": "zap"}, {"type": "multiline"}}}}},
			[]string{"apps[0].container[1]: multiline: must be the first stage"}},
		{"bad multiline", SelectorConfig{Apps: []App{{Container: []map[string]any{{"type": "multiline", "first_line": "("}}}}},
			[]string{"apps[0].container[0]: multiline: first_line"}},
		{"no type", SelectorConfig{Files: []map[string]any{{}}},
			[]string{"files[0]: type: missing"}},
		{"stdout on files only", SelectorConfig{Apps: []App{{Match: Match{Stream: "stdout"}, Files: ZapPreset()}}},
			[]string{`apps[0].match.stream: "stdout" does not match file, the stream of log files, and the entry has only files stages: it can never apply`}},
		{"file on container only", SelectorConfig{Apps: []App{{Match: Match{Stream: "file"}, Container: ZapPreset()}}},
			[]string{`apps[0].match.stream: "file" matches neither stdout nor stderr, and the entry has only container stages: it can never apply`}},
		{"no stream at all", SelectorConfig{Apps: []App{{Match: Match{Stream: "out"}, Container: ZapPreset(), Files: ZapPreset()}}},
			[]string{`apps[0].match.stream: "out" matches none of stdout, stderr, file`}},
		{"unused files", SelectorConfig{Apps: []App{{Match: Match{Stream: "std.*"}, Container: ZapPreset(), Files: ZapPreset()}}},
			[]string{`apps[0].files: never used: match.stream "std.*" does not match file`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := NewSelector(c.cfg)
			if err == nil {
				t.Fatalf("NewSelector accepted %+v", c.cfg)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n%v\ndoes not say %q", err, w)
				}
			}
			if n, m := len(flatten(err)), len(c.want); n != m {
				t.Errorf("%d problems, want %d:\n%v", n, m, err)
			}
		})
	}
}

// A stream match that fits one of the entry's kinds, for each kind it has,
// is fine.
func TestNewSelectorAcceptsStreamsThatApply(t *testing.T) {
	for _, a := range []App{
		{Match: Match{Stream: "stderr"}, Container: ZapPreset()},
		{Match: Match{Stream: "file|stderr"}, Container: ZapPreset()},
		{Match: Match{Stream: "file"}, Files: ZapPreset()},
		{Match: Match{Stream: "file|stderr"}, Container: ZapPreset(), Files: ZapPreset()},
		{Match: Match{Stream: ".*"}, Container: ZapPreset(), Files: ZapPreset()},
	} {
		if _, err := NewSelector(SelectorConfig{Apps: []App{a}}); err != nil {
			t.Errorf("%+v: %v", a.Match, err)
		}
	}
}

// BenchmarkSelectFiles is what choosing the stages costs the start of
// 1,000 files (one op): per file, choose and build its pipeline and
// joiner, with the seed's files pipeline. "single" has no pipeline.apps
// (one pipeline for all); "apps=N" has N entries of which none fits, so
// every file tries all N before the default, the worst case: "literal"
// entries match a tenant, an application and a label by name, "regex"
// ones by regexes. The select/ variants leave out the building.
func BenchmarkSelectFiles(b *testing.B) {
	seed := []map[string]any{
		{"type": "multiline", "first_line": `^\{`},
		{"type": "zap"},
		{"type": "drop", "level": []any{"info"}, "drop_ratio": 0.9, "drop_counter_reason": "sampled_info"},
		{"type": "redact"},
	}
	files := make([]Source, 1000)
	for i := range files {
		files[i] = Source{Tenant: fmt.Sprintf("tenant%d", i%10), Application: fmt.Sprintf("app%d", i%100),
			Version: fmt.Sprintf("v1.%d", i), Labels: map[string]string{"team": "core", "io.podman.annotations": "x"}}
	}
	type variant struct {
		name  string
		match func(i int) Match
	}
	for _, v := range []variant{
		{"single", nil},
		{"literal", func(i int) Match {
			return Match{Tenant: fmt.Sprintf("tenant%d", i%10), Application: fmt.Sprintf("other%d", i), Labels: map[string]string{"team": "pay"}}
		}},
		{"regex", func(i int) Match {
			return Match{Tenant: "tenant.*", Application: fmt.Sprintf("other%d|more%d", i, i), Labels: map[string]string{"team": "pay.*"}}
		}},
	} {
		for _, n := range []int{10, 100} {
			cfg := SelectorConfig{Files: seed}
			name := v.name
			if v.match != nil {
				for i := range n {
					cfg.Apps = append(cfg.Apps, App{Match: v.match(i), Files: seed})
				}
				name = fmt.Sprintf("apps=%d/%s", n, v.name)
			} else if n > 10 {
				continue
			}
			s := mustSelector(b, cfg)
			b.Run("select/"+name, func(b *testing.B) {
				for b.Loop() {
					for _, f := range files {
						if s.Select(f, StreamFile) != s.files {
							b.Fatal("an entry fits")
						}
					}
				}
			})
			b.Run("select+build/"+name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					for _, f := range files {
						c := s.Select(f, StreamFile)
						if c.Pipeline() == nil || c.Joiner()() == nil {
							b.Fatal("no pipeline")
						}
					}
				}
			})
		}
	}
}
