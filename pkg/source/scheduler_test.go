package source

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/podtail/podtail/pkg/discovery"
	"github.com/podtail/podtail/pkg/labels"
	"github.com/podtail/podtail/pkg/pipeline"
	"github.com/podtail/podtail/pkg/pipeline/stage"
	"github.com/podtail/podtail/pkg/source/file"
	"github.com/podtail/podtail/pkg/source/positions"
)

// schedFixture is a Scheduler over one container log.
type schedFixture struct {
	t      *testing.T
	lf     *logFile
	store  *positions.Store
	sink   *sink
	m      *Metrics
	s      *Scheduler
	cancel context.CancelFunc
}

func newSchedFixture(t *testing.T, existingFrom string, store *positions.Store, lines ...string) *schedFixture {
	t.Helper()
	if store == nil {
		store = openStore(t, t.TempDir())
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &schedFixture{t: t, lf: newLogFile(t, lines...), store: store, sink: newSink(t),
		m: NewMetrics(prometheus.NewRegistry()), cancel: cancel}
	f.s = NewScheduler(ctx, store, pipeline.Sink{Consumer: f.sink.consumer()}, Config{ExistingFrom: existingFrom}, f.m, zap.NewNop())
	t.Cleanup(f.stop)
	return f
}

// stop cancels every reader and waits for them.
func (f *schedFixture) stop() {
	f.t.Helper()
	f.cancel()
	done := make(chan struct{})
	go func() { f.s.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(waitLimit):
		f.t.Fatal("Scheduler.Wait did not return after cancel")
	}
}

// target is the fixture's container in the given state.
func (f *schedFixture) target(running bool, startedAt int64) discovery.Target {
	tg := testTarget(f.lf.path)
	tg.Running, tg.StartedAt = running, startedAt
	return tg
}

// active is the number of readers running (podtail_source_active). Sync
// counts a reader it starts before returning, so right after Sync this
// tells whether it started one.
func (f *schedFixture) active() float64 { return testutil.ToFloat64(f.m.targets) }

func (f *schedFixture) waitIdle() {
	f.t.Helper()
	eventually(f.t, "every reader to finish", func() bool { return f.active() == 0 })
}

const started1, started2 = int64(1_000_000_000_000), int64(2_000_000_000_000)

// Sync with a running target starts one reader that follows its log; the
// same target in the next Sync does not start a second one.
func TestSchedulerStartsReaderForRunningTarget(t *testing.T) {
	f := newSchedFixture(t, "start", nil, cri(0, Stdout, "F", "a"))
	f.s.Sync([]discovery.Target{f.target(true, started1)})
	if got := f.active(); got != 1 {
		t.Fatalf("active readers after Sync = %v, want 1", got)
	}
	f.sink.wait(1)
	f.s.Sync([]discovery.Target{f.target(true, started1)})
	if got := f.active(); got != 1 {
		t.Errorf("active readers after a second Sync = %v, want still 1", got)
	}
	f.lf.append(cri(1, Stdout, "F", "b"))
	if got := f.sink.wait(2); !slices.Equal(lines(got), []string{"a", "b"}) {
		t.Errorf("lines = %q, want [a b]", lines(got))
	}
}

// A target that turns Running=false has its reader drain: the lines already
// written are shipped and the reader finishes.
func TestSchedulerDrainsStoppedTarget(t *testing.T) {
	f := newSchedFixture(t, "start", nil, cri(0, Stdout, "F", "a"))
	f.s.Sync([]discovery.Target{f.target(true, started1)})
	f.sink.wait(1)
	f.lf.append(cri(1, Stderr, "F", "last words"))
	f.s.Sync([]discovery.Target{f.target(false, started1)})
	f.waitIdle()
	if got := lines(f.sink.entries()); !slices.Equal(got, []string{"a", "last words"}) {
		t.Errorf("lines = %q, want [a \"last words\"]", got)
	}
}

// A stopped target whose run was read to its end is not started again by a
// Sync with the same StartedAt; a new StartedAt (the container ran again,
// running or already stopped) starts a reader, which resumes at the stored
// position.
func TestSchedulerRestartsOnlyForNewStartedAt(t *testing.T) {
	f := newSchedFixture(t, "start", nil, cri(0, Stdout, "F", "a"))
	f.s.Sync([]discovery.Target{f.target(false, started1)}) // stopped before podtail saw it
	f.waitIdle()
	ack(f.sink.wait(1)...)

	f.s.Sync([]discovery.Target{f.target(false, started1)})
	if got := f.active(); got != 0 {
		t.Fatalf("active readers after a Sync of the finished run = %v, want 0", got)
	}

	f.lf.append(cri(1, Stdout, "F", "second run"))
	f.s.Sync([]discovery.Target{f.target(false, started2)}) // ran and stopped between two Syncs
	if got := f.active(); got != 1 {
		t.Fatalf("active readers after a Sync with a new StartedAt = %v, want 1", got)
	}
	f.waitIdle()
	got := f.sink.entries()
	if !slices.Equal(lines(got), []string{"a", "second run"}) {
		t.Fatalf("lines = %q, want [a \"second run\"] (resumed at the acked position)", lines(got))
	}
	ack(got[1])

	f.lf.append(cri(2, Stdout, "F", "third run"))
	f.s.Sync([]discovery.Target{f.target(true, started2+1)})
	if got := f.active(); got != 1 {
		t.Fatalf("active readers after a Sync of a running new StartedAt = %v, want 1", got)
	}
	if got := f.sink.wait(3); got[2].Line != "third run" {
		t.Errorf("third run read %q", got[2].Line)
	}
}

// A target missing from the set (removed container) has its reader drain
// what the log holds and finish; its position is kept (it is forgotten only
// an hour after).
func TestSchedulerDrainsRemovedTarget(t *testing.T) {
	f := newSchedFixture(t, "start", nil, cri(0, Stdout, "F", "a"))
	f.s.Sync([]discovery.Target{f.target(true, started1)})
	ack(f.sink.wait(1)...)
	f.lf.append(cri(1, Stdout, "F", "b"))
	f.s.Sync(nil)
	f.waitIdle()
	if got := lines(f.sink.entries()); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("lines = %q, want [a b]", got)
	}
	if _, ok := f.store.Get(Key(testID)); !ok {
		t.Error("position of a just-removed container was dropped")
	}
}

// Sync forgets positions of containers that are not in the set and have not
// moved for an hour; positions of listed containers and of other kinds of
// source are kept, however old.
func TestSchedulerForgetsPositionsOfGoneContainers(t *testing.T) {
	dir := t.TempDir()
	old := time.Now().Add(-2 * time.Hour).UTC()
	b, err := json.Marshal(map[string]any{"version": 1, "positions": map[string]positions.Position{
		Key("gone"):     {Offset: 1, Updated: old},
		Key(testID):     {Offset: 0, Updated: old},
		"file:/var/x":   {Offset: 3, Updated: old},
		Key("recently"): {Offset: 4, Updated: time.Now().UTC()},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, positions.FileName), b, 0o600); err != nil {
		t.Fatal(err)
	}
	f := newSchedFixture(t, "start", openStore(t, dir))
	f.s.Sync([]discovery.Target{f.target(false, started1)})
	f.waitIdle()
	for key, want := range map[string]bool{Key("gone"): false, Key(testID): true, "file:/var/x": true, Key("recently"): true} {
		if _, ok := f.store.Get(key); ok != want {
			t.Errorf("after Sync, %s present = %v, want %v", key, ok, want)
		}
	}
}

// existing_from "end" applies only to Existing targets without a position:
// they start at the end of their log; new containers are read from the
// start, and with "start" existing ones are too.
func TestSchedulerExistingFrom(t *testing.T) {
	for _, tc := range []struct {
		from     string
		existing bool
		want     []string
	}{
		{"end", true, []string{"new"}},
		{"end", false, []string{"old", "new"}},
		{"start", true, []string{"old", "new"}},
	} {
		f := newSchedFixture(t, tc.from, nil, cri(0, Stdout, "F", "old"))
		tg := f.target(true, started1)
		tg.Existing = tc.existing
		f.s.Sync([]discovery.Target{tg})
		eventually(t, "the reader to start", func() bool {
			if tc.from == "end" && tc.existing {
				_, ok := f.store.Get(Key(testID)) // stored at once when starting at the end
				return ok
			}
			return len(f.sink.entries()) == 1
		})
		f.lf.append(cri(1, Stdout, "F", "new"))
		if got := lines(f.sink.wait(len(tc.want))); !slices.Equal(got, tc.want) {
			t.Errorf("existing_from=%s Existing=%v: lines %q, want %q", tc.from, tc.existing, got, tc.want)
		}
	}
}

// Cancelling the scheduler's context ends every reader; Wait returns.
func TestSchedulerWaitAfterCancel(t *testing.T) {
	f := newSchedFixture(t, "start", nil, cri(0, Stdout, "F", "a"))
	f.s.Sync([]discovery.Target{f.target(true, started1)})
	f.sink.wait(1)
	f.stop()
	if got := f.active(); got != 0 {
		t.Errorf("active readers after Wait = %v, want 0", got)
	}
}

// A reader that was running when the container restarted (new StartedAt)
// and then stopped reads that newer run to its end; a later Sync of the
// same stopped run must not start another reader for it.
func TestSchedulerDoesNotRestartRunAlreadyRead(t *testing.T) {
	// was skipped: bug fixed
	f := newSchedFixture(t, "start", nil, cri(0, Stdout, "F", "a"))
	f.s.Sync([]discovery.Target{f.target(true, started1)})
	f.sink.wait(1)
	// Restarted and stopped again between two Syncs: the running reader is
	// told to drain, and reads the new run's lines to the end.
	f.s.Sync([]discovery.Target{f.target(false, started2)})
	f.waitIdle()
	f.s.Sync([]discovery.Target{f.target(false, started2)})
	if got := f.active(); got != 0 {
		t.Errorf("active readers after a Sync of the run just read to its end = %v, want 0", got)
	}
}

// podtail_source_unacked_bytes is the log's size until Loki acknowledges,
// then 0; more written raises it again.
func TestSchedulerReportsUnackedBytes(t *testing.T) {
	f := newSchedFixture(t, "start", nil, cri(0, Stdout, "F", "a"))
	f.s.Sync([]discovery.Target{f.target(true, started1)})
	got := f.sink.wait(1)
	size := func() float64 {
		fi, err := os.Stat(f.lf.path)
		if err != nil {
			t.Fatal(err)
		}
		return float64(fi.Size())
	}
	lag := func() float64 {
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(f.s)
		mfs, err := reg.Gather()
		if err != nil || len(mfs) != 1 || len(mfs[0].GetMetric()) != 1 {
			t.Fatalf("gather: %v %v", mfs, err)
		}
		return mfs[0].GetMetric()[0].GetGauge().GetValue()
	}
	if l, s := lag(), size(); l != s {
		t.Errorf("unacked before any ack = %v, want the log's size %v", l, s)
	}
	got[0].Ack.Ack(got[0].Pos)
	eventually(t, "unacked 0 after the ack", func() bool { return lag() == 0 })
	f.lf.append(cri(1, Stdout, "F", "bb"))
	if l := lag(); l <= 0 {
		t.Errorf("unacked after more was written = %v, want > 0", l)
	}
}

// A reader started on the provisional path (the create event's default) moves
// to the path inspect reports: a container created with --log-opt path= was
// never read while the reader kept polling the default path.
func TestSchedulerFollowsTheLogPathInspectReports(t *testing.T) {
	f := newSchedFixture(t, "start", nil, cri(0, Stdout, "F", "at the real path"))
	provisional := f.target(true, started1)
	provisional.LogDriver = "k8s-file"
	provisional.LogPath = filepath.Join(t.TempDir(), "ctr.log") // conmon never writes there
	f.s.Sync([]discovery.Target{provisional})
	if got := f.active(); got != 1 {
		t.Fatalf("active readers after the provisional Sync = %v, want 1", got)
	}
	inspected := f.target(true, started1)
	inspected.LogDriver = "k8s-file"
	f.s.Sync([]discovery.Target{inspected})
	if got := lines(f.sink.wait(1)); !slices.Equal(got, []string{"at the real path"}) {
		t.Errorf("lines = %q, want the real log's", got)
	}
	eventually(t, "the provisional reader to end", func() bool { return f.active() == 1 })
}

// containerPipesOf is containerPipes for tg under the given pipeline.apps,
// with no stages by default.
func containerPipesOf(t *testing.T, tg discovery.Target, apps ...stage.App) Pipes {
	t.Helper()
	sel, err := stage.NewSelector(stage.SelectorConfig{Container: []map[string]any{}, Apps: apps})
	if err != nil {
		t.Fatal(err)
	}
	return containerPipes(sel, tg, zap.NewNop())
}

// A container's streams get a pipeline of their own only when their
// choices differ, and a joiner only where their choice starts with
// multiline.
func TestContainerPipesPerStream(t *testing.T) {
	tg := testTarget("")
	tg.Labels = map[string]string{"team": "pay"}
	join := []map[string]any{{"type": "multiline", "first_line": `^\S`}}
	if p := containerPipes(nil, tg, zap.NewNop()); p.Default != nil || p.ByStream != nil || p.Join != nil {
		t.Errorf("no selector: %+v, want no stages", p)
	}
	if p := containerPipesOf(t, tg, stage.App{Match: stage.Match{Application: "other"}, Container: join}); p.Default == nil || p.ByStream != nil || p.Join != nil {
		t.Errorf("no entry fits: %+v, want the default alone", p)
	}
	p := containerPipesOf(t, tg, stage.App{Match: stage.Match{Stream: Stderr, Labels: map[string]string{"team": "pay"}}, Container: join})
	if p.Default == nil || len(p.ByStream) != 1 || p.ByStream[Stderr] == nil || p.ByStream[Stderr] == p.Default ||
		len(p.Join) != 1 || p.Join[Stderr] == nil || p.Join[Stderr]() == nil {
		t.Errorf("stderr entry: %+v, want stderr's own pipeline and joiner", p)
	}
	p = containerPipesOf(t, tg, stage.App{Match: stage.Match{Application: "a"}, Container: join})
	if p.Default == nil || p.ByStream != nil || len(p.Join) != 2 || p.Join[Stdout] == nil || p.Join[Stderr] == nil {
		t.Errorf("entry for both streams: %+v, want one pipeline, a joiner per stream", p)
	}
}

// The scheduler runs each stream of a container through the stages chosen
// for it: stderr's lines joined and rewritten, stdout's untouched.
func TestSchedulerRunsTheStagesChosenPerStream(t *testing.T) {
	f := newSchedFixture(t, "start", nil, cri(0, Stdout, "F", "a"), cri(1, Stderr, "F", "panic: b"),
		cri(2, Stderr, "F", "\tframe"), cri(3, Stdout, "F", "\tc"), cri(4, Stderr, "F", "next"))
	sel, err := stage.NewSelector(stage.SelectorConfig{Apps: []stage.App{{
		Match: stage.Match{Application: "a", Stream: Stderr},
		Container: []map[string]any{{"type": "multiline", "first_line": `^\S`, "max_wait": "10ms"},
			{"type": "line_format", "template": "err: {{.Entry}}"}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	f.s.cfg.Select = sel
	f.s.Sync([]discovery.Target{f.target(true, started1)})
	got := lines(f.sink.wait(4))
	slices.Sort(got) // the streams' entries interleave as their joiners finish them
	if want := []string{"\tc", "a", "err: next", "err: panic: b\n\tframe"}; !slices.Equal(got, want) {
		t.Errorf("lines = %q, want %q", got, want)
	}
}

// A directory's files get the stages chosen by the target's labels, and
// the target's metadata on every entry.
func TestSchedulerChoosesStagesForDirectories(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "app.log"), []byte("hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sel, err := stage.NewSelector(stage.SelectorConfig{Files: []map[string]any{}, Apps: []stage.App{
		{Match: stage.Match{Labels: map[string]string{"team": "ops"}}, Files: []map[string]any{{"type": "line_format", "template": "ops: {{.Entry}}"}}},
		{Match: stage.Match{Labels: map[string]string{"team": "pay"}}, Files: []map[string]any{{"type": "line_format", "template": "pay: {{.Entry}}"}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	s, snk := filesScheduler(t, sel, &discovery.FileRules{Include: []string{"*.log"}})
	tg := discovery.Target{ID: testID, Tenant: "t", App: "a", Running: true, Labels: map[string]string{"team": "pay"},
		Metadata: map[string]string{"host": "h1", "container": "c"}, LogDirs: []discovery.LogDir{{Path: dir}}}
	s.Sync([]discovery.Target{tg})
	got := snk.wait(1)
	if got[0].Line != "pay: hello" {
		t.Errorf("line %q, want the pay entry's stages applied", got[0].Line)
	}
	if want := []pipeline.Label{{Name: "container", Value: "c"}, {Name: "host", Value: "h1"}}; !slices.Equal(got[0].Metadata, want) {
		t.Errorf("metadata %v, want %v", got[0].Metadata, want)
	}
}

// Stages are chosen per file when it is opened: the version in a file's own
// name (files.name_regex) selects, so an app's v1 and v2 files in one
// directory get their own pipelines.
func TestSchedulerChoosesStagesPerFileVersion(t *testing.T) {
	dir := t.TempDir()
	for _, v := range []string{"v1", "v2"} {
		if err := os.WriteFile(filepath.Join(dir, "u_app_"+v+".log"), []byte("from "+v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	sel, err := stage.NewSelector(stage.SelectorConfig{Files: []map[string]any{}, Apps: []stage.App{
		{Match: stage.Match{Version: "v2"}, Files: []map[string]any{{"type": "line_format", "template": "v2 stages: {{.Entry}}"}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	s, snk := filesScheduler(t, sel, &discovery.FileRules{Include: []string{"*.log"}, NameRegex: regexp.MustCompile(labels.DefaultNameRegex)})
	s.Sync([]discovery.Target{{ID: testID, Tenant: "t", App: "app", Version: "v1", Running: true, LogDirs: []discovery.LogDir{{Path: dir}}}})
	got := lines(snk.wait(2))
	slices.Sort(got)
	if want := []string{"from v1", "v2 stages: from v2"}; !slices.Equal(got, want) {
		t.Errorf("lines %q, want %q", got, want)
	}
}

// filesScheduler is a scheduler of log directories read by rules, with the
// stages sel chooses, into a sink.
func filesScheduler(t *testing.T, sel *stage.Selector, rules *discovery.FileRules) (*Scheduler, *sink) {
	ctx, cancel := context.WithCancel(context.Background())
	snk := newSink(t)
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	s := NewScheduler(ctx, openStore(t, t.TempDir()), pipeline.Sink{Consumer: snk.consumer()}, Config{
		Select: sel,
		Files:  &Files{Rules: rules, Poll: 10 * time.Millisecond, Metrics: file.NewMetrics(reg, m.Dropped(), m.Repaired())},
	}, m, zap.NewNop())
	t.Cleanup(func() { cancel(); s.Wait() })
	return s, snk
}
