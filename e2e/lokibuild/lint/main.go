// Command lint checks podtail's deployment files (contrib/) with the parsers
// of the programs that read them, and against the metrics podtail exports:
//
//   - Grafana: the datasource and dashboard provisioning parse; every
//     dashboard parses, every panel's, target's and variable's datasource is
//     provisioned (directly by uid, or through a datasource variable of its
//     type); every PromQL expression parses with Prometheus's parser and
//     every LogQL expression with Loki's, after Grafana's variables are
//     substituted.
//   - Prometheus alert rules parse and validate as Prometheus loads them
//     (rulefmt, PromQL, templates), and each alert has a severity and a
//     summary.
//   - Loki: ruler rules load as Loki's ruler loads them (LogQL, templates);
//     loki.yaml validates as Loki's own start-up does; the runtime overrides
//     parse and validate per tenant.
//   - The ```logql examples in README.md, contrib/README.md and docs/*.md
//     parse.
//   - Every podtail_* metric a dashboard or rule uses is one podtail's code
//     defines (string literals in ../pkg and ../cmd), with labels it has
//     (docs/metrics.md, which `go test ./docs` keeps equal to the code);
//     LogQL selectors use only labels podtail sets.
//
// It lives in the Loki build module (e2e/lokibuild) because that module
// already depends on Loki and Prometheus: no new downloads. contrib/check.sh
// builds it, cached by the hash of its sources.
//
//	lint -root .    # prints one line per problem, naming file and place; exit 1 if any
package main

import (
	// First, as in cmd/loki: otel's grpc encoding wants a proto codec.
	_ "google.golang.org/grpc/encoding/proto"

	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	promql "github.com/prometheus/prometheus/promql/parser"
	yamlv2 "gopkg.in/yaml.v2"
	"gopkg.in/yaml.v3"

	"github.com/grafana/loki/v3/pkg/logql/syntax"
	"github.com/grafana/loki/v3/pkg/loki"
	"github.com/grafana/loki/v3/pkg/ruler"
	loki_runtime "github.com/grafana/loki/v3/pkg/runtime"
	"github.com/grafana/loki/v3/pkg/util/cfg"
	"github.com/grafana/loki/v3/pkg/validation"
)

func main() {
	root := flag.String("root", ".", "podtail's repository root")
	flag.Parse()
	l := &linter{root: *root, prom: promql.NewParser(promql.Options{})}
	if err := l.run(); err != nil {
		fmt.Fprintln(os.Stderr, "lint:", err)
		os.Exit(2)
	}
	for _, p := range l.problems {
		fmt.Println(p)
	}
	if len(l.problems) > 0 {
		fmt.Printf("lint: %d problems\n", len(l.problems))
		os.Exit(1)
	}
	fmt.Printf("lint: OK (%s)\n", strings.Join(l.checked, ", "))
}

type linter struct {
	root     string
	prom     promql.Parser
	metrics  map[string]metricInfo // podtail's, by name
	problems []string
	checked  []string // what was checked, for the summary line
}

// metricInfo is what podtail's code and docs say about one metric.
type metricInfo struct {
	where  string   // file:line of its name in the code
	typ    string   // from docs/metrics.md; "" when not documented
	labels []string // from docs/metrics.md
}

func (l *linter) problem(where, format string, args ...any) {
	l.problems = append(l.problems, where+": "+fmt.Sprintf(format, args...))
}

// problemErr reports err at where, without the path the parsers already
// put in front of their messages.
func (l *linter) problemErr(where, path string, err error, prefix string) {
	msg := strings.ReplaceAll(err.Error(), path+": ", "")
	l.problem(where, "%s%s", prefix, strings.ReplaceAll(msg, path, where))
}

func (l *linter) rel(path string) string {
	if r, err := filepath.Rel(l.root, path); err == nil {
		return r
	}
	return path
}

func (l *linter) run() error {
	var err error
	if l.metrics, err = podtailMetrics(l.root); err != nil {
		return err
	}
	if len(l.metrics) == 0 {
		return fmt.Errorf("no podtail_* metric names found in %s/pkg and %s/cmd", l.root, l.root)
	}
	l.checked = append(l.checked, fmt.Sprintf("%d podtail metrics known", len(l.metrics)))
	sources, err := l.grafanaDatasources()
	if err != nil {
		return err
	}
	l.grafanaDashboardProviders()
	dashboards, _ := filepath.Glob(filepath.Join(l.root, "contrib/grafana/dashboards/*.json"))
	if len(dashboards) == 0 {
		l.problem("contrib/grafana/dashboards", "no dashboards")
	}
	uids := map[string]string{}
	for _, f := range dashboards {
		l.dashboard(f, sources, uids)
	}
	l.checked = append(l.checked, fmt.Sprintf("%d dashboards", len(dashboards)))
	promRules, _ := filepath.Glob(filepath.Join(l.root, "contrib/prometheus/*.y*ml"))
	for _, f := range promRules {
		l.prometheusRules(f)
	}
	l.checked = append(l.checked, fmt.Sprintf("%d Prometheus rule files", len(promRules)))
	var lokiRules []string
	_ = filepath.WalkDir(filepath.Join(l.root, "contrib/loki/rules"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
			lokiRules = append(lokiRules, p)
		}
		return nil
	})
	for _, f := range lokiRules {
		l.lokiRules(f)
	}
	l.checked = append(l.checked, fmt.Sprintf("%d Loki rule files", len(lokiRules)))
	docs, _ := filepath.Glob(filepath.Join(l.root, "docs/*.md"))
	docs = append([]string{filepath.Join(l.root, "README.md"), filepath.Join(l.root, "contrib/README.md")}, docs...)
	n := 0
	for _, f := range docs {
		n += l.markdownLogQL(f)
	}
	l.checked = append(l.checked, fmt.Sprintf("%d LogQL examples in the docs", n))
	l.lokiConfig(filepath.Join(l.root, "contrib/loki/loki.yaml"))
	l.lokiOverrides(filepath.Join(l.root, "contrib/loki/overrides.yaml"))
	l.checked = append(l.checked, "loki.yaml, overrides.yaml")
	return nil
}

// ---- podtail's metrics ----

var metricName = regexp.MustCompile(`^podtail_[a-z0-9_]+$`)

// podtailMetrics collects every "podtail_…" string literal in the non-test
// Go files under pkg/ and cmd/ (the code is the truth; no list to keep), and
// the type and labels docs/metrics.md gives them.
func podtailMetrics(root string) (map[string]metricInfo, error) {
	out := map[string]metricInfo{}
	fset := token.NewFileSet()
	for _, dir := range []string{"pkg", "cmd"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
				return err
			}
			f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
			if err != nil {
				return err
			}
			ast.Inspect(f, func(n ast.Node) bool {
				lit, ok := n.(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					return true
				}
				s, err := strconv.Unquote(lit.Value)
				if err == nil && metricName.MatchString(s) {
					if _, seen := out[s]; !seen {
						pos := fset.Position(lit.Pos())
						rel, _ := filepath.Rel(root, pos.Filename)
						out[s] = metricInfo{where: fmt.Sprintf("%s:%d", rel, pos.Line)}
					}
				}
				return true
			})
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("reading podtail's code: %w", err)
		}
	}
	docs, err := os.ReadFile(filepath.Join(root, "docs/metrics.md"))
	if err != nil {
		return out, nil // label checks need the docs; names are still checked
	}
	row := regexp.MustCompile("^\\| `(podtail_[a-z0-9_]+)` \\| (\\w+) \\| ([^|]*) \\|")
	for _, line := range strings.Split(string(docs), "\n") {
		m := row.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		mi, ok := out[m[1]]
		if !ok {
			continue // stale docs: go test ./docs reports it
		}
		mi.typ = m[2]
		for _, lb := range strings.Split(m[3], ",") {
			if lb = strings.Trim(strings.TrimSpace(lb), "`"); lb != "" && lb != "—" {
				mi.labels = append(mi.labels, lb)
			}
		}
		out[m[1]] = mi
	}
	return out, nil
}

// External metrics the contrib files may use: Prometheus's own per-target
// series, blackbox_exporter's probes, and the Go and process collectors
// podtail registers.
func externalMetric(name string) bool {
	return name == "up" || strings.HasPrefix(name, "scrape_") || strings.HasPrefix(name, "probe_") ||
		strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_")
}

// Labels Prometheus adds to every scraped series.
var targetLabels = []string{"instance", "job"}

// lookup resolves a series name to a podtail metric: histogram series carry
// _bucket, _sum and _count suffixes, and _bucket the le label.
func (l *linter) lookup(name string) (metricInfo, []string, bool) {
	if mi, ok := l.metrics[name]; ok {
		return mi, append(slices.Clone(mi.labels), targetLabels...), true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		if mi, ok := l.metrics[base]; ok && (mi.typ == "" || mi.typ == "histogram" || mi.typ == "summary") {
			extra := targetLabels
			if suffix == "_bucket" {
				extra = append(slices.Clone(targetLabels), "le")
			}
			return mi, append(slices.Clone(mi.labels), extra...), true
		}
	}
	return metricInfo{}, nil, false
}

// checkPromQL parses expr and checks its metric names, the labels its
// selectors match on, and the labels its aggregations group by.
func (l *linter) checkPromQL(where, expr string) {
	e, err := l.prom.ParseExpr(expr)
	if err != nil {
		l.problem(where, "PromQL does not parse: %v\n\t%s", err, expr)
		return
	}
	promql.Inspect(e, func(n promql.Node, _ []promql.Node) error {
		switch n := n.(type) {
		case *promql.VectorSelector:
			l.checkSelector(where, n)
		case *promql.AggregateExpr:
			l.checkGrouping(where, n)
		}
		return nil
	})
}

func selectorName(vs *promql.VectorSelector) string {
	if vs.Name != "" {
		return vs.Name
	}
	for _, m := range vs.LabelMatchers {
		if m.Name == model.MetricNameLabel && m.Type == 0 { // MatchEqual
			return m.Value
		}
	}
	return ""
}

func (l *linter) checkSelector(where string, vs *promql.VectorSelector) {
	name := selectorName(vs)
	if name == "" {
		l.problem(where, "selector %s names no metric", vs)
		return
	}
	if externalMetric(name) {
		return
	}
	if !strings.HasPrefix(name, "podtail_") {
		l.problem(where, "metric %s is neither podtail's nor a known external one (up, probe_*, go_*, process_*)", name)
		return
	}
	mi, labels, ok := l.lookup(name)
	if !ok {
		l.problem(where, "metric %s is not defined anywhere in podtail's code (pkg/, cmd/)", name)
		return
	}
	if mi.typ == "" {
		return // undocumented: go test ./docs reports it; labels unknown here
	}
	for _, m := range vs.LabelMatchers {
		if m.Name != model.MetricNameLabel && !slices.Contains(labels, m.Name) {
			l.problem(where, "%s has no label %q (it has %s)", name, m.Name, strings.Join(labels, ", "))
		}
	}
}

// checkGrouping: `sum by (x)` over podtail metrics that have no label x
// silently yields one series; name the label instead.
func (l *linter) checkGrouping(where string, a *promql.AggregateExpr) {
	if a.Without || len(a.Grouping) == 0 {
		return
	}
	var have []string
	known := true
	promql.Inspect(a.Expr, func(n promql.Node, _ []promql.Node) error {
		if vs, ok := n.(*promql.VectorSelector); ok {
			mi, labels, ok := l.lookup(selectorName(vs))
			if !ok || mi.typ == "" {
				known = false
			}
			have = append(have, labels...)
		}
		return nil
	})
	if !known {
		return
	}
	for _, g := range a.Grouping {
		if !slices.Contains(have, g) {
			l.problem(where, "groups by %q, a label none of its metrics has (%s)", g, strings.Join(uniq(have), ", "))
		}
	}
}

func uniq(xs []string) []string {
	xs = slices.Clone(xs)
	sort.Strings(xs)
	return slices.Compact(xs)
}

// The labels podtail puts on Loki streams (pkg/labels, pkg/pipeline/stage's
// zap and json_auto stages). The contrib files configure no other labels.
var podtailStreamLabels = []string{"tenant", "application", "version", "stream", "log_level"}

// checkLogQL parses expr with Loki's parser and checks that its stream
// selectors use podtail's labels.
func (l *linter) checkLogQL(where, expr string) {
	e, err := syntax.ParseExpr(expr)
	if err != nil {
		l.problem(where, "LogQL does not parse: %v\n\t%s", err, expr)
		return
	}
	groups, err := syntax.MatcherGroups(e)
	if err != nil {
		l.problem(where, "LogQL matchers: %v", err)
		return
	}
	for _, g := range groups {
		for _, m := range g.Matchers {
			if !slices.Contains(podtailStreamLabels, m.Name) {
				l.problem(where, "LogQL selects on label %q, which podtail does not set (%s)", m.Name, strings.Join(podtailStreamLabels, ", "))
			}
		}
	}
}

// markdownLogQL checks every line of the ```logql blocks of a Markdown
// file: one query per line, a comment after two spaces and a #.
func (l *linter) markdownLogQL(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0 // a doc that is not there has no examples
	}
	n := 0
	in := false
	for i, line := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(line, "```logql"):
			in = true
		case in && strings.HasPrefix(line, "```"):
			in = false
		case in:
			q := strings.TrimSpace(trailingComment.ReplaceAllString(line, ""))
			if q == "" || strings.HasPrefix(q, "#") {
				continue
			}
			n++
			l.checkLogQL(fmt.Sprintf("%s:%d", l.rel(path), i+1), q)
		}
	}
	return n
}

var trailingComment = regexp.MustCompile(`\s{2,}#.*$`)

// ---- Grafana ----

type datasource struct {
	Name      string `yaml:"name"`
	UID       string `yaml:"uid"`
	Type      string `yaml:"type"`
	URL       string `yaml:"url"`
	IsDefault bool   `yaml:"isDefault"`
	JSONData  struct {
		HeaderName string `yaml:"httpHeaderName1"`
	} `yaml:"jsonData"`
	Secure struct {
		HeaderValue string `yaml:"httpHeaderValue1"`
	} `yaml:"secureJsonData"`
}

// grafanaDatasources reads the datasource provisioning files and checks
// them as Grafana would refuse them (missing name or type, duplicate name
// or uid, two defaults), and that each Loki datasource sends a tenant.
func (l *linter) grafanaDatasources() ([]datasource, error) {
	files, _ := filepath.Glob(filepath.Join(l.root, "contrib/grafana/provisioning/datasources/*.y*ml"))
	if len(files) == 0 {
		l.problem("contrib/grafana/provisioning/datasources", "no datasource provisioning file")
	}
	var all []datasource
	names, uids := map[string]bool{}, map[string]bool{}
	defaults := 0
	for _, f := range files {
		var doc struct {
			APIVersion  int          `yaml:"apiVersion"`
			Datasources []datasource `yaml:"datasources"`
		}
		if !l.readYAML(f, &doc) {
			continue
		}
		where := l.rel(f)
		if doc.APIVersion != 1 {
			l.problem(where, "apiVersion %d, want 1", doc.APIVersion)
		}
		for i, ds := range doc.Datasources {
			at := fmt.Sprintf("%s: datasources[%d] (%s)", where, i, ds.Name)
			switch {
			case ds.Name == "":
				l.problem(at, "no name")
			case names[ds.Name]:
				l.problem(at, "name %q used twice", ds.Name)
			}
			switch {
			case ds.UID == "":
				l.problem(at, "no uid: dashboards refer to datasources by uid")
			case uids[ds.UID]:
				l.problem(at, "uid %q used twice", ds.UID)
			}
			if ds.Type == "" {
				l.problem(at, "no type")
			}
			if ds.URL == "" {
				l.problem(at, "no url")
			}
			if ds.IsDefault {
				defaults++
			}
			if ds.Type == "loki" && (ds.JSONData.HeaderName != "X-Scope-OrgID" || ds.Secure.HeaderValue == "") {
				l.problem(at, "a Loki datasource must send its tenant: jsonData.httpHeaderName1: X-Scope-OrgID and secureJsonData.httpHeaderValue1")
			}
			names[ds.Name], uids[ds.UID] = true, true
			all = append(all, ds)
		}
	}
	if defaults > 1 {
		l.problem("contrib/grafana/provisioning/datasources", "%d datasources marked isDefault; Grafana allows one", defaults)
	}
	return all, nil
}

func (l *linter) grafanaDashboardProviders() {
	files, _ := filepath.Glob(filepath.Join(l.root, "contrib/grafana/provisioning/dashboards/*.y*ml"))
	if len(files) == 0 {
		l.problem("contrib/grafana/provisioning/dashboards", "no dashboard provisioning file")
	}
	for _, f := range files {
		var doc struct {
			APIVersion int `yaml:"apiVersion"`
			Providers  []struct {
				Name    string `yaml:"name"`
				Type    string `yaml:"type"`
				Options struct {
					Path string `yaml:"path"`
				} `yaml:"options"`
			} `yaml:"providers"`
		}
		if !l.readYAML(f, &doc) {
			continue
		}
		if doc.APIVersion != 1 || len(doc.Providers) == 0 {
			l.problem(l.rel(f), "want apiVersion 1 and at least one provider")
		}
		for i, p := range doc.Providers {
			if p.Name == "" || p.Type != "file" || p.Options.Path == "" {
				l.problem(l.rel(f), "providers[%d]: want a name, type file and options.path", i)
			}
		}
	}
}

// readYAML decodes a file, reporting a problem (and returning false) if it
// does not parse.
func (l *linter) readYAML(path string, v any) bool {
	b, err := os.ReadFile(path)
	if err == nil {
		err = yaml.Unmarshal(b, v)
	}
	if err != nil {
		l.problem(l.rel(path), "%v", err)
		return false
	}
	return true
}

// The parts of Grafana's dashboard JSON model this checks.
type dashboardJSON struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []variable `json:"list"`
	} `json:"templating"`
	Annotations struct {
		List []struct {
			Name       string          `json:"name"`
			Datasource json.RawMessage `json:"datasource"`
			Expr       string          `json:"expr"`
		} `json:"list"`
	} `json:"annotations"`
}

type panel struct {
	ID         int             `json:"id"`
	Type       string          `json:"type"`
	Title      string          `json:"title"`
	Datasource json.RawMessage `json:"datasource"`
	GridPos    *struct{}       `json:"gridPos"`
	Targets    []struct {
		RefID      string          `json:"refId"`
		Datasource json.RawMessage `json:"datasource"`
		Expr       string          `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // collapsed rows
}

type variable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Datasource json.RawMessage `json:"datasource"`
	Query      json.RawMessage `json:"query"`
	IncludeAll bool            `json:"includeAll"`
	AllValue   string          `json:"allValue"`
	Current    struct {
		Value any `json:"value"`
	} `json:"current"`
}

// dsRef is a resolved datasource reference: the plugin type, or "" when it
// cannot be resolved (reported).
type dsResolver struct {
	l       *linter
	sources []datasource
	vars    map[string]variable
}

var varRef = regexp.MustCompile(`^\$\{?(\w+)\}?$`)

// resolve turns a datasource reference (object {type, uid}, a name or uid
// string, a variable, or null for the default) into a plugin type.
func (r dsResolver) resolve(where string, raw json.RawMessage) string {
	var ref struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	}
	trimmed := bytes.TrimSpace(raw)
	switch {
	case len(trimmed) == 0 || string(trimmed) == "null":
		for _, ds := range r.sources {
			if ds.IsDefault {
				return ds.Type
			}
		}
		r.l.problem(where, "uses the default datasource, and none is provisioned as default")
		return ""
	case trimmed[0] == '"':
		var s string
		_ = json.Unmarshal(trimmed, &s)
		ref.UID = s
	default:
		if err := json.Unmarshal(trimmed, &ref); err != nil {
			r.l.problem(where, "datasource %s: %v", trimmed, err)
			return ""
		}
	}
	if ref.UID == "-- Grafana --" || ref.UID == "grafana" || ref.Type == "grafana" {
		return "grafana"
	}
	if m := varRef.FindStringSubmatch(ref.UID); m != nil {
		v, ok := r.vars[m[1]]
		if !ok || v.Type != "datasource" {
			r.l.problem(where, "datasource %s is not a datasource variable of this dashboard", ref.UID)
			return ""
		}
		var plugin string
		_ = json.Unmarshal(v.Query, &plugin)
		if ref.Type != "" && ref.Type != plugin {
			r.l.problem(where, "datasource type %s, but variable %s lists %s datasources", ref.Type, v.Name, plugin)
		}
		n := 0
		for _, ds := range r.sources {
			if ds.Type == plugin {
				n++
			}
		}
		if n == 0 {
			r.l.problem(where, "variable %s lists %s datasources, and none is provisioned", v.Name, plugin)
		}
		return plugin
	}
	for _, ds := range r.sources {
		if ds.UID == ref.UID || (ref.Type == "" && ds.Name == ref.UID) {
			if ref.Type != "" && ref.Type != ds.Type {
				r.l.problem(where, "datasource %s is of type %s, not %s", ref.UID, ds.Type, ref.Type)
			}
			return ds.Type
		}
	}
	r.l.problem(where, "datasource %q is not provisioned (contrib/grafana/provisioning/datasources)", ref.UID)
	return ""
}

func (l *linter) dashboard(path string, sources []datasource, uids map[string]string) {
	where := l.rel(path)
	b, err := os.ReadFile(path)
	if err != nil {
		l.problem(where, "%v", err)
		return
	}
	var d dashboardJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&d); err != nil {
		l.problem(where, "not valid JSON: %v", err)
		return
	}
	if _, err := dec.Token(); err != io.EOF {
		l.problem(where, "trailing data after the dashboard object")
	}
	switch {
	case d.UID == "":
		l.problem(where, "no uid")
	case len(d.UID) > 40:
		l.problem(where, "uid %q is longer than Grafana's 40 characters", d.UID)
	case uids[d.UID] != "":
		l.problem(where, "uid %q is also %s's", d.UID, uids[d.UID])
	}
	uids[d.UID] = where
	if d.Title == "" {
		l.problem(where, "no title")
	}
	r := dsResolver{l: l, sources: sources, vars: map[string]variable{}}
	for _, v := range d.Templating.List {
		if v.Name == "" {
			l.problem(where, "a template variable without a name")
		}
		if _, dup := r.vars[v.Name]; dup {
			l.problem(where, "template variable %s defined twice", v.Name)
		}
		r.vars[v.Name] = v
	}
	for _, v := range d.Templating.List {
		vw := fmt.Sprintf("%s: variable %s", where, v.Name)
		switch v.Type {
		case "datasource":
			var plugin string
			if err := json.Unmarshal(v.Query, &plugin); err != nil || plugin == "" {
				l.problem(vw, "a datasource variable's query must be a plugin type")
				continue
			}
			if cur, ok := v.Current.Value.(string); ok && cur != "" && !strings.HasPrefix(cur, "$") {
				found := false
				for _, ds := range sources {
					found = found || (ds.Type == plugin && (ds.Name == cur || ds.UID == cur))
				}
				if !found {
					l.problem(vw, "current value %q is not a provisioned %s datasource", cur, plugin)
				}
			}
		case "query":
			typ := r.resolve(vw, v.Datasource)
			var q string
			if err := json.Unmarshal(v.Query, &q); err != nil {
				var obj struct {
					Query string `json:"query"`
				}
				_ = json.Unmarshal(v.Query, &obj)
				q = obj.Query
			}
			l.variableQuery(vw, typ, substitute(q, r.vars))
		}
	}
	for i, a := range d.Annotations.List {
		aw := fmt.Sprintf("%s: annotation %d (%s)", where, i, a.Name)
		l.expr(aw, r.resolve(aw, a.Datasource), a.Expr, r.vars)
	}
	ids := map[int]bool{}
	var walk func(ps []panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			pw := fmt.Sprintf("%s: panel %d %q", where, p.ID, p.Title)
			if ids[p.ID] {
				l.problem(pw, "panel id %d used twice", p.ID)
			}
			ids[p.ID] = true
			if p.GridPos == nil {
				l.problem(pw, "no gridPos")
			}
			walk(p.Panels)
			if p.Type == "row" || p.Type == "text" {
				continue
			}
			if len(p.Targets) == 0 {
				l.problem(pw, "no targets")
				continue
			}
			panelType := r.resolve(pw, p.Datasource)
			refs := map[string]bool{}
			for _, t := range p.Targets {
				tw := fmt.Sprintf("%s target %s", pw, t.RefID)
				if t.RefID == "" || refs[t.RefID] {
					l.problem(tw, "refId missing or repeated")
				}
				refs[t.RefID] = true
				typ := panelType
				if len(t.Datasource) > 0 {
					typ = r.resolve(tw, t.Datasource)
					if panelType != "" && typ != "" && typ != panelType && panelType != "-- Mixed --" {
						l.problem(tw, "target datasource type %s differs from the panel's %s", typ, panelType)
					}
				}
				l.expr(tw, typ, t.Expr, r.vars)
			}
		}
	}
	walk(d.Panels)
}

// expr checks a target's query in its datasource's language.
func (l *linter) expr(where, typ, expr string, vars map[string]variable) {
	if strings.TrimSpace(expr) == "" {
		if typ == "prometheus" || typ == "loki" {
			l.problem(where, "empty expr")
		}
		return
	}
	expr = substitute(expr, vars)
	if strings.Contains(expr, "$") && unknownVar.MatchString(expr) {
		l.problem(where, "uses a variable the dashboard does not define: %s", unknownVar.FindString(expr))
		return
	}
	switch typ {
	case "prometheus":
		l.checkPromQL(where, expr)
	case "loki":
		l.checkLogQL(where, expr)
	}
}

var (
	labelValues = regexp.MustCompile(`^label_values\((.*),\s*(\w+)\)$`)
	labelOnly   = regexp.MustCompile(`^label_values\(\s*(\w+)\s*\)$`)
	queryResult = regexp.MustCompile(`^query_result\((.*)\)$`)
	unknownVar  = regexp.MustCompile(`\$\{?\w+`)
)

// variableQuery checks a query variable's Grafana query function.
func (l *linter) variableQuery(where, typ, q string) {
	q = strings.TrimSpace(q)
	switch {
	case labelOnly.MatchString(q):
	case labelValues.MatchString(q):
		sel := labelValues.FindStringSubmatch(q)[1]
		switch typ {
		case "prometheus":
			l.checkPromQL(where, sel)
		case "loki":
			l.checkLogQL(where, sel)
		}
	case typ == "prometheus" && queryResult.MatchString(q):
		l.checkPromQL(where, queryResult.FindStringSubmatch(q)[1])
	default:
		l.problem(where, "query %q is not label_values(...) or query_result(...)", q)
	}
}

var (
	builtinVar = regexp.MustCompile(`\$\{?__(rate_interval|interval|range|auto)\}?`)
	builtinMs  = regexp.MustCompile(`\$\{?__(interval_ms|range_ms|range_s)\}?`)
	userVar    = regexp.MustCompile(`\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]`)
)

// substitute replaces Grafana's variables with values of the right kind:
// durations for the interval built-ins and interval variables; for the
// others their custom "All" value when they have one (the value most likely
// to break a query: Loki refuses {app=~".*"}), else a plain word. Unknown
// variables stay, and are reported.
func substitute(expr string, vars map[string]variable) string {
	expr = builtinVar.ReplaceAllString(expr, "5m")
	expr = builtinMs.ReplaceAllString(expr, "300")
	return userVar.ReplaceAllStringFunc(expr, func(s string) string {
		m := userVar.FindStringSubmatch(s)
		name := m[1] + m[2] + m[3]
		v, ok := vars[name]
		switch {
		case !ok:
			return s
		case v.Type == "interval":
			return "5m"
		case v.IncludeAll && v.AllValue != "":
			return v.AllValue
		default:
			return "value"
		}
	})
}

// ---- Prometheus rules ----

func (l *linter) prometheusRules(path string) {
	where := l.rel(path)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	b, err := os.ReadFile(path)
	if err != nil {
		l.problem(where, "%v", err)
		return
	}
	groups, errs := rulefmt.Parse(b, false, model.UTF8Validation, l.prom, logger)
	for _, err := range errs {
		l.problem(where, "%v", err)
	}
	if groups == nil {
		return
	}
	seen := map[string]bool{}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			name := r.Alert + r.Record
			rw := fmt.Sprintf("%s: group %s, rule %s", where, g.Name, name)
			key := name + "\x00" + r.Expr
			if seen[key] {
				l.problem(rw, "duplicate rule (same name and expr)")
			}
			seen[key] = true
			if r.Alert != "" {
				if r.Labels["severity"] == "" {
					l.problem(rw, "alert without a severity label")
				}
				if r.Annotations["summary"] == "" {
					l.problem(rw, "alert without a summary annotation")
				}
			}
			l.checkPromQL(rw, r.Expr)
		}
	}
}

// ---- Loki ----

// lokiRules loads a ruler file exactly as Loki's ruler does (strict YAML,
// LogQL, alert templates), then checks the selectors' labels.
func (l *linter) lokiRules(path string) {
	where := l.rel(path)
	groups, errs := ruler.GroupLoader{}.Load(path, false, model.UTF8Validation)
	for _, err := range errs {
		l.problemErr(where, path, err, "")
	}
	if groups == nil || len(errs) > 0 {
		return
	}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			rw := fmt.Sprintf("%s: group %s, rule %s", where, g.Name, r.Alert+r.Record)
			if r.Alert != "" && r.Labels["severity"] == "" {
				l.problem(rw, "alert without a severity label")
			}
			l.checkLogQL(rw, r.Expr)
		}
	}
}

// lokiConfig loads loki.yaml the way cmd/loki does and validates it
// (Loki's -verify-config).
func (l *linter) lokiConfig(path string) {
	where := l.rel(path)
	var c loki.ConfigWrapper
	fs := flag.NewFlagSet("loki", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if err := cfg.DynamicUnmarshal(&c, []string{"-config.file=" + path}, fs); err != nil {
		l.problemErr(where, path, err, "Loki cannot load it: ")
		return
	}
	c.LimitsConfig.SetGlobalOTLPConfig(c.Distributor.OTLPConfig)
	if err := c.LimitsConfig.SetDefaultPolicyStreamMapping(c.Distributor.DefaultPolicyStreamMappings); err != nil {
		l.problem(where, "policy stream mappings: %v", err)
	}
	validation.SetDefaultLimitsForYAMLUnmarshalling(c.LimitsConfig)
	loki_runtime.SetDefaultLimitsForYAMLUnmarshalling(c.OperationalConfig)
	if err := c.Validate(); err != nil {
		l.problem(where, "Loki rejects it: %v", err)
	}
	if !c.AuthEnabled {
		l.problem(where, "auth_enabled is false: Loki would ignore X-Scope-OrgID and mix tenants")
	}
	if !c.CompactorConfig.RetentionEnabled {
		l.problem(where, "compactor.retention_enabled is false: retention_period would not delete anything")
	}
	if c.LimitsConfig.RetentionPeriod <= 0 {
		l.problem(where, "limits_config.retention_period is not set")
	}
}

// lokiOverrides decodes the runtime config as Loki does (strict YAML v2
// into per-tenant limits over the defaults) and validates each tenant's.
func (l *linter) lokiOverrides(path string) {
	where := l.rel(path)
	b, err := os.ReadFile(path)
	if err != nil {
		l.problem(where, "%v", err)
		return
	}
	var v struct {
		Overrides map[string]*validation.Limits `yaml:"overrides"`
	}
	dec := yamlv2.NewDecoder(bytes.NewReader(b))
	dec.SetStrict(true)
	if err := dec.Decode(&v); err != nil {
		l.problem(where, "Loki cannot load it: %v", err)
		return
	}
	for tenant, lim := range v.Overrides {
		if lim == nil {
			continue
		}
		if err := lim.Validate(); err != nil {
			l.problem(where, "tenant %s: %v", tenant, err)
		}
	}
}
