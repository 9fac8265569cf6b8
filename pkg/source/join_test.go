package source

import (
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/podtail/podtail/pkg/pipeline"
	"github.com/podtail/podtail/pkg/source/positions"
)

// Multi-line entries on container output (Pipes.Join), read from k8s-file
// logs and from the journal, and the readers' source metadata.

// fakeClock is a reader's clock that moves only when the test moves it.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

// fakeTimer calls f once the clock reaches at, while active.
type fakeTimer struct {
	clk    *fakeClock
	at     time.Time
	f      func()
	active bool
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) clockwork.Timer {
	tm := &fakeTimer{clk: c, f: f}
	c.mu.Lock()
	c.timers = append(c.timers, tm)
	c.mu.Unlock()
	tm.Reset(d)
	return tm
}

func (tm *fakeTimer) Chan() <-chan time.Time { return nil }

func (tm *fakeTimer) Reset(d time.Duration) bool {
	tm.clk.mu.Lock()
	was := tm.active
	tm.at, tm.active = tm.clk.now.Add(d), true
	due := d <= 0
	if due {
		tm.active = false
	}
	tm.clk.mu.Unlock()
	if due {
		go tm.f()
	}
	return was
}

func (tm *fakeTimer) Stop() bool {
	tm.clk.mu.Lock()
	defer tm.clk.mu.Unlock()
	was := tm.active
	tm.active = false
	return was
}

// advance moves the clock on by d and fires the timers then due.
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []*fakeTimer
	for _, tm := range c.timers {
		if tm.active && !tm.at.After(c.now) {
			tm.active = false
			due = append(due, tm)
		}
	}
	c.mu.Unlock()
	for _, tm := range due {
		tm.f()
	}
}

// waitTimer waits until a timer for at is set: the reader did all it could
// and sleeps until then.
func (c *fakeClock) waitTimer(t *testing.T, at time.Time) {
	t.Helper()
	eventually(t, "a timer at "+at.Format(time.StampMicro), func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return slices.ContainsFunc(c.timers, func(tm *fakeTimer) bool { return tm.active && tm.at.Equal(at) })
	})
}

// goJoin joins what a Go program's zap logger and its panics write to
// stderr: an entry starts with a zap JSON line or a panic's first line.
var goJoin = pipeline.MultilineConfig{FirstLine: `^(\{|panic: )`}

// joinPipes joins stream's lines with cfg.
func joinPipes(t *testing.T, stream string, cfg pipeline.MultilineConfig) Pipes {
	t.Helper()
	if _, err := pipeline.NewMultiline(cfg); err != nil {
		t.Fatal(err)
	}
	return Pipes{Join: map[string]func() *pipeline.Multiline{stream: func() *pipeline.Multiline {
		m, _ := pipeline.NewMultiline(cfg)
		return m
	}}}
}

// newJoinReader is a k8s-file reader joining stderr with cfg, on clk.
func newJoinReader(t *testing.T, path string, store *positions.Store, s *sink, cfg pipeline.MultilineConfig, clk clock) *ContainerOutput {
	t.Helper()
	co := NewContainerOutput(testTarget(path), store, joinPipes(t, Stderr, cfg), pipeline.Sink{Consumer: s.consumer()}, false,
		NewMetrics(prometheus.NewRegistry()), zap.NewNop())
	co.clock = clk
	return co
}

// streamLines renders es as "out line" or "err line".
func streamLines(es []pipeline.Entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = map[string]string{labelsOf[Stdout]: "out ", labelsOf[Stderr]: "err "}[e.Labels] + e.Line
	}
	return out
}

// criRun renders contents as full lines of stream, at base+from ns on.
func criRun(from int64, stream string, contents ...string) []string {
	out := make([]string, len(contents))
	for i, c := range contents {
		out[i] = cri(from+int64(i), stream, "F", c)
	}
	return out
}

// offsets are where each of ls starts in a log made of them, and its end.
func offsets(ls []string) []int64 {
	offs := []int64{0}
	for _, l := range ls {
		offs = append(offs, offs[len(offs)-1]+int64(len(l)))
	}
	return offs
}

// A panic written to stderr between stdout lines becomes one entry (its
// first line's time, stderr's labels), the stdout lines stay entries of
// their own, sent as they come. While the panic is not acknowledged, the
// stored offset stays at its first line although stdout lines after it
// were acknowledged, and stderr's delivered offset with it.
func TestContainerOutputJoinsPanicAndHoldsPosition(t *testing.T) {
	ls := []string{
		cri(0, Stdout, "F", `{"msg":"o1"}`),
		cri(1, Stderr, "F", `{"level":"error","msg":"e1"}`),
		cri(2, Stderr, "F", "panic: boom"),
		cri(3, Stdout, "F", `{"msg":"o2"}`),
		cri(4, Stderr, "F", ""),
		cri(5, Stderr, "F", "goroutine 1 [running]:"),
		cri(6, Stdout, "F", `{"msg":"o3"}`),
		cri(7, Stderr, "F", "main.main()"),
		cri(8, Stderr, "F", "\t/app/main.go:8 +0x25"),
		cri(9, Stderr, "F", `{"level":"error","msg":"e2"}`),
	}
	offs := offsets(ls)
	lf := newLogFile(t, ls...)
	store := openStore(t, t.TempDir())
	s := newSink(t)
	runReader(t, newJoinReader(t, lf.path, store, s, goJoin, newFakeClock()))
	got := s.wait(5)
	panicLine := "panic: boom\n\ngoroutine 1 [running]:\nmain.main()\n\t/app/main.go:8 +0x25"
	want := []string{`out {"msg":"o1"}`, `err {"level":"error","msg":"e1"}`, `out {"msg":"o2"}`, `out {"msg":"o3"}`, "err " + panicLine}
	if !slices.Equal(streamLines(got), want) {
		t.Fatalf("entries %q, want %q (e2 still being joined)", streamLines(got), want)
	}
	if !got[4].Time.Equal(base.Add(2)) {
		t.Errorf("panic entry time base%+v, want its first line's, base+2ns", got[4].Time.Sub(base))
	}

	ack(got[:4]...) // all but the panic: o2 and o3 come after its first line
	p, _ := store.Get(Key(testID))
	if p.Offset != offs[2] || p.Delivered != offs[7] || !maps.Equal(p.DeliveredStreams, map[string]int64{Stderr: offs[2]}) {
		t.Errorf("stdout acknowledged past the panic: position offset %d delivered %d by stream %v; want %d (the panic's first line), %d, stderr %d",
			p.Offset, p.Delivered, p.DeliveredStreams, offs[2], offs[7], offs[2])
	}
	ack(got[4])
	if p, _ = store.Get(Key(testID)); p.Offset != offs[9] {
		t.Errorf("panic acknowledged: offset %d, want %d (e2, being joined)", p.Offset, offs[9])
	}
}

// An entry being joined is sent once max_lines lines are in it, or once
// max_wait has passed since its last line although nothing follows: the
// reader's poll wakes at that deadline, not at its next poll. Sent after the
// last stdout line, it is not delivered with that line's acknowledgement.
func TestContainerOutputJoinHonoursMaxLinesAndMaxWait(t *testing.T) {
	ls := append(criRun(0, Stderr, "panic: boom", "goroutine 1 [running]:", "main.main()", "\t/app/main.go:8 +0x25"),
		cri(4, Stdout, "F", "o1"))
	offs := offsets(ls)
	lf := newLogFile(t, ls...)
	const maxWait = 5 * time.Millisecond // below pollMin: only the deadline wakes the reader then
	clk := newFakeClock()
	store := openStore(t, t.TempDir())
	s := newSink(t)
	runReader(t, newJoinReader(t, lf.path, store, s,
		pipeline.MultilineConfig{FirstLine: goJoin.FirstLine, MaxLines: 3, MaxWait: maxWait}, clk))
	clk.waitTimer(t, clk.Now().Add(maxWait))
	want := []string{"err panic: boom\ngoroutine 1 [running]:\nmain.main()", "out o1"}
	if got := streamLines(s.entries()); !slices.Equal(got, want) {
		t.Fatalf("before max_wait: %q, want %q (max_lines 3)", got, want)
	}
	clk.advance(maxWait)
	got := s.wait(3)
	if want = append(want, "err \t/app/main.go:8 +0x25"); !slices.Equal(streamLines(got), want) {
		t.Fatalf("at max_wait: %q, want %q", streamLines(got), want)
	}
	ack(got[:2]...)
	if p, _ := store.Get(Key(testID)); p.Offset != offs[3] {
		t.Errorf("o1 acknowledged, not the last line of the trace: offset %d, want %d (that line)", p.Offset, offs[3])
	}
	ack(got[2])
	if p, _ := store.Get(Key(testID)); p.Offset != lf.size() || p.Delivered != 0 || p.DeliveredStreams != nil {
		t.Errorf("all acknowledged: position %+v, want offset %d alone", p, lf.size())
	}
}

// podtail stopped (SIGKILLed) while a panic's trace was half written: the
// stdout line after its first line was acknowledged, the panic was still
// being joined. The next podtail reads the trace again from its first
// line, joins it whole with the rest written meanwhile, and sends none of
// the lines delivered before: every entry once.
func TestContainerOutputRestartMidTraceRejoins(t *testing.T) {
	first := []string{
		cri(0, Stdout, "F", "o1"),
		cri(1, Stderr, "F", `{"msg":"e1"}`),
		cri(2, Stderr, "F", "panic: boom"),
		cri(3, Stdout, "F", "o2"),
		cri(4, Stderr, "F", ""),
		cri(5, Stderr, "F", "goroutine 1 [running]:"),
	}
	lf := newLogFile(t, first...)
	dir := t.TempDir()
	store := openStore(t, dir)
	s1 := newSink(t)
	r1 := runReader(t, newJoinReader(t, lf.path, store, s1, goJoin, newFakeClock()))
	got1 := s1.wait(3)
	if want := []string{"out o1", `err {"msg":"e1"}`, "out o2"}; !slices.Equal(streamLines(got1), want) {
		t.Fatalf("first run: %q, want %q", streamLines(got1), want)
	}
	ack(got1...)
	if err := r1.stop(); err != nil {
		t.Fatal(err)
	}
	if err := store.Sync(); err != nil {
		t.Fatal(err)
	}
	lf.append(
		cri(6, Stdout, "F", "o3"),
		cri(7, Stderr, "F", "main.main()"),
		cri(8, Stderr, "F", "\t/app/main.go:8 +0x25"),
		cri(9, Stderr, "F", `{"msg":"e2"}`),
		cri(10, Stdout, "F", "o4"),
	)

	s2 := newSink(t)
	co := newJoinReader(t, lf.path, openStore(t, dir), s2, goJoin, newFakeClock())
	runReader(t, co)
	got2 := s2.wait(3)
	want := []string{"out o3", "err panic: boom\n\ngoroutine 1 [running]:\nmain.main()\n\t/app/main.go:8 +0x25", "out o4"}
	if !slices.Equal(streamLines(got2), want) {
		t.Fatalf("after the restart: %q, want %q (e2 still being joined)", streamLines(got2), want)
	}
	if !got2[1].Time.Equal(base.Add(2)) {
		t.Errorf("panic entry time base%+v, want its first line's, base+2ns", got2[1].Time.Sub(base))
	}
	// What the log held at the restart may have been sent by the podtail
	// before: the sink checks it with Loki (Replay); what came later not.
	lf.append(cri(11, Stdout, "F", "o5"))
	co.Wake()
	got2 = s2.wait(4)
	for i, e := range got2 {
		if e.Replay != (i < 3) {
			t.Errorf("%q: Replay %v, want %v", e.Line, e.Replay, i < 3)
		}
	}
}

// Every entry of a container carries its source metadata (container,
// image, pod, host), in name order.
func TestContainerOutputSourceMetadata(t *testing.T) {
	lf := newLogFile(t, cri(0, Stdout, "F", "a"), cri(1, Stderr, "F", "b"))
	tg := testTarget(lf.path)
	tg.Metadata = map[string]string{"pod": "shop-pod", "host": "web-1", "container": "shop-1", "image": "shop:v1"}
	s := newSink(t)
	runReader(t, NewContainerOutput(tg, openStore(t, t.TempDir()), Pipes{}, pipeline.Sink{Consumer: s.consumer()}, false,
		NewMetrics(prometheus.NewRegistry()), zap.NewNop()))
	want := []pipeline.Label{{Name: "container", Value: "shop-1"}, {Name: "host", Value: "web-1"}, {Name: "image", Value: "shop:v1"}, {Name: "pod", Value: "shop-pod"}}
	for _, e := range s.wait(2) {
		if !slices.Equal(e.Metadata, want) {
			t.Errorf("%s: metadata %v, want %v", e.Line, e.Metadata, want)
		}
	}
}

// Multi-line entries on container output read from the journal. The tests
// use conmonFixture (see journald_test.go): a journal with a Go panic in it
// needs a real journald to write (pkg/journal/testdata/make-fixtures.sh),
// and this one already interleaves the streams as a panic does, with
// partial entries on both. Its stderr lines "err-1" and "err-2a err-2b"
// are joined as a panic's would be (first_line ^err-1), while stdout's
// lines go on around them:
//
//	1 out "one"    2 out "two-a " (P)   3 err "err-1"    4 err "err-2a " (P)
//	5 out "two-b " (P)   6 out "two-c"   7 err "err-2b"   8 out "three"
var fixtureJoin = pipeline.MultilineConfig{FirstLine: `^err-1`, MaxWait: 5 * time.Millisecond}

const fixtureJoined = "err err-1\nerr-2a err-2b"

// newJoinJournalReader reads container "d" of conmonFixture at root
// through pipes, on clk.
func newJoinJournalReader(t *testing.T, root string, store *positions.Store, s *sink, pipes Pipes, clk clock) *JournalOutput {
	o := NewJournalOutput(journalTarget("d"), Journal{Dirs: []string{root}}, store, pipes,
		pipeline.Sink{Consumer: s.consumer()}, false, NewMetrics(prometheus.NewRegistry()), zap.NewNop())
	o.clock = clk
	o.settle = drainSettle // a fixture journal gets no late entries
	return o
}

// stderr's lines become one entry, sent max_wait after its last line
// although nothing follows (the reader wakes then, not at its next poll);
// stdout's go on meanwhile. Acknowledged before it, they leave the stored
// cursor before the entry's first line, and stderr's delivered cursor there
// too. A restart, whether the entry was still being joined or sent and not
// acknowledged, joins it again whole and sends no stdout line again.
func TestJournalOutputJoinsAndHoldsCursor(t *testing.T) {
	for _, tc := range []struct {
		name string
		sent bool // max_wait passed in the first run: the entry was sent
	}{{"being joined", false}, {"sent", true}} {
		t.Run(tc.name, func(t *testing.T) {
			root := journalDirOf(t, conmonFixture)
			store := openStore(t, t.TempDir())
			clk := newFakeClock()
			s := newSink(t)
			r := runReader(t, newJoinJournalReader(t, root, store, s, joinPipes(t, Stderr, fixtureJoin), clk))
			clk.waitTimer(t, clk.Now().Add(fixtureJoin.MaxWait))
			out := []string{"out one", "out two-a two-b two-c", "out three"}
			got := s.entries()
			if !slices.Equal(streamLines(got), out) {
				t.Fatalf("before max_wait: %q, want %q", streamLines(got), out)
			}
			ack(got...)
			p, _ := store.Get(Key(fixtureID("d")))
			if p.Cursor == "" || p.DeliveredCursor == "" || p.DeliveredCursor == p.Cursor || len(p.DeliveredCursors) != 1 || p.DeliveredCursors[Stderr] != p.Cursor {
				t.Errorf("stdout acknowledged past err-1: position %+v; want the cursor before err-1, delivered_cursor at three, stderr's at the cursor", p)
			}
			var joined pipeline.Entry
			if tc.sent {
				clk.advance(fixtureJoin.MaxWait)
				all := s.wait(4)
				if got := streamLines(all); !slices.Equal(got, append(out, fixtureJoined)) {
					t.Fatalf("at max_wait: %q, want %q", got, append(out, fixtureJoined))
				}
				joined = all[3]
			}
			if err := r.stop(); err != nil {
				t.Fatal(err)
			}

			s2 := drainJoinJournal(t, root, store, joinPipes(t, Stderr, fixtureJoin))
			again := s2.entries()
			if got := streamLines(again); !slices.Equal(got, []string{fixtureJoined}) {
				t.Fatalf("after the restart: %q, want only %q", got, fixtureJoined)
			}
			if tc.sent && !again[0].Time.Equal(joined.Time) {
				t.Errorf("joined entry sent again at %v, first at %v: want the same time", again[0].Time, joined.Time)
			}
			ack(again...)
			if p, _ := store.Get(Key(fixtureID("d"))); p.DeliveredCursor != "" || p.DeliveredCursors != nil {
				t.Errorf("all acknowledged: position %+v, want the last cursor alone", p)
			}
		})
	}
}

// drainJoinJournal reads container "d" to the end of what root holds, as the
// reader of a stopped container does, through pipes.
func drainJoinJournal(t *testing.T, root string, store *positions.Store, pipes Pipes) *sink {
	t.Helper()
	s := newSink(t)
	o := newJoinJournalReader(t, root, store, s, pipes, clockwork.NewRealClock())
	o.SetDraining(true)
	if err := runJournalToEnd(t, o); err != nil {
		t.Fatal(err)
	}
	return s
}

// An entry held from the container's first journal entry on, while later
// lines of the other stream were delivered, is stored as reading from the
// start (cursor ""): the restart still passes over what was delivered.
// Here stdout is joined: "one" and "two-a two-b two-c" make one entry,
// completed by "three", and stderr's lines are acknowledged before it.
func TestJournalOutputHoldsFromTheFirstEntry(t *testing.T) {
	root := journalDirOf(t, conmonFixture)
	store := openStore(t, t.TempDir())
	pipes := joinPipes(t, Stdout, pipeline.MultilineConfig{FirstLine: `^three`})
	s := newSink(t)
	r := runReader(t, newJoinJournalReader(t, root, store, s, pipes, newFakeClock()))
	got := s.wait(3)
	if want := []string{"err err-1", "err err-2a err-2b", "out one\ntwo-a two-b two-c"}; !slices.Equal(streamLines(got), want) {
		t.Fatalf("first run: %q, want %q (three still being joined)", streamLines(got), want)
	}
	ack(got[:2]...)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if p, _ := store.Get(Key(fixtureID("d"))); p.Cursor != "" || p.DeliveredCursor == "" || !maps.Equal(p.DeliveredCursors, map[string]string{Stdout: ""}) {
		t.Errorf("position %+v: want no cursor (from the start), delivered_cursor at err-2b, stdout's from the start", p)
	}

	s2 := drainJoinJournal(t, root, store, pipes)
	if got, want := streamLines(s2.entries()), []string{"out one\ntwo-a two-b two-c", "out three"}; !slices.Equal(got, want) {
		t.Errorf("after the restart: %q, want %q", got, want)
	}
}

// Every entry read from the journal carries the container's source
// metadata, in name order.
func TestJournalOutputSourceMetadata(t *testing.T) {
	tg := journalTarget("c")
	tg.Metadata = map[string]string{"pod": "shop-pod", "host": "web-1", "container": "shop-1", "image": "shop:v1"}
	s := newSink(t)
	o := NewJournalOutput(tg, Journal{Dirs: []string{journalDir(t)}}, openStore(t, t.TempDir()), Pipes{}, pipeline.Sink{Consumer: s.consumer()}, false,
		NewMetrics(prometheus.NewRegistry()), zap.NewNop())
	o.SetDraining(true)
	if err := runJournalToEnd(t, o); err != nil {
		t.Fatal(err)
	}
	want := []pipeline.Label{{Name: "container", Value: "shop-1"}, {Name: "host", Value: "web-1"}, {Name: "image", Value: "shop:v1"}, {Name: "pod", Value: "shop-pod"}}
	es := s.entries()
	if len(es) == 0 {
		t.Fatal("no entries")
	}
	for _, e := range es {
		if !slices.Equal(e.Metadata, want) {
			t.Errorf("%s: metadata %v, want %v", e.Line, e.Metadata, want)
		}
	}
}
