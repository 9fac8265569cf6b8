// Package docs holds podtail's documentation; its test keeps metrics.md
// equal to the metrics the code defines.
package docs

import (
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the generated table in metrics.md from the code")

const (
	beginMark = "<!-- metrics:begin: generated from the code by `go test ./docs -update`; do not edit by hand -->"
	endMark   = "<!-- metrics:end -->"
)

// The table in metrics.md must be what the code defines: every podtail_*
// metric, with its type, labels and help text. It is read from the source
// (go/ast), not by calling constructors, so that no signature change
// elsewhere breaks this test; a metric written in a form it cannot read
// fails it with the place to look.
func TestMetricsDoc(t *testing.T) {
	ms, problems := codeMetrics("..")
	for _, p := range problems {
		t.Error(p)
	}
	if len(ms) == 0 {
		t.Fatal("no podtail_* metric found under pkg/ and cmd/")
	}
	table := renderTable(ms)
	doc, err := os.ReadFile("metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	before, rest, ok1 := strings.Cut(string(doc), beginMark+"\n")
	current, after, ok2 := strings.Cut(rest, endMark)
	if !ok1 || !ok2 {
		t.Fatalf("metrics.md: the markers %q and %q are missing", beginMark, endMark)
	}
	if current == table {
		return
	}
	if *update {
		if err := os.WriteFile("metrics.md", []byte(before+beginMark+"\n"+table+endMark+after), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Log("metrics.md updated")
		return
	}
	have := strings.Split(current, "\n")
	for _, line := range strings.Split(table, "\n") {
		if !slices.Contains(have, line) {
			t.Errorf("metrics.md lacks, or has differently: %s", line)
		}
	}
	want := strings.Split(table, "\n")
	for _, line := range have {
		if !slices.Contains(want, line) {
			t.Errorf("metrics.md has, and the code does not: %s", line)
		}
	}
	t.Errorf("docs/metrics.md is not what the code defines: run `go test ./docs -update` and review the diff")
}

type metric struct {
	name, typ, help, pkg, where string
	labels                      []string
}

func renderTable(ms []metric) string {
	var b strings.Builder
	b.WriteString("| metric | type | labels | meaning (the code's help text) | defined in |\n| --- | --- | --- | --- | --- |\n")
	for _, m := range ms {
		labels := "—"
		if len(m.labels) > 0 {
			labels = "`" + strings.Join(m.labels, "`, `") + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | `%s` |\n", m.name, m.typ, labels, cell(m.help), m.pkg)
	}
	return b.String()
}

// cell escapes what Markdown would take for a column break or an HTML tag.
func cell(s string) string {
	return strings.NewReplacer("|", `\|`, "<", `\<`).Replace(s)
}

var metricName = regexp.MustCompile(`^podtail_[a-z0-9_]+$`)

// codeMetrics reads every "podtail_…" string literal in the non-test Go
// files under root/pkg and root/cmd, and works out from its context what
// metric it names. It understands:
//
//   - prometheus.NewCounter/Gauge/Histogram/Summary[Vec](prometheus.XOpts{Name: "…", Help: "…"}, []string{…})
//   - the same inside a helper function of the package called with the
//     name (cv("podtail_…", "help", "label")), its parameters traced;
//   - prometheus.NewDesc("…", "…", []string{…}, nil) whose variable a
//     (Must)NewConst{Metric,Histogram,Summary} call of the package uses.
func codeMetrics(root string) ([]metric, []string) {
	var problems []string
	byName := map[string]metric{}
	fset := token.NewFileSet()
	dirs := map[string][]*ast.File{}
	for _, top := range []string{"pkg", "cmd"} {
		_ = filepath.WalkDir(filepath.Join(root, top), func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
				return err
			}
			f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
			if err != nil {
				problems = append(problems, err.Error())
				return nil
			}
			dirs[filepath.Dir(p)] = append(dirs[filepath.Dir(p)], f)
			return nil
		})
	}
	// In path order, so that a metric defined in two packages is always
	// reported as the first's.
	for _, dir := range slices.Sorted(maps.Keys(dirs)) {
		files := dirs[dir]
		pkg, _ := filepath.Rel(root, dir)
		r := &reader{fset: fset, pkg: pkg, funcs: map[string]*ast.FuncLit{}, constTypes: map[string]string{}}
		r.index(files)
		for _, f := range files {
			r.file(f)
		}
		problems = append(problems, r.problems...)
		for _, m := range r.found {
			if prev, ok := byName[m.name]; ok {
				if prev.typ != m.typ || !slices.Equal(prev.labels, m.labels) {
					problems = append(problems, fmt.Sprintf("%s: %s is also defined at %s with another type or labels", m.where, m.name, prev.where))
				}
				continue
			}
			byName[m.name] = m
		}
	}
	out := make([]metric, 0, len(byName))
	for _, m := range byName {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	sort.Strings(problems)
	return out, problems
}

// reader reads one package.
type reader struct {
	fset       *token.FileSet
	pkg        string
	funcs      map[string]*ast.FuncLit // helpers: package functions and `x := func(...)` literals
	constTypes map[string]string       // Desc variable name -> type, from NewConstMetric calls
	found      []metric
	problems   []string
}

func isProm(e ast.Expr, names ...string) (string, bool) {
	sel, ok := e.(*ast.SelectorExpr)
	if !ok {
		return "", false
	}
	if x, ok := sel.X.(*ast.Ident); !ok || (x.Name != "prometheus" && x.Name != "promauto") {
		return "", false
	}
	return sel.Sel.Name, len(names) == 0 || slices.Contains(names, sel.Sel.Name)
}

var valueTypes = map[string]string{"CounterValue": "counter", "GaugeValue": "gauge", "UntypedValue": "untyped"}

func (r *reader) index(files []*ast.File) {
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.FuncDecl:
				if n.Recv == nil && n.Body != nil {
					r.funcs[n.Name.Name] = &ast.FuncLit{Type: n.Type, Body: n.Body}
				}
			case *ast.AssignStmt:
				for i, rhs := range n.Rhs {
					if fl, ok := rhs.(*ast.FuncLit); ok && i < len(n.Lhs) {
						if id, ok := n.Lhs[i].(*ast.Ident); ok {
							r.funcs[id.Name] = fl
						}
					}
				}
			case *ast.CallExpr:
				fn, ok := isProm(n.Fun, "NewConstMetric", "MustNewConstMetric", "NewConstHistogram", "MustNewConstHistogram",
					"NewConstSummary", "MustNewConstSummary")
				if !ok || len(n.Args) < 2 {
					return true
				}
				typ := "histogram"
				if strings.Contains(fn, "Summary") {
					typ = "summary"
				} else if strings.Contains(fn, "Metric") {
					vt, _ := isProm(n.Args[1])
					typ = valueTypes[vt]
				}
				if name := identName(n.Args[0]); name != "" && typ != "" {
					r.constTypes[name] = typ
				}
			}
			return true
		})
	}
}

func identName(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.Ident:
		return e.Name
	case *ast.SelectorExpr:
		return e.Sel.Name
	}
	return ""
}

func (r *reader) where(n ast.Node) string {
	p := r.fset.Position(n.Pos())
	return fmt.Sprintf("%s:%d", filepath.Join(r.pkg, filepath.Base(p.Filename)), p.Line)
}

func (r *reader) fail(n ast.Node, format string, args ...any) {
	r.problems = append(r.problems, r.where(n)+": "+fmt.Sprintf(format, args...))
}

// file finds the podtail_* literals of one file, with their parents.
func (r *reader) file(f *ast.File) {
	var stack []ast.Node
	ast.Inspect(f, func(n ast.Node) bool {
		if n == nil {
			stack = stack[:len(stack)-1]
			return true
		}
		if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
			if s, err := strconv.Unquote(lit.Value); err == nil && metricName.MatchString(s) {
				r.literal(lit, s, stack)
			}
		}
		stack = append(stack, n)
		return true
	})
}

func (r *reader) literal(lit *ast.BasicLit, name string, stack []ast.Node) {
	parent := stack[len(stack)-1]
	switch p := parent.(type) {
	case *ast.KeyValueExpr:
		if k, ok := p.Key.(*ast.Ident); ok && k.Name == "Name" && len(stack) >= 3 {
			if cl, ok := stack[len(stack)-2].(*ast.CompositeLit); ok {
				if m, ok := r.opts(cl, stack[len(stack)-3], nil); ok {
					m.name = name
					r.add(m, lit)
					return
				}
			}
		}
	case *ast.CallExpr:
		if len(p.Args) > 0 && p.Args[0] == lit {
			if _, ok := isProm(p.Fun, "NewDesc"); ok {
				r.desc(p, name, stack)
				return
			}
			if id, ok := p.Fun.(*ast.Ident); ok && r.funcs[id.Name] != nil {
				r.helper(p, r.funcs[id.Name], name, lit)
				return
			}
		}
	}
	r.fail(lit, "%s looks like a metric name, in a form docs/metrics_test.go cannot read: write it as "+
		"prometheus.NewCounterVec(prometheus.CounterOpts{Name: %q, Help: \"...\"}, []string{...}) or similar", name, name)
}

func (r *reader) add(m metric, at ast.Node) {
	m.pkg, m.where = r.pkg, r.where(at)
	r.found = append(r.found, m)
}

var optsTypes = map[string]string{"CounterOpts": "counter", "GaugeOpts": "gauge", "HistogramOpts": "histogram", "SummaryOpts": "summary"}

// opts reads prometheus.XOpts{Name, Help} and the labels of the New…Vec
// call around it (call), with parameters bound as in b.
func (r *reader) opts(cl *ast.CompositeLit, call ast.Node, b bindings) (metric, bool) {
	optsName, ok := isProm(cl.Type)
	typ := optsTypes[optsName]
	if !ok || typ == "" {
		return metric{}, false
	}
	m := metric{typ: typ}
	for _, e := range cl.Elts {
		kv, ok := e.(*ast.KeyValueExpr)
		if !ok {
			continue
		}
		switch identName(kv.Key) {
		case "Help":
			h, err := b.str(kv.Value)
			if err != nil {
				r.fail(kv, "help text: %v", err)
			}
			m.help = h
		case "Namespace", "Subsystem", "ConstLabels":
			r.fail(kv, "%s: write the whole name in Name, and no constant labels, so that the docs can say it", identName(kv.Key))
		}
	}
	c, ok := call.(*ast.CallExpr)
	if !ok {
		r.fail(cl, "%s is not passed directly to a prometheus.New… call", optsName)
		return m, true
	}
	fn, _ := isProm(c.Fun)
	if strings.HasSuffix(fn, "Vec") {
		if len(c.Args) < 2 {
			r.fail(c, "%s without labels", fn)
			return m, true
		}
		labels, err := b.strs(c.Args[1])
		if err != nil {
			r.fail(c.Args[1], "labels of %s: %v", fn, err)
		}
		m.labels = labels
	}
	return m, true
}

// desc reads prometheus.NewDesc(name, help, labels, constLabels); the type
// comes from the const-metric call that uses the variable it is stored in.
func (r *reader) desc(call *ast.CallExpr, name string, stack []ast.Node) {
	m := metric{name: name}
	if len(call.Args) < 3 {
		r.fail(call, "NewDesc with %d arguments", len(call.Args))
		return
	}
	var err error
	if m.help, err = bindings(nil).str(call.Args[1]); err != nil {
		r.fail(call, "help text: %v", err)
	}
	if m.labels, err = bindings(nil).strs(call.Args[2]); err != nil {
		r.fail(call, "labels: %v", err)
	}
	if len(call.Args) > 3 && identName(call.Args[3]) != "nil" {
		r.fail(call, "constant labels: the docs cannot say them; use none")
	}
	var variable string
	switch p := stack[len(stack)-2].(type) {
	case *ast.ValueSpec:
		for i, v := range p.Values {
			if v == call && i < len(p.Names) {
				variable = p.Names[i].Name
			}
		}
	case *ast.AssignStmt:
		for i, v := range p.Rhs {
			if v == call && i < len(p.Lhs) {
				variable = identName(p.Lhs[i])
			}
		}
	case *ast.KeyValueExpr:
		variable = identName(p.Key)
	}
	if m.typ = r.constTypes[variable]; m.typ == "" {
		r.fail(call, "cannot tell the type of %s: no prometheus.MustNewConstMetric(%s, prometheus.GaugeValue, …) or similar in the package", name, variable)
		return
	}
	r.add(m, call)
}

// helper follows a call like cv("podtail_…", "help", "reason") into the
// helper's body, to the prometheus.XOpts whose Name is the parameter the
// literal was passed as.
func (r *reader) helper(call *ast.CallExpr, fn *ast.FuncLit, name string, lit *ast.BasicLit) {
	b := bindings{}
	i := 0
	var nameParam string
	for _, field := range fn.Type.Params.List {
		_, variadic := field.Type.(*ast.Ellipsis)
		for _, id := range field.Names {
			switch {
			case variadic:
				b[id.Name] = binding{variadic: true, exprs: call.Args[min(i, len(call.Args)):]}
			case i < len(call.Args):
				b[id.Name] = binding{exprs: []ast.Expr{call.Args[i]}}
				if i == 0 {
					nameParam = id.Name
				}
			}
			i++
		}
	}
	var stack []ast.Node
	done := false
	ast.Inspect(fn.Body, func(n ast.Node) bool {
		if n == nil {
			stack = stack[:len(stack)-1]
			return true
		}
		if kv, ok := n.(*ast.KeyValueExpr); ok && !done && identName(kv.Key) == "Name" && identName(kv.Value) == nameParam && len(stack) >= 2 {
			if cl, ok := stack[len(stack)-1].(*ast.CompositeLit); ok {
				if m, ok := r.opts(cl, stack[len(stack)-2], b); ok {
					m.name = name
					r.add(m, lit)
					done = true
				}
			}
		}
		stack = append(stack, n)
		return true
	})
	if !done {
		r.fail(lit, "%s is passed to a helper whose prometheus.…Opts{Name: %s} this test cannot find", name, nameParam)
	}
}

// bindings are a helper's parameters bound to the caller's arguments.
type bindings map[string]binding

type binding struct {
	variadic bool
	exprs    []ast.Expr
}

// str evaluates a string: literals, bound parameters, and + of those.
func (b bindings) str(e ast.Expr) (string, error) {
	switch e := e.(type) {
	case *ast.BasicLit:
		if e.Kind == token.STRING {
			return strconv.Unquote(e.Value)
		}
	case *ast.Ident:
		if v, ok := b[e.Name]; ok && !v.variadic && len(v.exprs) == 1 {
			return bindings(nil).str(v.exprs[0])
		}
	case *ast.ParenExpr:
		return b.str(e.X)
	case *ast.BinaryExpr:
		if e.Op == token.ADD {
			x, err := b.str(e.X)
			if err != nil {
				return "", err
			}
			y, err := b.str(e.Y)
			return x + y, err
		}
	}
	return "", fmt.Errorf("not a string this test can evaluate: %T", e)
}

// strs evaluates a []string: literals, nil, bound parameters (variadic
// ones too), and append of those.
func (b bindings) strs(e ast.Expr) ([]string, error) {
	switch e := e.(type) {
	case *ast.CompositeLit:
		var out []string
		for _, elt := range e.Elts {
			s, err := b.str(elt)
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		}
		return out, nil
	case *ast.Ident:
		if e.Name == "nil" {
			return nil, nil
		}
		if v, ok := b[e.Name]; ok {
			if !v.variadic {
				return bindings(nil).strs(v.exprs[0])
			}
			var out []string
			for _, x := range v.exprs {
				s, err := bindings(nil).str(x)
				if err != nil {
					return nil, err
				}
				out = append(out, s)
			}
			return out, nil
		}
	case *ast.CallExpr:
		if identName(e.Fun) == "append" && len(e.Args) > 0 {
			out, err := b.strs(e.Args[0])
			if err != nil {
				return nil, err
			}
			for i, a := range e.Args[1:] {
				if e.Ellipsis.IsValid() && i == len(e.Args)-2 {
					more, err := b.strs(a)
					if err != nil {
						return nil, err
					}
					out = append(out, more...)
					continue
				}
				s, err := b.str(a)
				if err != nil {
					return nil, err
				}
				out = append(out, s)
			}
			return out, nil
		}
	}
	return nil, fmt.Errorf("not a []string this test can evaluate: %T", e)
}
