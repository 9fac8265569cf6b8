package source

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/podtail/podtail/pkg/discovery"
	"github.com/podtail/podtail/pkg/pipeline"
	"github.com/podtail/podtail/pkg/source/positions"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitLimit bounds every wait; tests poll for a condition, never sleep.
const waitLimit = 10 * time.Second

// base is a container time with every nanosecond digit set.
var base = time.Date(2026, 11, 25, 0, 6, 14, 404991023, time.UTC)

const testID = "0123456789abcdef"

// labelsOf are the rendered stream labels of testTarget's entries.
var labelsOf = map[string]string{
	Stdout: `{application="a", stream="stdout", tenant="t", version="v1"}`,
	Stderr: `{application="a", stream="stderr", tenant="t", version="v1"}`,
}

func testTarget(path string) discovery.Target {
	return discovery.Target{ID: testID, Name: "c", Tenant: "t", App: "a", Version: "v1", Running: true, LogPath: path}
}

// conmonTime is how conmon writes a k8s-file line's time.
const conmonTime = "2006-01-02T15:04:05.000000000-07:00"

// cri renders one k8s-file line, newline included, at base+ns.
func cri(ns int64, stream, tag, content string) string {
	return base.Add(time.Duration(ns)).Format(conmonTime) + " " + stream + " " + tag + " " + content + "\n"
}

// eventually polls cond until it is true or waitLimit passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// logFile is a container log in a temp dir.
type logFile struct {
	t    *testing.T
	path string
}

func newLogFile(t *testing.T, lines ...string) *logFile {
	t.Helper()
	l := &logFile{t: t, path: filepath.Join(t.TempDir(), "ctr.log")}
	if err := os.WriteFile(l.path, []byte(strings.Join(lines, "")), 0o644); err != nil {
		t.Fatal(err)
	}
	return l
}

// append writes s at the end of the log, as conmon does.
func (l *logFile) append(s ...string) {
	l.t.Helper()
	f, err := os.OpenFile(l.path, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		l.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(strings.Join(s, "")); err != nil {
		l.t.Fatal(err)
	}
}

func (l *logFile) size() int64 {
	l.t.Helper()
	st, err := os.Stat(l.path)
	if err != nil {
		l.t.Fatal(err)
	}
	return st.Size()
}

func (l *logFile) inode() uint64 {
	l.t.Helper()
	st, err := os.Stat(l.path)
	if err != nil {
		l.t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Ino
}

// sink records entries, copying their lines as the Loki client does (the
// readers lend them from their read buffers); fail, when set, is returned
// for the nth entry (1-based) instead of taking it.
type sink struct {
	t       *testing.T
	mu      sync.Mutex
	got     []pipeline.Entry
	calls   int
	failAt  int
	failErr error
}

func newSink(t *testing.T) *sink { return &sink{t: t} }

func (s *sink) consumer() pipeline.Consumer {
	return pipeline.ConsumerFunc(func(ctx context.Context, es []pipeline.Entry) (int, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		for i, e := range es {
			s.calls++
			if s.failAt != 0 && s.calls == s.failAt {
				return i, s.failErr
			}
			e.Line = strings.Clone(e.Line)
			e.Metadata = slices.Clone(e.Metadata)
			s.got = append(s.got, e)
		}
		return len(es), nil
	})
}

func (s *sink) entries() []pipeline.Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.got)
}

// wait blocks until at least n entries arrived and returns them all.
func (s *sink) wait(n int) []pipeline.Entry {
	s.t.Helper()
	var got []pipeline.Entry
	eventually(s.t, "entries", func() bool {
		got = s.entries()
		return len(got) >= n
	})
	return got
}

// ack acknowledges es in order, as the sink does after Loki's 2xx.
func ack(es ...pipeline.Entry) {
	for _, e := range es {
		e.Ack.Ack(e.Pos)
	}
}

func lines(es []pipeline.Entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Line
	}
	return out
}

func openStore(t *testing.T, dir string) *positions.Store {
	t.Helper()
	s, err := positions.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func openStoreErr(dir string) (*positions.Store, error) { return positions.Open(dir) }

// reader is a ContainerOutput running in a goroutine.
type reader struct {
	t      *testing.T
	cancel context.CancelFunc
	done   chan error
}

func newReader(t *testing.T, tg discovery.Target, store *positions.Store, next pipeline.Consumer, fromEnd bool, m *Metrics) *ContainerOutput {
	if m == nil {
		m = NewMetrics(prometheus.NewRegistry())
	}
	return NewContainerOutput(tg, store, Pipes{}, pipeline.Sink{Consumer: next}, fromEnd, m, zap.NewNop())
}

func runReader(t *testing.T, co interface{ Run(context.Context) error }) *reader {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &reader{t: t, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- co.Run(ctx) }()
	t.Cleanup(func() { r.stop() })
	return r
}

// stop cancels Run and returns what it returned.
func (r *reader) stop() error {
	r.t.Helper()
	r.cancel()
	return r.wait()
}

// wait returns what Run returned, failing the test if it does not return.
func (r *reader) wait() error {
	r.t.Helper()
	select {
	case err := <-r.done:
		r.done <- err // stop may be called again (cleanup)
		return err
	case <-time.After(waitLimit):
		r.t.Fatal("Run did not return")
		return nil
	}
}
