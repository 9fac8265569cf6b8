package file

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"gopkg.in/natefinch/lumberjack.v2"

	"github.com/podtail/podtail/pkg/pipeline"
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
