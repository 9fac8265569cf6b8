package file

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/podtail/podtail/pkg/pipeline"
	"github.com/podtail/podtail/pkg/pipeline/stage"
	"github.com/podtail/podtail/pkg/source/positions"
)

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
					c.Stages = func(string) (*pipeline.Pipeline, *pipeline.Multiline) {
						m, err := stage.NewMultilineFromSpec(map[string]any{"first_line": `^\{`, "max_wait": "50ms"})
						if err != nil {
							t.Fatal(err)
						}
						return nil, m
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
