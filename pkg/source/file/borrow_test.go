package file

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/podtail/podtail/pkg/pipeline"
	"github.com/podtail/podtail/pkg/pipeline/stage"
	"github.com/podtail/podtail/pkg/source/positions"
)

// Lines borrowed from the read buffer arrive intact and once, at full speed
// through rotations, and when the sink pushes back across a rename (the
// entries a failed hand-over keeps must not change as the buffer is
// reused).
func TestBorrowedLines(t *testing.T) {
	t.Run("full speed", func(t *testing.T) {
		dir := t.TempDir()
		store, _ := positions.Open(t.TempDir())
		s := newSink()
		r := startDir(t, dir, store, s, NewMetrics(prometheus.NewRegistry(), nil, nil))
		log, lj := zapLogger(filepath.Join(dir, "beiluo_test777_v1.log"))
		const n = 60000
		for i := 1; i <= n; i++ {
			log.Info("request handled", zap.Int("n", i), zap.String("path", "/api/v1/orders"))
		}
		_ = lj.Close()
		waitFor(t, 10*time.Second, "all lines", func() bool { return s.total() >= n })
		r.stop(t)
		exactlyOnce(t, s, 1, n)
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, l := range s.lines[:100] {
			if !strings.HasPrefix(l, `{"level":"info"`) {
				t.Fatalf("line changed: %q", l)
			}
		}
	})
	t.Run("pushed back", func(t *testing.T) {
		dir := t.TempDir()
		s := newSink()
		st, v := heldBack(t, dir, s)
		path := filepath.Join(dir, "app.log")
		_ = os.WriteFile(path, numbered(1, 2000), 0o644)
		st.steps(3) // read, and refused
		_ = os.Rename(path, filepath.Join(dir, "app-1.log"))
		_ = os.WriteFile(path, numbered(2001, 4000), 0o644)
		st.steps(3)
		appendTo(t, path, numbered(4001, 6000))
		st.steps(3)
		if v.refused.Load() == 0 || s.total() != 0 {
			t.Fatalf("refused %d, passed %d: want every hand-over refused", v.refused.Load(), s.total())
		}
		v.shut.Store(false)
		st.settle()
		exactlyOnce(t, s, 1, 6000)
	})
}

// appendTo appends b to the file at path, as a writer does.
func appendTo(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err == nil {
		_, err = f.Write(b)
		err = errors.Join(err, f.Close())
	}
	if err != nil {
		t.Fatal(err)
	}
}

// zapLines are n = from..to with a caller each, as zap writes them.
func zapLines(from, to int) []byte {
	var b []byte
	for i := from; i <= to; i++ {
		b = fmt.Appendf(b, `{"level":"info","ts":1732492800.%06d,"caller":"app/handler%d.go:%d","msg":"m","n":%d}`+"\n", i%1000000, i%7, i, i)
	}
	return b
}

// checkCaller is a valve that also checks, for every entry it is offered,
// that its caller metadata is the caller its line names.
type checkCaller struct {
	valve
	bad atomic.Int64
}

func (c *checkCaller) Consume(ctx context.Context, es []pipeline.Entry) (int, error) {
	for _, e := range es {
		var v struct{ Caller string }
		_ = json.Unmarshal([]byte(e.Line), &v)
		if len(e.Metadata) != 1 || e.Metadata[0].Value != v.Caller {
			c.bad.Add(1)
		}
	}
	return c.valve.Consume(ctx, es)
}

// Metadata the zap stage cuts from a borrowed line (the caller) survives a
// failed hand-over with its line, however the read buffer is reused.
func TestBorrowedLinesMetadata(t *testing.T) {
	dir := t.TempDir()
	s := newSink()
	c := &checkCaller{valve: valve{next: s}}
	c.shut.Store(true)
	st := newStepper(t, dir, nil, pipeline.Sink{Consumer: c}, nil, func(cfg *Config) {
		cfg.Stages = func(string) (*pipeline.Pipeline, *pipeline.Multiline) {
			p, err := stage.Build(stage.ZapPreset())
			if err != nil {
				t.Fatal(err)
			}
			return p, nil
		}
	})
	c.end = st.d.onTimer
	path := filepath.Join(dir, "app.log")
	_ = os.WriteFile(path, zapLines(1, 3000), 0o644)
	st.steps(3)
	appendTo(t, path, zapLines(3001, 6000))
	st.steps(3)
	c.shut.Store(false)
	st.settle()
	exactlyOnce(t, s, 1, 6000)
	if n := c.bad.Load(); n > 0 {
		t.Fatalf("%d entries whose caller metadata is not their line's", n)
	}
}
