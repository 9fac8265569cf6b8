package file

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"gopkg.in/natefinch/lumberjack.v2"

	"github.com/podtail/podtail/pkg/pipeline"
	"github.com/podtail/podtail/pkg/pipeline/stage"
	"github.com/podtail/podtail/pkg/source/positions"
)

// lumberjack's compression goroutine outlives Logger.Close by design.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("gopkg.in/natefinch/lumberjack%2ev2.(*Logger).millRun"))
}

// sink records what a Dir sends and acknowledges it at once. Like the Loki
// client, it copies the lines it keeps: the tailer lends them from its read
// buffer.
type sink struct {
	mu    sync.Mutex
	count map[string]int
	lines []string
	delay time.Duration // every 100 lines: a slow Loki
	// replayed holds the lines marked as possibly sent by an earlier run.
	replayed []string
}

func newSink() *sink { return &sink{count: map[string]int{}} }

func (s *sink) Consume(_ context.Context, es []pipeline.Entry) (int, error) {
	for _, e := range es {
		s.take(e)
	}
	return len(es), nil
}

func (s *sink) take(e pipeline.Entry) {
	line := strings.Clone(e.Line)
	s.mu.Lock()
	s.count[line]++
	s.lines = append(s.lines, line)
	if e.Replay {
		s.replayed = append(s.replayed, line)
	}
	n := len(s.lines)
	s.mu.Unlock()
	e.Ack.Ack(e.Pos)
	if s.delay > 0 && n%100 == 0 {
		time.Sleep(s.delay)
	}
}

func (s *sink) total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.lines)
}

// running is a Dir started in the background.
type running struct {
	dir    *Dir
	cancel context.CancelFunc
	done   chan error
}

func startDir(t *testing.T, dir string, store *positions.Store, next pipeline.Consumer, m *Metrics, opts ...func(*Config)) *running {
	return startDirLimits(t, dir, store, pipeline.Sink{Consumer: next}, m, opts...)
}

// testConfig is the tests' directory: tenant t, polled every 20 ms.
func testConfig(dir string, opts ...func(*Config)) Config {
	cfg := Config{
		Dir:    dir,
		Tenant: "t",
		Labels: func(string) (map[string]string, bool) { return map[string]string{"tenant": "t"}, true },
		Poll:   20 * time.Millisecond,
	}
	for _, o := range opts {
		o(&cfg)
	}
	return cfg
}

func startDirLimits(t *testing.T, dir string, store *positions.Store, out pipeline.Sink, m *Metrics, opts ...func(*Config)) *running {
	t.Helper()
	d := NewDir(testConfig(dir, opts...), store, out, m, testLogger())
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{dir: d, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- d.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *running) stop(t *testing.T) {
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
		r.done <- nil
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// zapLogger writes zap production JSON through lumberjack, the seed's
// setup, with the smallest rotation size lumberjack allows.
func zapLogger(path string) (*zap.Logger, *lumberjack.Logger) {
	lj := &lumberjack.Logger{Filename: path, MaxSize: 1, MaxBackups: 3, Compress: true}
	core := zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(lj), zap.DebugLevel)
	return zap.New(core), lj
}

// exactlyOnce checks that lines carry n = from..to, each once.
func exactlyOnce(t *testing.T, s *sink, from, to int) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[int]int{}
	for _, l := range s.lines {
		var v struct{ N int }
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("not a zap line: %q", l)
		}
		seen[v.N]++
	}
	missing, dup := 0, 0
	var gaps []string
	for i := from; i <= to; i++ {
		switch seen[i] {
		case 0:
			if missing < 1 || seen[i-1] != 0 {
				gaps = append(gaps, fmt.Sprint(i))
			}
			missing++
		case 1:
		default:
			dup++
		}
	}
	if missing > 0 || dup > 0 || len(s.lines) != to-from+1 {
		t.Fatalf("%d lines for %d..%d: %d missing (gaps start at %v), %d duplicated", len(s.lines), from, to, missing, gaps, dup)
	}
}

// Lumberjack at full speed, 1 MB files, gzip, 3 backups: every line exactly
// once while the writer rotates many times a second.
func TestLumberjackFullSpeed(t *testing.T) {
	dir := t.TempDir()
	store, _ := positions.Open(t.TempDir())
	s := newSink()
	m := NewMetrics(prometheus.NewRegistry(), nil, nil)
	r := startDir(t, dir, store, s, m)

	log, lj := zapLogger(filepath.Join(dir, "beiluo_test777_v1.log"))
	const n = 100000
	start := time.Now()
	for i := 1; i <= n; i++ {
		log.Info("request handled", zap.Int("n", i), zap.String("path", "/api/v1/orders"), zap.Duration("took", time.Millisecond))
	}
	_ = lj.Close()
	wrote := time.Since(start)
	waitFor(t, 10*time.Second, "all lines", func() bool { return s.total() >= n })
	r.stop(t) // nothing arrives after the tailer ended: a duplicate is in already
	exactlyOnce(t, s, 1, n)
	renamed := testutil.ToFloat64(m.rotations.WithLabelValues("t", "renamed")) + testutil.ToFloat64(m.rotations.WithLabelValues("t", "deleted"))
	t.Logf("%d lines written in %s (%.0f lines/s), %v rotations followed, %v gzip backups opened",
		n, wrote.Round(time.Millisecond), n/wrote.Seconds(), renamed, testutil.ToFloat64(m.opened.WithLabelValues("t", "gzip")))
	if renamed < 10 {
		t.Errorf("only %v rotations seen; the test wants many", renamed)
	}
}

// The sink is slower than the writer, so the writer rotates (renames,
// gzips, deletes) many files ahead of the reader: every line still arrives
// once, through held descriptors and gzip backups.
func TestLumberjackOutrunsSlowSink(t *testing.T) {
	dir := t.TempDir()
	store, _ := positions.Open(t.TempDir())
	s := newSink()
	s.delay = time.Millisecond
	m := NewMetrics(prometheus.NewRegistry(), nil, nil)
	r := startDir(t, dir, store, s, m)
	log, lj := zapLogger(filepath.Join(dir, "beiluo_test777_v1.log"))
	const n = 60000
	for i := 1; i <= n; i++ {
		log.Info("request handled", zap.Int("n", i), zap.String("pad", strings.Repeat("x", 120)))
	}
	_ = lj.Close()
	behind := s.total()
	waitFor(t, 20*time.Second, "all lines", func() bool { return s.total() >= n })
	r.stop(t)
	exactlyOnce(t, s, 1, n)
	t.Logf("reader was %d lines behind when the writer finished; files opened: plain %v, gzip %v",
		n-behind, testutil.ToFloat64(m.opened.WithLabelValues("t", "plain")), testutil.ToFloat64(m.opened.WithLabelValues("t", "gzip")))
	if n-behind < 20000 {
		t.Errorf("the reader kept up (%d behind); the test wants it far behind", n-behind)
	}
}

// podtail down while the app rotates: on restart the lines still on disk,
// in the live file and in .gz backups, are read from the stored position,
// and none of the lines read before is read again.
func TestRestartReadsRotatedAndGzipped(t *testing.T) {
	dir := t.TempDir()
	posDir := t.TempDir()
	store, _ := positions.Open(posDir)
	s := newSink()
	m := NewMetrics(prometheus.NewRegistry(), nil, nil)
	r := startDir(t, dir, store, s, m)

	log, lj := zapLogger(filepath.Join(dir, "beiluo_test777_v1.log"))
	line := func(i int) { log.Info("request handled", zap.Int("n", i), zap.String("pad", strings.Repeat("x", 100))) }
	for i := 1; i <= 3000; i++ {
		line(i)
	}
	waitFor(t, 10*time.Second, "first lines", func() bool { return s.total() == 3000 })
	r.stop(t)
	if err := store.Sync(); err != nil {
		t.Fatal(err)
	}
	// While podtail is down: ~2.5 MB, two rotations and their gzip backups.
	for i := 3001; i <= 15000; i++ {
		line(i)
	}
	_ = lj.Close()
	waitFor(t, 10*time.Second, "gzip backups", func() bool {
		gz, _ := filepath.Glob(filepath.Join(dir, "*.gz"))
		plain, _ := filepath.Glob(filepath.Join(dir, "*-*.log"))
		return len(gz) >= 2 && len(plain) == 0
	})

	store2, err := positions.Open(posDir)
	if err != nil {
		t.Fatal(err)
	}
	m2 := NewMetrics(prometheus.NewRegistry(), nil, nil)
	r2 := startDir(t, dir, store2, s, m2)
	waitFor(t, 10*time.Second, "all lines", func() bool { return s.total() >= 15000 })
	r2.stop(t)
	exactlyOnce(t, s, 1, 15000)
	if got := testutil.ToFloat64(m2.opened.WithLabelValues("t", "gzip-resumed")); got < 1 {
		t.Errorf("no gzip backup was resumed at a stored offset (opened: gzip-resumed=%v)", got)
	}
}

// A podtail that ran before may have sent what a file held past its stored
// position: those lines, and only those, are marked Replay, so the sink
// checks them with Loki. A first run (no positions file) marks nothing.
func TestReplayMarksWhatWasThereAtStart(t *testing.T) {
	dir, posDir := t.TempDir(), t.TempDir()
	path := filepath.Join(dir, "beiluo_test777_v1.log")
	write := func(from, to int) {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		for i := from; i <= to; i++ {
			fmt.Fprintf(f, "line %d\n", i)
		}
		f.Close()
	}
	write(1, 10)
	store, _ := positions.Open(posDir)
	s := newSink()
	r := startDir(t, dir, store, s, NewMetrics(prometheus.NewRegistry(), nil, nil))
	waitFor(t, 5*time.Second, "first lines", func() bool { return s.total() == 10 })
	r.stop(t)
	if err := store.Sync(); err != nil {
		t.Fatal(err)
	}
	write(11, 20) // while podtail is down

	store2, _ := positions.Open(posDir)
	s2 := newSink()
	startDir(t, dir, store2, s2, NewMetrics(prometheus.NewRegistry(), nil, nil))
	waitFor(t, 5*time.Second, "lines written while down", func() bool { return s2.total() == 10 })
	write(21, 25)
	waitFor(t, 5*time.Second, "lines written since", func() bool { return s2.total() == 15 })
	s.mu.Lock()
	first := len(s.replayed)
	s.mu.Unlock()
	if first != 0 {
		t.Errorf("first run marked %d lines Replay, want none", first)
	}
	s2.mu.Lock()
	defer s2.mu.Unlock()
	var want []string
	for i := 11; i <= 20; i++ {
		want = append(want, fmt.Sprintf("line %d", i))
	}
	if !slices.Equal(s2.replayed, want) {
		t.Errorf("second run marked %q Replay, want %q", s2.replayed, want)
	}
}

// copytruncate: the file is copied aside and truncated in place; podtail
// reads the new content from the start and does not re-read the copy.
func TestCopyTruncate(t *testing.T) {
	dir := t.TempDir()
	store, _ := positions.Open(t.TempDir())
	s := newSink()
	r := startDir(t, dir, store, s, NewMetrics(prometheus.NewRegistry(), nil, nil))
	path := filepath.Join(dir, "app.log")
	write := func(f *os.File, from, to int) {
		for i := from; i <= to; i++ {
			fmt.Fprintf(f, `{"level":"info","n":%d,"ts":%d}`+"\n", i, time.Now().UnixNano())
		}
	}
	f, _ := os.Create(path)
	write(f, 1, 100)
	waitFor(t, 5*time.Second, "100 lines", func() bool { return s.total() == 100 })
	old, _ := os.ReadFile(path)
	_ = os.WriteFile(filepath.Join(dir, "app.1.log"), old, 0o644) // the copy
	_ = f.Truncate(0)
	_, _ = f.Seek(0, 0)
	write(f, 101, 150)
	f.Close()
	waitFor(t, 5*time.Second, "150 lines", func() bool { return s.total() >= 150 })
	r.stop(t)
	exactlyOnce(t, s, 1, 150)
}

// A line over the limit is shipped truncated with a marker and counted; the
// lines around it are intact. Symlinks and FIFOs are never opened.
func TestLongLinesAndNonRegularFiles(t *testing.T) {
	dir := t.TempDir()
	other := t.TempDir()
	_ = os.WriteFile(filepath.Join(other, "secret.log"), []byte("SECRET\n"), 0o644)
	_ = os.Symlink(filepath.Join(other, "secret.log"), filepath.Join(dir, "link.log"))
	if err := syscall.Mkfifo(filepath.Join(dir, "pipe.log"), 0o644); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("y", 1<<20)
	_ = os.WriteFile(filepath.Join(dir, "app.log"), []byte("before\n"+long+"\nafter\n"), 0o644)

	store, _ := positions.Open(t.TempDir())
	s := newSink()
	m := NewMetrics(prometheus.NewRegistry(), nil, nil)
	r := startDir(t, dir, store, s, m)
	waitFor(t, 5*time.Second, "3 lines", func() bool { return s.total() >= 3 })
	r.stop(t)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.lines) != 3 || s.lines[0] != "before" || s.lines[2] != "after" {
		t.Fatalf("lines: %d, first %q, last %q", len(s.lines), trunc(s.lines[0]), trunc(s.lines[len(s.lines)-1]))
	}
	if l := s.lines[1]; len(l) != pipeline.DefaultMaxLineBytes || !strings.HasSuffix(l, pipeline.TruncationMarker) {
		t.Errorf("long line: %d bytes, suffix %q", len(l), l[len(l)-30:])
	}
	if s.count["SECRET"] != 0 {
		t.Error("a symlink was followed")
	}
	if got := testutil.ToFloat64(m.truncated.WithLabelValues("t")); got != 1 {
		t.Errorf("truncated = %v", got)
	}
	for _, k := range []string{"symlink", "fifo"} {
		if got := testutil.ToFloat64(m.refused.WithLabelValues("t", k)); got != 1 {
			t.Errorf("refused %s = %v", k, got)
		}
	}
}

func trunc(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

func testLogger() *zap.Logger {
	if os.Getenv("PODTAIL_TEST_DEBUG") != "" {
		l, _ := zap.NewDevelopment()
		return l
	}
	return zap.NewNop()
}

// numbered is the lines {"n":from} to {"n":to}, as exactlyOnce reads them.
func numbered(from, to int) []byte {
	var b strings.Builder
	for i := from; i <= to; i++ {
		fmt.Fprintf(&b, `{"n":%d}`+"\n", i)
	}
	return []byte(b.String())
}

// gate refuses entries while shut (waiting out the caller's ctx, as a full
// queue does), counting the hand-overs it refused, and passes them on once
// opened; with a prefix, it refuses only the entries that start with it.
type gate struct {
	next    *sink
	prefix  string
	shut    atomic.Bool
	refused atomic.Int64
}

// shutGate is a gate, shut.
func shutGate(next *sink, prefix string) *gate {
	g := &gate{next: next, prefix: prefix}
	g.shut.Store(true)
	return g
}

func (g *gate) Consume(ctx context.Context, es []pipeline.Entry) (int, error) {
	for i, e := range es {
		if strings.HasPrefix(e.Line, g.prefix) && g.shut.Load() {
			g.refused.Add(1)
			<-ctx.Done()
			return i, ctx.Err()
		}
		g.next.take(e)
	}
	return len(es), nil
}

// Held back by the sink, the tailer still opens a file that a rotation
// creates, at once (inotify's create, not the held-back relist of a
// second): the new file is renamed away and deleted 200 ms later, as a fast
// rotator deletes its backups, and its lines still arrive, through the
// descriptor opened in time. Every line once.
func TestHeldBackTailerOpensRotatedFileAtOnce(t *testing.T) {
	dir := t.TempDir()
	store, _ := positions.Open(t.TempDir())
	s := newSink()
	g := shutGate(s, "")
	m := NewMetrics(prometheus.NewRegistry(), nil, nil)
	r := startDir(t, dir, store, g, m)
	path := filepath.Join(dir, "app.log")
	_ = os.WriteFile(path, numbered(1, 2000), 0o644)
	waitFor(t, 5*time.Second, "the lines read and held back", func() bool { return g.refused.Load() > 0 })
	_ = os.Rename(path, filepath.Join(dir, "app-1.log"))
	_ = os.WriteFile(path, numbered(2001, 4000), 0o644)
	// Within 200 ms, well before the held-back relist (a second).
	waitFor(t, 200*time.Millisecond, "the new file opened", func() bool {
		return testutil.ToFloat64(m.opened.WithLabelValues("t", "plain")) == 2
	})
	_ = os.Rename(path, filepath.Join(dir, "app-2.log"))
	_ = os.Remove(filepath.Join(dir, "app-2.log"))
	if s.total() != 0 {
		t.Fatalf("%d lines passed the closed gate", s.total())
	}
	g.shut.Store(false)
	waitFor(t, 10*time.Second, "4000 lines", func() bool { return s.total() >= 4000 })
	r.stop(t)
	exactlyOnce(t, s, 1, 4000)
}

// A file renamed away with a last line that has no newline: that line is
// shipped when the file is finished, whether lines are borrowed or joined
// (multiline, whose lines are copies).
// (From b951766 on, a reader gave its unshipped tail back after each read and
// finishing shipped nothing.)
func TestRenamedFileLastLineWithoutNewline(t *testing.T) {
	for _, borrowed := range []bool{false, true} {
		t.Run(fmt.Sprint("borrowed=", borrowed), func(t *testing.T) {
			dir := t.TempDir()
			store, _ := positions.Open(t.TempDir())
			s := newSink()
			r := startDir(t, dir, store, s, NewMetrics(prometheus.NewRegistry(), nil, nil), func(c *Config) {
				if !borrowed {
					c.Multiline = func() *pipeline.Multiline {
						m, err := stage.NewMultilineFromSpec(map[string]any{"first_line": `^\{`, "max_wait": "50ms"})
						if err != nil {
							t.Fatal(err)
						}
						return m
					}
				}
			})
			path := filepath.Join(dir, "app.log")
			_ = os.WriteFile(path, append(numbered(1, 999), `{"n":1000}`...), 0o644)
			waitFor(t, 5*time.Second, "999 lines", func() bool { return s.total() >= 999 })
			_ = os.Rename(path, filepath.Join(dir, "app-1.log"))
			_ = os.WriteFile(path, numbered(1001, 2000), 0o644)
			waitFor(t, 5*time.Second, "2000 lines", func() bool { return s.total() >= 2000 })
			r.stop(t)
			exactlyOnce(t, s, 1, 2000)
		})
	}
}

// acquire (for tests) waits for one of tenant's slots, or until ctx ends; release
// gives it back.
func (rs *ReadSlots) acquire(ctx context.Context, tenant string) (release func(), err error) {
	got := make(chan struct{}, 1)
	w := &slotWaiter{grant: func() { got <- struct{}{} }}
	rs.wait(tenant, w)
	select {
	case <-got:
	case <-ctx.Done():
		if rs.cancel(tenant, w) {
			return nil, ctx.Err()
		}
		<-got // granted meanwhile
	}
	return func() { rs.release(tenant) }, nil
}

// A tenant's read slots: a tenant with all of its slots taken waits (until
// its context ends), another tenant does not, and a slot given back is
// taken again.
func TestReadSlotsPerTenant(t *testing.T) {
	rs := NewReadSlots(1)
	releaseA, err := rs.acquire(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := rs.acquire(ctx, "a"); err == nil {
		t.Fatal("a second slot of tenant a with n=1")
	}
	releaseB, err := rs.acquire(context.Background(), "b")
	if err != nil {
		t.Fatalf("tenant b waited on tenant a's slot: %v", err)
	}
	releaseB()
	releaseA()
	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Second)
	defer cancel2()
	release, err := rs.acquire(ctx2, "a")
	if err != nil {
		t.Fatalf("a's slot not given back: %v", err)
	}
	release()
	var none *ReadSlots
	if release, err := none.acquire(context.Background(), "a"); err != nil {
		t.Fatal(err)
	} else {
		release()
	}
}

// Two directories of one tenant with one read slot, both held back by the
// sink: the one waiting for the slot still opens a file that a rotation
// creates and deletes within 200 ms (the change ends its wait, as it ends a
// wait on the sink), and once the sink takes lines every line of both
// arrives once.
func TestReadSlotWaitStillOpensRotatedFile(t *testing.T) {
	store, _ := positions.Open(t.TempDir())
	rs := NewReadSlots(1)
	dirA, dirB := t.TempDir(), t.TempDir()
	sA, sB := newSink(), newSink()
	gA, gB := shutGate(sA, ""), shutGate(sB, "")
	_ = os.WriteFile(filepath.Join(dirA, "app.log"), numbered(1, 2000), 0o644)
	rA := startDir(t, dirA, store, gA, NewMetrics(prometheus.NewRegistry(), nil, nil), func(c *Config) { c.ReadSlots = rs })
	waitFor(t, 5*time.Second, "A read, held back, holding the slot", func() bool { return gA.refused.Load() > 0 })
	mB := NewMetrics(prometheus.NewRegistry(), nil, nil)
	rB := startDir(t, dirB, store, gB, mB, func(c *Config) { c.ReadSlots = rs })
	opened := func() float64 { return testutil.ToFloat64(mB.opened.WithLabelValues("t", "plain")) }
	path := filepath.Join(dirB, "app.log")
	_ = os.WriteFile(path, numbered(1, 2000), 0o644)
	waitFor(t, 5*time.Second, "B's file opened", func() bool { return opened() == 1 })
	_ = os.Rename(path, filepath.Join(dirB, "app-1.log"))
	_ = os.WriteFile(path, numbered(2001, 4000), 0o644)
	// Within 200 ms, well before the held-back relist (a second).
	waitFor(t, 200*time.Millisecond, "B's new file opened", func() bool { return opened() == 2 })
	_ = os.Rename(path, filepath.Join(dirB, "app-2.log"))
	_ = os.Remove(filepath.Join(dirB, "app-2.log"))
	if n := sA.total() + sB.total(); n != 0 {
		t.Fatalf("%d lines passed the closed gate", n)
	}
	if gB.refused.Load() != 0 {
		t.Fatal("B read without a slot")
	}
	gA.shut.Store(false)
	gB.shut.Store(false)
	waitFor(t, 15*time.Second, "all lines", func() bool { return sA.total() >= 2000 && sB.total() >= 4000 })
	rA.stop(t)
	rB.stop(t)
	exactlyOnce(t, sA, 1, 2000)
	exactlyOnce(t, sB, 1, 4000)
}

// A file renamed away while its last joined (multi-line) entry is still
// open: finishing the file completes that entry, and if the sink does not
// take it then, the file stays open until it does. (Finishing ignored the
// refusal and closed the file: the entry was lost.)
func TestRenamedFileJoinedEntryPushedBack(t *testing.T) {
	dir := t.TempDir()
	store, _ := positions.Open(t.TempDir())
	s := newSink()
	g := shutGate(s, "panic")
	r := startDir(t, dir, store, g,
		NewMetrics(prometheus.NewRegistry(), nil, nil), func(c *Config) {
			c.Multiline = func() *pipeline.Multiline {
				m, err := stage.NewMultilineFromSpec(map[string]any{"first_line": `^(\{|panic:)`, "max_wait": "30s"})
				if err != nil {
					t.Fatal(err)
				}
				return m
			}
		})
	path := filepath.Join(dir, "app.log")
	_ = os.WriteFile(path, append(numbered(1, 50), "panic: boom\n\tmain.go:3\n"...), 0o644)
	waitFor(t, 5*time.Second, "49 entries", func() bool { return s.total() >= 49 })
	_ = os.Rename(path, filepath.Join(dir, "app-1.log"))
	waitFor(t, 5*time.Second, "the panic, completed by the rename, refused", func() bool { return g.refused.Load() > 0 })
	g.shut.Store(false)
	waitFor(t, 10*time.Second, "the panic", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return slices.ContainsFunc(s.lines, func(l string) bool { return strings.HasPrefix(l, "panic: boom\n\tmain.go:3") })
	})
	r.stop(t)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.lines) != 51 {
		t.Fatalf("%d entries, want 51: %q", len(s.lines), s.lines)
	}
}
