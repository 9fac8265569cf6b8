package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/podtail/podtail/pkg/config"
	"github.com/podtail/podtail/pkg/discovery"
	"github.com/podtail/podtail/pkg/labels"
	"github.com/podtail/podtail/pkg/pipeline"
	"github.com/podtail/podtail/pkg/pipeline/stage"
)

// podtail pipeline test: the configured pipeline run offline over lines,
// with what each stage did to each of them.

const pipelineTestLong = `Runs the pipeline podtail would run for a source over lines read from FILE
(or standard input), offline, and prints for each entry what every stage did:
whether it parsed the line, the fields it extracted, the labels, time and
structured metadata it set, whether it kept or dropped the line and why, the
line after it (e.g. redacted); then the Loki stream labels the entry is
shipped under, its time and where that came from, its metadata and its line.

The pipeline is the one pipeline.apps (first match first), else
pipeline.files or pipeline.container, selects for the source described by
--tenant, --app, --version, --stream and --label, as podtail selects it for
a container stream or a log file. --file NAME takes a log file's labels as
podtail does: the version in its name (files.name_regex) wins over
--version, and a directory part is labelled by files.path_regex (its
application when --app is not given, its tenant when --tenant is not). The
stream is file unless --stream says stdout or stderr. The header names the
pipeline chosen and the source's labels.

A multiline spec at the head of the list joins lines as podtail would (the
last entry is complete at the end of the input). Times missing from a line
are the time it was read; static_labels, source_metadata's host and the
limits.* guards apply as in podtail run.

A line fails to parse when a parsing stage of its pipeline fails on it:
  zap         the line is neither one JSON object nor zap console output
              (TIME<TAB>LEVEL<TAB>...): it gets no log_level
  json_auto   the line starts with '{' but is not one JSON object (other
              lines are not JSON output and pass untouched)
  json        its text (the line, or the source field) is not a JSON object
              (drop_malformed drops it as malformed_json)
  logfmt      its text holds no key=value pair
  regex       the expression does not match its text
  timestamp   the source field is there but no format reads it
A parser whose source field is missing has nothing to parse: not a failure.
Such lines are still shipped (or dropped) as podtail would.

Exit status: 0 when every entry parsed, 1 when at least one failed to parse,
2 for a bad configuration, flags, or input that cannot be read.`

const pipelineTestExample = `  # What the seed's test777 files pipeline does to a few lines:
  podtail pipeline test --config /etc/podtail/podtail.yaml \
    --tenant beiluo --app test777 --file beiluo_test777_v1.log < sample.log

  # The same, tenant and application from the file's path (files.path_regex):
  podtail pipeline test -c podtail.yaml \
    --file /srv/namespace/beiluo/test777/workplace/logs/beiluo_test777_v1.log sample.log

  # Container output of app shop, as JSON for a script:
  podtail pipeline test -c podtail.yaml --tenant acme --app shop --stream stderr --json sample.log`

// The time lines are read at, and this host's name (source_metadata's
// host), for pipeline test: fixed by its tests.
var (
	pipelineTestNow  = time.Now
	pipelineTestHost = thisHost
)

func newPipelineCmd(load loader) *cobra.Command {
	cmd := &cobra.Command{Use: "pipeline", Short: "Work with podtail's pipelines"}
	cmd.AddCommand(newPipelineTestCmd(load))
	return cmd
}

func newPipelineTestCmd(load loader) *cobra.Command {
	pt := &pipelineTest{now: pipelineTestNow, host: pipelineTestHost}
	cmd := &cobra.Command{
		Use:     "test [FILE]",
		Short:   "Run the configured pipeline offline over lines and show what each stage did",
		Long:    pipelineTestLong,
		Example: pipelineTestExample,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 1 {
				return exitError{code: 2, err: fmt.Errorf("pipeline test: at most one input file, got %d", len(args))}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := load(cmd.Flags())
			if err != nil {
				return err
			}
			in := io.Reader(cmd.InOrStdin())
			if len(args) == 1 && args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return exitError{code: 2, err: err}
				}
				defer f.Close()
				in = f
			}
			return pt.run(cmd.Context(), cfg, in, cmd.OutOrStdout())
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return exitError{code: 2, err: err} })
	fs := cmd.Flags()
	fs.StringVar(&pt.tenant, "tenant", "", "the source's tenant")
	fs.StringVar(&pt.app, "app", "", "the source's application")
	fs.StringVar(&pt.version, "version", "", "the source's version")
	fs.StringVar(&pt.stream, "stream", "", "file, stdout or stderr (default file)")
	fs.StringVar(&pt.file, "file", "", "a log file's name (or path): its labels as podtail gives them")
	fs.StringArrayVar(&pt.labels, "label", nil, "a container label NAME=VALUE, for pipeline.apps' match.labels (repeatable)")
	fs.BoolVar(&pt.asJSON, "json", false, "print one JSON object per entry")
	return cmd
}

// pipelineTest is one run of podtail pipeline test.
type pipelineTest struct {
	tenant, app, version, stream, file string
	labels                             []string
	asJSON                             bool
	now                                func() time.Time // the time lines are read
	host                               func() (string, error)
}

// testSource is the source the lines are tested as: its pipeline, and
// what its Stream is given.
type testSource struct {
	choice  *stage.Choice
	tenant  string
	base    map[string]string // the source's stream labels
	send    []string          // label pairs passed with each line (container output's stream)
	meta    []pipeline.Label
	collide time.Duration
}

// source resolves the flags to a source, as the scheduler does
// (pkg/source/select.go).
func (pt *pipelineTest) source(cfg *config.Config) (*testSource, error) {
	sel, err := stage.NewSelector(cfg.Pipeline.SelectorConfig())
	if err != nil {
		return nil, exitError{code: 2, err: err} // Validate has checked it; for the record
	}
	stream := pt.stream
	switch {
	case stream == "":
		stream = stage.StreamFile
	case stream != stage.StreamFile && stream != "stdout" && stream != "stderr":
		return nil, exitError{code: 2, err: fmt.Errorf("--stream %q: want file, stdout or stderr", stream)}
	}
	if pt.file != "" && stream != stage.StreamFile {
		return nil, exitError{code: 2, err: fmt.Errorf("--file is a log file's: its stream is file, not %s", stream)}
	}
	t := discovery.Target{Tenant: pt.tenant, App: pt.app, Version: pt.version, Static: cfg.StaticLabels}
	for _, kv := range pt.labels {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, exitError{code: 2, err: fmt.Errorf("--label %q: want NAME=VALUE", kv)}
		}
		if t.Labels == nil {
			t.Labels = map[string]string{}
		}
		t.Labels[k] = v
	}
	src := &testSource{meta: testMetadata(cfg, pt.host)}
	if stream == stage.StreamFile {
		rules := fileRules(cfg)
		var dir discovery.LogDir
		name := pt.file
		if d := filepath.Dir(pt.file); pt.file != "" && d != "." {
			dir.Path, dir.Source, dir.Labels = d, d, pathLabels(rules, d)
			if t.Tenant == "" {
				t.Tenant = dir.Labels[labels.Tenant] // as for a files.static directory
			}
			name = filepath.Base(pt.file)
		}
		ls := rules.FileLabels(t, dir, name)
		src.choice = sel.Select(stage.Source{
			Tenant: ls[labels.Tenant], Application: ls[labels.Application], Version: ls[labels.Version], Labels: t.Labels,
		}, stage.StreamFile)
		src.tenant, src.base, src.collide = t.Tenant, ls, time.Microsecond
		return src, nil
	}
	src.choice = sel.Select(stage.Source{Tenant: t.Tenant, Application: t.App, Version: t.Version, Labels: t.Labels}, stream)
	src.tenant, src.base, src.collide = t.Tenant, t.StreamLabels(), time.Hour
	src.send = []string{labels.Stream, stream}
	return src, nil
}

// pathLabels are files.path_regex's labels of a directory, as podtail
// gives a log directory (discovery's FileRules.pathLabels).
func pathLabels(rules *discovery.FileRules, dir string) map[string]string {
	out := map[string]string{}
	re := rules.PathRegex
	if re == nil {
		return out
	}
	m := re.FindStringSubmatch(filepath.Clean(dir))
	if m == nil {
		return out
	}
	for i, n := range re.SubexpNames() {
		switch n {
		case labels.Tenant, labels.Application, labels.Version:
			if m[i] != "" && labels.ValidValue(m[i]) == nil {
				out[n] = m[i]
			}
		}
	}
	return out
}

// testMetadata is the source_metadata a line would carry that is known
// offline: this host's name (a container's name, image and pod are not).
func testMetadata(cfg *config.Config, host func() (string, error)) []pipeline.Label {
	if !slices.Contains(cfg.StructuredMetadata, "host") {
		return nil
	}
	if h, err := host(); err == nil && h != "" {
		return []pipeline.Label{{Name: "host", Value: h}}
	}
	return nil
}

// testReport is what pipeline test says of one entry (--json prints it).
type testReport struct {
	Lines    []int      `json:"lines"` // the input lines it was made of: [first, last]
	Input    string     `json:"input"`
	Pipeline string     `json:"pipeline"`
	Guards   []string   `json:"guards,omitempty"` // what the stream did before the stages
	Steps    []testStep `json:"steps"`
	Parsed   bool       `json:"parsed"`
	Shipped  bool       `json:"shipped"`
	Dropped  string     `json:"drop_reason,omitempty"`
	DropBy   string     `json:"dropped_by,omitempty"` // a stage's place, or limits
	Entry    *testEntry `json:"entry,omitempty"`
	index    []string   // each step's stage's index in its list as configured: "[1]"
}

type testStep struct {
	Stage       string            `json:"stage"` // where it is configured under pipeline: apps[0].files[1]
	Type        string            `json:"type"`
	Parse       string            `json:"parse,omitempty"` // parsed, failed, skipped; absent: not a parser
	Note        string            `json:"note,omitempty"`
	Fields      map[string]string `json:"fields,omitempty"` // set or changed by the stage
	Labels      map[string]string `json:"labels,omitempty"`
	Metadata    []testLabel       `json:"metadata,omitempty"`
	Time        string            `json:"time,omitempty"` // when the stage changed it
	TimeFrom    string            `json:"time_from,omitempty"`
	Line        string            `json:"line"` // after the stage
	LineChanged bool              `json:"line_changed"`
	Kept        bool              `json:"kept"`
	DropReason  string            `json:"drop_reason,omitempty"`
}

type testEntry struct {
	Tenant   string      `json:"tenant"`
	Labels   string      `json:"labels"`
	Time     string      `json:"time"`
	TimeFrom string      `json:"time_from"`
	Metadata []testLabel `json:"metadata,omitempty"`
	Line     string      `json:"line"`
}

type testLabel struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

func testLabels(ls []pipeline.Label) []testLabel {
	out := make([]testLabel, 0, len(ls))
	for _, l := range ls {
		out = append(out, testLabel(l))
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// run tests every line of in and writes the reports to out. It returns
// an exitError of code 1 when an entry failed to parse.
func (pt *pipelineTest) run(ctx context.Context, cfg *config.Config, in io.Reader, out io.Writer) error {
	src, err := pt.source(cfg)
	if err != nil {
		return err
	}
	tr, err := newTester(cfg, src)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(out)
	defer w.Flush()
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // lines hold < and &
	if !pt.asJSON {
		fmt.Fprintf(w, "# %s for %s\n", src.choice, pipeline.RenderLabels(mergedLabels(src.base, src.send)))
	}
	var n, failed, shipped int
	test := func(first, last int, line string, t time.Time) error {
		r, err := tr.test(ctx, first, last, line, t)
		if err != nil {
			return err
		}
		n++
		if !r.Parsed {
			failed++
		}
		if r.Shipped {
			shipped++
		}
		if pt.asJSON {
			return enc.Encode(r)
		}
		r.writeHuman(w)
		return nil
	}

	// Lines, joined as the source would (the multiline spec of the
	// choice), each entry as soon as it is complete.
	var ml *pipeline.Multiline
	if j := src.choice.Joiner(); j != nil {
		ml = j()
	}
	br := bufio.NewReader(in)
	first, lineNo := 1, 0
	for {
		line, rerr := br.ReadString('\n')
		if rerr != nil && !errors.Is(rerr, io.EOF) {
			return exitError{code: 2, err: fmt.Errorf("reading the input: %w", rerr)}
		}
		if line != "" {
			lineNo++
			line = strings.TrimSuffix(line, "\n")
			now := pt.now()
			if ml == nil {
				if err := test(lineNo, lineNo, line, now); err != nil {
					return err
				}
			} else {
				for _, j := range ml.Add(line, now, int64(lineNo), now) {
					if err := test(first, int(j.Pos), j.Line, j.Time); err != nil {
						return err
					}
					first = int(j.Pos) + 1
				}
			}
		}
		if rerr != nil {
			break
		}
	}
	if ml != nil { // the end of the input completes the last entry
		for _, j := range ml.Flush(pt.now(), true) {
			if err := test(first, int(j.Pos), j.Line, j.Time); err != nil {
				return err
			}
		}
	}
	if !pt.asJSON {
		fmt.Fprintf(w, "# %d entries from %d lines: %d shipped, %d dropped, %d failed to parse\n", n, lineNo, shipped, n-shipped, failed)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if failed > 0 {
		return exitError{code: 1, err: fmt.Errorf("pipeline test: %d of %d entries failed to parse", failed, n)}
	}
	return nil
}

// tester runs entries through a source's traced pipeline and a Stream, as
// podtail's readers do, into a sink that keeps what it is handed.
type tester struct {
	stream   *pipeline.Stream
	pipeline string // where the stages are configured: "pipeline.apps[0].files"
	send     []string
	stages   []stage.TracedStage
	index    []string // each stage's index in its list as configured: "[1]"
	drops    *prometheus.CounterVec
	steps    []stage.Step     // of the entry being tested
	entries  []pipeline.Entry // what the stream handed over for it
}

func newTester(cfg *config.Config, src *testSource) (*tester, error) {
	guards, err := newGuards(cfg, prometheus.NewRegistry(), zap.NewNop())
	if err != nil {
		return nil, err
	}
	tr := &tester{send: src.send, pipeline: "none", drops: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "drops"}, []string{"tenant", "reason"})}
	if src.choice != nil {
		tr.pipeline = "pipeline." + src.choice.Name
	}
	sink := pipeline.Sink{Limits: guards, Consumer: pipeline.ConsumerFunc(func(_ context.Context, es []pipeline.Entry) (int, error) {
		for _, e := range es {
			e.Metadata = slices.Clone(e.Metadata)
			tr.entries = append(tr.entries, e)
			e.Ack.Ack(e.Pos)
		}
		return len(es), nil
	})}
	var pipe *pipeline.Pipeline
	pipe, tr.stages = src.choice.Trace(func(s stage.Step) { tr.steps = append(tr.steps, s) })
	for _, s := range tr.stages {
		tr.index = append(tr.index, strings.TrimPrefix(s.Place, src.choice.Name))
	}
	tr.stream = pipeline.NewStream(pipeline.StreamConfig{
		Tenant: src.tenant, Labels: src.base, Collide: src.collide, Drops: tr.drops, Metadata: src.meta,
	}, pipe, sink)
	return tr, nil
}

// test sends one entry, made of input lines first to last and read at t,
// and reports what became of it.
func (tr *tester) test(ctx context.Context, first, last int, line string, t time.Time) (*testReport, error) {
	tr.steps, tr.entries = tr.steps[:0], tr.entries[:0]
	before := dropCounts(tr.drops)
	if err := tr.stream.Send(ctx, t, line, int64(last), tr.send...); err != nil {
		return nil, err
	}
	if err := tr.stream.Flush(ctx); err != nil {
		return nil, err
	}
	r := &testReport{Lines: []int{first, last}, Input: line, Pipeline: tr.pipeline, Parsed: true}
	if max, drop := tr.stream.LineLimit(); len(line) > max {
		if drop {
			r.Guards = append(r.Guards, fmt.Sprintf("longer than limits.max_line_bytes (%d)", max))
		} else {
			r.Guards = append(r.Guards, fmt.Sprintf("cut to limits.max_line_bytes (%d)", max))
		}
	}
	if !utf8.ValidString(line) {
		r.Guards = append(r.Guards, "invalid UTF-8 replaced with U+FFFD")
	}
	timeFrom, recTime := "read time", t
	for _, s := range tr.steps {
		ts := tr.stages[s.Stage]
		st := testStep{
			Stage: ts.Place, Type: ts.Type, Parse: string(s.Parse), Note: s.Note, Fields: s.Fields, Labels: s.Labels,
			Metadata: testLabels(s.Metadata), TimeFrom: s.TimeFrom, Line: s.Line, LineChanged: s.LineChanged,
			Kept: s.Keep, DropReason: s.DropReason,
		}
		if s.TimeSet {
			st.Time = fmtTime(s.Time)
			timeFrom = tr.index[s.Stage] + " " + ts.Type
			if s.TimeFrom != "" {
				timeFrom += ": " + s.TimeFrom
			}
		}
		recTime = s.Time
		if s.Parse == stage.ParseFailed {
			r.Parsed = false
		}
		if !s.Keep {
			r.Dropped, r.DropBy = s.DropReason, ts.Place
		}
		r.Steps = append(r.Steps, st)
		r.index = append(r.index, tr.index[s.Stage])
	}
	switch {
	case len(tr.entries) == 1:
		e := tr.entries[0]
		if d := e.Time.Sub(recTime); d != 0 {
			timeFrom += fmt.Sprintf("; moved %s past its stream's previous entry", d)
		}
		r.Shipped = true
		r.Entry = &testEntry{Tenant: e.Tenant, Labels: e.Labels, Time: fmtTime(e.Time), TimeFrom: timeFrom,
			Metadata: testLabels(e.Metadata), Line: e.Line}
	case r.Dropped == "":
		// The stream's guards (limits.*) dropped it, before or after the stages.
		r.Dropped, r.DropBy = droppedFor(before, dropCounts(tr.drops)), "limits"
	}
	return r, nil
}
